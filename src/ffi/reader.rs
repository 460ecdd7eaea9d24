//! `hashdir_reader`: a snapshot view of a file, shared by any number of C threads.

use super::abi::{hashdir_key, hashdir_options, hashdir_stats, hashdir_status, hashdir_value};
use super::args::{self, ensure_disjoint, handle, out_init, slice_in, slice_out, span};
use super::call::{ffi_call, CallResult};
use super::{options, stats};
use crate::{Error, Key, StoreReader, Value};
use std::ffi::c_char;
use std::ptr;

/// An open reader. Opaque: create with `hashdir_reader_open`, free with
/// `hashdir_reader_close`.
pub struct hashdir_reader {
    reader: StoreReader,
}

// C threads share one reader handle without a lock of ours: the engine's Reader must
// stay Sync, and this fails to build the day it is not.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<hashdir_reader>();
};

/// Borrows the reader behind a handle argument.
///
/// # Safety
/// `r` is NULL or a live reader handle.
unsafe fn reader<'a>(r: *const hashdir_reader) -> CallResult<&'a StoreReader> {
    // SAFETY: passed on from this function's contract.
    unsafe { handle(r, "reader") }.map(|r| &r.reader)
}

/// Opens the file at `path` for reading, seeing the last commit. Any number of readers,
/// in any processes, may be open alongside the one writer.
///
/// `opts` may be NULL for the defaults; `refresh_interval_ms` > 0 refreshes the view
/// automatically; writer flags are ignored.
///
/// A directory at `path` is a sharded store: lookups and gets go to each key's shard and
/// answer in the caller's order; refresh and stats cover every shard (stats are sums; the
/// depth is the deepest shard's). Each shard's view is one of its commits, and a refresh
/// moves the shards one after the other, so a set commit made meanwhile may be seen in some
/// shards before the others.
///
/// # Errors
/// `HASHDIR_ERR_INVALID_ARGUMENT` for a NULL/empty path, NULL `out`, bad `opts`;
/// `HASHDIR_ERR_NOT_FOUND` if the file is missing; `HASHDIR_ERR_NOT_HASHDIR` if it is
/// something else (or a directory without a shard manifest); `HASHDIR_ERR_IO`,
/// `HASHDIR_ERR_CORRUPT` (also for a damaged manifest).
///
/// # Threads
/// Any thread. The returned handle may be used from many threads at once.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `opts` is NULL or points at
/// `opts->struct_size` readable bytes; `out` is NULL or writable. On success `*out` owns
/// a handle to pass to `hashdir_reader_close` exactly once; on failure `*out` is NULL.
#[no_mangle]
pub unsafe extern "C" fn hashdir_reader_open(
    path: *const c_char,
    opts: *const hashdir_options,
    out: *mut *mut hashdir_reader,
) -> hashdir_status {
    ffi_call("hashdir_reader_open", || {
        // SAFETY: `out` is NULL or writable, by contract.
        let out = unsafe { out_init(out, ptr::null_mut(), "out") }?;
        // SAFETY: `path` is NULL or NUL-terminated, by contract.
        let path = unsafe { args::path(path) }?;
        // SAFETY: `opts` is NULL or `struct_size` readable bytes, by contract.
        let options = unsafe { options::decode(opts) }?;
        let reader = StoreReader::open(path, &options)?;
        *out = Box::into_raw(Box::new(hashdir_reader { reader }));
        Ok(())
    })
}

/// Moves the reader's view to the writer's last commit. Until then (or the automatic
/// refresh) lookups keep answering from the previous view, and the writer keeps that view's
/// space from reuse: refresh a long-lived reader now and then, or the file grows.
///
/// # Errors
/// `HASHDIR_ERR_INVALID_ARGUMENT` for a NULL reader; `HASHDIR_ERR_IO`,
/// `HASHDIR_ERR_CORRUPT`.
///
/// # Threads
/// Any thread, concurrently with other calls on the same reader.
///
/// # Safety
/// `r` is NULL or a live reader handle.
#[no_mangle]
pub unsafe extern "C" fn hashdir_reader_refresh(r: *mut hashdir_reader) -> hashdir_status {
    ffi_call("hashdir_reader_refresh", || {
        // SAFETY: `r` is NULL or live, by contract.
        Ok(unsafe { reader(r) }?.refresh()?)
    })
}

