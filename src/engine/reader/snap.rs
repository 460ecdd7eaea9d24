//! A snapshot: one root, views of its tables, and overlays of the log frames that followed it.
//!
//! A key's set under a root is its base set, then the changes of the delta tables (oldest
//! first), then those of the logs. While a merge runs, hashes below its cursor are in the
//! merging table (which holds the base and the merged delta tables), the rest in the base and
//! those delta tables. A lookup goes newest first and stops at a change that drops the earlier
//! values.

use super::super::delta::Delta;
use super::super::overlay::{Log, Overlay};
use super::super::sets::{Change, Fold};
use super::super::source::{Fault, Res, Source};
use super::super::table::scan::{
    change_into, change_of, read_values_into, set_into, set_of, Item, Scan,
};
use super::super::wal::{self, Cursor};
use super::hold::Hold;
use super::view::{misplaced, Ctx, Known, TableView};
use crate::error::{Error, Result};
use crate::format::bucket::{Body, Mark};
use crate::format::hash::key_hash;
use crate::format::layout::{ROOT_SLOT, SEGMENT};
use crate::format::root::{self, LogRef, Root};
use crate::format::table::{Kind, TableRef};
use crate::store::{Mmap, ReadFile, ReaderTable};
use crate::{Key, Value};
use std::sync::Arc;

/// Bytes of a set's extent a batch loads into the CPU caches ahead of copying it: the rest
/// streams in behind the copy.
const SET_LINES: usize = 4096;

/// What the stages of a batch learned of a key before its search, in the same snapshot.
#[derive(Clone, Copy, Default)]
pub struct Learned {
    /// Where the search starts in the last table's page.
    pub mark: Option<Mark>,
    /// The tables of the key's chain whose key filters ruled it out ([`filter_bit`]), when
    /// the filters were consulted: the search reads none of them again.
    pub ruled: Option<u64>,
}

/// The bit of [`Learned::ruled`] for the last table of a chain.
const LAST: u64 = 1 << 63;

/// The bit of [`Learned::ruled`] for the `j`-th delta table of a chain, newest first (none
/// past the 63rd: those are searched whatever their filter says).
fn filter_bit(j: usize) -> u64 {
    if j < 63 {
        1 << j
    } else {
        0
    }
}

/// What settles a key's set.
pub enum Newest {
    /// No entry and no logged change: no values.
    None,
    /// A base entry alone: its values are the set.
    Base(Body),
    /// Changes to fold, from the logs or delta tables.
    Fold,
}

/// A log and the overlay of its frames read so far.
#[derive(Clone)]
pub struct LogView {
    pub log: LogRef,
    pub chunks: Arc<Vec<u64>>,
    pub overlay: Overlay,
    pub cursor: Cursor,
}

impl LogView {
    fn new(log: LogRef, in_place: bool) -> LogView {
        LogView {
            log,
            chunks: Arc::new(wal::chunks(&log)),
            overlay: Overlay::new(in_place && log.bytes <= u32::MAX as u64),
            cursor: Cursor::start(&log),
        }
    }

    fn source<'a>(&'a self, map: &'a Mmap) -> Log<'a> {
        Log {
            src: map,
            chunks: &self.chunks,
        }
    }

    /// This view with the frames written after its cursor applied.
    fn extended(&self, map: &Mmap) -> Result<LogView> {
        let (overlay, cursor) = self.overlay.extended(&self.source(map), self.cursor)?;
        Ok(LogView {
            overlay,
            cursor,
            ..self.clone()
        })
    }
}

pub struct Snap {
    pub map: Arc<Mmap>,
    pub root: Root,
    pub base: Option<Arc<TableView>>,
    /// The merge's new table and its cursor.
    pub merging: Option<(Arc<TableView>, u64)>,
    /// Delta tables, oldest first; the first `root.merged` are in the merge.
    pub deltas: Vec<Arc<TableView>>,
    pub sealed: Option<LogView>,
    pub current: LogView,
    /// The pin on `root` (shared by every view of it); None when no slot was free.
    pub hold: Option<Arc<Hold>>,
}

