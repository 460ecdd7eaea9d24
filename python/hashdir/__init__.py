"""hashdir: a disk-backed hash directory mapping 128-bit keys to *sets* of 128-bit values,
kept in one HDF5 file that one writer and many readers (threads and processes) share.

This package is a thin layer over the C library ``libhashdir.so``, which its wheel carries;
nothing else needs to be installed. Keys and values are 16 opaque bytes::

    import numpy as np
    import hashdir
    from hashdir import key                     # key(n): 16 bytes from an int, for examples

    with hashdir.Writer("data.h5") as w:        # creates the file; one writer per file
        w.insert([key(1), key(1)], [key(10), key(11)])     # key 1 -> {10, 11}
        w.insert_values(key(2), [key(20), key(21)])        # one key, many values
        w.commit()                              # one atomic, crash-safe batch

    with hashdir.Reader("data.h5") as r:        # any number, in any processes
        r.lookup(key(2))                        # one value of key 2 (bytes), or None
        r.get(key(1))                           # [key(10), key(11)] in some order
        keys = np.frombuffer(key(1) + key(9), np.uint8).reshape(2, 16)
        first, found = r.lookup(keys)           # (2, 16) uint8 and (2,) bool
        values, offsets = r.get(keys)           # CSR: key i has values[offsets[i]:offsets[i+1]]

**Sharded stores.** ``Writer(path, shards=N)`` with N > 1 makes ``path`` a directory of N
files, each an ordinary hashdir file holding the keys :func:`shard_of` routes to it; a commit
commits every shard as one set commit. ``Writer`` and ``Reader`` open such a directory like a
file; :meth:`Writer.open_shard` opens one shard alone, for programs in which each process
writes its own shards::

    with hashdir.Writer("store", shards=4) as w:       # store/shard_000.h5 ... shard_003.h5
        w.insert(key(1), key(10))
        w.commit()
    hashdir.shard_of(key(1), 4)                 # which of the 4 files holds key 1

**Keys, values and batches.** A single key or value is 16 bytes: ``bytes``, ``bytearray``,
``memoryview``, a NumPy ``uint8`` array of shape ``(16,)`` or a 16-byte ``np.void``. A
batch is a NumPy array of shape ``(n, 16)`` and dtype ``uint8``, or of shape ``(n,)`` and a
16-byte void dtype (``"V16"``, or a 16-byte structured dtype), or a sequence of single keys.
Arrays go to the C library as they are (a non-contiguous one is made contiguous with one
``np.ascontiguousarray``); results are new arrays the library filled in place, in the
batch's own form (``(n, 16)`` ``uint8``, or ``(n,)`` of the batch's void dtype; a sequence
gives ``uint8``). A single key in gives ``bytes`` out.

**Threads.** Every call releases the GIL while the library works, so threads sharing one
:class:`Reader` run in parallel; a :class:`Writer` serialises its calls. Closing a handle
waits for the calls running on it, and later calls raise :class:`InvalidArgumentError`.

**Errors** raise :class:`Error` subclasses, one per C status, with the library's message
(``hashdir_last_error()``): :class:`LockedError` when another writer has the file,
:class:`NotFoundError` (also a ``FileNotFoundError``), :class:`NotHashdirError`,
:class:`CorruptError`, :class:`HashdirIOError` (an ``OSError``),
:class:`InvalidArgumentError` (a ``ValueError``; also for bad shapes and dtypes),
:class:`BufferTooSmallError` (never raised by this package: :meth:`Reader.get` resizes),
:class:`PanicError`.

**Why ctypes.** The package calls the C ABI, the same one C, C++ and Fortran programs use,
through ``ctypes`` from the standard library: no compiled extension, so one wheel serves every
CPython 3 version (tag ``py3-none-<platform>``), the GIL is released during each foreign
call, and NumPy buffers are passed by address with no copy. The per-call cost of ctypes
(a few microseconds) is paid once per batch, not per key. The library is found at
``$HASHDIR_LIB`` if set, else the copy in this package, else the system's
(``ctypes.util.find_library("hashdir")``, ``libhashdir.so.0``).

SPDX-License-Identifier: MIT OR Apache-2.0
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Iterable
from ctypes import byref, c_size_t, c_uint64, c_void_p
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Any,
    Dict,
    List,
    NamedTuple,
    Optional,
    Type,
    TypeVar,
    Union,
    overload,
)

import numpy as np

from . import _capi
from ._capi import CREATE, KEY_SIZE, SYNC_COMMIT, Status, library, library_path

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = [
    "Writer",
    "Reader",
    "Stats",
    "GcResult",
    "Lookup",
    "ValueSets",
    "Status",
    "Error",
    "InvalidArgumentError",
    "HashdirIOError",
    "CorruptError",
    "NotHashdirError",
    "LockedError",
    "NotFoundError",
    "BufferTooSmallError",
    "PanicError",
    "KEY_SIZE",
    "CREATE",
    "SYNC_COMMIT",
    "key",
    "to_int",
    "shard_of",
    "version",
    "library_path",
    "get_include",
]

try:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as _dist_version

    __version__ = _dist_version("hashdir")
except PackageNotFoundError:  # imported from a source tree, not installed
    __version__ = "0+unknown"

Bytes16 = Union[bytes, bytearray, memoryview, "np.void"]
"""One key or value as bytes: 16 of them."""
KeyLike = Union[Bytes16, "np.ndarray"]
"""One key or value: 16 bytes, or a (16,) uint8 array."""
Batch = Union["np.ndarray", "Iterable[KeyLike]"]
"""A batch: an (n, 16) uint8 array, an (n,) 16-byte void array, or single keys. (For type
checkers an array is a batch; at run time a (16,) uint8 array counts as one key.)"""
PathLike = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]


# --------------------------------------------------------------------------------------
# Errors


class Error(Exception):
    """A failed hashdir call. ``status`` is the C status (a :class:`Status`),
    ``status_name`` its C name (``"HASHDIR_ERR_LOCKED"``, ...), ``str(e)`` the message.

    >>> try:
    ...     hashdir.Reader("missing.h5")
    ... except hashdir.Error as e:
    ...     print(e.status_name)
    HASHDIR_ERR_NOT_FOUND
    """

    status: Status = Status.OK

    def __init__(self, message: str, status: Optional[int] = None):
        super().__init__(message)
        if status is not None:
            self.status = Status(status)

    @property
    def status_name(self) -> str:
        return self.status.c_name


class InvalidArgumentError(Error, ValueError):
    """HASHDIR_ERR_INVALID_ARGUMENT: a bad argument (wrong length, shape or dtype, a
    closed handle, an option out of range); nothing was done."""

    status = Status.ERR_INVALID_ARGUMENT


class HashdirIOError(Error, OSError):
    """HASHDIR_ERR_IO: the operating system or HDF5 failed to read or write the file."""

    status = Status.ERR_IO


class CorruptError(Error):
    """HASHDIR_ERR_CORRUPT: a checksum or structural check of the file failed."""

    status = Status.ERR_CORRUPT


class NotHashdirError(Error):
    """HASHDIR_ERR_NOT_HASHDIR: not HDF5, not a hashdir file, or an unknown version."""

    status = Status.ERR_NOT_HASHDIR


class LockedError(Error):
    """HASHDIR_ERR_LOCKED: another writer (in any process) has the file open."""

    status = Status.ERR_LOCKED


class NotFoundError(Error, FileNotFoundError):
    """HASHDIR_ERR_NOT_FOUND: the file does not exist (and ``create`` was not asked for)."""

    status = Status.ERR_NOT_FOUND


class BufferTooSmallError(Error):
    """HASHDIR_ERR_BUFFER_TOO_SMALL: a value buffer was too small. :meth:`Reader.get`
    handles it (it calls again with the size the library reports), so this package never
    raises it; it is here so every status has its class."""

    status = Status.ERR_BUFFER_TOO_SMALL


class PanicError(Error):
    """HASHDIR_ERR_PANIC: a bug in the library; a writer refuses further calls after it."""

    status = Status.ERR_PANIC


_ERRORS: Dict[int, Type[Error]] = {
    cls.status: cls
    for cls in (
        InvalidArgumentError,
        HashdirIOError,
        CorruptError,
        NotHashdirError,
        LockedError,
        NotFoundError,
        BufferTooSmallError,
        PanicError,
    )
}


def _raise(status: int) -> None:
    """Raises the exception of a failed C call, with this thread's last-error message."""
    message = library().hashdir_last_error().decode("utf-8", "replace")
    cls = _ERRORS.get(status)
    if cls is None:  # a status this package does not know (a newer library)
        raise Error(f"status {status}: {message}")
    raise cls(message, status)


