//! Merges: tables read side by side in hash order and written as one new table in hash
//! order, so a merge reads and writes sequentially however large the tables are.
//!
//! A merge *into the base* makes the base and the oldest delta tables a new base table. It
//! runs in steps: each step writes about `STEP` bytes, then publishes the new table's prefix
//! and the cursor (every hash below it is merged). Readers then read the new table below the
//! cursor and the old tables above it; the old tables' segments that hold only hashes below
//! the cursor are freed at once, so the file holds the table about once, not twice. After a
//! crash the merge goes on from the last cursor published.
//!
//! A merge *of delta tables* makes a run of consecutive delta tables one delta table, each
//! key's changes composed into one; it is published once, when written (its tables are a
//! fraction of the base, see `policy`), and after a crash it starts over.

use super::super::array::ArrayWriter;
use super::super::core::{array_pages, Core, CoreAlloc, Frees, Mode};
use super::super::failpoint;
use super::super::sets::{Compose, Fold};
use super::super::source::{settled, Source};
use super::super::space::Work;
use super::super::table::scan::{change_into, pairs, set_into, Scan};
use super::super::table::write::{depth_for, TableWriter, Values};
use super::policy::Plan;
use crate::error::{Error, Result};
use crate::format::bucket::INLINE_MAX;
use crate::format::hash::{dir_index, Range};
use crate::format::layout::PAGE;
use crate::format::root::Root;
use crate::format::table::{Kind, TableRef};
use crate::store::Positional;
use crate::{Key, Value};

/// Bytes of new table written between two published cursors (or, merging delta tables,
/// between two looks at whether the writer is stopping).
const STEP: u64 = 64 << 20;
/// Tables a merge reads at most: the base and every delta table a root can list.
const MAX_SOURCES: usize = 1 + crate::format::layout::MAX_RUNS;

/// What a merge makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    /// A new base from the base and the oldest `k` delta tables.
    Base { k: usize },
    /// One delta table from `deltas[from..to]`.
    Deltas { from: usize, to: usize },
}

/// A merge in progress.
pub struct Merge<'a> {
    core: &'a Core,
    target: Target,
    w: TableWriter,
    /// The tables merged, oldest first (the base first when merging into it), each with the
    /// hash and key of its next entry.
    srcs: Vec<(Scan<'a>, Option<(u64, Key)>)>,
    /// The merged delta tables, to find them in the root when the merge is published.
    merged: Vec<TableRef>,
    /// The old tables' segments not freed yet, by their last hash, descending (the next to
    /// free last).
    old: Vec<(u64, u64)>,
    /// Buffers kept from key to key: the key's set as folded or its changes as composed, and
    /// a delta entry's values.
    fold: Fold,
    compose: Compose,
    vals: Vec<Value>,
}

