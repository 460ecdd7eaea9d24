"""hashdir from Python: a ctypes wrapper over libhashdir's C API (include/hashdir.h).

A hashdir file maps 128-bit keys to *sets* of 128-bit values. Keys and values are 16-byte
``bytes`` (or rows of a NumPy ``uint8`` array of shape ``(n, 16)``)::

    import hashdir

    with hashdir.Writer("data.h5") as w:             # creates the file
        w.insert([k1, k1, k2], [v1, v2, v3])          # k1 -> {v1, v2}, k2 -> {v3}
        w.insert_values(k3, [v1, v2, v3])             # k3 -> {v1, v2, v3}
        w.commit()                                    # one atomic, crash-safe batch
        with hashdir.Reader("data.h5") as r:          # any number, any process
            r.lookup([k1, k9])                        # [v1 or v2, None]
            r.get([k1, k9])                           # [{v1, v2}, set()]

Batches are lists/tuples of 16-byte ``bytes``-like objects, a single 16-byte ``bytes``
(a batch of one), or NumPy arrays of shape ``(n, 16)`` and dtype ``uint8``. Results follow
the input: ``bytes`` in, ``bytes`` out; an array in, arrays out (``as_numpy=`` overrides).
NumPy is optional: it is imported only when an array is passed or asked for.

The library is found through the environment variable ``HASHDIR_LIB`` (the path of
``libhashdir.so``), else ``ctypes.util.find_library("hashdir")``, else ``libhashdir.so.0``
on the loader's path (``LD_LIBRARY_PATH``).

Failures raise :class:`HashdirError` subclasses carrying the C status and the library's
message (``hashdir_last_error()``), e.g. :class:`LockedError` when another writer has the
file. A :class:`Reader` may be shared between threads; a :class:`Writer` serialises its
calls. ctypes releases the GIL during each C call, so readers in threads run in parallel.

SPDX-License-Identifier: MIT OR Apache-2.0
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import threading
from collections.abc import Sequence
from ctypes import POINTER, byref, c_char_p, c_int, c_size_t, c_uint8, c_uint32, c_uint64, c_void_p
from typing import Any, NamedTuple, Optional, Union

__all__ = [
    "Writer",
    "Reader",
    "Stats",
    "HashdirError",
    "InvalidArgumentError",
    "HashdirIOError",
    "CorruptError",
    "NotHashdirError",
    "LockedError",
    "NotFoundError",
    "PanicError",
    "CREATE",
    "SYNC_COMMIT",
    "key",
    "to_int",
    "version",
    "library",
]

KEY_SIZE = 16

# Status codes (enum hashdir_status).
OK = 0
ERR_INVALID_ARGUMENT = 1
ERR_IO = 2
ERR_CORRUPT = 3
ERR_NOT_HASHDIR = 4
ERR_LOCKED = 5
ERR_NOT_FOUND = 6
ERR_BUFFER_TOO_SMALL = 7
ERR_PANIC = 8

# Writer flags.
CREATE = 1
SYNC_COMMIT = 2


# --------------------------------------------------------------------------------------
# Errors


class HashdirError(Exception):
    """A failed hashdir call. ``status`` is the C status code, ``status_name`` its name
    ("HASHDIR_ERR_LOCKED", ...), ``str(e)`` the library's message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.status_name = _STATUS_NAMES.get(status, "HASHDIR_UNKNOWN_STATUS")


class InvalidArgumentError(HashdirError, ValueError):
    """HASHDIR_ERR_INVALID_ARGUMENT: a bad argument; nothing was done."""


class HashdirIOError(HashdirError, OSError):
    """HASHDIR_ERR_IO: the operating system or HDF5 failed to read or write the file."""


class CorruptError(HashdirError):
    """HASHDIR_ERR_CORRUPT: a checksum or structural check of the file failed."""


class NotHashdirError(HashdirError):
    """HASHDIR_ERR_NOT_HASHDIR: not HDF5, not a hashdir file, or an unknown version."""


class LockedError(HashdirError):
    """HASHDIR_ERR_LOCKED: another writer (in any process) has the file open."""


class NotFoundError(HashdirError, FileNotFoundError):
    """HASHDIR_ERR_NOT_FOUND: the file does not exist (and create was not asked for)."""


class PanicError(HashdirError):
    """HASHDIR_ERR_PANIC: a bug in the library; the writer refuses further calls."""


