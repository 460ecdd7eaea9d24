//! Checkpoint: merge the memtable into bucket pages and extents copy-on-write, cut the merged
//! entries into full pages at directory-slot boundaries, merge small pages with a neighbour,
//! resize the directory, write the directory, free lists and WAL map, then publish the new
//! root — the one atomic step. Nothing the previous root references is overwritten.

use super::array::{self, Shape};
use super::failpoint;
use super::memtable::Delta;
use super::oplog::OpLog;
use super::pages::{adjacent, PageBatch, PagePool};
use super::source::{settled, Source};
use super::state::State;
use super::valueset::Values;
use super::wal::Cursor;
use crate::error::{Error, Result};
use crate::format::bucket::{self, Entry, Span, INLINE_MAX};
use crate::format::hash::{dir_index, Range};
use crate::format::layout::{BLOB_CHUNK, PAGE, ROOT_SLOT};
use crate::format::page::{seal, Page, HEADER, MAGIC_BUCKET};
use crate::format::root::{Root, LOG_MOVES};
use crate::store::{Ds, Positional, RawIo, WriterFile};
use crate::Key;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{mpsc, Arc};

/// Directory value of a bucket rebuilt by the running checkpoint and not yet written: this bit
/// (never set in a file offset) with the bucket's number.
const PENDING: u64 = 1 << 63;
/// Finest directory: 2^32 slots (a page records its range in 32-bit prefixes).
const MAX_DEPTH: u32 = 32;
/// Pages are cut at slot boundaries, so slots stay small enough for pages to be cut close to
/// full: the directory doubles when the table's entries would fill its slots with more than
/// this (bytes) on average, or one slot with more than a page. (Doubling whenever some slot
/// passed a limit would double a large table's directory once more for a rare outlier.)
const SLOT_AVG: u64 = PAGE as u64 / 4;
/// Page bytes of a one-value key (tag word, key, value): what a new key is estimated at.
const NEW_KEY_BYTES: u64 = 34;
/// Bytes the window of rebuilt entries holds before a page is cut off its front.
const WINDOW: usize = 2 * PAGE;
/// Buckets passed between the checkpoint's threads in one message (fewer wake-ups) …
const HANDOFF: usize = 64;
/// … and messages each queue holds: how far the page reader may run ahead of the merge, and
/// how far the page writer may lag behind it.
const AHEAD: usize = 8;
/// Parts of `HANDOFF` buckets whose pages the read thread has asked the kernel for ahead of
/// reading them (1024 pages, 4 MiB): enough requests in flight to keep the device busy.
const PREFETCH_PARTS: usize = 16;
/// A bucket this small (bytes) looks for a neighbour to merge with …
const MERGE_BELOW: usize = PAGE / 4;
/// … and merges when both together need at most this.
const MERGE_UPTO: usize = PAGE / 2;

pub struct Checkpoint<'a> {
    file: &'a mut WriterFile,
    st: &'a mut State,
    epoch: u64,
    batch: PageBatch,
    /// Small rebuilt buckets (unsealed pages) by directory value, kept back for the merge pass.
    pending: HashMap<u64, (Range, Box<Page>)>,
    /// Numbers the pending buckets.
    pending_ids: u64,
    /// Rebuilt entries not yet cut into pages.
    window: Window,
    /// Pages this checkpoint wrote (not readable until it publishes).
    written: HashSet<u64>,
    dir_resized: bool,
    /// Where rebuilt buckets go while `rebuild` runs: gathered here, then sent on to its
    /// page-writing thread.
    sink: Option<(Built, mpsc::SyncSender<Built>)>,
    /// Page buffers shared with the helper threads.
    pool: Arc<PagePool>,
    keys: i64,
    values: i64,
    buckets: i64,
    extents: i64,
}

/// Runs a checkpoint of `mem`; `wal` is the log after the last commit and `wal_bytes` the
/// capacity the log must have afterwards. On success the log restarts (new generation, pos 0).
pub fn run(
    file: &mut WriterFile,
    st: &mut State,
    mem: &mut OpLog,
    wal: &mut Cursor,
    wal_bytes: u64,
    sync: bool,
) -> Result<()> {
    let epoch = st.root.epoch + 1;
    let mut cp = Checkpoint {
        file,
        st,
        epoch,
        batch: PageBatch::default(),
        pending: HashMap::new(),
        pending_ids: 0,
        window: Window::default(),
        written: HashSet::new(),
        dir_resized: false,
        sink: None,
        pool: Arc::default(),
        keys: 0,
        values: 0,
        buckets: 0,
        extents: 0,
    };
    cp.rebuild(mem)?;
    cp.merge_small()?;
    cp.write_buckets()?;
    cp.halve();
    cp.next_wal(wal_bytes)?;
    let root = cp.write_metadata(wal)?;
    failpoint::hit("checkpoint.metadata_built");
    cp.publish(root, sync)?;
    *wal = Cursor {
        gen: wal.gen + 1,
        lsn: wal.lsn,
        pos: 0,
    };
    Ok(())
}

