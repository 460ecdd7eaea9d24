//! Turning C arguments into Rust references, checking what can be checked first.
//!
//! What cannot be checked — that a non-NULL pointer really points at as much memory as
//! its length says, that a handle is live — is the C caller's promise, stated on each
//! export; the helpers' `# Safety` sections pass it along.

use super::call::{CallResult, Failure};
use std::ffi::{c_char, CStr};
use std::mem::size_of;
use std::ops::Range;
use std::path::Path;
use std::{ptr, slice};

/// Borrows the object behind a handle.
///
/// # Safety
/// `ptr` is NULL or a live handle (returned by the matching open, not yet closed).
pub(super) unsafe fn handle<'a, T>(ptr: *const T, what: &str) -> CallResult<&'a T> {
    // SAFETY: a non-NULL `ptr` is a live handle, by this function's contract.
    unsafe { ptr.as_ref() }.ok_or_else(|| Failure::invalid(format!("{what} is NULL")))
}

/// Writes `init` to an out-parameter and returns it for the final result, so the caller
/// sees a defined value (NULL handle, zero total) whatever happens after.
///
/// # Safety
/// `ptr` is NULL or valid for writing one `T`.
pub(super) unsafe fn out_init<'a, T>(ptr: *mut T, init: T, what: &str) -> CallResult<&'a mut T> {
    check_single(ptr, what)?;
    // SAFETY: checked non-NULL and aligned; writable by this function's contract. The
    // write initialises it, so the reference never sees caller garbage.
    unsafe {
        ptr.write(init);
        Ok(&mut *ptr)
    }
}

/// Borrows an input array of `n` elements; `n == 0` accepts any pointer, NULL included.
///
/// # Safety
/// When `n > 0`, a non-NULL `ptr` points at `n` initialised `T`s that nothing writes
/// during the call.
pub(super) unsafe fn slice_in<'a, T>(ptr: *const T, n: usize, what: &str) -> CallResult<&'a [T]> {
    if n == 0 {
        return Ok(&[]);
    }
    check_array(ptr, n, what)?;
    // SAFETY: non-NULL, aligned, `n * size_of::<T>()` fits in isize (checked above);
    // readable and unaliased by writers by this function's contract.
    Ok(unsafe { slice::from_raw_parts(ptr, n) })
}

/// Borrows an output array of `n` elements; `n == 0` accepts any pointer, NULL included.
///
/// # Safety
/// When `n > 0`, a non-NULL `ptr` points at `n` writable `T`s that no other argument of
/// the call overlaps (check with [`ensure_disjoint`] first). `T` is a plain integer or
/// byte array: every bit pattern is valid, so memory C left uninitialised is only ever
/// written, never interpreted.
pub(super) unsafe fn slice_out<'a, T>(
    ptr: *mut T,
    n: usize,
    what: &str,
) -> CallResult<&'a mut [T]> {
    if n == 0 {
        return Ok(&mut []);
    }
    check_array(ptr, n, what)?;
    // SAFETY: non-NULL, aligned, size fits in isize (checked above); writable and not
    // overlapping other arguments by this function's contract.
    Ok(unsafe { slice::from_raw_parts_mut(ptr, n) })
}

/// [`check_array`] for a pointer to one object, where a length would only confuse.
fn check_single<T>(ptr: *const T, what: &str) -> CallResult {
    if ptr.is_null() {
        return Err(Failure::invalid(format!("{what} is NULL")));
    }
    check_array(ptr, 1, what)
}

fn check_array<T>(ptr: *const T, n: usize, what: &str) -> CallResult {
    if ptr.is_null() {
        return Err(Failure::invalid(format!(
            "{what} is NULL but its length is {n}"
        )));
    }
    if byte_len::<T>(n).is_none() {
        let size = size_of::<T>();
        return Err(Failure::invalid(format!(
            "{what}: {n} elements of {size} bytes exceed the address space"
        )));
    }
    if !ptr.is_aligned() {
        return Err(Failure::invalid(format!("{what} is misaligned")));
    }
    Ok(())
}

/// Bytes in `n` elements of `T`, if that is a size Rust can address (at most `isize::MAX`).
fn byte_len<T>(n: usize) -> Option<usize> {
    n.checked_mul(size_of::<T>())
        .filter(|&b| b <= isize::MAX as usize)
}

/// The address range an array argument covers, for [`ensure_disjoint`].
pub(super) fn span<T>(ptr: *const T, n: usize) -> Range<usize> {
    let start = ptr as usize;
    let len = byte_len::<T>(n).unwrap_or(usize::MAX);
    start..start.saturating_add(len)
}