_STATUS_NAMES = {
    OK: "HASHDIR_OK",
    ERR_INVALID_ARGUMENT: "HASHDIR_ERR_INVALID_ARGUMENT",
    ERR_IO: "HASHDIR_ERR_IO",
    ERR_CORRUPT: "HASHDIR_ERR_CORRUPT",
    ERR_NOT_HASHDIR: "HASHDIR_ERR_NOT_HASHDIR",
    ERR_LOCKED: "HASHDIR_ERR_LOCKED",
    ERR_NOT_FOUND: "HASHDIR_ERR_NOT_FOUND",
    ERR_BUFFER_TOO_SMALL: "HASHDIR_ERR_BUFFER_TOO_SMALL",
    ERR_PANIC: "HASHDIR_ERR_PANIC",
}

_ERRORS = {
    ERR_INVALID_ARGUMENT: InvalidArgumentError,
    ERR_IO: HashdirIOError,
    ERR_CORRUPT: CorruptError,
    ERR_NOT_HASHDIR: NotHashdirError,
    ERR_LOCKED: LockedError,
    ERR_NOT_FOUND: NotFoundError,
    ERR_PANIC: PanicError,
}


# --------------------------------------------------------------------------------------
# The C API


class _Key(ctypes.Structure):
    """hashdir_key and hashdir_value (the same layout: 16 bytes)."""

    _fields_ = [("bytes", c_uint8 * KEY_SIZE)]


class _Options(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("flags", c_uint32),
        ("checkpoint_bytes", c_uint64),
        ("refresh_interval_ms", c_uint32),
    ]


class _Stats(ctypes.Structure):
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
    ]


class Stats(NamedTuple):
    """Counters of an open file. ``keys``, ``values``, ``buckets`` and ``extents`` are as
    of the last checkpoint (``epoch``); ``wal_bytes`` is what was committed since."""

    global_depth: int
    keys: int
    values: int
    buckets: int
    file_bytes: int
    epoch: int
    wal_bytes: int
    extents: int
    disk_bytes: int


_KP = POINTER(_Key)
_SIGNATURES = {
    "hashdir_version": (c_char_p, []),
    "hashdir_last_error": (c_char_p, []),
    "hashdir_status_name": (c_char_p, [c_uint32]),
    "hashdir_options_init": (None, [POINTER(_Options)]),
    "hashdir_writer_open": (c_int, [c_char_p, POINTER(_Options), POINTER(c_void_p)]),
    "hashdir_writer_insert": (c_int, [c_void_p, _KP, _KP, c_size_t]),
    "hashdir_writer_insert_values": (c_int, [c_void_p, _KP, _KP, c_size_t]),
    "hashdir_writer_delete_keys": (c_int, [c_void_p, _KP, c_size_t]),
    "hashdir_writer_delete_pairs": (c_int, [c_void_p, _KP, _KP, c_size_t]),
    "hashdir_writer_commit": (c_int, [c_void_p]),
    "hashdir_writer_checkpoint": (c_int, [c_void_p]),
    "hashdir_writer_stats": (c_int, [c_void_p, POINTER(_Stats)]),
    "hashdir_writer_close": (c_int, [c_void_p]),
    "hashdir_reader_open": (c_int, [c_char_p, POINTER(_Options), POINTER(c_void_p)]),
    "hashdir_reader_refresh": (c_int, [c_void_p]),
    "hashdir_reader_lookup": (c_int, [c_void_p, _KP, c_size_t, _KP, POINTER(c_uint8)]),
    "hashdir_reader_get": (
        c_int,
        [c_void_p, _KP, c_size_t, _KP, c_size_t, POINTER(c_uint64), POINTER(c_size_t)],
    ),
    "hashdir_reader_stats": (c_int, [c_void_p, POINTER(_Stats)]),
    "hashdir_reader_close": (c_int, [c_void_p]),
}

_lib: Optional[ctypes.CDLL] = None
_lib_lock = threading.Lock()


def _find_library() -> str:
    explicit = os.environ.get("HASHDIR_LIB")
    if explicit:
        return explicit
    return ctypes.util.find_library("hashdir") or "libhashdir.so.0"