/// For each `keys[i]`, `i < n`: `found[i] = 1` and `first_values[i]` = one of its values
/// (which one is unspecified), or `found[i] = 0` and `first_values[i]` unspecified.
///
/// # Errors
/// `HASHDIR_ERR_INVALID_ARGUMENT` for a NULL reader, NULL arrays with `n > 0`, or
/// output arrays that overlap `keys` or each other; `HASHDIR_ERR_IO`,
/// `HASHDIR_ERR_CORRUPT`.
///
/// # Threads
/// Any thread, concurrently with other calls on the same reader.
///
/// # Safety
/// `r` is NULL or a live reader handle; `keys` holds `n` readable elements,
/// `first_values` and `found` `n` writable ones (any may be NULL when `n == 0`). All
/// stay owned by the caller.
#[no_mangle]
pub unsafe extern "C" fn hashdir_reader_lookup(
    r: *mut hashdir_reader,
    keys: *const hashdir_key,
    n: usize,
    first_values: *mut hashdir_value,
    found: *mut u8,
) -> hashdir_status {
    ffi_call("hashdir_reader_lookup", || {
        // SAFETY: `r` is NULL or live, by contract.
        let reader = unsafe { reader(r) }?;
        ensure_disjoint(&[
            ("keys", span(keys, n)),
            ("first_values", span(first_values, n)),
            ("found", span(found, n)),
        ])?;
        // SAFETY: `n` keys by contract; `hashdir_key` has `Key`'s layout (abi.rs).
        let keys = unsafe { slice_in(keys.cast::<Key>(), n, "keys") }?;
        // SAFETY: `n` writable values, not overlapping (checked); `Value`'s layout.
        let first = unsafe { slice_out(first_values.cast::<Value>(), n, "first_values") }?;
        // SAFETY: `n` writable bytes, not overlapping (checked).
        let found = unsafe { slice_out(found, n, "found") }?;
        Ok(reader.lookup(keys, first, found)?)
    })
}

/// All values of each key: `counts[i]` = how many values `keys[i]` has, `i < n`; the
/// values themselves go to `values` one key after the other (`counts[0]` values of
/// `keys[0]`, then those of `keys[1]`, ...; unordered within a key); `*total` = the sum
/// of the counts.
///
/// When `*total > capacity`, `values` holds nothing useful, but `counts` and `*total` are
/// still filled, and the status is `HASHDIR_ERR_BUFFER_TOO_SMALL`: call again with a
/// buffer of `*total` values. (With `refresh_interval_ms` the view may move between the
/// two calls, so the retry may ask again.)
///
/// # Errors
/// `HASHDIR_ERR_BUFFER_TOO_SMALL` as above; `HASHDIR_ERR_INVALID_ARGUMENT` for a NULL
/// reader or `total`, NULL arrays with a non-zero length, or output arrays that
/// overlap; `HASHDIR_ERR_IO`, `HASHDIR_ERR_CORRUPT`. Any other failure but overlapping
/// buffers sets `*total` to 0.
///
/// # Threads
/// Any thread, concurrently with other calls on the same reader.
///
/// # Safety
/// `r` is NULL or a live reader handle; `keys` holds `n` readable elements, `counts`
/// `n` writable ones, `values` `capacity` writable ones (NULL when `capacity == 0`);
/// `total` is NULL or writable. All stay owned by the caller.
#[no_mangle]
pub unsafe extern "C" fn hashdir_reader_get(
    r: *mut hashdir_reader,
    keys: *const hashdir_key,
    n: usize,
    values: *mut hashdir_value,
    capacity: usize,
    counts: *mut u64,
    total: *mut usize,
) -> hashdir_status {
    ffi_call("hashdir_reader_get", || {
        ensure_disjoint(&[
            ("keys", span(keys, n)),
            ("values", span(values, capacity)),
            ("counts", span(counts, n)),
            ("total", span(total, 1)),
        ])?;
        // SAFETY: `total` is NULL or writable, by contract; not overlapping (checked).
        let total = unsafe { out_init(total, 0, "total") }?;
        // SAFETY: `r` is NULL or live, by contract.
        let reader = unsafe { reader(r) }?;
        // SAFETY: `n` keys by contract; `hashdir_key` has `Key`'s layout (abi.rs).
        let keys = unsafe { slice_in(keys.cast::<Key>(), n, "keys") }?;
        // SAFETY: `capacity` writable values, not overlapping (checked); `Value`'s layout.
        let values = unsafe { slice_out(values.cast::<Value>(), capacity, "values") }?;
        // SAFETY: `n` writable counts, not overlapping (checked).
        let counts = unsafe { slice_out(counts, n, "counts") }?;
        let result = reader.get(keys, values, counts);
        *total = match &result {
            Ok(sum) => *sum,
            Err(Error::BufferTooSmall { needed, .. }) => *needed,
            Err(_) => 0,
        };
        result?;
        Ok(())
    })
}

