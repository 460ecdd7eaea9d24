//! Page space of the `pages` dataset: allocation (free list, then the end of the dataset, grown
//! in large early-allocated steps) and batched, coalesced page writes.

use crate::error::Result;
use crate::format::layout::{PAGE, PAGES_PER_CHUNK};
use crate::format::page::Page;
use crate::store::{Ds, WriterFile};

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

    pub fn write(&mut self, file: &WriterFile) -> Result<()> {
        self.pages.sort_unstable_by_key(|(off, _)| *off);
        let mut run: Vec<u8> = Vec::new();
        let mut run_start = 0;
        for (off, page) in self.pages.drain(..) {
            if !run.is_empty() && run_start + run.len() as u64 != off {
                file.write_at(run_start, &run)?;
                super::failpoint::hit("checkpoint.pages_partial");
                run.clear();
            }
            if run.is_empty() {
                run_start = off;
            }
            run.extend_from_slice(&page[..]);
        }
        if !run.is_empty() {
            file.write_at(run_start, &run)?;
        }
        Ok(())
    }
}

/// Chunks the pages dataset grows by at least, and at most (bounding preallocation).
const GROW_MIN: u64 = 1;
const GROW_MAX: u64 = 1024;

/// Where new pages come from. Pages freed during a checkpoint wait in `freed` until its root is
/// published: until then the previous root still references them.
#[derive(Default)]
pub struct PageAlloc {
    pub free: Vec<u64>,
    pub freed: Vec<u64>,
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

    /// After the root flip: what this checkpoint freed becomes reusable.
    pub fn publish(&mut self) {
        self.free.append(&mut self.freed);
        self.order();
    }

    /// Sorts the free list so pops hand out ascending offsets and page writes coalesce.
    pub fn order(&mut self) {
        self.free.sort_unstable_by(|a, b| b.cmp(a));
    }
}