def library() -> ctypes.CDLL:
    """The loaded libhashdir (loaded on first use), with every function's signature set."""
    global _lib
    with _lib_lock:
        if _lib is None:
            name = _find_library()
            try:
                lib = ctypes.CDLL(name)
            except OSError as e:
                raise OSError(
                    f"cannot load libhashdir ({name}): {e}. Set HASHDIR_LIB to the path of "
                    "libhashdir.so, or put its directory on LD_LIBRARY_PATH"
                ) from e
            for fname, (restype, argtypes) in _SIGNATURES.items():
                f = getattr(lib, fname)
                f.restype = restype
                f.argtypes = argtypes
            _lib = lib
        return _lib


def _check(status: int) -> None:
    if status != OK:
        message = library().hashdir_last_error().decode("utf-8", "replace")
        raise _ERRORS.get(status, HashdirError)(status, message)


def version() -> str:
    """The library version, e.g. "0.1.0"."""
    return library().hashdir_version().decode()


def key(n: int) -> bytes:
    """16 bytes holding the integer ``n`` (0 <= n < 2**128) little-endian: handy keys and
    values for tests; real keys are usually hashes or UUIDs."""
    return n.to_bytes(KEY_SIZE, "little")


def to_int(b: Any) -> int:
    """The inverse of :func:`key`."""
    return int.from_bytes(bytes(b), "little")


# --------------------------------------------------------------------------------------
# Batches


def _numpy():
    import numpy

    return numpy


def _is_array(x: Any) -> bool:
    np = sys.modules.get("numpy")  # an array can only exist once NumPy is imported
    return np is not None and isinstance(x, np.ndarray)


def _alloc(n: int, numpy: bool):
    """An output buffer of n keys/values: (owner, pointer for C)."""
    if numpy:
        np = _numpy()
        arr = np.empty((n, KEY_SIZE), dtype=np.uint8)
        return arr, (arr.ctypes.data_as(_KP) if n else None)
    buf = (_Key * n)()
    return buf, (ctypes.cast(buf, _KP) if n else None)


def _bytes_of(buf: Any, n: int) -> bytes:
    """The first n keys/values of a ctypes buffer from _alloc, as bytes."""
    return ctypes.string_at(buf, n * KEY_SIZE) if n else b""


class _Batch:
    """n keys or values as a C array, plus whether they came as a NumPy array."""

    __slots__ = ("n", "ptr", "owner", "numpy")

    def __init__(self, items: Any, what: str):
        if _is_array(items):
            np = _numpy()
            arr = np.ascontiguousarray(items)
            if arr.dtype != np.uint8 or arr.ndim not in (1, 2) or arr.shape[-1] != KEY_SIZE:
                raise InvalidArgumentError(
                    ERR_INVALID_ARGUMENT,
                    f"{what}: a NumPy batch must be uint8 of shape (n, 16), not "
                    f"{arr.dtype} {arr.shape}",
                )
            arr = arr.reshape(-1, KEY_SIZE)
            self.n = arr.shape[0]
            self.owner = arr
            self.ptr = arr.ctypes.data_as(_KP) if self.n else None
            self.numpy = True
            return
        if isinstance(items, (bytes, bytearray, memoryview)):
            items = [items]
        elif not isinstance(items, Sequence):
            items = list(items)
        parts = []
        for i, item in enumerate(items):
            b = bytes(item)
            if len(b) != KEY_SIZE:
                raise InvalidArgumentError(
                    ERR_INVALID_ARGUMENT,
                    f"{what}[{i}] has {len(b)} bytes; keys and values have 16",
                )
            parts.append(b)
        self.n = len(parts)
        buf = (_Key * self.n).from_buffer_copy(b"".join(parts)) if self.n else None
        self.owner = buf
        self.ptr = ctypes.cast(buf, _KP) if self.n else None
        self.numpy = False


def _pairs(keys: Any, values: Any) -> tuple[_Batch, _Batch]:
    k, v = _Batch(keys, "keys"), _Batch(values, "values")
    if k.n != v.n:
        raise InvalidArgumentError(
            ERR_INVALID_ARGUMENT, f"{k.n} keys but {v.n} values: pairs need one of each"
        )
    return k, v


def _options(flags: int, checkpoint_bytes: int, refresh_interval_ms: int) -> _Options:
    o = _Options()
    library().hashdir_options_init(byref(o))
    o.flags = flags
    o.checkpoint_bytes = checkpoint_bytes
    o.refresh_interval_ms = refresh_interval_ms
    return o


def _stats(s: _Stats) -> Stats:
    return Stats(*(getattr(s, f) for f in Stats._fields))