/// Rejects output arrays that overlap each other or an input: Rust may not alias a
/// `&mut` slice, and C callers do reuse buffers in place.
pub(super) fn ensure_disjoint(spans: &[(&str, Range<usize>)]) -> CallResult {
    for (i, (a, ra)) in spans.iter().enumerate() {
        for (b, rb) in &spans[i + 1..] {
            let empty = ra.is_empty() || rb.is_empty();
            let overlap = !empty && ra.start < rb.end && rb.start < ra.end;
            if overlap {
                return Err(Failure::invalid(format!("{a} and {b} overlap")));
            }
        }
    }
    Ok(())
}

/// Borrows a NUL-terminated path. Paths are bytes on Unix, so any non-empty string is
/// accepted as is (no UTF-8 requirement).
///
/// # Safety
/// `ptr` is NULL or points at a NUL-terminated string that lives through the call.
pub(super) unsafe fn path<'a>(ptr: *const c_char) -> CallResult<&'a Path> {
    if ptr.is_null() {
        return Err(Failure::invalid("path is NULL"));
    }
    // SAFETY: non-NULL and NUL-terminated by this function's contract.
    let bytes = unsafe { CStr::from_ptr(ptr) }.to_bytes();
    if bytes.is_empty() {
        return Err(Failure::invalid("path is empty"));
    }
    path_from_bytes(bytes)
}

/// Copies `text` into a caller's buffer as a NUL-terminated string, cut to fit; an empty
/// buffer gets nothing.
pub(super) fn write_text(out: &mut [u8], text: &str) {
    if let Some(room) = out.len().checked_sub(1) {
        let n = text.len().min(room);
        out[..n].copy_from_slice(&text.as_bytes()[..n]);
        out[n] = 0;
    }
}

/// Limits on a caller's `struct_size`: below 8 a struct cannot hold even its first
/// field after `struct_size`; far above any version's size it is garbage (say, an
/// uninitialised struct) and reading that many bytes could fault.
const STRUCT_SIZE_LIMITS: std::ops::RangeInclusive<usize> = 8..=4096;

/// End offsets of the named fields of struct `$T`, for the versioned-struct helpers
/// below; `$probe` is any value of it (field sizes are taken from it).
macro_rules! field_ends {
    ($T:ty, $probe:expr; $($field:ident),+ $(,)?) => {{
        let probe: $T = $probe;
        [$(std::mem::offset_of!($T, $field) + std::mem::size_of_val(&probe.$field)),+]
    }};
}
pub(super) use field_ends;

/// Reads the `struct_size` that starts every versioned struct, checking it is plausible.
///
/// # Safety
/// `ptr` is NULL or points at a struct whose first field is a `u32` `struct_size`.
unsafe fn struct_size<T>(ptr: *const T, what: &str) -> CallResult<usize> {
    check_single(ptr, what)?;
    // SAFETY: non-NULL and aligned (checked); its first 4 bytes are `struct_size` by contract.
    let size = unsafe { ptr.cast::<u32>().read() } as usize;
    if !STRUCT_SIZE_LIMITS.contains(&size) {
        let ours = size_of::<T>();
        return Err(Failure::invalid(format!(
            "{what}->struct_size is {size}; set it to sizeof (this library's is {ours})"
        )));
    }
    Ok(size)
}

/// Bytes `[0, n)` of a caller's struct of `size` bytes that hold only whole fields.
fn covered_len(size: usize, field_ends: &[usize]) -> usize {
    field_ends
        .iter()
        .copied()
        .filter(|&end| end <= size)
        .max()
        .unwrap_or(0)
}

/// Reads a caller's versioned struct into `base`: the fields that lie wholly within its
/// `struct_size` replace those of `base`; bytes beyond our own struct must be zero, since
/// they are fields of a newer version that this library would otherwise ignore.
///
/// # Safety
/// `src` is NULL or points at `src->struct_size` readable bytes.
pub(super) unsafe fn read_versioned<T>(
    src: *const T,
    mut base: T,
    field_ends: &[usize],
    what: &str,
) -> CallResult<T> {
    // SAFETY: passed on from this function's contract.
    let size = unsafe { struct_size(src, what) }?;
    let ours = size_of::<T>();
    if size > ours {
        // SAFETY: `size` bytes at `src` are readable by contract; we read [ours, size).
        let extra = unsafe { slice::from_raw_parts(src.cast::<u8>().add(ours), size - ours) };
        if extra.iter().any(|&b| b != 0) {
            return Err(Failure::invalid(format!(
                "{what} sets fields unknown to this library version (struct_size {size} > {ours})"
            )));
        }
    }
    let n = covered_len(size, field_ends);
    // SAFETY: `n <= min(size, ours)`: readable at `src`, writable in `base`; `T` is plain
    // integers, so any bytes form a valid value.
    unsafe { ptr::copy_nonoverlapping(src.cast::<u8>(), (&raw mut base).cast::<u8>(), n) };
    Ok(base)
}