/// Fills `*out` with the counters of the reader's current view (see `hashdir_stats` for
/// `struct_size`).
///
/// # Errors
/// `HASHDIR_ERR_INVALID_ARGUMENT` for a NULL reader or `out`, or a bad
/// `out->struct_size`; `HASHDIR_ERR_IO`.
///
/// # Threads
/// Any thread, concurrently with other calls on the same reader.
///
/// # Safety
/// `r` is NULL or a live reader handle; `out` is NULL or points at `out->struct_size`
/// writable bytes.
#[no_mangle]
pub unsafe extern "C" fn hashdir_reader_stats(
    r: *mut hashdir_reader,
    out: *mut hashdir_stats,
) -> hashdir_status {
    ffi_call("hashdir_reader_stats", || {
        // SAFETY: `r` is NULL or live, by contract.
        let s = unsafe { reader(r) }?.stats()?;
        // SAFETY: `out` is NULL or `struct_size` writable bytes, by contract.
        unsafe { stats::write(&s, out) }
    })
}

/// Writes the state the reader sees (its current view) to a new file at `dest_path`,
/// compacted into one table, while the writer goes on committing (as LMDB's `mdb_copy -c`).
/// The copy is built under a temporary name beside `dest_path` and appears there only once
/// complete and durable; it has the capacity of the original, verifies clean and opens as any
/// hashdir file does. The reader's view keeps its space from reuse while the copy runs; a
/// view without a reader-table slot that the writer overtakes is copied again from a
/// refreshed view (which the reader then keeps), so the copy always holds one view's state.
///
/// # Errors
/// `HASHDIR_ERR_INVALID_ARGUMENT` for a NULL reader or a NULL/empty `dest_path`;
/// `HASHDIR_ERR_IO` when something exists at `dest_path` (errno `EEXIST`; it is never
/// replaced) or writing the copy fails; `HASHDIR_ERR_CORRUPT` reading the original.
///
/// # Threads
/// Any thread, concurrently with other calls on the same reader.
///
/// # Safety
/// `r` is NULL or a live reader handle; `dest_path` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn hashdir_copy(
    r: *mut hashdir_reader,
    dest_path: *const c_char,
) -> hashdir_status {
    ffi_call("hashdir_copy", || {
        // SAFETY: `r` is NULL or live, by contract.
        let reader = unsafe { reader(r) }?;
        // SAFETY: `dest_path` is NULL or NUL-terminated, by contract.
        let dest = unsafe { args::path(dest_path) }?;
        reader.copy_to(dest, |_| {})?;
        Ok(())
    })
}

/// Closes the file and frees the handle. NULL is a no-op.
///
/// # Errors
/// None today; the status is there so closing can report failures later.
///
/// # Threads
/// Any thread, once no other call on this reader is running or will start.
///
/// # Safety
/// `r` is NULL or a live reader handle, which this call consumes: do not use it again.
#[no_mangle]
pub unsafe extern "C" fn hashdir_reader_close(r: *mut hashdir_reader) -> hashdir_status {
    ffi_call("hashdir_reader_close", || {
        if !r.is_null() {
            // SAFETY: a live handle from `hashdir_reader_open`'s Box::into_raw, handed
            // back exactly once by this function's contract.
            drop(unsafe { Box::from_raw(r) });
        }
        Ok(())
    })
}