def _invalid(message: str) -> InvalidArgumentError:
    return InvalidArgumentError(message)


# --------------------------------------------------------------------------------------
# Keys, values and batches

_U8 = np.dtype(np.uint8)
_BYTES_LIKE = (bytes, bytearray, memoryview)


def key(n: int) -> bytes:
    """16 bytes holding the integer ``n`` (0 <= n < 2**128) little-endian: handy keys and
    values for examples and tests; real keys are usually hashes or UUIDs.

    >>> hashdir.key(1).hex()
    '01000000000000000000000000000000'
    """
    return n.to_bytes(KEY_SIZE, "little")


def to_int(b: KeyLike) -> int:
    """The inverse of :func:`key`: ``to_int(key(n)) == n``."""
    return int.from_bytes(_one(b, "key"), "little")


def _one(x: Any, what: str) -> bytes:
    """The 16 bytes of one key or value, or raises."""
    if isinstance(x, np.ndarray):
        if x.dtype == _U8 and x.shape == (KEY_SIZE,):
            return x.tobytes()
        if x.dtype.kind == "V" and x.dtype.itemsize == KEY_SIZE and x.ndim == 0:
            return x.tobytes()
        raise _invalid(
            f"{what}: one key or value is 16 bytes, not an array of {x.dtype} {x.shape}"
        )
    if isinstance(x, np.void):
        b = x.tobytes()
    elif isinstance(x, _BYTES_LIKE):
        b = bytes(x)
    else:
        raise TypeError(
            f"{what}: a key or value is 16 bytes (bytes, bytearray, memoryview, uint8 array),"
            f" not {type(x).__name__}"
        )
    if len(b) != KEY_SIZE:
        raise _invalid(f"{what} has {len(b)} bytes; keys and values have 16")
    return b