/// The newest valid root in the mapping.
fn read_root(map: &Mmap, at: u64) -> Res<Root> {
    let mut slots = vec![0u8; 2 * ROOT_SLOT];
    map.read(at, &mut slots)?;
    root::newest(&slots[..ROOT_SLOT], &slots[ROOT_SLOT..])
        .map_err(|why| Fault::Fail(Error::corrupt("root", at, why)))
}

/// The two root slots are copied one after the other: while the writer publishes two roots in
/// quick succession the copy can pair an old slot with a torn one and find an older root than
/// this reader already has. Going back is never right: read again.
fn check_forward(root: &Root, cur: &Snap) -> Res<()> {
    if root.epoch < cur.root.epoch {
        return Err(Fault::Stale);
    }
    Ok(())
}

/// The view of table `t`: the current snapshot's if it is the same table, unchanged; else
/// loaded, reusing the leaves the current snapshot has.
fn view(
    map: &Mmap,
    t: &TableRef,
    epoch: u64,
    cur: Option<&Snap>,
    known: &Known,
) -> Res<Arc<TableView>> {
    if let Some(v) = cur.and_then(|c| c.tables().find(|v| v.t == *t)) {
        return Ok(v.clone());
    }
    Ok(Arc::new(TableView::load(map, *t, epoch, known)?))
}

impl Snap {
    fn tables(&self) -> impl Iterator<Item = &Arc<TableView>> {
        self.base
            .iter()
            .chain(self.merging.iter().map(|m| &m.0))
            .chain(&self.deltas)
    }

    /// The newest state of the file, reusing what `cur` already has; a new root gets a slot of
    /// `table` (if one is free) to pin it.
    pub fn load(
        file: &ReadFile,
        cur: Option<&Snap>,
        table: Option<&Arc<ReaderTable>>,
    ) -> Res<Snap> {
        let mut map = file.map(0)?;
        if let Some(cur) = cur {
            let root = read_root(&map, file.root_offset())?;
            check_forward(&root, cur)?;
            if root.epoch == cur.root.epoch {
                return Ok(cur.tail(map)?);
            }
        }
        // Pinned while loading at the root we have (0 on open), which no newer root's space can
        // be reused under; the root is read after pinning. Not at 0 on refresh: readers refresh
        // often, and a pin at 0 would keep the writer from reusing anything.
        let slot = table.and_then(|t| t.claim());
        let pinned = slot.filter(|s| s.pin(cur.map_or(0, |c| c.root.epoch)));
        let root = read_root(&map, file.root_offset())?;
        if let Some(cur) = cur {
            check_forward(&root, cur)?;
        }
        map = file.map(root.data_offset + root.segments_used * SEGMENT)?;
        let epoch = root.epoch;
        let bytes = root.segments_used * SEGMENT;
        let hold = pinned
            .and_then(|s| Hold::new(s, epoch, root.data_offset, bytes))
            .map(Arc::new);
        let mut known = Known::new();
        if let Some(c) = cur {
            c.tables().for_each(|v| v.remember(&mut known));
        }
        let base = match root.base.is_some() {
            true => Some(view(&map, &root.base, epoch, cur, &known)?),
            false => None,
        };
        let merging = match root.merging.is_some() {
            true => Some((view(&map, &root.merging, epoch, cur, &known)?, root.cursor)),
            false => None,
        };
        let deltas = root
            .deltas
            .iter()
            .map(|t| view(&map, t, epoch, cur, &known))
            .collect::<Res<Vec<_>>>()?;
        let in_place = hold.is_some();
        // A log the current snapshot already follows is taken over with what it has read.
        let logs: Vec<&LogView> = cur
            .map(|c| c.sealed.iter().chain([&c.current]).collect())
            .unwrap_or_default();
        let reuse = |l: &LogRef| -> LogView {
            match logs.iter().find(|v| v.log == *l) {
                Some(v) => (*v).clone(),
                None => LogView::new(*l, in_place),
            }
        };
        let sealed = root.sealed.as_ref().map(|s| reuse(&s.log));
        let current = reuse(&root.log);
        let base = Snap {
            map: map.clone(),
            root,
            base,
            merging,
            deltas,
            sealed,
            current,
            hold,
        };
        Ok(base.tail(map)?)
    }

