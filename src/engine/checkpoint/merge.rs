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
use super::super::sets::Fold;
use super::super::table::scan::{change_into, pairs, set_into, Scan};
use super::super::table::write::{depth_for, TableWriter, Values};
use crate::error::Result;
use crate::format::bucket::INLINE_MAX;
use crate::format::hash::{dir_index, Range};
use crate::format::layout::PAGE;
use crate::format::root::Root;
use crate::format::table::{Kind, TableRef};
use crate::store::Positional;
use crate::Key;

/// Bytes of new table written between two published cursors.
const STEP: u64 = 64 << 20;
/// Tables a merge reads at most: the base and every delta table a root can list.
const MAX_SOURCES: usize = 1 + crate::format::layout::MAX_RUNS;

/// A pass in progress.
pub struct Merge<'a> {
    core: &'a Core,
    w: TableWriter,
    /// The base, then the merged delta tables oldest first, each with the hash and key of its
    /// next entry.
    srcs: Vec<(Scan<'a>, Option<(u64, Key)>)>,
    /// How many delta tables the pass merges.
    k: usize,
    /// The old tables' segments not freed yet, by their last hash, descending (the next to
    /// free last).
    old: Vec<(u64, u64)>,
    cursor: u64,
    /// Buffers kept from key to key: the key's set as folded, a delta entry's values.
    fold: Fold,
    vals: Vec<crate::Value>,
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
            let head = settled(scan.head())?;
            srcs.push((scan, head));
            let segs = pairs(&settled(super::super::array::load(src, t.segs, epoch))?.0);
            old.extend(segs.into_iter().filter(|s| s.1 >= cursor));
        }
        if srcs.len() > MAX_SOURCES {
            return Err(crate::error::Error::corrupt(
                "root",
                0,
                format!("a merge of {} tables", srcs.len()),
            ));
        }
        old.sort_unstable_by_key(|s| std::cmp::Reverse(s.1));
        Ok(Merge {
            core,
            w,
            srcs,
            k,
            old,
            cursor,
            fold: Fold::default(),
            vals: Vec::new(),
        })
    }

    /// The least (hash, key) any source has next.
    fn least(&self) -> Option<(u64, Key)> {
        self.srcs.iter().filter_map(|(_, h)| *h).min()
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

    /// Merges every source's entry of `key` and writes the result; moves those sources on.
    fn merge_key(&mut self, hash: u64, key: &Key, alloc: &mut CoreAlloc) -> Result<()> {
        let file: &dyn Positional = &self.core.file;
        // The sources holding the key, oldest first (source 0 is the base).
        let mut with = [0usize; MAX_SOURCES];
        let mut n = 0;
        for (i, (_, head)) in self.srcs.iter().enumerate() {
            if *head == Some((hash, *key)) {
                with[n] = i;
                n += 1;
            }
        }
        let with = &with[..n];
        let fold = &mut self.fold;
        if let [only] = *with {
            // One table has the key: its entry is copied as it is when its values are in
            // the page (a base's set, or values a delta adds to none).
            let (code, bytes) = self.srcs[only].0.raw();
            if (1..=INLINE_MAX as u8).contains(&code) {
                self.w.add(file, alloc, hash, key, Values::Raw(code, bytes))?;
                return self.advance(with);
            }
        }
        fold.clear();
        for &i in with {
            let scan = &self.srcs[i].0;
            let body = settled(scan.body())?;
            if i == 0 {
                settled(set_into(scan, &body, fold.set_mut()))?;
            } else {
                let (cleared, adds) = settled(change_into(scan, &body, &mut self.vals))?;
                fold.change(cleared, &self.vals[..adds], &self.vals[adds..]);
            }
        }
        let set = fold.finish();
        if !set.is_empty() {
            self.w.add(file, alloc, hash, key, Values::Set(set))?;
        }
        self.advance(with)
    }

    /// Moves the sources `with` past their head entry.
    fn advance(&mut self, with: &[usize]) -> Result<()> {
        for &i in with {
            let (scan, head) = &mut self.srcs[i];
            scan.advance();
            *head = settled(scan.head())?;
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

/// When there is no base table (or an empty one) and the oldest delta table only adds
/// values, that table is the base as it is: it becomes the base without being rewritten (a
/// bulk load into a new file writes its first table once). Returns whether it did.
pub fn adopt(core: &Core) -> Result<bool> {
    let mut st = core.st.lock();
    let r = &st.root;
    let first = r.deltas.first().copied();
    let Some(t) = first.filter(|t| t.changes == 0 && !r.merging.is_some() && r.base.entries == 0) else {
        return Ok(false);
    };
    let mut next = r.clone();
    let mut frees = Frees::default();
    if next.base.is_some() {
        let old = next.base;
        frees.pages.extend(array_pages(&core.file, old.dir, next.epoch)?);
        frees.pages.extend(array_pages(&core.file, old.segs, next.epoch)?);
        let segs = pairs(&settled(super::super::array::load(&core.file, old.segs, next.epoch))?.0);
        frees.runs.extend(segs.into_iter().map(|s| (s.0, 1)));
    }
    next.base = TableRef {
        kind: Kind::Base,
        ..t
    };
    next.deltas.remove(0);
    core.publish(&mut st, next, frees, Mode::Durable)?;
    failpoint::hit("merge.published");
    Ok(true)
}

/// Whether a pass should start: the delta tables hold as many bytes as the base, or there are
/// many of them, or someone waits for a full merge. (A pass rewrites the whole base: starting
/// one when the deltas reach a fraction `r` of it costs about (1 + r) / r rewrites of each
/// entry over a load; at 1, about two.)
pub fn wanted(root: &Root, compact: bool) -> bool {
    if root.merging.is_some() {
        return true;
    }
    let deltas: u64 = root.deltas.iter().map(|t| t.bytes).sum();
    !root.deltas.is_empty()
        && (compact || deltas >= root.base.bytes || root.deltas.len() >= MANY_DELTAS)
}

/// Delta tables that start a merge however small they are (each costs a reader one more probe).
pub const MANY_DELTAS: usize = 8;