def _is_single(x: Any) -> bool:
    """Whether x is one key (as opposed to a batch)."""
    if isinstance(x, np.ndarray):
        return (x.dtype == _U8 and x.ndim == 1) or (x.dtype.kind == "V" and x.ndim == 0)
    return isinstance(x, _BYTES_LIKE + (np.void,))


def _batch(x: Any, what: str) -> np.ndarray:
    """A batch as a C-contiguous array whose memory is n * 16 bytes of keys: the array
    itself when it already is one (no copy), else one copy."""
    if isinstance(x, np.ndarray):
        dt = x.dtype
        if dt == _U8:
            if x.ndim != 2 or x.shape[1] != KEY_SIZE:
                raise _invalid(f"{what}: a uint8 batch has shape (n, 16), not {x.shape}")
        elif dt.kind == "V" and dt.itemsize == KEY_SIZE:
            if x.ndim != 1:
                raise _invalid(f"{what}: a {dt} batch has shape (n,), not {x.shape}")
        else:
            raise _invalid(
                f"{what}: dtype {dt}: a batch is uint8 of shape (n, 16) or a 16-byte void "
                "dtype of shape (n,)"
            )
        return x if x.flags.c_contiguous else np.ascontiguousarray(x)
    if isinstance(x, (str, int, float)) or x is None:
        raise TypeError(f"{what}: a batch is an array or a sequence of 16-byte keys, "
                        f"not {type(x).__name__}")
    parts = [_one(item, f"{what}[{i}]") for i, item in enumerate(x)]
    return np.frombuffer(b"".join(parts), _U8).reshape(len(parts), KEY_SIZE)