impl Checkpoint<'_> {
    fn gd(&self) -> u32 {
        self.st.root.global_depth
    }

    /// The buckets the memtable's ops fall into, in hash order (from the directory as it is
    /// now: a rebuild only changes the slots of buckets already behind it).
    /// Also returns how many distinct hashes the ops have (about the keys they touch).
    fn runs(&self, mem: &OpLog) -> (Vec<Bucket>, u64) {
        let (mut runs, mut keys, mut last) = (Vec::<Bucket>::new(), 0, None);
        for h in mem.hashes() {
            keys += u64::from(last != Some(h));
            last = Some(h);
            if !runs.last().is_some_and(|b| b.range.contains(h)) {
                runs.push(self.bucket_at(h));
            }
        }
        (runs, keys)
    }

    /// Bytes the table's entries take in pages, estimated from its counts as they stand
    /// during the merge (a set in an extent is counted as `INLINE_MAX` values).
    fn table_bytes(&self) -> u64 {
        let keys = add(self.st.root.keys, self.keys);
        let values = add(self.st.root.values, self.values).min(keys * INLINE_MAX as u64);
        (NEW_KEY_BYTES - 16) * keys + 16 * values
    }

    /// Whether the directory's slots would hold more than `SLOT_AVG` of `bytes` each.
    fn slots_too_few(&self, bytes: u64) -> bool {
        self.gd() < MAX_DEPTH && bytes > SLOT_AVG << self.gd()
    }

    /// The bucket covering hash `h`: its directory value and the run of slots that hold it
    /// (a run of empty slots is one bucket without a page).
    fn bucket_at(&self, h: u64) -> Bucket {
        let (dir, gd) = (&self.st.dir, self.gd());
        let i = dir_index(h, gd) as usize;
        let off = dir[i];
        let first = dir[..i]
            .iter()
            .rposition(|e| *e != off)
            .map_or(0, |j| j + 1);
        let last = dir[i..]
            .iter()
            .position(|e| *e != off)
            .map_or(dir.len(), |j| i + j)
            - 1;
        Bucket {
            off,
            range: Range::slots(first as u64, last as u64, gd),
        }
    }

    /// Applies the memtable bucket by bucket, in hash order, on three threads: one reads and
    /// decodes the old pages ahead, this one merges and cuts new pages, one encodes and
    /// writes the new pages. Every page is written when this returns.
    fn rebuild(&mut self, mem: &mut OpLog) -> Result<()> {
        mem.sort();
        let mem = &*mem;
        let (runs, touched) = self.runs(mem);
        // Sized up front for the keys the log may add, so that the first pages cut are
        // cut as finely as the last (`runs` holds hash ranges, which doubling keeps valid).
        while self.slots_too_few(self.table_bytes() + NEW_KEY_BYTES * touched) {
            self.double();
        }
        let (rio, wio) = (self.file.raw_io()?, self.file.raw_io()?);
        let (max, epoch) = (self.st.root.epoch, self.epoch);
        std::thread::scope(|s| {
            let (old_tx, old_rx) = mpsc::sync_channel(AHEAD);
            let (new_tx, new_rx) = mpsc::sync_channel(AHEAD);
            let (rio, wio, runs_ref) = (&rio, &wio, &runs);
            let (rpool, wpool) = (self.pool.clone(), self.pool.clone());
            let path = self.file.path();
            let reader = helper(s, "hashdir-ckpt-rd", path, move || {
                read_ahead(rio, runs_ref, max, &rpool, old_tx)
            })?;
            let writer = helper(s, "hashdir-ckpt-wr", path, move || {
                write_behind(wio, epoch, &wpool, new_rx)
            })?;
            self.sink = Some((Vec::with_capacity(HANDOFF), new_tx));
            let mut merged = self.merge_runs(mem, &runs, old_rx);
            if let Some((last, tx)) = self.sink.take() {
                merged = merged.and(send(&tx, last, self.file.path()));
            }
            let written = joined(writer, self.file.path());
            let read = joined(reader, self.file.path());
            // The helper's own error explains a merge that stopped because a helper stopped.
            written.and(read).and(merged)
        })
    }

    /// The writer thread's part of `rebuild`: each bucket of `runs` gets its old entries from
    /// the read thread (in the same order), merged with its deltas. The entries of buckets
    /// that follow each other in the hash space go through one window that cuts them into
    /// full pages, so small buckets merge and a bulk load packs its pages.
    fn merge_runs(
        &mut self,
        mem: &OpLog,
        runs: &[Bucket],
        old: mpsc::Receiver<Vec<Result<Old>>>,
    ) -> Result<()> {
        let mut items = mem.deltas().peekable();
        let mut run: Vec<(u64, Key, Delta)> = Vec::new();
        let mut decoded = Vec::new().into_iter();
        let mut end: Option<u64> = None;
        for b in runs {
            if decoded.len() == 0 {
                let path = self.file.path();
                decoded = old
                    .recv()
                    .map_err(|_| stopped(path, "page reader"))?
                    .into_iter();
            }
            let prev: Old = decoded
                .next()
                .ok_or_else(|| stopped(self.file.path(), "page reader"))??;
            if end.is_none_or(|e| e.checked_add(1) != Some(b.range.lo)) {
                if let Some(e) = end {
                    self.cut(Some(e))?;
                }
                self.window.lo = b.range.lo;
            }
            end = Some(b.range.hi);
            run.clear();
            while let Some(x) = items.next_if(|x| b.range.contains(x.0)) {
                run.push(x);
            }
            if b.off != 0 {
                self.st.pages.freed.push(b.off);
                self.buckets -= 1;
            }
            let mut fresh = Vec::new();
            let spans = self.merge(&prev, b.off, &run, &mut fresh)?;
            self.window.add(&spans, &[prev.bytes(), &fresh], b.off != 0);
            if let Some(p) = prev.page {
                self.pool.give(p);
            }
            self.cut(None)?;
        }
        match end {
            Some(e) => self.cut(Some(e)),
            None => Ok(()),
        }
    }

    /// Merge-join of a bucket's old page (at `off`) with the memtable items that fall into it:
    /// the bucket's entries as spans of the old page (source 0) and of `fresh` (source 1: the
    /// entries the items changed or added).
    fn merge(
        &mut self,
        old: &Old,
        off: u64,
        items: &[(u64, Key, Delta)],
        fresh: &mut Vec<u8>,
    ) -> Result<Vec<Span>> {
        let page: &[&[u8]] = &[old.bytes()];
        let mut out = Vec::with_capacity(old.spans.len() + items.len());
        let mut kept = old.spans.iter().copied().peekable();
        let mut vals = Values {
            file: self.file,
            alloc: &mut self.st.extents,
        };
        for (h, k, d) in items {
            let h = *h;
            while let Some(s) = kept.next_if(|s| (s.hash, s.key(page)) < (h, *k)) {
                out.push(s);
            }
            let existing = match kept.next_if(|s| s.hash == h && s.key(page) == *k) {
                Some(s) => Some(bucket::span_entry(&s, page, off)?.1),
                None => None,
            };
            let before = existing.as_ref().map_or(0, |s| s.count());
            let set = vals.apply(h, existing.as_ref(), d)?;
            let after = set.as_ref().map_or(0, |s| s.count());
            self.keys += i64::from(after > 0) - i64::from(before > 0);
            self.values += after as i64 - before as i64;
            self.extents +=
                i64::from(is_extent(set.as_ref())) - i64::from(is_extent(existing.as_ref()));
            if let Some(set) = set {
                let e = Entry {
                    hash: h,
                    key: *k,
                    set,
                };
                out.push(bucket::put_fresh(fresh, 1, &e));
            }
        }
        out.extend(kept);
        Ok(out)
    }

    /// Cuts pages off the front of the window while it holds more than `WINDOW` bytes: each
    /// as full as a page can be cut at a slot boundary. At the end of a run (`end`: its last
    /// hash) it cuts all of it, and balances the last two pages, so that a bucket that just
    /// overflowed becomes two half-full pages rather than a full one and a sliver.
    fn cut(&mut self, end: Option<u64>) -> Result<()> {
        loop {
            let bytes = HEADER + self.window.used;
            match end {
                None if bytes <= WINDOW => return Ok(()),
                Some(hi) if bytes <= PAGE => {
                    let n = self.window.spans.len();
                    return self.emit(n, hi);
                }
                _ => {}
            }
            // A balanced cut needs every boundary; a greedy one only those within a page.
            let whole = end.is_some() && bytes <= 2 * PAGE;
            let cuts = self.slot_cuts(if whole { usize::MAX } else { PAGE })?;
            let fits = |c: &&(usize, usize)| c.1 <= PAGE && bytes - c.1 + HEADER <= PAGE;
            let balanced = cuts
                .iter()
                .filter(fits)
                .min_by_key(|c| c.1.abs_diff(bytes / 2));
            let greedy = cuts.iter().rfind(|c| c.1 <= PAGE);
            let Some(&(k, _)) = balanced.filter(|_| end.is_some()).or(greedy) else {
                return Err(Error::InvalidArgument(
                    "a directory slot outgrew its page".into(),
                ));
            };
            failpoint::hit("checkpoint.split");
            let gd = self.gd();
            let i = dir_index(self.window.spans[k].hash, gd);
            self.emit(k, Range::slots(i, i, gd).lo - 1)?;
        }
    }

    /// Where the window may be cut: before each span that starts a directory slot, as (span
    /// index, bytes of a page holding the spans before it), up to the first boundary past
    /// `limit` bytes. Doubles the directory first while its slots are too large for the table
    /// (`SLOT_AVG`) or one of them for a page, so pages can be cut close to full.
    fn slot_cuts(&mut self, limit: usize) -> Result<Vec<(usize, usize)>> {
        loop {
            let gd = self.gd();
            let spans = &self.window.spans;
            let (mut cuts, mut at, mut start, mut largest) = (Vec::new(), HEADER, HEADER, 0);
            for (i, s) in spans.iter().enumerate() {
                if i > 0 && dir_index(s.hash, gd) != dir_index(spans[i - 1].hash, gd) {
                    if at > limit {
                        break;
                    }
                    cuts.push((i, at));
                    start = at;
                }
                at += s.size();
                largest = largest.max(at - start);
            }
            let too_big = HEADER + largest > PAGE;
            if !too_big && !self.slots_too_few(self.table_bytes()) {
                return Ok(cuts);
            }
            if gd >= MAX_DEPTH {
                if !too_big {
                    return Ok(cuts);
                }
                return Err(Error::InvalidArgument(
                    "more keys than fit a page share their leading 32 hash bits".into(),
                ));
            }
            self.double();
        }
    }

    /// Makes a page of the window's first `n` spans, covering from the window's start to `hi`.
    fn emit(&mut self, n: usize, hi: u64) -> Result<()> {
        let range = Range {
            lo: self.window.lo,
            hi,
        };
        if self.window.joins_before(n) {
            failpoint::hit("checkpoint.merge");
        }
        let spans = &self.window.spans[..n];
        let bytes = bucket::spans_bytes(spans);
        let mut page = self.pool.take();
        bucket::build_into(&mut page, spans, &[&self.window.body], range);
        self.window.drop_front(n);
        self.window.lo = hi.wrapping_add(1);
        self.place(range, page, bytes)
    }

    /// Writes a rebuilt bucket (`bytes` used of its page) now, or keeps it back when it is
    /// small enough to merge.
    fn place(&mut self, range: Range, page: Box<Page>, bytes: usize) -> Result<()> {
        if bytes > MERGE_BELOW {
            return self.write_bucket(range, page);
        }
        let id = PENDING | self.pending_ids;
        self.pending_ids += 1;
        self.set_range(range, id);
        self.pending.insert(id, (range, page));
        Ok(())
    }

    /// Writes a bucket's page (an empty bucket gets none) and points the directory at it.
    fn write_bucket(&mut self, range: Range, mut page: Box<Page>) -> Result<()> {
        let mut off = 0;
        if bucket::header(&page[..]).0 > 0 {
            off = self.st.pages.alloc(self.file)?;
            self.written.insert(off);
            self.buckets += 1;
            match &mut self.sink {
                Some((built, tx)) => {
                    built.push((off, page));
                    if built.len() == HANDOFF {
                        let full = std::mem::replace(built, Vec::with_capacity(HANDOFF));
                        send(tx, full, self.file.path())?;
                    }
                }
                None => {
                    seal(&mut page, MAGIC_BUCKET, self.epoch);
                    self.batch.push(off, page);
                    if self.batch.is_full() {
                        self.batch.write(&*self.file)?;
                    }
                }
            }
        }
        self.set_range(range, off);
        Ok(())
    }

    fn double(&mut self) {
        failpoint::hit("checkpoint.double");
        self.st.dir = self.st.dir.iter().flat_map(|e| [*e, *e]).collect();
        self.st.root.global_depth += 1;
        self.dir_resized = true;
    }

    /// Halves the directory while every page covers whole pairs of slots and the table
    /// would not soon double it again.
    fn halve(&mut self) {
        let bytes = self.table_bytes();
        while self.gd() > 0
            && bytes <= (SLOT_AVG << self.gd()) / 4
            && self.st.dir.chunks(2).all(|p| p[0] == p[1])
        {
            failpoint::hit("checkpoint.halve");
            self.st.dir = self.st.dir.iter().step_by(2).copied().collect();
            self.st.root.global_depth -= 1;
            self.dir_resized = true;
        }
    }

    /// Points every directory slot in `range` at `entry`.
    fn set_range(&mut self, range: Range, entry: u64) {
        let gd = self.gd();
        let start = dir_index(range.lo, gd) as usize;
        let end = dir_index(range.hi, gd) as usize;
        self.st.dir[start..=end].fill(entry);
        if !self.dir_resized {
            let leaf = crate::format::array::LEAF;
            for l in start / leaf..=end / leaf {
                self.st.dir_dirty[l] = true;
            }
        }
    }

    /// Merges each small rebuilt bucket with a neighbour (the next bucket, else the one
    /// before) while the pair fits half a page; neighbours rebuilt full just now stay as they are.
    fn merge_small(&mut self) -> Result<()> {
        let mut work: Vec<u64> = self.pending.keys().copied().collect();
        while let Some(id) = work.pop() {
            let Some(&(range, _)) = self.pending.get(&id) else {
                continue;
            };
            let sides = [range.hi.checked_add(1), range.lo.checked_sub(1)];
            for h in sides.into_iter().flatten() {
                let nb = self.bucket_at(h);
                if self.written.contains(&nb.off) {
                    continue;
                }
                if let Some(merged) = self.merge_pair(id, range, nb)? {
                    work.extend(merged);
                    break;
                }
            }
        }
        Ok(())
    }

    /// Merges pending bucket `id` (covering `range`) with its neighbour `nb` when both fit
    /// `MERGE_UPTO`. Returns None when they do not, else the merged bucket's id if it is
    /// still pending.
    fn merge_pair(&mut self, id: u64, range: Range, nb: Bucket) -> Result<Option<Option<u64>>> {
        let theirs = match nb.off {
            0 => None,
            o if o & PENDING != 0 => self.pending.get(&o).map(|p| p.1.clone()),
            _ => read_page(&*self.file, self.st.root.epoch, nb, &self.pool)?,
        };
        let mine = &self.pending[&id].1;
        let mine_first = range.lo < nb.range.lo;
        let (lo, hi) = match mine_first {
            true => (Some(mine), theirs.as_ref()),
            false => (theirs.as_ref(), Some(mine)),
        };
        let mut spans = Vec::new();
        for (src, p) in [lo, hi].into_iter().enumerate() {
            if let Some(p) = p {
                bucket::spans(p, src as u8, 0, &mut spans)?;
            }
        }
        let bytes = bucket::spans_bytes(&spans);
        if bytes > MERGE_UPTO {
            theirs.into_iter().for_each(|p| self.pool.give(p));
            return Ok(None);
        }
        failpoint::hit("checkpoint.merge");
        let union = Range {
            lo: range.lo.min(nb.range.lo),
            hi: range.hi.max(nb.range.hi),
        };
        let srcs = [
            lo.map_or(&[][..], |p| &p[..]),
            hi.map_or(&[][..], |p| &p[..]),
        ];
        let mut page = self.pool.take();
        bucket::build_into(&mut page, &spans, &srcs, union);
        theirs.into_iter().for_each(|p| self.pool.give(p));
        for gone in [id, nb.off] {
            if let Some((_, p)) = self.pending.remove(&gone) {
                self.pool.give(p);
            } else if gone == nb.off && gone != 0 {
                self.st.pages.freed.push(gone);
                self.buckets -= 1;
            }
        }
        let next = PENDING | self.pending_ids;
        self.place(union, page, bytes)?;
        Ok(Some(self.pending.contains_key(&next).then_some(next)))
    }

    /// Writes the buckets kept back for the merge pass.
    fn write_buckets(&mut self) -> Result<()> {
        let mut left: Vec<(Range, Box<Page>)> = self.pending.drain().map(|(_, p)| p).collect();
        left.sort_unstable_by_key(|p| p.0);
        for (range, page) in left {
            self.write_bucket(range, page)?;
        }
        Ok(())
    }

    /// Moves the log to `bytes` worth of chunks that the current log does not use: readers of
    /// the current root keep reading its log after this checkpoint publishes.
    fn next_wal(&mut self, bytes: u64) -> Result<()> {
        let want = bytes.div_ceil(BLOB_CHUNK).max(1) as usize;
        let mut next = self.st.wal_spare.take(want);
        if next.len() < want {
            let have = self.file.chunks(Ds::Wal).len();
            self.file.grow(Ds::Wal, (have + want - next.len()) as u64)?;
            next.extend_from_slice(&self.file.chunks(Ds::Wal)[have..]);
        }
        self.st.wal_spare.retired = std::mem::replace(&mut self.st.wal_chunks, next);
        Ok(())
    }

    /// Writes the directory, WAL map and free lists; returns the root that publishes them.
    fn write_metadata(&mut self, wal: &Cursor) -> Result<Root> {
        let epoch = self.epoch;
        let mut freed = Vec::new();
        let dirty = (!self.dir_resized).then_some(&self.st.dir_dirty[..]);
        let (file, pages) = (&mut *self.file, &mut self.st.pages);
        let (dir_ref, dir_shape) = array::store(
            &self.st.dir,
            &self.st.dir_shape,
            dirty,
            epoch,
            &mut || pages.alloc(file),
            &mut self.batch,
            &mut freed,
        )?;
        let mut root = self.st.root.clone();
        let (r, s) = array::store(
            &self.st.wal_chunks,
            &self.st.wal_map_shape,
            None,
            epoch,
            &mut || pages.alloc(file),
            &mut self.batch,
            &mut freed,
        )?;
        root.wal_map = r;
        self.st.wal_map_shape = s;
        self.st.dir_shape = dir_shape;
        self.st.dir_dirty = vec![false; self.st.dir_shape.leaves.len()];
        // The free lists describe themselves: their old pages are free in the new root, and
        // their new pages are taken off the free list before it is written, so they are not
        // in it (with any shortfall from the end of the dataset). Taking them all from the end
        // made a mostly free file grow by its free list's size at every checkpoint.
        for shape in [&self.st.free_pages_shape, &self.st.free_extents_shape] {
            freed.extend(shape_pages(shape));
        }
        pages.freed.append(&mut freed);
        let ext_items = self.st.extents.items();
        let (fe_ref, fe_shape) = store_new(
            &ext_items,
            epoch,
            &mut || pages.alloc(file),
            &mut self.batch,
        )?;
        let mut reserved = pages.reserve_for_list();
        let page_items = pages.listed();
        let mut take = || reserved.pop().map_or_else(|| pages.bump(file), Ok);
        let (fp_ref, fp_shape) = store_new(&page_items, epoch, &mut take, &mut self.batch)?;
        debug_assert!(
            reserved.is_empty(),
            "reserved more pages than the list used"
        );
        self.st.free_extents_shape = fe_shape;
        self.st.free_pages_shape = fp_shape;
        root.epoch = epoch;
        root.flags = LOG_MOVES;
        root.dir = dir_ref;
        root.free_pages = fp_ref;
        root.free_extents = fe_ref;
        root.wal_gen = wal.gen + 1;
        root.wal_lsn = wal.lsn;
        root.pages_hw = pages.hw;
        root.values_hw = self.st.extents.hw;
        root.keys = add(root.keys, self.keys);
        root.values = add(root.values, self.values);
        root.buckets = add(root.buckets, self.buckets);
        root.extents = add(root.extents, self.extents);
        Ok(root)
    }

    /// Writes the pages, then flips the root: the commit point of the checkpoint.
    fn publish(&mut self, root: Root, sync: bool) -> Result<()> {
        self.batch.write(self.file)?;
        if sync {
            self.file.sync()?;
        }
        failpoint::hit("checkpoint.pages_written");
        let slot = self.file.root_offset() + (root.epoch % 2) * ROOT_SLOT as u64;
        let bytes = root.encode();
        if cfg!(feature = "failpoints") {
            // A torn root slot: its first 128 bytes reach the file, then the process dies.
            self.file.write_at(slot, &bytes[..ROOT_SLOT / 8])?;
            failpoint::hit("checkpoint.root_torn");
        }
        self.file.write_at(slot, &bytes)?;
        failpoint::hit("checkpoint.root_written");
        if sync {
            self.file.sync()?;
        }
        self.st.pages.publish(root.epoch);
        self.st.extents.publish(root.epoch);
        self.st.wal_spare.publish(root.epoch);
        self.st.root = root;
        Ok(())
    }
}

