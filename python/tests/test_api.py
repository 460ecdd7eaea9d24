"""Round trips through the Python API: single keys as bytes, batches as NumPy arrays (uint8
and 16-byte void), sequences of bytes; get's CSR result and its buffer retry; a key with
10^5 values; writer maintenance calls; the package's own files."""

import os
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import ints_of, keys_of

import hashdir
from hashdir import key


def test_single_keys_are_bytes_in_and_out(path):
    with hashdir.Writer(path) as w:
        w.insert(key(1), key(10))  # one key, one value: one pair
        w.insert([key(1), bytearray(key(1)), memoryview(key(2))], [key(11), key(10), key(20)])
        w.insert_values(key(3), [key(30), key(31), key(30)])  # a set: 30 once
        w.commit()
        with hashdir.Reader(path) as r:
            assert r.lookup(key(2)) == key(20)
            assert r.lookup(key(1)) in (key(10), key(11))
            assert r.lookup(key(99)) is None
            assert isinstance(r.lookup(key(2)), bytes)
            assert sorted(r.get(key(1))) == [key(10), key(11)]
            assert sorted(r.get(key(3))) == [key(30), key(31)]
            assert r.get(key(99)) == []
            assert all(isinstance(v, bytes) for v in r.get(key(1)))
            # Every form of one key works alike.
            for one in (bytearray(key(3)), memoryview(key(3)),
                        np.frombuffer(key(3), np.uint8),
                        np.frombuffer(key(3), "V16")[0]):
                assert sorted(r.get(one)) == [key(30), key(31)]
                assert one in r
            assert key(99) not in r
            assert hashdir.to_int(r.lookup(key(2))) == 20


def test_numpy_batches_round_trip(path):
    rng = np.random.default_rng(7)
    ks = rng.integers(0, 256, size=(500, 16), dtype=np.uint8)
    vs = rng.integers(0, 256, size=(1500, 16), dtype=np.uint8)
    with hashdir.Writer(path) as w:
        w.insert(np.repeat(ks, 3, axis=0), vs)  # key i gets values 3i, 3i+1, 3i+2
        w.commit()
    with hashdir.Reader(path) as r:
        absent = rng.integers(0, 256, size=(5, 16), dtype=np.uint8)
        batch = np.concatenate([ks, absent])
        first, found = r.lookup(batch)
        assert first.shape == (505, 16) and first.dtype == np.uint8
        assert found.shape == (505,) and found.dtype == np.bool_
        assert found.tolist() == [True] * 500 + [False] * 5
        for i in range(500):
            assert any((first[i] == vs[3 * i + j]).all() for j in range(3))

        res = r.get(batch)
        values, offsets = res  # a ValueSets unpacks to (values, offsets)
        assert offsets.shape == (506,) and offsets.dtype == np.int64
        assert values.shape == (1500, 16) and values.dtype == np.uint8
        assert res.counts.tolist() == [3] * 500 + [0] * 5
        assert offsets[0] == 0 and offsets[-1] == 1500
        for i in range(500):
            got = {bytes(v) for v in values[offsets[i]:offsets[i + 1]]}
            assert got == {bytes(v) for v in vs[3 * i:3 * i + 3]}
            assert np.array_equal(res.of(i), values[offsets[i]:offsets[i + 1]])

        # Empty batches.
        first, found = r.lookup(np.empty((0, 16), np.uint8))
        assert first.shape == (0, 16) and found.shape == (0,)
        values, offsets = r.get(np.empty((0, 16), np.uint8))
        assert values.shape == (0, 16) and offsets.tolist() == [0]
        # A sequence of bytes is a batch too, and gives arrays.
        first, found = r.lookup([bytes(ks[0]), key(12345)])
        assert found.tolist() == [True, False]
        assert r.get([bytes(ks[1])]).counts.tolist() == [3]
        assert r.get([]).offsets.tolist() == [0]


