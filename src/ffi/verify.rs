//! `hashdir_verify`: the file checker, for C.

use super::abi::hashdir_status;
use super::args::{out_init, path, slice_out, write_text};
use super::call::{ffi_call, Failure};
use crate::error::Error;
use std::ffi::c_char;

/// Checks the file at `path` against every rule of its format: all checksums, directory
/// against the ranges its pages record, entry counts against the statistics, extents within the file and
/// against their checksums, no page referenced twice, free lists disjoint from live space.
/// Safe while a writer runs (a check the writer overtook is redone on its newer state).
/// For a sharded store's directory, checks every shard (each problem names its shard; the
/// counts are sums).
///
/// Writes a NUL-terminated report into `report` (one problem a line, each saying what and
/// at which file offset, or one `ok: ...` line with the counts), cut to `report_len`
/// bytes; `report` may be NULL when `report_len` is 0. `*problems` (may be NULL) gets the
/// number of problems.
///
/// # Errors
/// `HASHDIR_ERR_CORRUPT` when problems were found (the report lists them, and
/// `hashdir_last_error` names the first); `HASHDIR_ERR_NOT_FOUND`,
/// `HASHDIR_ERR_NOT_HASHDIR`, `HASHDIR_ERR_IO` as for opening a reader;
/// `HASHDIR_ERR_INVALID_ARGUMENT` for a NULL path.
///
/// # Threads
/// Any thread.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `report` is NULL or `report_len` writable
/// bytes; `problems` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn hashdir_verify(
    path: *const c_char,
    report: *mut c_char,
    report_len: usize,
    problems: *mut u64,
) -> hashdir_status {
    ffi_call("hashdir_verify", || {
        // SAFETY: `path` is NULL or NUL-terminated, by contract.
        let path = unsafe { self::path(path) }?;
        // SAFETY: `report` is NULL or `report_len` writable bytes, by contract; bytes are
        // plain data.
        let out = unsafe { slice_out(report.cast::<u8>(), report_len, "report") }?;
        let r = crate::verify_store(path)?;
        let text = if r.is_ok() {
            format!(
                "ok: epoch {}, {} keys, {} values, {} buckets, {} pages, {} extents",
                r.epoch, r.keys, r.values, r.buckets, r.pages, r.extents
            )
        } else {
            r.problems.join("\n")
        };
        write_text(out, &text);
        if !problems.is_null() {
            // SAFETY: non-NULL `problems` is writable, by contract.
            unsafe { out_init(problems, r.problems.len() as u64, "problems") }?;
        }
        match r.problems.first() {
            None => Ok(()),
            Some(first) => Err(Failure::from(Error::corrupt(
                "file",
                0,
                format!("{} problems; first: {first}", r.problems.len()),
            ))),
        }
    })
}