/// A bucket: its page (0: none) and the hashes it covers.
#[derive(Clone, Copy)]
struct Bucket {
    off: u64,
    range: Range,
}

/// Rebuilt entries of the current run of buckets, not yet cut into pages: their bytes and
/// their spans (source 0, in order, back to back), and the first hash the next page covers.
#[derive(Default)]
struct Window {
    lo: u64,
    body: Vec<u8>,
    spans: Vec<Span>,
    /// Bytes the spans take in a page (tag words included).
    used: usize,
    /// Where the entries of an old page follow those of another: a page cut across one
    /// merges old pages.
    joins: Vec<usize>,
}

impl Window {
    /// Appends a bucket's entries; `paged`: the bucket had a page.
    fn add(&mut self, spans: &[Span], srcs: &[&[u8]], paged: bool) {
        if paged && !self.spans.is_empty() && !spans.is_empty() {
            self.joins.push(self.spans.len());
        }
        for s in spans {
            let at = self.body.len() as u32;
            self.body.extend_from_slice(s.bytes(srcs));
            self.spans.push(Span { at, src: 0, ..*s });
            self.used += s.size();
        }
    }

    /// Forgets the first `n` spans (cut into a page).
    fn drop_front(&mut self, n: usize) {
        let bytes = self.spans.get(n).map_or(self.body.len(), |s| s.at as usize);
        self.used -= bytes + 2 * n;
        self.body.drain(..bytes);
        self.spans.drain(..n);
        self.spans.iter_mut().for_each(|s| s.at -= bytes as u32);
        self.joins.retain_mut(|j| {
            *j = j.saturating_sub(n);
            *j > 0
        });
    }

