"""Sharded stores from Python: a round trip through a store of several files, each file
holding exactly the keys shard_of routes to it; shard_of against the rule of docs/FORMAT.md
section 14 written out here, and its examples; a shard's own writer; the options' errors."""

import random

import numpy as np
import pytest
from conftest import ints_of, keys_of
from formatdoc import M64, fmix64

import hashdir
from hashdir import key


def rule(k: bytes, shards: int) -> int:
    """docs/FORMAT.md's routing rule: a hash of the key's two halves, then Lamping and
    Veach's jump consistent hash."""
    lo = int.from_bytes(k[:8], "little")
    hi = int.from_bytes(k[8:], "little")
    h = fmix64(fmix64(lo ^ 0x6A09E667F3BCC908) ^ hi)
    b, j = 0, 0
    while j < max(shards, 1):
        b = j
        h = (h * 2862933555777941757 + 1) & M64
        j = int((b + 1) * (float(1 << 31) / float((h >> 33) + 1)))
    return b


def test_shard_of_follows_the_rule():
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    keys = [key(0), key(1), b"\xff" * 16] + [rng.randbytes(16) for _ in range(300)]
    for shards in (0, 1, 2, 3, 7, 64, 4096):
        want = [rule(k, shards) for k in keys]
        got = [hashdir.shard_of(k, shards) for k in keys]
        assert got == want, f"seed {seed}, {shards} shards"
        batch = np.frombuffer(b"".join(keys), np.uint8).reshape(-1, 16)
        routed = hashdir.shard_of(batch, shards)
        assert routed.dtype == np.uint32 and routed.tolist() == want
    assert hashdir.shard_of(key(5), 0) == hashdir.shard_of(key(5), 1) == 0
    # The examples of docs/FORMAT.md section 14.
    for hexkey, want in [("00" * 16, [0, 0, 7, 1270]),
                         ("000102030405060708090a0b0c0d0e0f", [0, 0, 5, 3871]),
                         ("01" + "00" * 15, [1, 1, 1, 3764])]:
        k = bytes.fromhex(hexkey)
        assert [hashdir.shard_of(k, n) for n in (2, 3, 16, 4096)] == want, hexkey
    with pytest.raises(hashdir.InvalidArgumentError):
        hashdir.shard_of(b"short", 4)
    with pytest.raises(hashdir.InvalidArgumentError):
        hashdir.shard_of(key(1), -1)


def test_round_trip_through_a_sharded_store(tmp_path):
    store = tmp_path / "store"
    n, shards = 3000, 3
    ks = keys_of(range(n))
    with hashdir.Writer(store, shards=shards) as w:
        w.insert(np.concatenate([ks, ks]), np.concatenate([keys_of(range(1, n + 1)),
                                                           keys_of(range(2, n + 2))]))
        w.commit()
        w.delete_keys(keys_of([0, 1, 2]))
        w.commit()
        w.checkpoint()
        assert (w.stats().keys, w.stats().values) == (n - 3, 2 * (n - 3))
    assert sorted(p.name for p in store.iterdir() if p.suffix == ".h5") == [
        f"shard_{i:03}.h5" for i in range(shards)
    ]
    probe = keys_of(list(range(n + 100))[::-1])  # reversed, 100 absent keys first
    with hashdir.Reader(store) as r:
        assert r.stats().keys == n - 3
        first, found = r.lookup(probe)
        assert found.tolist() == [3 <= i < n for i in range(n + 100)][::-1]
        values, offsets = r.get(probe)
        counts = np.diff(offsets)
        assert counts.tolist() == [2 if 3 <= i < n else 0 for i in range(n + 100)][::-1]
        for j in (100, 500, len(probe) - 4):  # key n - 1, key n - 401, key 3
            i = ints_of(probe[j : j + 1])[0]
            assert sorted(ints_of(values[offsets[j] : offsets[j + 1]])) == [i + 1, i + 2]
        assert r.lookup(key(7)) in (key(8), key(9))
    # Each file is an ordinary hashdir file holding exactly the keys routed to it.
    route = hashdir.shard_of(ks, shards)
    for s in range(shards):
        with hashdir.Reader(store / f"shard_{s:03}.h5") as r:
            _, found = r.lookup(ks)
            want = (route == s) & (np.arange(n) >= 3)
            assert want.any() and found.tolist() == want.tolist(), f"shard {s}"


def test_a_shard_has_its_own_writer(tmp_path):
    store = tmp_path / "store"
    hashdir.Writer(store, shards=2).close()
    mine = [i for i in range(200) if hashdir.shard_of(key(i), 2) == 1]
    with hashdir.Writer.open_shard(store, 1) as w:
        with pytest.raises(hashdir.LockedError):
            hashdir.Writer(store)  # the whole store is not free
        with hashdir.Writer.open_shard(store, 0):  # the other shard is
            pass
        w.insert([key(i) for i in mine], [key(1)] * len(mine))
        w.commit()
    with pytest.raises(hashdir.InvalidArgumentError, match="2 shards"):
        hashdir.Writer.open_shard(store, 2)
    with hashdir.Reader(store) as r:
        _, found = r.lookup(keys_of(range(200)))
        assert np.flatnonzero(found).tolist() == mine
    with hashdir.Writer(store) as w:  # the shard writer's batches stay
        assert w.stats().wal_bytes >= 0
    with hashdir.Reader(store) as r:
        assert r.get(key(mine[0])) == [key(1)]


def test_bad_shard_options(tmp_path):
    with pytest.raises(hashdir.InvalidArgumentError):
        hashdir.Writer(tmp_path / "s", shards=5000)
    with pytest.raises(hashdir.InvalidArgumentError):
        hashdir.Writer(tmp_path / "s", shards=-1)
    hashdir.Writer(tmp_path / "s", shards=2).close()
    with pytest.raises(hashdir.InvalidArgumentError, match="2 shards"):
        hashdir.Writer(tmp_path / "s", shards=3)
    hashdir.Writer(tmp_path / "f.h5").close()
    with pytest.raises(hashdir.InvalidArgumentError):
        hashdir.Writer(tmp_path / "f.h5", shards=2)
    with pytest.raises(hashdir.NotHashdirError):
        hashdir.Writer.open_shard(tmp_path / "f.h5", 0)
