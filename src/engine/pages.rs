//! Page space of the `pages` dataset: allocation (free list, then the end of the dataset, grown
//! in large early-allocated steps) and batched, coalesced page writes.

use crate::error::Result;
use crate::format::layout::{PAGE, PAGES_PER_CHUNK};
use crate::format::page::Page;
use crate::store::{Ds, Positional, WriterFile};

/// Pages a batch holds before its owner should write it out (8 MiB).
const WINDOW: usize = 2048;

/// Pages waiting to be written; written sorted by offset, adjacent ones in one call.
#[derive(Default)]
pub struct PageBatch {
    pages: Vec<(u64, Box<Page>)>,
}

impl PageBatch {
    pub fn push(&mut self, off: u64, page: Box<Page>) {
        self.pages.push((off, page));
    }

    /// Enough pages gathered to write them out now, bounding memory.
    pub fn is_full(&self) -> bool {
        self.pages.len() >= WINDOW
    }

    pub fn write(&mut self, file: &impl Positional) -> Result<()> {
        self.write_then(file, drop)
    }

    /// Writes the pages out, then hands each buffer to `done`.
    pub fn write_then(
        &mut self,
        file: &impl Positional,
        done: impl FnMut(Box<Page>),
    ) -> Result<()> {
        self.pages.sort_unstable_by_key(|(off, _)| *off);
        for run in adjacent(&self.pages, |(off, _)| *off) {
            if run.start > 0 {
                super::failpoint::hit("checkpoint.pages_partial");
            }
            let start = self.pages[run.start].0;
            let bufs: Vec<&[u8]> = self.pages[run].iter().map(|(_, p)| &p[..]).collect();
            file.write_vectored_at(start, &bufs)?;
        }
        self.pages.drain(..).map(|(_, p)| p).for_each(done);
        Ok(())
    }
}

/// The index ranges of `items` (sorted by `off`) whose pages lie back to back in the file.
pub fn adjacent<T>(items: &[T], off: impl Fn(&T) -> u64) -> Vec<std::ops::Range<usize>> {
    let mut runs: Vec<std::ops::Range<usize>> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match runs.last_mut() {
            Some(r) if off(&items[r.end - 1]) + PAGE as u64 == off(item) => r.end = i + 1,
            _ => runs.push(i..i + 1),
        }
    }
    runs
}

/// Buffers a pool keeps at most (16 MiB): what the checkpoint's queues and one batch hold.
const POOL_MAX: usize = 4096;

/// Page buffers passed round a checkpoint's threads and reused, which spares each page read or
/// built an allocation and a 4 KiB clear. A buffer taken holds whatever it last held.
#[derive(Default)]
pub struct PagePool {
    free: parking_lot::Mutex<Vec<Box<Page>>>,
}

impl PagePool {
    pub fn take(&self) -> Box<Page> {
        let reused = self.free.lock().pop();
        reused.unwrap_or_else(|| Box::new([0; PAGE]))
    }

    pub fn give(&self, page: Box<Page>) {
        let mut free = self.free.lock();
        if free.len() < POOL_MAX {
            free.push(page);
        }
    }
}

/// Chunks the pages dataset grows by at least, and at most (bounding preallocation).
const GROW_MIN: u64 = 1;
const GROW_MAX: u64 = 1024;

/// Space freed by published checkpoints that a reader may still be reading: batches by the
/// epoch of the root that stopped referencing them. Readers under roots older than that epoch
/// may still read the space; once the oldest pinned reader is at or past it, it is reusable.
pub struct Held<T> {
    batches: std::collections::VecDeque<(u64, Vec<T>)>,
}

impl<T> Default for Held<T> {
    fn default() -> Self {
        Held {
            batches: Default::default(),
        }
    }
}

impl<T> Held<T> {
    /// Holds what root `epoch` (just published) stopped referencing.
    pub fn hold(&mut self, epoch: u64, items: Vec<T>) {
        if !items.is_empty() {
            self.batches.push_back((epoch, items));
        }
    }

    /// Hands back what no reader at or after `oldest` (the oldest pinned root) can read.
    pub fn release(&mut self, oldest: u64, mut f: impl FnMut(T)) {
        while self.batches.front().is_some_and(|(e, _)| *e <= oldest) {
            let (_, items) = self.batches.pop_front().expect("checked front");
            items.into_iter().for_each(&mut f);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.batches.iter().flat_map(|(_, v)| v.iter())
    }
}

/// Where new pages come from. Pages freed during a checkpoint wait in `freed` until its root is
/// published (the previous root references them), then in `held` until no pinned reader reads
/// under a root that references them, then go to `free`.
#[derive(Default)]
pub struct PageAlloc {
    pub free: Vec<u64>,
    pub freed: Vec<u64>,
    pub held: Held<u64>,
    /// Pages handed out from the end of the dataset.
    pub hw: u64,
}

impl PageAlloc {
    pub fn alloc(&mut self, file: &mut WriterFile) -> Result<u64> {
        if let Some(off) = self.free.pop() {
            return Ok(off);
        }
        self.bump(file)
    }

    /// A page from the end of the dataset (never one a root may reference).
    pub fn bump(&mut self, file: &mut WriterFile) -> Result<u64> {
        let chunk = self.hw / PAGES_PER_CHUNK;
        let have = file.chunks(Ds::Pages).len() as u64;
        if chunk >= have {
            let step = (have / 4).clamp(GROW_MIN, GROW_MAX);
            file.grow(Ds::Pages, chunk + step)?;
        }
        let addr = file.chunks(Ds::Pages)[chunk as usize];
        let off = addr + (self.hw % PAGES_PER_CHUNK) * PAGE as u64;
        self.hw += 1;
        Ok(off)
    }

    /// After root `epoch` is published: what its checkpoint freed is held for readers.
    pub fn publish(&mut self, epoch: u64) {
        let freed = std::mem::take(&mut self.freed);
        self.held.hold(epoch, freed);
    }

    /// Makes reusable what no reader under root `oldest` or later can read.
    pub fn release(&mut self, oldest: u64) {
        let before = self.free.len();
        let free = &mut self.free;
        self.held.release(oldest, |p| free.push(p));
        if self.free.len() != before {
            self.order();
        }
    }

    /// How many pages `listed` would return.
    pub fn listed_len(&self) -> usize {
        self.free.len() + self.held.iter().count() + self.freed.len()
    }

    /// Takes pages off the free list for the free list's own array: as many as the array of
    /// what then remains will certainly use, so none is left neither listed nor used.
    pub fn reserve_for_list(&mut self) -> Vec<u64> {
        let n = self.listed_len();
        let mut k = 0;
        while k < self.free.len() && super::array::fresh_pages((n - k - 1) as u64) > k {
            k += 1;
        }
        self.free.split_off(self.free.len() - k)
    }

    /// Every page a root's free list must list: free, held and freed.
    pub fn listed(&self) -> Vec<u64> {
        let held = self.held.iter();
        self.free
            .iter()
            .chain(held)
            .chain(&self.freed)
            .copied()
            .collect()
    }

    /// Sorts the free list so pops hand out ascending offsets and page writes coalesce.
    pub fn order(&mut self) {
        self.free.sort_unstable_by(|a, b| b.cmp(a));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adjacent_pages_form_runs() {
        let p = PAGE as u64;
        let offs = [p, 2 * p, 3 * p, 7 * p, 9 * p, 10 * p];
        assert_eq!(adjacent(&offs, |o| *o), vec![0..3, 3..4, 4..6]);
        assert!(adjacent(&[] as &[u64], |o| *o).is_empty());
    }
}
