"""Tests of hashdir.py, and proof that a hashdir file is ordinary HDF5 (read with h5py).

Run:  HASHDIR_LIB=/path/to/libhashdir.so python3 examples/python/test_hashdir.py -v
(tests/examples.rs runs it against the freshly built library). Needs numpy and h5py.

h5py and a hashdir writer: hashdir files are HDF5 SWMR files. While a hashdir writer has
the file open, open it with h5py.File(path, "r", swmr=True, locking=False) (or set
HDF5_USE_FILE_LOCKING=FALSE); once no writer has it, a plain h5py.File(path, "r") works.
"""

import contextlib
import io
import os
import struct
import sys
import tempfile
import threading
import unittest

import h5py
import numpy as np

import example
import hashdir
from hashdir import key

ROOT_SLOT = 1024


def root_counts(f: "h5py.File") -> dict:
    """Decodes the current root slot of /root (docs/FORMAT.md section 2): the valid slot
    with the highest epoch. (The CRC is not checked here.)"""
    slots = f["root"][...]
    assert slots.shape == (2, ROOT_SLOT) and slots.dtype == np.uint8
    best = None
    for slot in slots:
        raw = slot.tobytes()
        if raw[0:8] != b"HDIRROOT":
            continue
        (version,) = struct.unpack_from("<I", raw, 8)
        (epoch,) = struct.unpack_from("<Q", raw, 16)
        keys, values, buckets, extents = struct.unpack_from("<4Q", raw, 216)
        if version == 2 and (best is None or epoch > best["epoch"]):
            best = dict(epoch=epoch, keys=keys, values=values, buckets=buckets, extents=extents)
    assert best is not None, "no valid root slot"
    return best


M64 = (1 << 64) - 1


def fmix64(x: int) -> int:
    x ^= x >> 33
    x = (x * 0xFF51AFD7ED558CCD) & M64
    x ^= x >> 33
    x = (x * 0xC4CEB9FE1A85EC53) & M64
    return x ^ (x >> 33)


def key_hash(k: bytes) -> int:
    """docs/FORMAT.md section 6."""
    lo, hi = struct.unpack("<QQ", k)
    return fmix64(lo ^ fmix64(hi ^ 0x9E3779B97F4A7C15) ^ 0x2545F4914F6CDD1D)


def one_bucket_page(path: str) -> list:
    """Decodes, from the file's raw bytes, the bucket page of a table small enough for one:
    the newest root slot (section 2), its one-leaf directory (section 3.2), the bucket page
    the directory's only slot names (section 3.1). Returns (key, code, body) per entry."""
    with open(path, "rb") as raw, h5py.File(path, "r") as f:
        slots = f["root"][...]
        best = max((s.tobytes() for s in slots if s.tobytes()[:8] == b"HDIRROOT"),
                   key=lambda b: struct.unpack_from("<Q", b, 16)[0])
        depth, = struct.unpack_from("<I", best, 24)
        dir_len, dir_top, levels = struct.unpack_from("<QQI", best, 32)
        assert (depth, dir_len, levels) == (0, 1, 1), (depth, dir_len, levels)
        raw.seek(dir_top)
        leaf = raw.read(4096)
        assert leaf[:4] == b"HDAR"
        page_off, = struct.unpack_from("<Q", leaf, 32)
        raw.seek(page_off)
        page = raw.read(4096)
    assert page[:4] == b"HDBK"
    n, = struct.unpack_from("<H", page, 16)
    lo, hi = struct.unpack_from("<II", page, 24)
    assert (lo, hi) == (0, 0xFFFFFFFF), "one page covers every hash"
    at, out = 32 + 2 * n, []
    for i in range(n):
        word, = struct.unpack_from("<H", page, 32 + 2 * i)
        code = word & 0xF
        length = 56 if code == 0xF else 16 + 16 * code
        k = page[at:at + 16]
        assert word & 0xFFF0 == key_hash(k) & 0xFFF0, "tag word bits are hash bits 4..15"
        out.append((k, code, page[at + 16:at + length]))
        at += length
    assert not any(page[at:]), "zeros after the last entry"
    return out