    /// Whether a page of the first `n` spans would merge entries of several old pages.
    fn joins_before(&self, n: usize) -> bool {
        self.joins.first().is_some_and(|j| *j < n)
    }
}

/// The old pages, one bucket after another, sent ahead of the merge (a failed read
/// is sent too, as the last item).
fn read_ahead(
    io: &RawIo,
    runs: &[Bucket],
    max_epoch: u64,
    pool: &PagePool,
    out: mpsc::SyncSender<Vec<Result<Old>>>,
) -> Result<()> {
    // Pages are requested `PREFETCH_PARTS` parts before they are read: a table larger than
    // the page cache is then read with many requests in flight, not one at a time.
    let parts: Vec<&[Bucket]> = runs.chunks(HANDOFF).collect();
    for p in parts.iter().take(PREFETCH_PARTS) {
        prefetch(io, p)?;
    }
    for (i, part) in parts.iter().enumerate() {
        if let Some(next) = parts.get(i + PREFETCH_PARTS) {
            prefetch(io, next)?;
        }
        let mut pages = Vec::with_capacity(part.len());
        let mut failed = false;
        for b in *part {
            let page = read_old(io, max_epoch, *b, pool);
            failed = page.is_err();
            pages.push(page);
            if failed {
                break;
            }
        }
        if out.send(pages).is_err() || failed {
            break;
        }
    }
    Ok(())
}