class _Handle:
    _close_fn = ""

    def __init__(self) -> None:
        self._h = c_void_p()

    @property
    def closed(self) -> bool:
        return not self._h

    def _handle(self) -> c_void_p:
        if not self._h:
            raise InvalidArgumentError(ERR_INVALID_ARGUMENT, f"{type(self).__name__} is closed")
        return self._h

    def close(self) -> None:
        """Closes the handle (idempotent); raises if closing failed."""
        h, self._h = self._h, c_void_p()
        if h:
            _check(getattr(library(), self._close_fn)(h))

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        # A forgotten handle is closed at collection; a failure then cannot be reported.
        try:
            if self._h:
                getattr(library(), self._close_fn)(self._h)
                self._h = c_void_p()
        except Exception:
            pass


# --------------------------------------------------------------------------------------
# Writer and reader


class Writer(_Handle):
    """The one writer of a file (a second one, in any process, raises LockedError).

    ``Writer(path)`` creates the file if it is missing (``create=False`` raises
    NotFoundError instead) and recovers what a crashed writer committed. Changes become
    visible to readers at :meth:`commit`; :meth:`close` (or leaving the ``with`` block)
    commits, checkpoints and releases the file - there is no rollback.
    """

    _close_fn = "hashdir_writer_close"

    def __init__(
        self,
        path: Union[str, os.PathLike],
        *,
        create: bool = True,
        sync_commit: bool = False,
        checkpoint_bytes: int = 0,
    ):
        super().__init__()
        flags = (CREATE if create else 0) | (SYNC_COMMIT if sync_commit else 0)
        opts = _options(flags, checkpoint_bytes, 0)
        self.path = os.fspath(path)
        _check(library().hashdir_writer_open(os.fsencode(self.path), byref(opts), byref(self._h)))

    def insert(self, keys: Any, values: Any) -> None:
        """Adds the pairs (keys[i], values[i]); a pair already there changes nothing."""
        k, v = _pairs(keys, values)
        _check(library().hashdir_writer_insert(self._handle(), k.ptr, v.ptr, k.n))

    def insert_values(self, key: Any, values: Any) -> None:
        """Adds the pairs (key, values[i]): :meth:`insert` for one key and many values,
        without repeating the key. ``key`` is one 16-byte ``bytes``-like object (or a
        NumPy array of 16 ``uint8``); ``values`` a batch as for :meth:`insert`. A pair
        already there (or given twice) changes nothing."""
        if isinstance(key, (bytes, bytearray, memoryview)) and len(bytes(key)) != KEY_SIZE:
            raise InvalidArgumentError(
                ERR_INVALID_ARGUMENT, f"key has {len(bytes(key))} bytes; keys have 16"
            )
        k = _Batch(key, "key")
        if k.n != 1:
            raise InvalidArgumentError(
                ERR_INVALID_ARGUMENT, f"key: one key of 16 bytes, not a batch of {k.n}"
            )
        v = _Batch(values, "values")
        _check(library().hashdir_writer_insert_values(self._handle(), k.ptr, v.ptr, v.n))

    def delete_keys(self, keys: Any) -> None:
        """Removes the keys with all their values; absent keys are ignored."""
        k = _Batch(keys, "keys")
        _check(library().hashdir_writer_delete_keys(self._handle(), k.ptr, k.n))

    def delete_pairs(self, keys: Any, values: Any) -> None:
        """Removes the pairs (keys[i], values[i]); a key whose last value goes is removed."""
        k, v = _pairs(keys, values)
        _check(library().hashdir_writer_delete_pairs(self._handle(), k.ptr, v.ptr, k.n))

    def commit(self) -> None:
        """Makes everything since the last commit one atomic, crash-safe batch."""
        _check(library().hashdir_writer_commit(self._handle()))

    def checkpoint(self) -> None:
        """Commits and folds the WAL into the directory (stats() counts become current)."""
        _check(library().hashdir_writer_checkpoint(self._handle()))

    def stats(self) -> Stats:
        s = _Stats(struct_size=ctypes.sizeof(_Stats))
        _check(library().hashdir_writer_stats(self._handle(), byref(s)))
        return _stats(s)