def _keys(x: Any, what: str) -> np.ndarray:
    """A batch, or one key as a batch of one (writer calls)."""
    if _is_single(x):
        return np.frombuffer(_one(x, what), _U8).reshape(1, KEY_SIZE)
    return _batch(x, what)


def _addr(a: np.ndarray) -> int:
    """The address of an array's data (cheaper than ``a.ctypes.data``)."""
    return int(a.__array_interface__["data"][0])


def _out(n: int, like: np.ndarray) -> np.ndarray:
    """An output array of n keys/values in the form of the batch ``like``."""
    if like.dtype.kind == "V":
        return np.empty(n, like.dtype)
    return np.empty((n, KEY_SIZE), _U8)


# --------------------------------------------------------------------------------------
# Results


class Stats(NamedTuple):
    """Counters of an open file. ``keys``, ``values``, ``buckets`` and ``extents`` count
    the base table (as of the last merge; exact after :meth:`Writer.checkpoint`);
    ``delta_tables`` and ``delta_bytes`` what waits to be merged into it, ``merging``
    whether a merge is under way; ``wal_bytes`` is what was committed to the current log."""

    global_depth: int
    keys: int
    values: int
    buckets: int
    file_bytes: int
    epoch: int
    wal_bytes: int
    extents: int
    disk_bytes: int
    delta_tables: int
    delta_bytes: int
    merging: int


class GcResult(NamedTuple):
    """What :meth:`Writer.gc` reclaimed."""

    pages_reclaimed: int
    segment_bytes_reclaimed: int


class Lookup(NamedTuple):
    """What :meth:`Reader.lookup` returns for a batch of n keys: ``values[i]`` is one value
    of key i when ``found[i]`` (its row is unspecified otherwise)."""

    values: "NDArray[Any]"
    """(n, 16) uint8, or (n,) of the batch's void dtype."""
    found: "NDArray[np.bool_]"
    """(n,) bool."""


class ValueSets(NamedTuple):
    """What :meth:`Reader.get` returns for a batch of n keys, in CSR form: the values of
    key i are ``values[offsets[i]:offsets[i + 1]]`` (in no particular order).

    >>> values, offsets = r.get(keys)
    >>> counts = np.diff(offsets)          # or vs.counts
    """

    values: "NDArray[Any]"
    """(total, 16) uint8, or (total,) of the batch's void dtype."""
    offsets: "NDArray[np.int64]"
    """(n + 1,) int64: offsets[0] == 0, offsets[n] == total."""

    @property
    def counts(self) -> "NDArray[np.int64]":
        """(n,) int64: how many values each key has."""
        return np.diff(self.offsets)

    def of(self, i: int) -> "NDArray[Any]":
        """The values of key i (a view)."""
        return self.values[self.offsets[i] : self.offsets[i + 1]]


# --------------------------------------------------------------------------------------
# Handles


def _path_arg(path: PathLike) -> bytes:
    raw = os.fsencode(os.fspath(path))
    if not raw or b"\0" in raw:
        raise _invalid(f"path {path!r}: empty, or holds a NUL byte")
    return raw


def _options(
    flags: int,
    checkpoint_bytes: int,
    refresh_interval_ms: int,
    capacity: int = 0,
    shards: int = 0,
) -> _capi.Options:
    if not 0 <= int(shards) < 2**32:
        raise _invalid(f"shards={shards}: not a count")
    if not 0 <= int(checkpoint_bytes) < 2**64:
        raise _invalid(f"checkpoint_bytes={checkpoint_bytes}: not a byte count")
    if not 0 <= int(capacity) < 2**64:
        raise _invalid(f"capacity={capacity}: not a byte count")
    if not 0 <= int(refresh_interval_ms) < 2**32:
        raise _invalid(f"refresh_interval_ms={refresh_interval_ms}: not 0 .. 2**32 - 1")
    o = _capi.Options()
    library().hashdir_options_init(byref(o))
    o.flags = flags
    o.checkpoint_bytes = int(checkpoint_bytes)
    o.refresh_interval_ms = int(refresh_interval_ms)
    o.capacity = int(capacity)
    o.shards = int(shards)
    return o