def test_void_dtype_batches_come_back_as_void(path):
    ks = keys_of(range(10)).view("V16").ravel()  # (10,) of 16-byte void
    assert ks.shape == (10,) and ks.dtype == np.dtype("V16")
    vs = keys_of(range(100, 110)).view("V16").ravel()
    with hashdir.Writer(path) as w:
        w.insert(ks, vs)
        w.insert_values(ks[0], vs[1:3])
        w.commit()
        with hashdir.Reader(path) as r:
            first, found = r.lookup(ks)
            assert first.dtype == np.dtype("V16") and first.shape == (10,)
            assert found.all()
            assert (first[1:] == vs[1:]).all()
            values, offsets = r.get(ks)
            assert values.dtype == np.dtype("V16") and values.shape == (12,)
            assert np.diff(offsets).tolist() == [3] + [1] * 9
            assert sorted(v.tobytes() for v in values[:3]) == sorted(
                v.tobytes() for v in vs[:3])
            # A structured 16-byte dtype works the same way and keeps its fields.
            pair = np.dtype([("lo", "<u8"), ("hi", "<u8")])
            first, found = r.lookup(keys_of([5]).view(pair).ravel())
            assert first.dtype == pair and first["lo"][0] == 105


def test_non_contiguous_batches_are_copied_once_contiguous_ones_not_at_all(path):
    from hashdir import _batch

    big = keys_of(range(20))
    assert _batch(big, "keys") is big  # passed to C as it is
    col = np.asfortranarray(big)
    assert not col.flags.c_contiguous
    strided = big[::2]
    for b in (col, strided):
        c = _batch(b, "keys")
        assert c.flags.c_contiguous and np.array_equal(c, b)
    ro = big.copy()
    ro.flags.writeable = False  # read-only input is fine: the library only reads keys
    with hashdir.Writer(path) as w:
        w.insert(strided, col[1::2])  # key 2i -> value 2i+1
        w.insert(ro[:1], ro[19:])
        w.commit()
        with hashdir.Reader(path) as r:
            first, found = r.lookup(big[::2])
            assert found.all()
            assert ints_of(first[1:]) == list(range(3, 20, 2))
            assert sorted(ints_of(r.get(ro[:1]).values)) == [1, 19]


def test_get_grows_its_buffer_once_when_the_library_asks(path):
    with hashdir.Writer(path) as w:
        w.insert_values(key(1), keys_of(range(100)))
        w.insert_values(key(2), keys_of(range(5)))
        w.commit()
        with hashdir.Reader(path) as r:
            calls = []
            lib = hashdir.library()
            real = lib.hashdir_reader_get

            class Spy:
                """Records the capacity and status of each C call."""

                def __call__(self, *args):
                    status = real(*args)
                    calls.append((args[4], status))
                    return status

            lib.hashdir_reader_get = Spy()
            try:
                values, offsets = r.get(keys_of([2, 1, 3]), capacity=4)
            finally:
                lib.hashdir_reader_get = real
            assert calls == [(4, hashdir.Status.ERR_BUFFER_TOO_SMALL), (105, hashdir.Status.OK)]
            assert np.diff(offsets).tolist() == [5, 100, 0]
            assert sorted(ints_of(values[:5])) == list(range(5))
            assert sorted(ints_of(values[5:])) == list(range(100))
            # Room enough: one call, and the result is cut to the total.
            vs = r.get(keys_of([2]), capacity=1000)
            assert vs.values.shape == (5, 16)
            assert r.get(keys_of([2]), capacity=0).values.shape == (5, 16)