/// Starts reading the pages of `buckets` (coalescing neighbours) into the page cache.
fn prefetch(io: &RawIo, buckets: &[Bucket]) -> Result<()> {
    let mut offs: Vec<u64> = buckets.iter().map(|b| b.off).filter(|o| *o != 0).collect();
    offs.sort_unstable();
    for run in adjacent(&offs, |o| *o) {
        io.will_need(offs[run.start], (run.len() * PAGE) as u64)?;
    }
    Ok(())
}

/// Seals and writes the rebuilt buckets' pages it is sent until the sender is dropped.
fn write_behind(
    io: &RawIo,
    epoch: u64,
    pool: &PagePool,
    built: mpsc::Receiver<Built>,
) -> Result<()> {
    let mut batch = PageBatch::default();
    for (off, mut page) in built.into_iter().flatten() {
        seal(&mut page, MAGIC_BUCKET, epoch);
        batch.push(off, page);
        if batch.is_full() {
            batch.write_then(io, |p| pool.give(p))?;
        }
    }
    batch.write_then(io, |p| pool.give(p))
}

/// Rebuilt buckets' unsealed pages, by file offset, on their way to the page writer.
type Built = Vec<(u64, Box<Page>)>;

/// Hands rebuilt buckets to the page writer; it only stops early after an error of its own,
/// which `rebuild` reports in preference to this one.
fn send(tx: &mpsc::SyncSender<Built>, built: Built, path: &Path) -> Result<()> {
    tx.send(built).map_err(|_| stopped(path, "page writer"))
}