def check_layout(test: unittest.TestCase, f: "h5py.File") -> None:
    """The HDF5 objects docs/FORMAT.md section 1 lists."""
    test.assertEqual(bytes(f.attrs["hashdir_magic"]).rstrip(b"\0"), b"hashdir")
    test.assertEqual(int(f.attrs["hashdir_format"]), 2)
    test.assertEqual(int(f.attrs["page_size"]), 4096)
    test.assertEqual(f["root"].shape, (2, 1024))
    test.assertEqual(f["pages"].shape[1], 4096)
    test.assertEqual(f["pages"].maxshape, (None, 4096))
    test.assertEqual(f["wal"].ndim, 1)
    test.assertEqual(f["wal"].maxshape, (None,))
    shards = sorted(f["values"].keys())
    test.assertEqual(shards, [f"shard_{i:02d}" for i in range(8)])
    for name in ["root", "pages", "wal"] + [f"values/{s}" for s in shards]:
        test.assertEqual(f[name].dtype, np.uint8, name)


class Scratch(unittest.TestCase):
    def setUp(self):
        self._dir = tempfile.TemporaryDirectory()
        self.dir = self._dir.name

    def tearDown(self):
        self._dir.cleanup()

    def path(self, name="t.h5"):
        return os.path.join(self.dir, name)


class FileIsOrdinaryHdf5(Scratch):
    def test_example_file_opens_with_h5py(self):
        path = self.path("example.h5")
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            example.main(path)
        self.assertIn("all checks passed", out.getvalue())
        # The example closed its writer: no hashdir process holds the file, so a plain
        # read-only open works.
        with h5py.File(path, "r") as f:
            check_layout(self, f)
            root = root_counts(f)
            # Closing checkpoints: keys 1 and 4 with 2 + 100 values are in the root.
            self.assertEqual((root["keys"], root["values"]), (2, 102))
            self.assertEqual(root["extents"], 1, "key 4's 100 values live in an extent")
        # The one bucket page, decoded from the raw bytes as docs/FORMAT.md describes it.
        entries = {k: (code, body) for k, code, body in one_bucket_page(path)}
        self.assertEqual(set(entries), {key(1), key(4)})
        code, body = entries[key(1)]
        self.assertEqual(code, 2)
        self.assertEqual({body[:16], body[16:]}, {key(10), key(12)})
        code, body = entries[key(4)]
        self.assertEqual(code, 0xF, "an extent reference")
        self.assertEqual(struct.unpack_from("<Q", body, 0)[0], 100, "its count")
        # ... and hashdir still reads it afterwards.
        with hashdir.Reader(path) as r:
            self.assertEqual(r.values(key(1)), {key(10), key(12)})

    def test_h5py_reads_while_a_writer_is_open(self):
        path = self.path()
        with hashdir.Writer(path) as w:
            w.insert([key(1), key(1), key(2)], [key(10), key(11), key(20)])
            w.commit()
            w.checkpoint()
            # The writer holds the file in SWMR mode: read it as an SWMR reader, without
            # HDF5's own file locks (the same as HDF5_USE_FILE_LOCKING=FALSE).
            with h5py.File(path, "r", swmr=True, locking=False) as f:
                check_layout(self, f)
                self.assertEqual(root_counts(f)["keys"], 2)
                self.assertEqual(root_counts(f)["values"], 3)
            w.insert([key(3)], [key(30)])
        with h5py.File(path, "r") as f:
            self.assertEqual((root_counts(f)["keys"], root_counts(f)["values"]), (3, 4))


