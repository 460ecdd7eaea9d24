"""Reading a hashdir file's bytes as docs/FORMAT.md describes them (format version 2), with
h5py and plain file reads: the tests use it to show the file is ordinary HDF5 laid out as
documented, and to find a page to damage. Update it with docs/FORMAT.md.
"""

import struct

import h5py
import numpy as np

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


def one_bucket_page_offset(path: str) -> int:
    """The file offset of the bucket page of a table small enough for one (of a file no
    writer has open): the newest root slot (section 2), its one-leaf directory (section
    3.2), the page the directory's only slot names (section 3.1)."""
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
        return page_off


def one_bucket_page(path: str) -> list:
    """Decodes, from the file's raw bytes, the bucket page of a table small enough for one
    (see one_bucket_page_offset). Returns (key, code, body) per entry."""
    with open(path, "rb") as raw:
        raw.seek(one_bucket_page_offset(path))
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


def check_layout(f: "h5py.File") -> None:
    """The HDF5 objects docs/FORMAT.md section 1 lists."""
    assert bytes(f.attrs["hashdir_magic"]).rstrip(b"\0") == b"hashdir"
    assert int(f.attrs["hashdir_format"]) == 2
    assert int(f.attrs["page_size"]) == 4096
    assert f["root"].shape == (2, 1024)
    assert f["pages"].shape[1] == 4096
    assert f["pages"].maxshape == (None, 4096)
    assert f["wal"].ndim == 1
    assert f["wal"].maxshape == (None,)
    shards = sorted(f["values"].keys())
    assert shards == [f"shard_{i:02d}" for i in range(8)]
    for name in ["root", "pages", "wal"] + [f"values/{s}" for s in shards]:
        assert f[name].dtype == np.uint8, name
