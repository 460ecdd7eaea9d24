//! A reader's pin on a root: while any view of the root is alive, a reader-table slot pinned
//! at its epoch keeps the writer from reusing any space the root references. Pages cannot
//! change under it, so it also remembers which table pages and which key-filter pages have
//! passed validation (one bit each per page of the segments in use).

use crate::format::layout::PAGE;
use crate::store::Slot;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct Hold {
    slot: Mutex<Option<Slot>>,
    data: u64,
    verified: Box<[AtomicU64]>,
    /// Pages validated as array leaves (of key filters), apart: a page is never taken for
    /// one kind because it passed as the other.
    leaves: Box<[AtomicU64]>,
}

impl Hold {
    /// A hold on root `epoch` by `slot`, already pinned at or below it, for a data area at
    /// `data` of which `bytes` are in use; None when the pin cannot be written.
    pub fn new(slot: Slot, epoch: u64, data: u64, bytes: u64) -> Option<Hold> {
        if !slot.pin(epoch) {
            return None;
        }
        let words = bytes / PAGE as u64 / 64 + 1;
        let bits = || (0..words).map(|_| AtomicU64::new(0)).collect();
        Some(Hold {
            slot: Mutex::new(Some(slot)),
            data,
            verified: bits(),
            leaves: bits(),
        })
    }

    /// Word and bit of the page at `off` in `bits`; distinct pages never share one (they are
    /// PAGE apart).
    fn bit<'a>(&self, bits: &'a [AtomicU64], off: u64) -> Option<(&'a AtomicU64, u64)> {
        let i = off.checked_sub(self.data)? / PAGE as u64;
        let word = bits.get(usize::try_from(i / 64).ok()?)?;
        Some((word, 1 << (i % 64)))
    }

    fn is_set(&self, bits: &[AtomicU64], off: u64) -> bool {
        self.bit(bits, off)
            .is_some_and(|(w, b)| w.load(Ordering::Relaxed) & b != 0)
    }

    fn set(&self, bits: &[AtomicU64], off: u64) {
        if let Some((w, b)) = self.bit(bits, off) {
            w.fetch_or(b, Ordering::Relaxed);
        }
    }

    /// Whether the table page at `off` passed validation under this hold.
    pub fn verified(&self, off: u64) -> bool {
        self.is_set(&self.verified, off)
    }

    pub fn mark(&self, off: u64) {
        self.set(&self.verified, off);
    }

    /// Whether the array leaf page at `off` passed validation under this hold.
    pub fn leaf_verified(&self, off: u64) -> bool {
        self.is_set(&self.leaves, off)
    }

    pub fn mark_leaf(&self, off: u64) {
        self.set(&self.leaves, off);
    }

    /// Unpins for good: the reader is closing, so no view of the root will be read again.
    pub fn release(&self) {
        self.slot.lock().take();
    }
}