/// A bucket's old page as the read thread hands it over: the page and its entries as spans
/// (source 0), checked. An empty bucket has neither.
struct Old {
    page: Option<Box<Page>>,
    spans: Vec<Span>,
}

impl Old {
    fn bytes(&self) -> &[u8] {
        self.page.as_deref().map_or(&[], |p| &p[..])
    }
}

fn read_old(src: &impl Source, max_epoch: u64, b: Bucket, pool: &PagePool) -> Result<Old> {
    let page = read_page(src, max_epoch, b, pool)?;
    let mut spans = Vec::new();
    if let Some(p) = &page {
        bucket::spans(p, 0, b.off, &mut spans)?;
    }
    Ok(Old { page, spans })
}

/// A bucket's page (none for an empty bucket), checked against where the directory puts it.
fn read_page(
    src: &impl Source,
    max_epoch: u64,
    b: Bucket,
    pool: &PagePool,
) -> Result<Option<Box<Page>>> {
    if b.off == 0 {
        return Ok(None);
    }
    let mut p = pool.take();
    settled(src.page_into(b.off, MAGIC_BUCKET, max_epoch, "bucket page", &mut p))?;
    let (_, range) = bucket::header(&p[..]);
    if range != b.range {
        return Err(Error::corrupt(
            "bucket page",
            b.off,
            format!(
                "page covers {:#x}..={:#x}, the directory {:#x}..={:#x}",
                range.lo, range.hi, b.range.lo, b.range.hi
            ),
        ));
    }
    Ok(Some(p))
}