def _stats_of(s: _capi.CStats) -> Stats:
    return Stats(*(getattr(s, f) for f in Stats._fields))


_H = TypeVar("_H", bound="_Handle")


class _Handle:
    """A C handle, guarded so that closing waits for the calls running on it and calls
    after closing raise instead of reaching freed memory."""

    _close_name = ""

    def __init__(self, path: PathLike):
        self._h: Optional[int] = None  # the C pointer, None once closed
        self._calls = 0  # calls running on the handle
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self.path = os.fspath(path)

    def _open(self, open_name: str, opts: _capi.Options, *before_opts: Any) -> None:
        out = c_void_p()
        status = getattr(library(), open_name)(
            _path_arg(self.path), *before_opts, byref(opts), byref(out)
        )
        if status:
            _raise(status)
        self._h = out.value

    def _enter(self) -> int:
        with self._lock:
            h = self._h
            if h is None:
                raise _invalid(f"{type(self).__name__} is closed")
            self._calls += 1
            return h

    def _leave(self) -> None:
        with self._lock:
            self._calls -= 1
            if self._calls == 0 and self._h is None:  # close() is waiting
                self._idle.notify_all()

    def _call(self, fname: str, *args: Any) -> None:
        h = self._enter()
        try:
            status = getattr(library(), fname)(h, *args)
        finally:
            self._leave()
        if status:
            _raise(status)

    @property
    def closed(self) -> bool:
        return self._h is None

    def close(self) -> None:
        """Closes the handle, after the calls running on it end. Closing twice is fine.
        Raises if the library reports a failure (the handle is closed all the same)."""
        with self._lock:
            h, self._h = self._h, None
            while self._calls:
                self._idle.wait()
        if h is not None:
            status = getattr(library(), self._close_name)(h)
            if status:
                _raise(status)

    def __enter__(self: _H) -> _H:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        # A forgotten handle is closed when collected; a failure then cannot be reported.
        try:
            h = getattr(self, "_h", None)
            if h is not None:
                self._h = None
                getattr(library(), self._close_name)(h)
        except Exception:
            pass

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<hashdir.{type(self).__name__} {self.path!r} ({state})>"


