//! Merge: the base table and the oldest delta tables become a new base table. The tables are
//! read in hash order, side by side, and the new table written in hash order, so the pass is
//! sequential reading and writing however large the tables are. It runs in steps: each step
//! writes about `STEP` bytes, then publishes the new table's prefix and the cursor (every
//! hash below it is merged). Readers then read the new table below the cursor and the old
//! tables above it; the old tables' segments that hold only hashes below the cursor are freed
//! at once, so the file holds the table about once, not twice. After a crash the pass goes
//! on from the last cursor published.

use super::super::array::ArrayWriter;
use super::super::core::{array_pages, Core, CoreAlloc, Frees, Mode};
use super::super::failpoint;
use super::super::source::{settled, Source};
use super::super::table::scan::{change_of, pairs, set_of, Item, Scan};
use super::super::table::write::{depth_for, TableWriter, Values};
use crate::error::Result;
use crate::format::hash::{dir_index, Range};
use crate::format::layout::PAGE;
use crate::format::root::Root;
use crate::format::table::{Kind, TableRef};
use crate::store::Positional;
use crate::Key;

/// Bytes of new table written between two published cursors.
const STEP: u64 = 64 << 20;

/// A pass in progress.
pub struct Merge<'a> {
    core: &'a Core,
    w: TableWriter,
    /// The base, then the merged delta tables oldest first, each with its next entry.
    srcs: Vec<(Scan<'a>, Option<Item>)>,
    /// How many delta tables the pass merges.
    k: usize,
    /// The old tables' segments not freed yet, by their last hash, descending (the next to
    /// free last).
    old: Vec<(u64, u64)>,
    cursor: u64,
}