class Api(Scratch):
    def test_round_trip_with_bytes(self):
        with hashdir.Writer(self.path()) as w:
            # bytes, bytearray and memoryview all work; so does any iterable.
            w.insert(
                (k for k in [key(1), bytearray(key(1)), memoryview(key(2))]),
                [key(10), key(11), key(20)],
            )
            w.insert(key(1), key(10))  # a single 16-byte key: a batch of one (a duplicate)
            w.commit()
            with hashdir.Reader(self.path()) as r:
                self.assertEqual(r.get([key(1), key(2), key(3)]), [{key(10), key(11)}, {key(20)}, set()])
                counts, flat = r.get_flat([key(2), key(1)])
                self.assertEqual(counts, [1, 2])
                self.assertEqual(flat[:16], key(20))
                self.assertEqual({flat[16:32], flat[32:48]}, {key(10), key(11)})
                self.assertIn(key(1), r)
                self.assertNotIn(key(3), r)
                self.assertEqual(r.lookup([]), [])
                self.assertEqual(r.get([]), [])
                st = r.stats()
                self.assertEqual(st.keys, 0, "stats count as of the last checkpoint")
                self.assertGreater(st.wal_bytes, 0)

    def test_numpy_batches(self):
        rng = np.random.default_rng(7)
        keys = rng.integers(0, 256, size=(50, 16), dtype=np.uint8)
        keys = np.repeat(keys, 3, axis=0)  # each key three times ...
        values = rng.integers(0, 256, size=(150, 16), dtype=np.uint8)  # ... three values
        with hashdir.Writer(self.path()) as w:
            w.insert(keys, values)
            w.commit()
            with hashdir.Reader(self.path()) as r:
                found, first = r.lookup(keys[::3])
                self.assertTrue(found.all())
                self.assertEqual(first.shape, (50, 16))
                counts, flat = r.get_flat(keys[::3], capacity=1)
                self.assertEqual(counts.dtype, np.uint64)
                self.assertEqual(counts.tolist(), [3] * 50)
                self.assertEqual(flat.shape, (150, 16))
                per_key = r.get(keys[::3])
                for i, arr in enumerate(per_key):
                    want = {bytes(v) for v in values[3 * i : 3 * i + 3]}
                    self.assertEqual({bytes(v) for v in arr}, want)
                    self.assertIn(bytes(first[i]), want)
                # bytes in, NumPy out on request
                self.assertEqual(r.get([bytes(keys[0])], as_numpy=True)[0].shape, (3, 16))
                w.delete_pairs(keys[:3], values[:3])
                w.delete_keys(keys[3:6:3])
                w.commit()
                r.refresh()
                found, _ = r.lookup(keys[:9:3])
                self.assertEqual(found.tolist(), [False, False, True])

    def test_insert_values_one_key_many_values(self):
        with hashdir.Writer(self.path()) as w:
            w.insert([key(1)], [key(10)])
            # A key maps to a set: values given twice, or already there, are kept once.
            w.insert_values(key(1), [key(10), key(11), key(12), key(11)])
            # Any bytes-like key, any iterable of values; a NumPy key and (n, 16) values.
            w.insert_values(bytearray(key(2)), (key(v) for v in range(20, 25)))
            w.insert_values(
                np.frombuffer(key(3), np.uint8),
                np.stack([np.frombuffer(key(v), np.uint8) for v in (30, 31, 30)]),
            )
            w.insert_values(key(4), [])  # no values: nothing to add
            w.commit()
            wanted = [key(1), key(2), key(3), key(4)]
            with hashdir.Reader(self.path()) as r:
                self.assertEqual(
                    r.get(wanted),
                    [
                        {key(10), key(11), key(12)},
                        {key(v) for v in range(20, 25)},
                        {key(30), key(31)},
                        set(),
                    ],
                )
                counts, flat = r.get_flat(wanted, capacity=1)
                self.assertEqual(counts, [3, 5, 2, 0])
                self.assertEqual(len(flat), 10 * 16)
                self.assertNotIn(key(4), r)
            w.checkpoint()
            st = w.stats()
            self.assertEqual((st.keys, st.values), (3, 10))

            # Bad input raises before anything is inserted.
            with self.assertRaises(hashdir.InvalidArgumentError) as e:
                w.insert_values(b"short", [key(50)])
            self.assertEqual(e.exception.status, hashdir.ERR_INVALID_ARGUMENT)
            self.assertIn("key has 5 bytes", str(e.exception))
            with self.assertRaises(ValueError):  # InvalidArgumentError is a ValueError
                w.insert_values(key(5) + b"\0", [key(50)])  # 17 bytes
            with self.assertRaises(hashdir.InvalidArgumentError):
                w.insert_values(np.zeros(8, dtype=np.uint8), [key(50)])
            with self.assertRaises(hashdir.InvalidArgumentError):
                w.insert_values([key(5), key(6)], [key(50)])  # two keys are not one
            with self.assertRaises(hashdir.InvalidArgumentError):
                w.insert_values(key(5), [key(50), b"short"])
            w.checkpoint()
            st = w.stats()
            self.assertEqual((st.keys, st.values), (3, 10), "nothing was inserted")
            with hashdir.Reader(self.path()) as r:
                self.assertNotIn(key(5), r)
        with self.assertRaises(hashdir.InvalidArgumentError):
            w.insert_values(key(1), [key(13)])  # the writer is closed

    def test_buffer_too_small_is_what_the_c_call_answers(self):
        # What get() does under the hood, with the raw C function.
        with hashdir.Writer(self.path()) as w:
            w.insert([key(1)] * 5, [key(v) for v in range(5)])
            w.commit()
            with hashdir.Reader(self.path()) as r:
                lib = hashdir.library()
                k = (hashdir._Key * 1).from_buffer_copy(key(1))
                buf = (hashdir._Key * 2)()
                counts = (hashdir.c_uint64 * 1)()
                total = hashdir.c_size_t(0)
                status = lib.hashdir_reader_get(
                    r._h, k, 1, buf, 2, counts, hashdir.byref(total)
                )
                self.assertEqual(status, hashdir.ERR_BUFFER_TOO_SMALL)
                self.assertEqual((counts[0], total.value), (5, 5))
                self.assertEqual(len(r.get([key(1)], capacity=2)[0]), 5)

    def test_errors_carry_status_and_message(self):
        missing = self.path("missing.h5")
        with self.assertRaises(hashdir.NotFoundError) as e:
            hashdir.Writer(missing, create=False)
        self.assertEqual(e.exception.status, hashdir.ERR_NOT_FOUND)
        self.assertEqual(e.exception.status_name, "HASHDIR_ERR_NOT_FOUND")
        self.assertIn("does not exist (pass HASHDIR_CREATE to create it)", str(e.exception))
        self.assertIsInstance(e.exception, FileNotFoundError)
        self.assertFalse(os.path.exists(missing))
        with self.assertRaises(hashdir.NotFoundError):
            hashdir.Reader(missing)

        not_ours = self.path("plain.h5")
        with h5py.File(not_ours, "w") as f:
            f["x"] = np.arange(3)
        with self.assertRaises(hashdir.NotHashdirError) as e:
            hashdir.Writer(not_ours)
        self.assertIn("is not a hashdir file", str(e.exception))
        text = self.path("text.h5")
        with open(text, "w") as f:
            f.write("hello")
        with self.assertRaises(hashdir.NotHashdirError):
            hashdir.Reader(text)

        with hashdir.Writer(self.path()) as w:
            with self.assertRaises(hashdir.LockedError) as e:
                hashdir.Writer(self.path())
            self.assertIn("is locked: another writer has it open", str(e.exception))
            with self.assertRaises(hashdir.InvalidArgumentError):
                w.insert([b"short"], [key(1)])
            with self.assertRaises(ValueError):  # InvalidArgumentError is a ValueError
                w.insert([key(1), key(2)], [key(1)])
            with self.assertRaises(hashdir.InvalidArgumentError):
                w.insert(np.zeros((2, 8), dtype=np.uint8), np.zeros((2, 8), dtype=np.uint8))
        self.assertTrue(w.closed)
        with self.assertRaises(hashdir.InvalidArgumentError):
            w.commit()
        w.close()  # closing twice is fine
        # The lock went with the writer.
        with hashdir.Writer(self.path(), create=False):
            pass

    def test_one_reader_many_threads(self):
        with hashdir.Writer(self.path()) as w:
            w.insert([key(n) for n in range(1000)], [key(n + 1) for n in range(1000)])
            w.commit()
        failures = []
        with hashdir.Reader(self.path()) as r:

            def work(offset):
                try:
                    for n in range(offset, 1000, 4):
                        assert r.get([key(n)]) == [{key(n + 1)}]
                except Exception as e:  # reported below
                    failures.append(e)

            threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        self.assertEqual(failures, [])


if __name__ == "__main__":
    unittest.main()
