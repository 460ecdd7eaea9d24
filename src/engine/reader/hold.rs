//! A reader's pin on a root: while any view of the root is alive, a reader-table slot pinned
//! at its epoch keeps the writer from reusing any space the root references. Pages cannot
//! change under it, so it also remembers which table pages have passed validation (one bit
//! per page of the segments in use).

use crate::format::layout::PAGE;
use crate::store::Slot;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct Hold {
    slot: Mutex<Option<Slot>>,
    data: u64,
    verified: Box<[AtomicU64]>,
}

impl Hold {
    /// A hold on root `epoch` by `slot`, already pinned at or below it, for a data area at
    /// `data` of which `bytes` are in use; None when the pin cannot be written.
    pub fn new(slot: Slot, epoch: u64, data: u64, bytes: u64) -> Option<Hold> {
        if !slot.pin(epoch) {
            return None;
        }
        let pages = bytes / PAGE as u64;
        Some(Hold {
            slot: Mutex::new(Some(slot)),
            data,
            verified: (0..pages / 64 + 1).map(|_| AtomicU64::new(0)).collect(),
        })
    }

    /// Word and bit of the page at `off`; distinct pages never share one (they are PAGE apart).
    fn bit(&self, off: u64) -> Option<(&AtomicU64, u64)> {
        let i = off.checked_sub(self.data)? / PAGE as u64;
        let word = self.verified.get(usize::try_from(i / 64).ok()?)?;
        Some((word, 1 << (i % 64)))
    }

    pub fn verified(&self, off: u64) -> bool {
        self.bit(off)
            .is_some_and(|(w, b)| w.load(Ordering::Relaxed) & b != 0)
    }

    pub fn mark(&self, off: u64) {
        if let Some((w, b)) = self.bit(off) {
            w.fetch_or(b, Ordering::Relaxed);
        }
    }

    /// Unpins for good: the reader is closing, so no view of the root will be read again.
    pub fn release(&self) {
        self.slot.lock().take();
    }
}