class Writer(_Handle):
    """The one writer of a file: a second one, in this or any process, raises
    :class:`LockedError`.

    ``Writer(path)`` creates the file if it is missing (``create=False`` raises
    :class:`NotFoundError` instead) and recovers what a crashed writer committed.
    ``sync=True`` fsyncs every commit (it then survives a power cut, not only a crash of
    the process); without it a power cut may lose the batches since the last durable point
    (a background flush or merge step, :meth:`sync`, :meth:`checkpoint`, :meth:`close`),
    never older data. ``checkpoint_bytes`` is the log size after which the log is turned
    into a delta table in the background (0: the library's default, which grows with the
    tables). ``capacity`` is the size of a new file's data area, fixed for its life (0:
    4 TiB; the file takes disk only as data is written). ``shards`` above 1 creates a
    sharded store: ``path`` becomes a directory of that many files (at most 4096), each
    holding the keys :func:`shard_of` routes to it, committed together; an existing store
    must then have that many. A sharded store's directory opens whatever ``shards`` says.

    Changes are one atomic batch until :meth:`commit`, which makes them crash-safe and
    visible to readers. :meth:`close` (or leaving the ``with`` block, also on an
    exception) commits, makes everything durable and releases the file: there is no
    rollback.

    >>> with hashdir.Writer("data.h5") as w:
    ...     w.insert(key(1), key(10))
    ...     w.insert_values(key(2), [key(20), key(21)])
    ...     w.commit()
    """

    _close_name = "hashdir_writer_close"

    def __init__(
        self,
        path: PathLike,
        create: bool = True,
        sync: bool = False,
        checkpoint_bytes: int = 0,
        capacity: int = 0,
        shards: int = 0,
    ):
        super().__init__(path)
        flags = (CREATE if create else 0) | (SYNC_COMMIT if sync else 0)
        opts = _options(flags, checkpoint_bytes, 0, capacity, shards)
        self._open("hashdir_writer_open", opts)

    @classmethod
    def open_shard(
        cls,
        path: PathLike,
        shard: int,
        sync: bool = False,
        checkpoint_bytes: int = 0,
    ) -> "Writer":
        """The writer of shard ``shard`` alone of the sharded store at ``path``: a plain
        writer of that one file, for programs in which each process (or thread) owns some
        shards and routes keys to them with :func:`shard_of`. Another process may write
        another shard at the same time; the store as a whole then has no writer. Its
        batches belong to no set commit, so a later ``Writer(path)`` keeps them.

        >>> mine = [i for i in range(1000) if hashdir.shard_of(key(i), 4) == rank]
        >>> with hashdir.Writer.open_shard("store", rank) as w:
        ...     w.insert([key(i) for i in mine], [key(0)] * len(mine))
        ...     w.commit()
        """
        if not 0 <= int(shard) < 2**32:
            raise _invalid(f"shard={shard}: not a shard number")
        w = cls.__new__(cls)
        _Handle.__init__(w, path)
        flags = SYNC_COMMIT if sync else 0
        w._open("hashdir_shard_writer_open", _options(flags, checkpoint_bytes, 0), int(shard))
        return w

    def insert(self, keys: Union[KeyLike, Batch], values: Union[KeyLike, Batch]) -> None:
        """Adds the pairs ``(keys[i], values[i])`` (one key and one value add one pair).
        A key maps to a set: a pair already there changes nothing.

        >>> w.insert(np.zeros((5, 16), np.uint8), np.ones((5, 16), np.uint8))
        """
        k, v = _keys(keys, "keys"), _keys(values, "values")
        if len(k) != len(v):
            raise _invalid(
                f"insert: {len(k)} keys but {len(v)} values: pairs need one of each "
                "(insert_values adds many values to one key)"
            )
        self._call("hashdir_writer_insert", _addr(k), _addr(v), len(k))

    def insert_values(self, key: KeyLike, values: Union[KeyLike, Batch]) -> None:
        """Adds the pairs ``(key, values[i])``: :meth:`insert` for one key and many
        values, without repeating the key.

        >>> rng = np.random.default_rng()
        >>> w.insert_values(key(7), rng.integers(0, 256, (1000, 16), dtype=np.uint8))
        """
        if not _is_single(key):
            raise _invalid("insert_values: key is one key of 16 bytes, not a batch")
        k = np.frombuffer(_one(key, "key"), _U8)
        v = _keys(values, "values")
        self._call("hashdir_writer_insert_values", _addr(k), _addr(v), len(v))

    def delete_keys(self, keys: Union[KeyLike, Batch]) -> None:
        """Removes the keys with all their values; absent keys are ignored."""
        k = _keys(keys, "keys")
        self._call("hashdir_writer_delete_keys", _addr(k), len(k))

    def delete_pairs(self, keys: Union[KeyLike, Batch], values: Union[KeyLike, Batch]) -> None:
        """Removes the pairs ``(keys[i], values[i])``; a key whose last value goes is
        removed; absent pairs are ignored."""
        k, v = _keys(keys, "keys"), _keys(values, "values")
        if len(k) != len(v):
            raise _invalid(f"delete_pairs: {len(k)} keys but {len(v)} values")
        self._call("hashdir_writer_delete_pairs", _addr(k), _addr(v), len(k))

    def commit(self) -> None:
        """Makes everything since the last commit one atomic, crash-safe batch, visible
        to readers at their next refresh."""
        self._call("hashdir_writer_commit")

    def checkpoint(self) -> None:
        """Merges everything committed into the base table and makes it durable (so
        :meth:`stats` counts are current). Its cost follows the whole table. Uncommitted
        changes stay pending."""
        self._call("hashdir_writer_checkpoint")

    def sync(self) -> None:
        """Makes every committed batch durable against a power cut now (one fdatasync):
        cheaper than :meth:`checkpoint`. Uncommitted changes stay pending."""
        self._call("hashdir_writer_sync")

    def gc(self) -> GcResult:
        """The full garbage-collection pass: checkpoints, reclaims every page and segment
        nothing references, and gives free space back to the file system. Idempotent."""
        pages, segment_bytes = c_uint64(0), c_uint64(0)
        self._call("hashdir_writer_gc", byref(pages), byref(segment_bytes))
        return GcResult(pages.value, segment_bytes.value)

    def stats(self) -> Stats:
        """The writer's counters (see :class:`Stats`)."""
        s = _capi.CStats(struct_size=ctypes.sizeof(_capi.CStats))
        self._call("hashdir_writer_stats", byref(s))
        return _stats_of(s)