impl<'a> Merge<'a> {
    /// Starts the merge `plan` says (`Plan::Base` carries on the one `root` records, if any).
    pub fn open(
        core: &'a Core,
        root: &Root,
        plan: Plan,
        hint: &'a dyn Fn(u64, u64),
    ) -> Result<Merge<'a>> {
        let src: &dyn Source = &core.file;
        let epoch = root.epoch;
        let (target, w, cursor) = match plan {
            Plan::Base if root.merging.is_some() => {
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
                let k = root.merged as usize;
                (
                    Target::Base { k },
                    TableWriter::resume(&t, cursor, dir, segs),
                    cursor,
                )
            }
            Plan::Base => {
                let k = root.deltas.len();
                let tables = [root.base].into_iter().chain(root.deltas.iter().copied());
                let w = new_writer(core, Kind::Base, tables, None);
                (Target::Base { k }, w, 0)
            }
            Plan::Deltas(from, to) => {
                // Tables that each got a filter for holding mostly keys of their own hold
                // them together too.
                let tables = root.deltas[from..to].iter();
                let keys = tables.clone().map(|t| t.entries).sum();
                let filter = tables.clone().all(|t| t.filter_words() > 0).then_some(keys);
                let w = new_writer(core, Kind::Delta, tables.copied(), filter);
                (Target::Deltas { from, to }, w, 0)
            }
            Plan::Adopt => unreachable!("adopting a table merges nothing"),
        };
        let (base, merged) = match target {
            Target::Base { k } => (Some(root.base), root.deltas[..k].to_vec()),
            Target::Deltas { from, to } => (None, root.deltas[from..to].to_vec()),
        };
        let mut srcs = Vec::new();
        let mut old = Vec::new();
        if base.is_some_and(|b| !b.is_some()) {
            // Source 0 is the base: an empty one.
            srcs.push((settled(Scan::empty(src))?, None));
        }
        for t in base.iter().chain(&merged).filter(|t| t.is_some()) {
            let mut scan = settled(Scan::new(src, *t, epoch, cursor, Some(hint)))?;
            let head = settled(scan.head())?;
            srcs.push((scan, head));
            let segs = pairs(&settled(super::super::array::load(src, t.segs, epoch))?.0);
            old.extend(segs.into_iter().filter(|s| s.1 >= cursor));
        }
        if srcs.len() > MAX_SOURCES {
            return Err(Error::corrupt(
                "root",
                0,
                format!("a merge of {} tables", srcs.len()),
            ));
        }
        old.sort_unstable_by_key(|s| std::cmp::Reverse(s.1));
        core.merge_progress.at_hash(cursor);
        let m = Merge {
            core,
            target,
            w,
            srcs,
            merged,
            old,
            fold: Fold::default(),
            compose: Compose::default(),
            vals: Vec::new(),
        };
        m.mark();
        Ok(m)
    }

    /// Shows this merge's progress and the tables it frees to the commits it paces again
    /// (after a merge of other tables ran between its steps).
    pub fn mark(&self) {
        let frees = match self.target {
            Target::Base { k } => k,
            Target::Deltas { from, to } => to - from - 1,
        };
        self.core
            .merge_frees
            .store(frees as u32, std::sync::atomic::Ordering::Relaxed);
        if let Some((hash, _)) = self.least() {
            self.core.merge_progress.at_hash(hash);
        }
    }

    /// The least (hash, key) any source has next.
    fn least(&self) -> Option<(u64, Key)> {
        self.srcs.iter().filter_map(|(_, h)| *h).min()
    }

    /// Merges until about `STEP` more bytes are written (merging into the base, then
    /// publishes the cursor); true when the merge is complete and published.
    pub fn step(&mut self) -> Result<bool> {
        let mut alloc = CoreAlloc(self.core, Work::Merge);
        let until = self.w.bytes() + STEP;
        let entries = failpoint::merge_step().unwrap_or(u64::MAX);
        let mut done = 0u64;
        while let Some((hash, key)) = self.least() {
            let full = self.w.bytes() >= until || done >= entries;
            if full && self.w.starts_slot(hash) {
                if let Target::Base { .. } = self.target {
                    let slot = dir_index(hash, self.w.depth());
                    let upto = Range::slots(slot, slot, self.w.depth()).lo;
                    self.checkpoint(upto)?;
                }
                return Ok(false);
            }
            self.core.merge_progress.at_hash(hash);
            self.merge_key(hash, &key, &mut alloc)?;
            done += 1;
            failpoint::hit("merge.entry");
        }
        match self.target {
            Target::Base { k } => self.finish_base(k)?,
            Target::Deltas { from, to } => self.finish_deltas(from, to)?,
        }
        Ok(true)
    }

    /// Merges every source's entry of `key` and writes the result; moves those sources on.
    fn merge_key(&mut self, hash: u64, key: &Key, alloc: &mut CoreAlloc) -> Result<()> {
        let file: &dyn Positional = &self.core.file;
        // The sources holding the key, oldest first.
        let mut with = [0usize; MAX_SOURCES];
        let mut n = 0;
        for (i, (_, head)) in self.srcs.iter().enumerate() {
            if *head == Some((hash, *key)) {
                with[n] = i;
                n += 1;
            }
        }
        let with = &with[..n];
        if let [only] = *with {
            // One table has the key: its entry is copied as it is when its values are in
            // the page (a base's set, or values a delta adds).
            let (code, bytes) = self.srcs[only].0.raw();
            if (1..=INLINE_MAX as u8).contains(&code) {
                self.w
                    .add(file, alloc, hash, key, Values::Raw(code, bytes))?;
                return self.advance(with);
            }
        }
        match self.target {
            Target::Base { .. } => {
                let fold = &mut self.fold;
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
            }
            Target::Deltas { .. } => {
                let compose = &mut self.compose;
                compose.clear();
                for &i in with {
                    let scan = &self.srcs[i].0;
                    let body = settled(scan.body())?;
                    let (cleared, adds) = settled(change_into(scan, &body, &mut self.vals))?;
                    compose.change(cleared, &self.vals[..adds], &self.vals[adds..]);
                }
                let c = compose.finish();
                if c.cleared || !c.adds.is_empty() || !c.dels.is_empty() {
                    self.w.add(file, alloc, hash, key, Values::Change(c))?;
                }
            }
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

    /// Space the merge stops referencing, and the merge's pending space settled.
    fn frees(&mut self) -> Frees {
        Frees {
            pages: self.w.take_retired(),
            settles: Some(Work::Merge),
            ..Frees::default()
        }
    }

    /// Publishes the new base table up to `upto` (a slot boundary no entry written is past)
    /// and frees the old segments wholly below it.
    fn checkpoint(&mut self, upto: u64) -> Result<()> {
        let Target::Base { k } = self.target else {
            unreachable!("only a merge into the base publishes steps")
        };
        let mut alloc = CoreAlloc(self.core, Work::Merge);
        let t = self.w.checkpoint(&self.core.file, &mut alloc, upto)?;
        failpoint::hit("merge.step_written");
        let mut frees = self.frees();
        while self.old.last().is_some_and(|s| s.1 < upto) {
            frees.runs.push((self.old.pop().expect("checked").0, 1));
        }
        let mut st = self.core.publisher_synced()?;
        let mut next = st.root.clone();
        next.merging = t;
        next.cursor = upto;
        next.merged = k as u32;
        self.core.publish(&mut st, next, frees, Mode::Durable)?;
        failpoint::hit("merge.step_published");
        Ok(())
    }

    /// Writes the rest of the new table; the old tables' space is freed by the root that
    /// publishes it.
    fn finish_table(&mut self) -> Result<(TableRef, Frees)> {
        let mut alloc = CoreAlloc(self.core, Work::Merge);
        let t = self.w.finish(&self.core.file, &mut alloc)?;
        let mut frees = self.frees();
        frees.runs.extend(self.old.drain(..).map(|s| (s.0, 1)));
        Ok((t, frees))
    }

    /// Frees the arrays of the tables a root stops referencing.
    fn free_arrays(&self, tables: &[TableRef], max_epoch: u64, frees: &mut Frees) -> Result<()> {
        for t in tables.iter().filter(|t| t.is_some()) {
            frees
                .pages
                .extend(array_pages(&self.core.file, t.dir, max_epoch)?);
            frees
                .pages
                .extend(array_pages(&self.core.file, t.segs, max_epoch)?);
        }
        Ok(())
    }

    /// Makes the new table the base; the old base and the merged delta tables are freed.
    fn finish_base(&mut self, k: usize) -> Result<()> {
        let (t, mut frees) = self.finish_table()?;
        failpoint::hit("merge.written");
        // Read before the lock (only this thread replaces the base and removes delta tables).
        let (gone, epoch) = {
            let r = &self.core.st.lock().root;
            let gone = [r.base].into_iter().chain(r.deltas[..k].iter().copied());
            (gone.collect::<Vec<TableRef>>(), r.epoch)
        };
        self.free_arrays(&gone, epoch, &mut frees)?;
        let mut st = self.core.publisher_synced()?;
        let mut next = st.root.clone();
        next.deltas.drain(..k);
        next.base = t;
        next.merging = TableRef::default();
        next.cursor = 0;
        next.merged = 0;
        self.core.publish(&mut st, next, frees, Mode::Durable)?;
        failpoint::hit("merge.published");
        Ok(())
    }

    /// Puts the new delta table in the place of the ones it merges (or, if all their changes
    /// cancel out, none), which are freed.
    fn finish_deltas(&mut self, from: usize, to: usize) -> Result<()> {
        let (t, mut frees) = self.finish_table()?;
        failpoint::hit("merge.deltas_written");
        let epoch = self.core.st.lock().root.epoch;
        self.free_arrays(&self.merged, epoch, &mut frees)?;
        let mut st = self.core.publisher_synced()?;
        let mut next = st.root.clone();
        // Only this thread removes delta tables, so they are where the merge found them.
        if next.deltas.get(from..to) != Some(&self.merged[..]) {
            return Err(Error::corrupt(
                "root",
                0,
                "the delta tables being merged moved under the merge",
            ));
        }
        let keep = (t.entries > 0).then_some(t);
        next.deltas.splice(from..to, keep);
        if keep.is_none() {
            let (segs, pages) = self.w.written_space();
            frees.runs.extend(segs.into_iter().map(|s| (s, 1)));
            frees.pages.extend(pages);
        }
        self.core.publish(&mut st, next, frees, Mode::Durable)?;
        failpoint::hit("merge.deltas_published");
        Ok(())
    }
}

impl Drop for Merge<'_> {
    fn drop(&mut self) {
        self.core
            .merge_frees
            .store(0, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A writer for the table merged from `tables`, sized by their entries, with a key filter
/// for `filter` keys when given.
fn new_writer(
    core: &Core,
    kind: Kind,
    tables: impl Iterator<Item = TableRef>,
    filter: Option<u64>,
) -> TableWriter {
    let bytes = tables.map(|t| entry_bytes(&t)).sum();
    let id = core.st.lock().new_table_id();
    TableWriter::new(kind, id, depth_for(bytes), filter)
}

/// Bytes of a table's entries at most (to size the table merged from it): what its pages
/// hold, or for a table of few keys what that many of the longest entries take.
fn entry_bytes(t: &TableRef) -> u64 {
    let longest = crate::format::bucket::body_size(&crate::format::bucket::Body::Few(
        vec![[0; 16]; crate::format::bucket::INLINE_MAX].into(),
    )) as u64;
    (t.pages * PAGE as u64).min(t.entries * longest)
}

/// Makes the oldest delta table the base as it is, without rewriting it: when there is no
/// base table (or an empty one) and that table only adds values (`Plan::Adopt`), so a bulk
/// load into a new file writes its first table once.
pub fn adopt(core: &Core) -> Result<()> {
    // Read before the lock (only the merge thread replaces the base).
    let (old, epoch) = {
        let r = &core.st.lock().root;
        (r.base, r.epoch)
    };
    let mut frees = Frees::default();
    if old.is_some() {
        frees.pages.extend(array_pages(&core.file, old.dir, epoch)?);
        frees
            .pages
            .extend(array_pages(&core.file, old.segs, epoch)?);
        let segs = pairs(&settled(super::super::array::load(&core.file, old.segs, epoch))?.0);
        frees.runs.extend(segs.into_iter().map(|s| (s.0, 1)));
    }
    let mut st = core.publisher();
    let mut next = st.root.clone();
    let t = next.deltas.remove(0);
    next.base = TableRef {
        kind: Kind::Base,
        ..t
    };
    core.publish(&mut st, next, frees, Mode::Durable)?;
    failpoint::hit("merge.published");
    Ok(())
}
