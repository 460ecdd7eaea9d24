//! A read-only shared mapping of the file, for readers' lookups without syscalls.

use std::fs::File;
use std::io;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::ptr::NonNull;

use crate::error::{Error, Result};

/// A read-only `MAP_SHARED` mapping of a file prefix; unmapped on drop.
///
/// Bytes are only ever copied out (see [`Mmap::read`]): the writer process changes them
/// underneath us, so handing out `&[u8]` would let a parse see bytes change after their
/// checksum was verified.
pub struct Mmap {
    /// `None` for an empty mapping (mmap refuses length 0).
    ptr: Option<NonNull<u8>>,
    len: usize,
}

// SAFETY: the mapping is read-only and only read through raw-pointer copies, so sharing or
// moving it between threads cannot create a Rust-visible data race; munmap happens once, on drop.
unsafe impl Send for Mmap {}
// SAFETY: as above; `&Mmap` only permits copying bytes out.
unsafe impl Sync for Mmap {}

impl Mmap {
    /// Maps the first `len` bytes of `file` (which must be at least that long).
    pub(super) fn map(file: &File, len: u64, path: &Path) -> Result<Mmap> {
        let len = usize::try_from(len)
            .map_err(|_| Error::InvalidArgument(format!("file length {len} exceeds memory")))?;
        if len == 0 {
            return Ok(Mmap { ptr: None, len: 0 });
        }
        // SAFETY: we request a fresh read-only shared mapping chosen by the kernel (addr null),
        // so no existing memory is affected; the descriptor is valid for the call.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(Error::io("mmap", path, io::Error::last_os_error()));
        }
        let m = Mmap {
            ptr: NonNull::new(p.cast()),
            len,
        };
        // Lookups touch one page here and one there: the kernel's read-around on a page fault
        // (read_ahead_kb, up to MiBs) would read far more than the page from the device.
        m.advise(libc::MADV_RANDOM);
        Ok(m)
    }

    /// For a pass that reads most of the file in order (verify): read-ahead back on.
    pub fn sequential(&self) {
        self.advise(libc::MADV_NORMAL);
    }

    fn advise(&self, advice: libc::c_int) {
        if let Some(base) = self.ptr {
            // SAFETY: exactly our live mapping; advice changes only how the kernel pages it
            // in, never its contents. Failure only loses the hint.
            unsafe {
                libc::madvise(base.as_ptr().cast(), self.len, advice);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    #[cfg(any(test, feature = "testing"))]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies bytes `[off, off + out.len())` into `out`.
    #[inline]
    pub fn read(&self, off: u64, out: &mut [u8]) -> Result<()> {
        let start = self.check_range(off, out.len())?;
        let Some(base) = self.ptr else {
            return Ok(()); // only an empty read fits in an empty mapping
        };
        // SAFETY: check_range proved start + out.len() <= self.len, so the source lies inside
        // our live mapping, and `out` is a distinct, writable Rust buffer of that length.
        // Another process may write these bytes concurrently; we copy them as plain bytes and
        // every consumer validates them (CRC) before trusting them.
        unsafe {
            std::ptr::copy_nonoverlapping(base.as_ptr().add(start), out.as_mut_ptr(), out.len());
        }
        Ok(())
    }

    /// Bytes `[off, off + N)`, copied: `read` of a size known when compiling, which becomes a
    /// few loads instead of a call to copy memory.
    #[inline]
    pub fn read_array<const N: usize>(&self, off: u64) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        self.read(off, &mut out)?;
        Ok(out)
    }

    /// Hints the CPU to start loading the cache lines of `[off, off + len)` (clipped to the
    /// mapping), so that reads of several of them overlap instead of waiting one after another.
    #[inline]
    pub fn prefetch(&self, off: u64, len: usize) {
        let (Some(base), Ok(start)) = (self.ptr, usize::try_from(off)) else {
            return;
        };
        let end = start.saturating_add(len).min(self.len);
        // Every line the range touches: a range that starts inside a line may end in the
        // line after its last 64-byte step.
        for at in (start & !63..end).step_by(64) {
            super::memory::prefetch_line(base.as_ptr().wrapping_add(at));
        }
    }

    /// Whether the page holding `off` is in the page cache (true when unknown): one
    /// `mincore` call.
    pub fn resident(&self, off: u64) -> bool {
        let Some((p, _)) = self.pages(off, 1) else {
            return true;
        };
        let mut v = 0u8;
        // SAFETY: `p` is a page-aligned address inside our live mapping and `v` has room for
        // the one page asked about; mincore only reports.
        let rc = unsafe { libc::mincore(p.cast(), 1, &mut v) };
        rc != 0 || v & 1 != 0
    }

    /// Asks the kernel to start reading the pages of `[off, off + len)` from the device now
    /// (`MADV_WILLNEED`), without waiting for them: a batch's reads then overlap.
    pub fn will_need(&self, off: u64, len: usize) {
        if let Some((p, n)) = self.pages(off, len) {
            // SAFETY: [p, p + n) lies inside our live mapping; the advice only starts reads.
            unsafe {
                libc::madvise(p.cast(), n, libc::MADV_WILLNEED);
            }
        }
    }

    /// The OS pages covering `[off, off + len)`, clipped to the mapping: their start and
    /// length in bytes; None when empty.
    fn pages(&self, off: u64, len: usize) -> Option<(*mut u8, usize)> {
        let base = self.ptr?;
        let start = usize::try_from(off).ok()?;
        let end = start.saturating_add(len).min(self.len);
        let first = start / os_page() * os_page();
        (end > first).then(|| (base.as_ptr().wrapping_add(first), end - first))
    }

    /// Unmaps the pages this mapping has touched (they fault back in from the file on the next
    /// read), so that dropping the file from the page cache makes later reads go to the device.
    pub fn evict(&self) {
        // On a read-only shared file mapping MADV_DONTNEED only drops page-table entries; the
        // bytes are read from the file again.
        self.advise(libc::MADV_DONTNEED);
    }

    #[inline]
    fn check_range(&self, off: u64, n: usize) -> Result<usize> {
        let end = off.checked_add(n as u64);
        match end {
            Some(end) if end <= self.len as u64 => Ok(off as usize),
            _ => Err(Error::corrupt(
                "file range",
                off,
                format!("{n} bytes past the mapped file length {}", self.len),
            )),
        }
    }
}

/// The OS page size.
fn os_page() -> usize {
    static SIZE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    // SAFETY: sysconf only reads a system constant.
    *SIZE.get_or_init(|| match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as usize,
        _ => 4096,
    })
}

impl Drop for Mmap {
    fn drop(&mut self) {
        if let Some(p) = self.ptr {
            // SAFETY: `p`/`len` are exactly what mmap returned, and no reference into the
            // mapping outlives `self` (reads copy out).
            unsafe {
                libc::munmap(p.as_ptr().cast(), self.len);
            }
        }
    }
}

impl std::fmt::Debug for Mmap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mmap").field("len", &self.len).finish()
    }
}
