"""Reading a hashdir file's bytes as docs/FORMAT.md describes them (format version 5), with
h5py and plain file reads: the tests use it to show the file is ordinary HDF5 laid out as
documented, and to find a page to damage. Update it with docs/FORMAT.md.
"""

import struct

import h5py
import numpy as np

ROOT_SLOT = 4096
#: Offset of the base table's descriptor in a root slot (section 2), and its fields (§2.1).
BASE = 256


def newest_slot(f: "h5py.File") -> bytes:
    """The valid root slot of /root with the highest epoch (section 2; the CRC is not
    checked here)."""
    slots = f["root"][...]
    assert slots.shape == (2, ROOT_SLOT) and slots.dtype == np.uint8
    valid = [s.tobytes() for s in slots
             if s.tobytes()[:8] == b"HDIRROOT" and struct.unpack_from("<I", s.tobytes(), 8)[0] == 5]
    assert valid, "no valid root slot"
    return max(valid, key=lambda b: struct.unpack_from("<Q", b, 16)[0])


def root_counts(f: "h5py.File") -> dict:
    """The epoch and the base table's counts of the current root (sections 2 and 2.1)."""
    raw = newest_slot(f)
    (epoch,) = struct.unpack_from("<Q", raw, 16)
    keys, values, pages, extents = struct.unpack_from("<4Q", raw, BASE + 80)
    (deltas,) = struct.unpack_from("<I", raw, 228)
    return dict(epoch=epoch, keys=keys, values=values, buckets=pages, extents=extents, deltas=deltas)


M64 = (1 << 64) - 1


def fmix64(x: int) -> int:
    x ^= x >> 33
    x = (x * 0xFF51AFD7ED558CCD) & M64
    x ^= x >> 33
    x = (x * 0xC4CEB9FE1A85EC53) & M64
    return x ^ (x >> 33)


def key_hash(k: bytes) -> int:
    """docs/FORMAT.md section 7."""
    lo, hi = struct.unpack("<QQ", k)
    return fmix64(lo ^ fmix64(hi ^ 0x9E3779B97F4A7C15) ^ 0x2545F4914F6CDD1D)


def one_bucket_page_offset(path: str) -> int:
    """The file offset of the one page of a base table small enough for one (of a file no
    writer has open): the newest root slot (section 2), its base table's one-leaf directory
    (sections 2.1, 4), the page the directory's only item names (section 3)."""
    with open(path, "rb") as raw, h5py.File(path, "r") as f:
        best = newest_slot(f)
        depth, = struct.unpack_from("<I", best, BASE + 12)
        dir_len, dir_top, levels = struct.unpack_from("<QQI", best, BASE + 16)
        assert (depth, dir_len, levels) == (0, 1, 1), (depth, dir_len, levels)
        raw.seek(dir_top)
        leaf = raw.read(4096)
        assert leaf[:4] == b"HDAR"
        item, = struct.unpack_from("<Q", leaf, 32)
        return (item & 0xFFFFFFFF) * 4096


def one_bucket_page(path: str) -> list:
    """Decodes, from the file's raw bytes, the page of a base table small enough for one
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
        length = 56 if code in (0xE, 0xF) else 16 + 16 * code
        k = page[at:at + 16]
        assert word & 0xFFF0 == key_hash(k) & 0xFFF0, "tag word bits are hash bits 4..15"
        out.append((k, code, page[at + 16:at + length]))
        at += length
    assert not any(page[at:]), "zeros after the last entry"
    return out


def check_layout(f: "h5py.File") -> None:
    """The HDF5 objects docs/FORMAT.md section 1 lists, and nothing else."""
    assert bytes(f.attrs["hashdir_magic"]).rstrip(b"\0") == b"hashdir"
    assert int(f.attrs["hashdir_format"]) == 5
    assert int(f.attrs["page_size"]) == 4096
    assert sorted(f.keys()) == ["data", "root"]
    assert f["root"].shape == (2, ROOT_SLOT)
    assert f["data"].ndim == 1 and f["data"].shape[0] % (1 << 20) == 0
    for name in ["root", "data"]:
        assert f[name].dtype == np.uint8, name
        assert f[name].chunks is None, f"{name} is contiguous"