class Reader(_Handle):
    """A reader: sees the last commit as of its open or :meth:`refresh` (or refreshes by
    itself every ``refresh_interval_ms`` milliseconds). Any number may be open, in any
    processes, next to the writer; one Reader may be used by many threads at once.

    On a sharded store's directory each key goes to its shard and results keep the order
    of the keys; :meth:`stats` sums the shards. Each shard's view is one of its commits, and
    a refresh moves the shards one after the other, so a set commit made meanwhile may be
    seen in some shards before the others.

    >>> with hashdir.Reader("data.h5") as r:
    ...     r.get(key(2))
    [b'\\x14\\x00...', b'\\x15\\x00...']
    """

    _close_name = "hashdir_reader_close"

    def __init__(self, path: PathLike, refresh_interval_ms: int = 0):
        super().__init__(path)
        self._open("hashdir_reader_open", _options(CREATE, 0, refresh_interval_ms))

    def refresh(self) -> None:
        """Moves the view to the writer's last commit. A reader that stays open without
        refreshing keeps the space of the state it reads from reuse."""
        self._call("hashdir_reader_refresh")

    @overload
    def lookup(self, keys: Bytes16) -> Optional[bytes]: ...
    @overload
    def lookup(self, keys: Batch) -> Lookup: ...

    def lookup(self, keys: Union[KeyLike, Batch]) -> Union[Optional[bytes], Lookup]:
        """One value of each key (which one is unspecified): the fast path for keys with a
        single value.

        One key gives its value as ``bytes``, or None if it has none. A batch of n gives
        :class:`Lookup` ``(values, found)``: ``values`` of shape (n, 16) (or (n,) for a void
        batch), ``found`` (n,) bool.

        >>> first, found = r.lookup(keys)
        """
        if _is_single(keys):
            k = np.frombuffer(_one(keys, "key"), _U8).reshape(1, KEY_SIZE)
            res = self._lookup(k)
            return res.values[0].tobytes() if res.found[0] else None
        return self._lookup(_batch(keys, "keys"))

    def _lookup(self, k: np.ndarray) -> Lookup:
        n = len(k)
        values = _out(n, k)
        found = np.empty(n, np.bool_)  # the C uint8 0/1 flags, read as bool
        self._call("hashdir_reader_lookup", _addr(k), n, _addr(values), _addr(found))
        return Lookup(values, found)

    def __contains__(self, key: KeyLike) -> bool:
        """``key in reader``: whether the key has at least one value."""
        return self.lookup(_one(key, "key")) is not None

    @overload
    def get(self, keys: Bytes16, capacity: Optional[int] = None) -> List[bytes]: ...
    @overload
    def get(self, keys: Batch, capacity: Optional[int] = None) -> ValueSets: ...

    def get(
        self, keys: Union[KeyLike, Batch], capacity: Optional[int] = None
    ) -> Union[List[bytes], ValueSets]:
        """All values of each key.

        One key gives a list of its values as ``bytes`` (empty if it has none). A batch of
        n gives :class:`ValueSets` ``(values, offsets)``: the values of key i are
        ``values[offsets[i]:offsets[i+1]]``; ``values`` has shape (total, 16) (or (total,)
        for a void batch), ``offsets`` (n + 1,).

        ``capacity`` is how many values the first call makes room for (default
        ``max(64, 4 * n)``). When they do not fit, the library answers
        HASHDIR_ERR_BUFFER_TOO_SMALL with the total it needs, and the call is made again
        with exactly that much room (again if an automatic refresh moved the view in
        between).

        >>> values, offsets = r.get(keys)
        >>> r.get(key(2))
        """
        if _is_single(keys):
            k = np.frombuffer(_one(keys, "key"), _U8).reshape(1, KEY_SIZE)
            vs = self._get(k, capacity)
            raw = vs.values.tobytes()
            return [raw[i : i + KEY_SIZE] for i in range(0, len(raw), KEY_SIZE)]
        return self._get(_batch(keys, "keys"), capacity)

    def _get(self, k: np.ndarray, capacity: Optional[int]) -> ValueSets:
        n = len(k)
        cap = max(64, 4 * n) if capacity is None else int(capacity)
        if cap < 0:
            raise _invalid(f"capacity={capacity}: not a count")
        # The C call writes the counts into offsets[1:]; a running sum turns them into
        # offsets in place.
        offsets = np.zeros(n + 1, np.int64)
        counts_at = _addr(offsets) + offsets.itemsize
        total = c_size_t(0)
        lib = library()
        h = self._enter()
        try:
            while True:
                values = _out(cap, k)
                status = lib.hashdir_reader_get(
                    h, _addr(k), n, _addr(values), cap, counts_at, byref(total)
                )
                if status != Status.ERR_BUFFER_TOO_SMALL:
                    break
                cap = total.value
        finally:
            self._leave()
        if status:
            _raise(status)
        np.cumsum(offsets[1:], out=offsets[1:])
        t = total.value
        return ValueSets(values if t == cap else values[:t], offsets)

    def stats(self) -> Stats:
        """Counters of the current view (see :class:`Stats`)."""
        s = _capi.CStats(struct_size=ctypes.sizeof(_capi.CStats))
        self._call("hashdir_reader_stats", byref(s))
        return _stats_of(s)