impl<'a> Merge<'a> {
    /// Starts a pass over the base and every delta table of `root`, or carries on the one it
    /// records.
    pub fn open(core: &'a Core, root: &Root, hint: &'a dyn Fn(u64, u64)) -> Result<Merge<'a>> {
        let src: &dyn Source = &core.file;
        let epoch = root.epoch;
        let (w, k, cursor) = if root.merging.is_some() {
            let t = root.merging;
            let cursor = root.cursor;
            let dir = settled(ArrayWriter::resume(
                src,
                t.dir,
                dir_index(cursor, t.depth),
                Some(t.dir.len),
                epoch,
            ))?;
            let segs = settled(ArrayWriter::resume(src, t.segs, t.segs.len, None, epoch))?;
            failpoint::hit("recovery.merge_resumed");
            (
                TableWriter::resume(&t, cursor, dir, segs),
                root.merged as usize,
                cursor,
            )
        } else {
            let k = root.deltas.len();
            let bytes = [root.base]
                .iter()
                .chain(&root.deltas)
                .map(entry_bytes)
                .sum();
            let w = TableWriter::new(Kind::Base, root.next_table_id, depth_for(bytes));
            (w, k, 0)
        };
        let tables: Vec<TableRef> = [root.base]
            .into_iter()
            .chain(root.deltas[..k].iter().copied())
            .collect();
        let mut srcs = Vec::new();
        let mut old = Vec::new();
        if !root.base.is_some() {
            // Source 0 is the base: an empty one.
            srcs.push((settled(Scan::empty(src))?, None));
        }
        for t in tables.iter().filter(|t| t.is_some()) {
            let mut scan = settled(Scan::new(src, *t, epoch, cursor, Some(hint)))?;
            let head = settled(scan.next())?;
            srcs.push((scan, head));
            let segs = pairs(&settled(super::super::array::load(src, t.segs, epoch))?.0);
            old.extend(segs.into_iter().filter(|s| s.1 >= cursor));
        }
        old.sort_unstable_by_key(|s| std::cmp::Reverse(s.1));
        Ok(Merge {
            core,
            w,
            srcs,
            k,
            old,
            cursor,
        })
    }

    /// The least (hash, key) any source has next.
    fn least(&self) -> Option<(u64, Key)> {
        self.srcs
            .iter()
            .filter_map(|(_, h)| h.as_ref().map(|i| (i.hash, i.key)))
            .min()
    }

    /// Merges until about `STEP` more bytes are written, then publishes the cursor; true when
    /// the pass is complete (and published).
    pub fn step(&mut self) -> Result<bool> {
        let mut alloc = CoreAlloc(self.core);
        let until = self.w.bytes() + STEP;
        let entries = failpoint::merge_step().unwrap_or(u64::MAX);
        let mut done = 0u64;
        while let Some((hash, key)) = self.least() {
            let full = self.w.bytes() >= until || done >= entries;
            if full && self.w.starts_slot(hash) {
                let slot = dir_index(hash, self.w.depth());
                let upto = Range::slots(slot, slot, self.w.depth()).lo;
                self.checkpoint(upto)?;
                return Ok(false);
            }
            self.merge_key(hash, &key, &mut alloc)?;
            done += 1;
            failpoint::hit("merge.entry");
        }
        self.finish()?;
        Ok(true)
    }

    /// Merges every source's entry of `key` and writes the result.
    fn merge_key(&mut self, hash: u64, key: &Key, alloc: &mut CoreAlloc) -> Result<()> {
        let core = self.core;
        let (src, file): (&dyn Source, &dyn Positional) = (&core.file, &core.file);
        let mut items: Vec<Option<Item>> = Vec::with_capacity(self.srcs.len());
        for (scan, head) in &mut self.srcs {
            if head
                .as_ref()
                .is_some_and(|i| i.hash == hash && i.key == *key)
            {
                items.push(std::mem::replace(head, settled(scan.next())?));
            } else {
                items.push(None);
            }
        }
        let changes: Vec<&Item> = items[1..].iter().flatten().collect();
        match (&items[0], changes.as_slice()) {
            // Only the base has the key: copied as it is (its extent, if any, rewritten).
            (Some(base), []) => match &base.raw {
                Some((code, bytes)) => {
                    self.w
                        .add(file, alloc, hash, key, Values::Raw(*code, bytes))?
                }
                None => {
                    let set = settled(set_of(src, &base.body))?;
                    self.w.add(file, alloc, hash, key, Values::Set(&set))?;
                }
            },
            (base, changes) => {
                let mut set = match base {
                    Some(b) => settled(set_of(src, &b.body))?,
                    None => Vec::new(),
                };
                for c in changes {
                    set = settled(change_of(src, &c.body))?.apply(&set);
                }
                if !set.is_empty() {
                    self.w.add(file, alloc, hash, key, Values::Set(&set))?;
                }
            }
        }
        Ok(())
    }

    /// Publishes the new table up to `upto` (a slot boundary no entry written is past) and
    /// frees the old segments wholly below it.
    fn checkpoint(&mut self, upto: u64) -> Result<()> {
        let mut alloc = CoreAlloc(self.core);
        let t = self.w.checkpoint(&self.core.file, &mut alloc, upto)?;
        failpoint::hit("merge.step_written");
        let mut frees = Frees::default();
        while self.old.last().is_some_and(|s| s.1 < upto) {
            frees.runs.push((self.old.pop().expect("checked").0, 1));
        }
        frees.pages.extend(self.w.take_retired());
        let mut st = self.core.st.lock();
        let mut next = st.root.clone();
        next.merging = t;
        next.cursor = upto;
        next.merged = self.k as u32;
        if next.next_table_id <= t.id {
            next.next_table_id = t.id + 1;
        }
        self.core.publish(&mut st, next, frees, Mode::Durable)?;
        self.cursor = upto;
        failpoint::hit("merge.step_published");
        Ok(())
    }

    /// Writes the rest of the new table and makes it the base; the old tables are freed.
    fn finish(&mut self) -> Result<()> {
        let mut alloc = CoreAlloc(self.core);
        let t = self.w.finish(&self.core.file, &mut alloc)?;
        failpoint::hit("merge.written");
        let mut frees = Frees::default();
        frees.runs.extend(self.old.drain(..).map(|s| (s.0, 1)));
        frees.pages.extend(self.w.take_retired());
        let mut st = self.core.st.lock();
        let mut next = st.root.clone();
        let max = next.epoch;
        let gone: Vec<TableRef> = [next.base]
            .into_iter()
            .chain(next.deltas.drain(..self.k))
            .filter(|t| t.is_some())
            .collect();
        for old in &gone {
            frees
                .pages
                .extend(array_pages(&self.core.file, old.dir, max)?);
            frees
                .pages
                .extend(array_pages(&self.core.file, old.segs, max)?);
        }
        next.base = t;
        next.merging = TableRef::default();
        next.cursor = 0;
        next.merged = 0;
        if next.next_table_id <= t.id {
            next.next_table_id = t.id + 1;
        }
        self.core.publish(&mut st, next, frees, Mode::Durable)?;
        failpoint::hit("merge.published");
        Ok(())
    }
}

/// Bytes of a table's entries at most (to size the table merged from it): what its pages
/// hold, or for a table of few keys what that many of the longest entries take.
fn entry_bytes(t: &TableRef) -> u64 {
    let longest = crate::format::bucket::body_size(&crate::format::bucket::Body::Few(
        vec![[0; 16]; crate::format::bucket::INLINE_MAX].into(),
    )) as u64;
    (t.pages * PAGE as u64).min(t.entries * longest)
}

/// Whether a pass should start: the delta tables hold a quarter of the base's bytes, or there
/// are many of them, or someone waits for a full merge.
pub fn wanted(root: &Root, compact: bool) -> bool {
    if root.merging.is_some() {
        return true;
    }
    let deltas: u64 = root.deltas.iter().map(|t| t.bytes).sum();
    !root.deltas.is_empty()
        && (compact || deltas >= root.base.bytes / 4 || root.deltas.len() >= MANY_DELTAS)
}

/// Delta tables that start a merge however small they are (each costs a reader one more probe).
pub const MANY_DELTAS: usize = 8;