/// Writes the fields of `value` that lie wholly within the caller's `struct_size` to
/// `dst`, leaving `struct_size` and everything past those fields untouched.
///
/// # Safety
/// `dst` is NULL or points at `dst->struct_size` writable bytes.
pub(super) unsafe fn write_versioned<T>(
    value: &T,
    dst: *mut T,
    field_ends: &[usize],
    what: &str,
) -> CallResult {
    // SAFETY: passed on from this function's contract.
    let size = unsafe { struct_size(dst, what) }?;
    let skip = size_of::<u32>();
    let n = covered_len(size, field_ends).max(skip);
    let src = ptr::from_ref(value).cast::<u8>();
    // SAFETY: `skip <= n <= min(size, size_of::<T>())`: readable in `value`, writable at
    // `dst` by contract; distinct objects, so no overlap.
    unsafe { ptr::copy_nonoverlapping(src.add(skip), dst.cast::<u8>().add(skip), n - skip) };
    Ok(())
}

#[cfg(unix)]
fn path_from_bytes(bytes: &[u8]) -> CallResult<&Path> {
    use std::os::unix::ffi::OsStrExt;
    Ok(Path::new(std::ffi::OsStr::from_bytes(bytes)))
}

#[cfg(not(unix))]
fn path_from_bytes(bytes: &[u8]) -> CallResult<&Path> {
    std::str::from_utf8(bytes)
        .map(Path::new)
        .map_err(|_| Failure::invalid("path is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message<T>(r: CallResult<T>) -> String {
        match r {
            Ok(_) => panic!("expected a failure"),
            Err(f) => f.message,
        }
    }

    #[test]
    fn empty_arrays_accept_null() {
        // SAFETY: n == 0, nothing is read or written.
        let keys = unsafe { slice_in::<[u8; 16]>(ptr::null(), 0, "keys") };
        assert!(keys.unwrap().is_empty());
        // SAFETY: as above.
        let out = unsafe { slice_out::<u64>(ptr::null_mut(), 0, "counts") };
        assert!(out.unwrap().is_empty());
    }

    #[test]
    fn null_array_with_length_is_rejected() {
        // SAFETY: rejected before any access.
        let r = unsafe { slice_in::<[u8; 16]>(ptr::null(), 3, "keys") };
        assert_eq!(
            message(r),
            "invalid argument: keys is NULL but its length is 3"
        );
    }

    #[test]
    fn overflowing_length_is_rejected() {
        let buf = [[0u8; 16]; 1];
        // SAFETY: rejected before any access.
        let r = unsafe { slice_in(buf.as_ptr(), usize::MAX / 8, "keys") };
        assert!(message(r).contains("exceed the address space"));
    }

    #[test]
    fn misaligned_output_is_rejected() {
        let mut buf = [0u64; 2];
        let odd = buf.as_mut_ptr().cast::<u8>().wrapping_add(1).cast::<u64>();
        // SAFETY: rejected before any access.
        let r = unsafe { slice_out(odd, 1, "counts") };
        assert_eq!(message(r), "invalid argument: counts is misaligned");
    }

    #[test]
    fn overlap_is_detected_and_touching_is_not_overlap() {
        let a = 100..116;
        assert!(ensure_disjoint(&[("keys", a.clone()), ("found", 116..120)]).is_ok());
        assert!(ensure_disjoint(&[("keys", a.clone()), ("found", 110..110)]).is_ok());
        let r = ensure_disjoint(&[("keys", a), ("x", 0..1), ("values", 115..131)]);
        assert_eq!(message(r), "invalid argument: keys and values overlap");
    }

    #[test]
    fn paths_must_be_non_null_and_non_empty() {
        // SAFETY: NULL is allowed and rejected.
        assert!(unsafe { path(ptr::null()) }.is_err());
        // SAFETY: a static NUL-terminated string.
        assert!(unsafe { path(c"".as_ptr()) }.is_err());
        // SAFETY: as above.
        let p = unsafe { path(c"/tmp/x.h5".as_ptr()) }.ok().unwrap();
        assert_eq!(p, Path::new("/tmp/x.h5"));
    }
}
