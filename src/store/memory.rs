//! Advice to the kernel and the CPU about the engine's memory.

/// Size of a transparent huge page on x86-64 and most arm64 kernels.
const HUGE: usize = 2 << 20;

/// Asks for `v`'s allocation to be backed by transparent huge pages where the system allows
/// it (THP `enabled` = `always` or `madvise`). The op log fills hundreds of MB of fresh memory
/// per log and per recovery; faulting it in 4 KiB pages costs about a third of a replay's
/// time. Only whole 2 MiB pages inside the allocation are advised, and advice that fails (a
/// kernel without THP) changes nothing, so it is ignored.
pub fn huge_pages<T>(v: &mut Vec<T>) {
    let start = v.as_mut_ptr() as usize;
    let end = start + v.capacity() * std::mem::size_of::<T>();
    let (lo, hi) = (start.next_multiple_of(HUGE), end / HUGE * HUGE);
    if hi > lo {
        // SAFETY: [lo, hi) lies inside the allocation `v` owns, which lives across the call;
        // MADV_HUGEPAGE changes how the kernel backs the range, never what it holds.
        unsafe {
            libc::madvise(lo as *mut libc::c_void, hi - lo, libc::MADV_HUGEPAGE);
        }
    }
}

/// Hints the CPU to start loading the cache line at `p`, so that a read of it soon overlaps
/// other misses instead of waiting after them.
#[inline]
pub fn prefetch_line(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing architecturally and never faults, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// [`prefetch_line`] of the line holding `*r`.
#[inline]
pub fn prefetch<T>(r: &T) {
    prefetch_line((r as *const T).cast());
}