def test_a_key_with_a_hundred_thousand_values(path):
    n = 100_000
    vals = keys_of(np.arange(n) * 7 + 3)
    with hashdir.Writer(path) as w:
        w.insert_values(key(42), vals)
        w.insert(key(43), key(1))
        w.commit()
        with hashdir.Reader(path) as r:
            got = r.get(key(42))  # one key: a list of bytes
            assert len(got) == n and set(got) == {bytes(v) for v in vals}
            values, offsets = r.get(keys_of([42, 43]))
            assert offsets.tolist() == [0, n, n + 1]
            assert sorted(ints_of(values[:n])) == sorted(ints_of(vals))
            w.checkpoint()  # the set moves to an extent of its own
            assert w.stats().extents == 1 and w.stats().values == n + 1
            r.refresh()
            assert r.get(keys_of([42])).counts.tolist() == [n]
            # Delete every other value.
            w.delete_pairs(np.repeat(keys_of([42]), n // 2, axis=0), vals[::2])
            w.commit()
            r.refresh()
            left = r.get(keys_of([42])).values
            assert sorted(ints_of(left)) == sorted(ints_of(vals[1::2]))
            assert r.lookup(key(42)) in {bytes(v) for v in vals[1::2]}


def test_deletes_commit_refresh_and_stats(path):
    with hashdir.Writer(path, checkpoint_bytes=1 << 20) as w:
        w.insert(keys_of([1, 1, 2, 3]), keys_of([10, 11, 20, 30]))
        w.commit()
        with hashdir.Reader(path) as r:
            st = r.stats()
            assert isinstance(st, hashdir.Stats)
            assert st.keys == 0 and st.wal_bytes > 0  # counts as of the last checkpoint
            w.delete_keys(key(2))
            w.delete_pairs([key(1), key(3), key(9)], [key(11), key(30), key(90)])
            assert key(2) in r  # not committed, and not refreshed
            w.commit()
            assert key(2) in r  # committed, not refreshed: the view stays
            r.refresh()
            _, found = r.lookup(keys_of([1, 2, 3]))
            assert found.tolist() == [True, False, False]
            assert r.get(key(1)) == [key(10)]
            w.checkpoint()
            st = w.stats()
            assert (st.keys, st.values, st.wal_bytes) == (1, 1, 0)
            assert st.epoch >= 1 and st.file_bytes > 0 and st.buckets >= 1
            r.refresh()
            assert r.stats().keys == 1


def test_writer_options_and_gc(path):
    with hashdir.Writer(path, sync=True) as w:  # fsync at every commit
        w.insert(keys_of(range(2000)), keys_of(range(2000)))
        w.commit()
        w.checkpoint()
        w.delete_keys(keys_of(range(2000)))
        w.commit()
        w.checkpoint()
        gc = w.gc()
        assert isinstance(gc, hashdir.GcResult)
        assert gc.pages_reclaimed + gc.segment_bytes_reclaimed >= 0
        assert w.gc() == (0, 0)  # idempotent: a second pass reclaims nothing
        assert w.stats().keys == 0
    # create=False opens an existing file.
    with hashdir.Writer(path, create=False) as w:
        w.insert(key(1), key(2))
    with hashdir.Reader(path) as r:
        assert r.get(key(1)) == [key(2)]


def test_writer_close_commits(path):
    w = hashdir.Writer(os.fsencode(path))  # bytes paths work too
    w.insert(key(5), key(50))
    w.close()
    assert w.closed
    with hashdir.Reader(Path(path)) as r:  # and path-like objects
        assert r.lookup(key(5)) == key(50)
        assert "open" in repr(r)
    assert "closed" in repr(r)


def test_the_package_carries_its_library_and_header():
    import hashdir._capi as capi

    assert hashdir.version() == hashdir.__version__
    here = Path(hashdir.__file__).parent
    if not os.environ.get("HASHDIR_LIB"):
        assert Path(hashdir.library_path()) == here / "libhashdir.so"
    assert (here / "py.typed").exists()
    header = Path(hashdir.get_include()) / "hashdir.h"
    text = header.read_text()
    assert "hashdir_reader_lookup" in text
    # Every function ctypes declares is in the header, with as many parameters.
    for name, (_, argtypes) in capi.SIGNATURES.items():
        params = re.search(rf"\b{name}\(([^()]*)\);", text).group(1)
        n = 0 if params.strip() == "void" else params.count(",") + 1
        assert n == len(argtypes), name
    # And every status of the header is a Status with an exception class.
    for status in hashdir.Status:
        assert f"{status.c_name} = {int(status)}," in text
        if status:
            assert hashdir._ERRORS[status].status == status