fn helper<'s, 'e>(
    s: &'s std::thread::Scope<'s, 'e>,
    name: &str,
    path: &Path,
    f: impl FnOnce() -> Result<()> + Send + 's,
) -> Result<std::thread::ScopedJoinHandle<'s, Result<()>>> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn_scoped(s, f)
        .map_err(|e| Error::io("spawn checkpoint thread", path, e))
}

/// A helper thread's result; its panic becomes an error instead of crossing into the caller.
fn joined(h: std::thread::ScopedJoinHandle<'_, Result<()>>, path: &Path) -> Result<()> {
    h.join().unwrap_or_else(|_| {
        Err(Error::io(
            "checkpoint helper thread",
            path,
            std::io::Error::other("panicked"),
        ))
    })
}

fn stopped(path: &Path, who: &str) -> Error {
    Error::io(
        "checkpoint",
        path,
        std::io::Error::other(format!("the {who} thread stopped")),
    )
}

fn is_extent(s: Option<&crate::format::bucket::Set>) -> bool {
    matches!(s, Some(crate::format::bucket::Set::Extent(_)))
}

fn add(v: u64, d: i64) -> u64 {
    v.wrapping_add_signed(d)
}

fn shape_pages(s: &Shape) -> impl Iterator<Item = u64> + '_ {
    s.leaves
        .iter()
        .map(|l| l.0)
        .chain(s.nodes.iter().copied())
        .filter(|o| *o != 0)
}

/// Writes a new array (no earlier version to keep pages of) into pages from `alloc`.
fn store_new(
    items: &[u64],
    epoch: u64,
    alloc: &mut dyn FnMut() -> Result<u64>,
    batch: &mut PageBatch,
) -> Result<(crate::format::array::ArrayRef, Shape)> {
    let mut unused = Vec::new();
    array::store(
        items,
        &Shape::default(),
        None,
        epoch,
        alloc,
        batch,
        &mut unused,
    )
}