    /// This snapshot with the log frames written after its cursors applied.
    fn tail(&self, map: Arc<Mmap>) -> Result<Snap> {
        let sealed = match &self.sealed {
            Some(s) => Some(s.extended(&map)?),
            None => None,
        };
        Ok(Snap {
            map: map.clone(),
            root: self.root.clone(),
            base: self.base.clone(),
            merging: self.merging.clone(),
            deltas: self.deltas.clone(),
            sealed,
            current: self.current.extended(&map)?,
            hold: self.hold.clone(),
        })
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            map: &self.map,
            epoch: self.root.epoch,
            hold: self.hold.as_deref(),
        }
    }

    /// The key's delta in the logs, sealed then current, composed.
    pub fn log_delta(&self, key: &Key) -> Res<Option<Delta>> {
        if self.current.overlay.is_empty()
            && self.sealed.as_ref().is_none_or(|l| l.overlay.is_empty())
        {
            return Ok(None);
        }
        let mut out: Option<Delta> = None;
        for l in self.sealed.iter().chain([&self.current]) {
            if let Some(d) = l.overlay.delta(key, &l.source(&self.map))? {
                out.get_or_insert_with(Delta::default).then(&d);
            }
        }
        Ok(out)
    }

    /// Tables consulted for hash `h`, newest first, ending with the base (or merging) table.
    fn chain(&self, h: u64) -> impl Iterator<Item = &TableView> {
        self.changes(h).chain(self.last(h))
    }

    /// [`Snap::chain`] without its last table: the delta tables for hash `h`, newest first.
    fn changes(&self, h: u64) -> impl Iterator<Item = &TableView> {
        let merged = self.root.merged as usize;
        let below = self.merging.as_ref().is_some_and(|(_, c)| h < *c);
        let newer = self.deltas[merged..].iter().rev();
        let in_merge = self.deltas[..merged].iter().rev().filter(move |_| !below);
        newer.chain(in_merge).map(|v| &**v)
    }

    /// The last table of [`Snap::chain`]: the base table, or the merge's below its cursor.
    fn last(&self, h: u64) -> Option<&TableView> {
        match &self.merging {
            Some((m, c)) if h < *c => Some(&**m),
            _ => self.base.as_deref(),
        }
    }

    /// The tables of [`Snap::chain`], each with its bit of [`Learned::ruled`].
    fn tables_for(&self, h: u64) -> impl Iterator<Item = (u64, &TableView)> {
        let changes = self.changes(h).enumerate().map(|(j, v)| (filter_bit(j), v));
        changes.chain(self.last(h).map(|v| (LAST, v)))
    }

    /// `v.find` (`bit` its place in the chain), from the mark when `v` is the last table,
    /// the table the mark was taken in; None at once when its filter ruled the key out.
    fn find(
        &self,
        cx: &Ctx,
        (bit, v): (u64, &TableView),
        h: u64,
        key: &Key,
        learned: Learned,
    ) -> Res<Option<Body>> {
        if learned.ruled.is_some_and(|r| r & bit != 0) {
            return Ok(None);
        }
        let mark = learned.mark.filter(|_| bit == LAST);
        v.find(cx, h, key, mark, learned.ruled.is_some())
    }

    /// The key's entries in the tables for it, newest first, up to one that drops the
    /// earlier values (a base entry does).
    fn entries(&self, h: u64, key: &Key, learned: Learned) -> Res<Vec<(Body, bool)>> {
        let cx = self.ctx();
        let mut out = Vec::new();
        for t in self.tables_for(h) {
            let base = t.1.t.kind == Kind::Base;
            if let Some(b) = self.find(&cx, t, h, key, learned)? {
                let stops = base || matches!(b, Body::Delta(d) if d.cleared);
                out.push((b, base));
                if stops {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Starts loading the lines of the key's page in the table most likely to hold it; with
    /// delta tables, those of its page in every table, all at once, in the stages of a
    /// batch's search: a search that reads a page of each table then waits for one miss, not
    /// one per table. Returns what the key filters said, for the search.
    fn warm(&self, h: u64) -> Learned {
        if self.chain(h).nth(1).is_some() {
            self.warm_first(h);
            return Learned {
                mark: None,
                ruled: Some(self.warm_pages(h)),
            };
        }
        match self.last(h) {
            Some(v) if self.current.overlay.large() => Learned {
                mark: None,
                ruled: Some(if v.warm(&self.ctx(), h) { 0 } else { LAST }),
            },
            _ => Learned::default(),
        }
    }

    pub fn all(&self, key: &Key) -> Res<Vec<Value>> {
        let h = key_hash(key);
        let learned = self.warm(h);
        let d = self.log_delta(key)?;
        if d.as_ref().is_some_and(|d| d.cleared) {
            return Ok(Change::of(d.as_ref().expect("checked")).adds);
        }
        let entries = self.entries(h, key, learned)?;
        // Every entry's extent starts loading before the first is read: their misses overlap
        // instead of following one another.
        for (off, n) in entries.iter().filter_map(|(b, _)| b.extent()) {
            let len = usize::try_from(n).unwrap_or(usize::MAX).saturating_mul(16);
            self.map.prefetch(off, len.min(SET_LINES));
        }
        let src: &dyn Source = &*self.map;
        let mut fold = Fold::default();
        let mut vals = Vec::new();
        for (body, base) in entries.iter().rev() {
            if *base {
                set_into(src, body, fold.set_mut())?;
                continue;
            }
            let (cleared, adds) = change_into(src, body, &mut vals)?;
            let (adds, dels) = vals.split_at(adds);
            fold.change(cleared, adds, dels);
        }
        let set = fold.finish();
        Ok(match d {
            Some(d) => Change::of(&d).apply(set),
            None => set.to_vec(),
        })
    }

    /// Starts loading what a search for hash `h` reads first, the first stage of a batch's
    /// pipeline: the key-filter blocks of its tables (the directory items of those without
    /// one).
    pub fn warm_first(&self, h: u64) {
        self.chain(h).for_each(|v| v.warm_first(&self.map, h));
    }

    /// The second stage: starts loading the first lines of the pages for hash `h` of the
    /// tables whose filter does not rule `h` out; returns those that it does rule out, as
    /// [`Learned::ruled`].
    pub fn warm_pages(&self, h: u64) -> u64 {
        // The last table first: its page needs no filter's answer, so its misses start
        // while the filters' lines may still be arriving.
        let cx = self.ctx();
        let mut ruled = 0;
        if self.last(h).is_some_and(|l| !l.warm(&cx, h)) {
            ruled |= LAST;
        }
        for (j, v) in self.changes(h).enumerate() {
            if !v.warm(&cx, h) {
                ruled |= filter_bit(j);
            }
        }
        ruled
    }

    /// Where the search for hash `h` starts in the page of the last table of its chain (the
    /// one most likely to hold it); its entry's lines start loading.
    pub fn mark(&self, h: u64) -> Option<Mark> {
        self.last(h)?.mark(&self.ctx(), h)
    }

    /// Whether the pages a search for hash `h` reads first are in the page cache.
    pub fn resident(&self, h: u64) -> bool {
        self.last(h).is_none_or(|v| v.resident(&self.map, h))
    }

    /// Asks the kernel to read the pages a search for hash `h` reads, without waiting.
    pub fn will_need(&self, h: u64) {
        let cx = self.ctx();
        for v in self.chain(h) {
            v.will_need(&cx, h);
        }
    }

    /// Asks the kernel to read the extent a key's set is in, without waiting; the CPU to load
    /// its first lines when `lines` (the pages being in memory).
    pub fn will_need_set(&self, set: &Newest, lines: bool) {
        if let Newest::Base(Body::Extent(x)) = set {
            let len = usize::try_from(x.count)
                .unwrap_or(usize::MAX)
                .saturating_mul(16);
            match lines {
                true => self.map.prefetch(x.offset, len.min(SET_LINES)),
                false => self.map.will_need(x.offset, len),
            }
        }
    }

    /// What settles the key's set (hash `h`, with what the stages before learned of it).
    pub fn newest(&self, key: &Key, h: u64, learned: Learned) -> Res<Newest> {
        if self.log_delta(key)?.is_some() {
            return Ok(Newest::Fold);
        }
        let cx = self.ctx();
        for t in self.tables_for(h) {
            match self.find(&cx, t, h, key, learned)? {
                None => continue,
                Some(b) if t.1.t.kind == Kind::Base => return Ok(Newest::Base(b)),
                Some(_) => return Ok(Newest::Fold),
            }
        }
        Ok(Newest::None)
    }

    /// The key's set written to the start of `out` when it fits (else `out` is left
    /// unspecified); returns how many values it has.
    pub fn all_into(&self, key: &Key, out: &mut [Value]) -> Res<usize> {
        let h = key_hash(key);
        let learned = self.warm(h);
        let set = self.newest(key, h, learned)?;
        self.set_into(key, set, out)
    }

    /// [`Snap::all_into`] once [`Snap::newest`] said what settles the set. A set that only a
    /// base entry holds goes from the mapping straight into `out`, checked there.
    pub fn set_into(&self, key: &Key, set: Newest, out: &mut [Value]) -> Res<usize> {
        let body = match set {
            Newest::None => return Ok(0),
            Newest::Base(body) => body,
            Newest::Fold => {
                let set = self.all(key)?;
                if let Some(dst) = out.get_mut(..set.len()) {
                    dst.copy_from_slice(&set);
                }
                return Ok(set.len());
            }
        };
        self.base_into(body, out)
    }

    /// A base entry's set written to the start of `out` when it fits; its count.
    fn base_into(&self, body: Body, out: &mut [Value]) -> Res<usize> {
        if let Body::Extent(x) = body {
            let n = usize::try_from(x.count).unwrap_or(usize::MAX);
            if let Some(dst) = out.get_mut(..n) {
                // All its lines asked for at once, so that their misses overlap.
                self.map.prefetch(x.offset, n * 16);
                read_values_into(&*self.map, x.offset, x.crc, dst)?;
            }
            return Ok(n);
        }
        let vs = body
            .inline_values()
            .ok_or_else(|| misplaced("a change in a base table"))?;
        if let Some(dst) = out.get_mut(..vs.len()) {
            dst.copy_from_slice(vs);
        }
        Ok(vs.len())
    }

    /// One value of the key, or None.
    pub fn first(&self, key: &Key) -> Res<Option<Value>> {
        let h = key_hash(key);
        let learned = self.warm(h);
        self.first_from(key, h, learned)
    }

    /// [`Snap::first`] of a key of hash `h`, with what the stages before learned of it. The
    /// newest change that adds values settles it without reading older tables: nothing newer
    /// removed what it added.
    pub fn first_from(&self, key: &Key, h: u64, learned: Learned) -> Res<Option<Value>> {
        match self.log_delta(key)? {
            Some(d) if d.adds.iter().next().is_some() => return Ok(d.adds.iter().next().copied()),
            Some(d) if d.cleared => return Ok(None),
            Some(_) => return Ok(self.all(key)?.first().copied()),
            None => {}
        }
        let cx = self.ctx();
        for t in self.tables_for(h) {
            match self.find(&cx, t, h, key, learned)? {
                None => continue,
                Some(Body::Delta(d)) if d.adds == 0 && d.cleared => return Ok(None),
                Some(Body::Delta(_)) => return Ok(self.all(key)?.first().copied()),
                Some(b) => {
                    return b
                        .first()
                        .map(Some)
                        .ok_or_else(|| misplaced("an entry without values"))
                }
            }
        }
        Ok(None)
    }

    /// Calls `f` on every key with values, in (hash, key) order, after `after` (the last key
    /// it was called on, for a scan going on after a refresh); updates `after` as it goes and
    /// returns false when `f` asked to stop.
    pub fn scan(
        &self,
        after: &mut Option<(u64, Key)>,
        f: &mut impl FnMut(&Key, &[Value]) -> bool,
    ) -> Res<bool> {
        let src: &dyn Source = &*self.map;
        let from = after.map_or(0, |a| a.0);
        let cursor = self.merging.as_ref().map(|m| m.1);
        // Sources, oldest first; each with the hashes it answers for.
        let merged = self.root.merged as usize;
        let mut tables: Vec<(&TableView, u64, u64)> = Vec::new();
        if let Some((m, c)) = &self.merging {
            tables.push((m, 0, *c));
        }
        if let Some(b) = &self.base {
            tables.push((b, cursor.unwrap_or(0), u64::MAX));
        }
        for (i, d) in self.deltas.iter().enumerate() {
            let lo = if i < merged { cursor.unwrap_or(0) } else { 0 };
            tables.push((d, lo, u64::MAX));
        }
        let mut scans = Vec::new();
        for (v, lo, hi) in &tables {
            let mut s = Scan::new(src, v.t, self.root.epoch, from.max(*lo), None)?;
            let head = next_below(&mut s, *hi)?;
            scans.push((s, head, *hi, v.t.kind == Kind::Base));
        }
        let mut logged = self.log_keys()?;
        logged.retain(|(h, k)| after.is_none_or(|a| (*h, *k) > a));
        logged.sort_unstable();
        let mut li = 0;
        loop {
            let table_min = scans
                .iter()
                .filter_map(|s| s.1.as_ref().map(|i| (i.hash, i.key)))
                .min();
            let log_min = logged.get(li).copied();
            let Some((h, key)) = [table_min, log_min].into_iter().flatten().min() else {
                return Ok(true);
            };
            if log_min == Some((h, key)) {
                li += 1;
            }
            // Fold the tables' entries, oldest first (the order of `scans`), then the logs'.
            let mut set: Vec<Value> = Vec::new();
            for (s, head, hi, base) in &mut scans {
                if head.as_ref().is_some_and(|i| i.hash == h && i.key == key) {
                    let item = head.take().expect("checked");
                    let c = match base {
                        true => Change {
                            cleared: true,
                            adds: set_of(src, &item.body)?,
                            dels: Vec::new(),
                        },
                        false => change_of(src, &item.body)?,
                    };
                    set = c.apply(&set);
                    *head = next_below(s, *hi)?;
                }
            }
            if let Some(d) = self.log_delta(&key)? {
                set = Change::of(&d).apply(&set);
            }
            let done = after.is_some_and(|a| (h, key) <= a);
            if !done && !set.is_empty() {
                *after = Some((h, key));
                if !f(&key, &set) {
                    return Ok(false);
                }
            }
        }
    }

    /// Every key the logs change, with its hash.
    fn log_keys(&self) -> Res<Vec<(u64, Key)>> {
        let mut keys = std::collections::HashSet::new();
        for l in self.sealed.iter().chain([&self.current]) {
            keys.extend(l.overlay.keys(&l.source(&self.map))?);
        }
        Ok(keys.into_iter().map(|k| (key_hash(&k), k)).collect())
    }

    /// Bytes read of the log commits append to.
    pub fn log_pos(&self) -> u64 {
        self.current.cursor.pos
    }
}

fn next_below(s: &mut Scan, hi: u64) -> Res<Option<Item>> {
    Ok(s.next()?.filter(|i| i.hash < hi || hi == u64::MAX))
}