# --------------------------------------------------------------------------------------
# The library


def shard_of(key: Union[KeyLike, Batch], shards: int) -> Union[int, "NDArray[np.uint32]"]:
    """The shard of ``key`` in a sharded store of ``shards`` shards (0 and 1 both mean one
    shard, and give 0): the library's rule (docs/FORMAT.md), the same in every version and
    on every machine. A batch gives a (n,) uint32 array (one library call a key).

    >>> hashdir.shard_of(key(1), 4)
    1
    """
    if not 0 <= int(shards) < 2**32:
        raise _invalid(f"shards={shards}: not a count")
    f = library().hashdir_shard_of
    n = int(shards)
    if _is_single(key):
        one = np.frombuffer(_one(key, "key"), _U8)  # alive through the call
        return int(f(_addr(one), n))
    k = _batch(key, "keys")
    at, step = _addr(k), KEY_SIZE
    return np.fromiter((f(at + i * step, n) for i in range(len(k))), np.uint32, len(k))


def version() -> str:
    """The C library's version, e.g. ``"0.1.0"`` (the package's own, for a wheel)."""
    return str(library().hashdir_version().decode())


def get_include() -> str:
    """The directory holding ``hashdir.h`` (in the installed package), for C extensions
    and cffi users: ``cc -I$(python3 -c 'import hashdir; print(hashdir.get_include())')``."""
    return str(Path(__file__).resolve().parent / "include")