class Reader(_Handle):
    """A reader: sees the last commit as of its open or :meth:`refresh` (or refreshes by
    itself every ``refresh_interval_ms``). Any number may be open, in any processes, next
    to the writer; one Reader may be used by many threads."""

    _close_fn = "hashdir_reader_close"

    def __init__(self, path: Union[str, os.PathLike], *, refresh_interval_ms: int = 0):
        super().__init__()
        opts = _options(CREATE, 0, refresh_interval_ms)
        self.path = os.fspath(path)
        _check(library().hashdir_reader_open(os.fsencode(self.path), byref(opts), byref(self._h)))

    def refresh(self) -> None:
        """Moves the view to the writer's last commit."""
        _check(library().hashdir_reader_refresh(self._handle()))

    def lookup(self, keys: Any, *, as_numpy: Optional[bool] = None):
        """One value of each key, or None for a key without values.

        With NumPy (an array passed, or ``as_numpy=True``) returns ``(found, first)``: a
        bool array of shape (n,) and a uint8 array of shape (n, 16) (rows of absent keys
        are unspecified)."""
        k = _Batch(keys, "keys")
        use_numpy = k.numpy if as_numpy is None else as_numpy
        first, first_ptr = _alloc(k.n, use_numpy)
        found = (c_uint8 * k.n)()
        _check(library().hashdir_reader_lookup(self._handle(), k.ptr, k.n, first_ptr, found))
        if use_numpy:
            np = _numpy()
            return np.frombuffer(bytes(found), dtype=np.uint8).astype(bool), first
        raw = _bytes_of(first, k.n)
        return [raw[i * KEY_SIZE : (i + 1) * KEY_SIZE] if found[i] else None for i in range(k.n)]

    def __contains__(self, key: Any) -> bool:
        """``key in reader``: whether the key has at least one value."""
        return self.lookup([key], as_numpy=False)[0] is not None

    def get_flat(self, keys: Any, *, capacity: Optional[int] = None):
        """All values of the keys as flat buffers: ``(counts, values)`` where counts[i] is
        how many values keys[i] has and ``values`` holds them one key after the other.

        Returns a list of ints and bytes, or with an array passed a uint64 array of shape
        (n,) and a uint8 array of shape (total, 16). ``capacity`` is the number of values
        the first call makes room for; when it is too small the library answers
        HASHDIR_ERR_BUFFER_TOO_SMALL with the total it needs and the call is repeated."""
        return self._get(_Batch(keys, "keys"), capacity, None, flat=True)

    def get(self, keys: Any, *, capacity: Optional[int] = None, as_numpy: Optional[bool] = None):
        """All values of each key: a list with one ``set`` of 16-byte ``bytes`` per key
        (empty for an absent key), or with NumPy one uint8 array of shape (count, 16) per
        key. ``capacity`` as in :meth:`get_flat`."""
        return self._get(_Batch(keys, "keys"), capacity, as_numpy, flat=False)

    def values(self, key: Any) -> set:
        """The set of values of one key (empty if it has none)."""
        return self.get([key], as_numpy=False)[0]

    def _get(self, k: _Batch, capacity: Optional[int], as_numpy: Optional[bool], flat: bool):
        lib = library()
        use_numpy = k.numpy if as_numpy is None else as_numpy
        cap = max(k.n, 16) if capacity is None else capacity
        counts = (c_uint64 * k.n)()
        total = c_size_t(0)
        while True:
            buf, ptr = _alloc(cap, use_numpy)
            status = lib.hashdir_reader_get(
                self._handle(), k.ptr, k.n, ptr, cap, counts, byref(total)
            )
            if status != ERR_BUFFER_TOO_SMALL:
                break
            # With refresh_interval_ms the view may move between calls: loop until it fits.
            cap = total.value
        _check(status)
        n = total.value
        if use_numpy:
            np = _numpy()
            count_arr = np.array(counts, dtype=np.uint64)
            value_arr = buf[:n] if n == cap else buf[:n].copy()
            if flat:
                return count_arr, value_arr
            if k.n == 0:
                return []
            return np.split(value_arr, np.cumsum(count_arr)[:-1].astype(np.intp))
        count_list = list(counts)
        data = _bytes_of(buf, n)
        if flat:
            return count_list, data
        out, at = [], 0
        for c in count_list:
            out.append({data[(at + j) * KEY_SIZE : (at + j + 1) * KEY_SIZE] for j in range(c)})
            at += c
        return out

    def stats(self) -> Stats:
        """Counters of the current view."""
        s = _Stats(struct_size=ctypes.sizeof(_Stats))
        _check(library().hashdir_reader_stats(self._handle(), byref(s)))
        return _stats(s)
