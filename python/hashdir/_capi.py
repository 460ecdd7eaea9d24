"""The C API of libhashdir (include/hashdir.h) as ctypes sees it: structs, status codes,
function signatures, and finding and loading the library.

Everything here is private to the package; ``hashdir/__init__.py`` builds the Python API on
it. Pointer arguments are declared ``c_void_p`` so that callers pass plain integers (a NumPy
array's ``ctypes.data``): ctypes then converts nothing per call, and the C functions read and
write the arrays' own memory.

SPDX-License-Identifier: MIT OR Apache-2.0
"""

from __future__ import annotations

import ctypes
import ctypes.util
import enum
import os
import threading
from ctypes import c_char_p, c_int, c_size_t, c_uint32, c_uint64, c_void_p
from pathlib import Path
from typing import List, Optional

KEY_SIZE = 16

#: Writer flags (hashdir_options.flags).
CREATE = 1
SYNC_COMMIT = 2


class Status(enum.IntEnum):
    """``enum hashdir_status``: what a C call returned."""

    OK = 0
    ERR_INVALID_ARGUMENT = 1
    ERR_IO = 2
    ERR_CORRUPT = 3
    ERR_NOT_HASHDIR = 4
    ERR_LOCKED = 5
    ERR_NOT_FOUND = 6
    ERR_BUFFER_TOO_SMALL = 7
    ERR_PANIC = 8

    @property
    def c_name(self) -> str:
        """The C name, e.g. ``"HASHDIR_ERR_LOCKED"``."""
        return "HASHDIR_" + self.name


class Options(ctypes.Structure):
    """``hashdir_options``."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("flags", c_uint32),
        ("checkpoint_bytes", c_uint64),
        ("refresh_interval_ms", c_uint32),
        ("capacity", c_uint64),
        ("shards", c_uint32),
    ]


class CStats(ctypes.Structure):
    """``hashdir_stats``."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("global_depth", c_uint32),
        ("keys", c_uint64),
        ("values", c_uint64),
        ("buckets", c_uint64),
        ("file_bytes", c_uint64),
        ("epoch", c_uint64),
        ("wal_bytes", c_uint64),
        ("extents", c_uint64),
        ("disk_bytes", c_uint64),
        ("delta_tables", c_uint64),
        ("delta_bytes", c_uint64),
        ("merging", c_uint32),
    ]


_P = c_void_p  # every pointer: callers pass integers (addresses) or ctypes byref()
SIGNATURES = {
    "hashdir_version": (c_char_p, []),
    "hashdir_last_error": (c_char_p, []),
    "hashdir_status_name": (c_char_p, [c_uint32]),
    "hashdir_options_init": (None, [_P]),
    "hashdir_writer_open": (c_int, [c_char_p, _P, _P]),
    "hashdir_writer_insert": (c_int, [_P, _P, _P, c_size_t]),
    "hashdir_writer_insert_values": (c_int, [_P, _P, _P, c_size_t]),
    "hashdir_writer_delete_keys": (c_int, [_P, _P, c_size_t]),
    "hashdir_writer_delete_pairs": (c_int, [_P, _P, _P, c_size_t]),
    "hashdir_writer_commit": (c_int, [_P]),
    "hashdir_writer_checkpoint": (c_int, [_P]),
    "hashdir_writer_sync": (c_int, [_P]),
    "hashdir_writer_stats": (c_int, [_P, _P]),
    "hashdir_writer_gc": (c_int, [_P, _P, _P]),
    "hashdir_writer_close": (c_int, [_P]),
    "hashdir_reader_open": (c_int, [c_char_p, _P, _P]),
    "hashdir_reader_refresh": (c_int, [_P]),
    "hashdir_reader_lookup": (c_int, [_P, _P, c_size_t, _P, _P]),
    "hashdir_reader_get": (c_int, [_P, _P, c_size_t, _P, c_size_t, _P, _P]),
    "hashdir_reader_stats": (c_int, [_P, _P]),
    "hashdir_reader_close": (c_int, [_P]),
    "hashdir_shard_writer_open": (c_int, [c_char_p, c_uint32, _P, _P]),
    "hashdir_shard_of": (c_uint32, [_P, c_uint32]),
}

#: Where the package keeps its own copy of the library (put there by the wheel build).
BUNDLED = Path(__file__).resolve().parent / "libhashdir.so"

_lib: Optional[ctypes.CDLL] = None
_lib_path: Optional[str] = None
_lib_lock = threading.Lock()


def candidates() -> List[str]:
    """The libraries to try, in order: ``$HASHDIR_LIB``; the package's own copy; the
    system's (``ctypes.util.find_library``, then ``libhashdir.so.0`` on the loader's path)."""
    explicit = os.environ.get("HASHDIR_LIB")
    if explicit:
        return [explicit]  # asked for: no fallback that would hide a wrong path
    out = []
    if BUNDLED.exists():
        out.append(str(BUNDLED))
    found = ctypes.util.find_library("hashdir")
    if found:
        out.append(found)
    out.append("libhashdir.so.0")
    return out


def library() -> ctypes.CDLL:
    """The loaded libhashdir, every function's signature set. Loaded on first use.

    ``ctypes.CDLL`` (not ``PyDLL``): every call releases the GIL while the C code runs, so
    threads calling into one reader run in parallel."""
    global _lib, _lib_path
    if _lib is not None:
        return _lib
    with _lib_lock:
        if _lib is None:
            errors = []
            for name in candidates():
                try:
                    lib = ctypes.CDLL(name)
                except OSError as e:
                    errors.append(f"{name}: {e}")
                    continue
                for fname, (restype, argtypes) in SIGNATURES.items():
                    f = getattr(lib, fname)
                    f.restype = restype
                    f.argtypes = argtypes
                _lib_path = name
                _lib = lib
                break
            else:
                hint = "Reinstall the hashdir package (its wheel carries the library)"
                if (BUNDLED.parents[1] / "setup.py").exists():
                    hint = (
                        f"This is the source tree's package ({BUNDLED.parent}), which has "
                        "no library: install it (python3 -m pip install .) and import it "
                        "from elsewhere"
                    )
                raise OSError(
                    "cannot load libhashdir ("
                    + "; ".join(errors)
                    + f"). {hint}, or set HASHDIR_LIB to the path of a libhashdir.so"
                )
    return _lib


def library_path() -> str:
    """The path (or name) of the library that was loaded."""
    library()
    assert _lib_path is not None
    return _lib_path
