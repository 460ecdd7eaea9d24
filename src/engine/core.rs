//! What the writer's threads share — the committing thread (`writer`) and the two background
//! threads (`checkpoint`: one flushes sealed logs, one merges tables) — and the one way a new
//! root reaches the file.
//!
//! Publishing root `e`:
//! 1. the free lists are written if they changed (new pages; the old ones are freed by `e`);
//! 2. `fdatasync`, unless `e` references nothing that is not already durable (a log switch)
//!    and root `e - 1`, in the other slot, is durable: the pages a root references must be
//!    durable before the root can be, and a slot is overwritten only while the other slot
//!    holds a durable root, so a torn or lost slot write always leaves a durable root behind;
//! 3. the slot `e % 2` is written;
//! 4. for a durable publish, `fdatasync` again: root `e` is durable. Only then does the space
//!    it freed become reusable (once no pinned reader reads under an older root), so a power
//!    cut never finds a durable root whose space was rewritten.
//!
//! A publish lets go of the state lock while it syncs (commits' log switches, the other
//! thread's allocations and progress go on meanwhile); `State::publishing` keeps other
//! publishers out until it is done, so whoever changes the root starts from the root it
//! replaces (`Core::publisher`).
//!
//! A failed `fdatasync` is fatal to the writer: the kernel may have dropped the dirty pages
//! and report success to a later sync, so nothing after it can be trusted to be durable. The
//! writer refuses all work from then on; reopening the file recovers from what is durable.

use super::failpoint;
use super::space::{Run, Space, Work};
use super::table::write::Alloc;
use crate::error::{Error, Result};
use crate::format::array::{fresh_pages, ArrayRef};
use crate::format::layout::{PAGE, ROOT_SLOT, SEGMENT};
use crate::format::page::Page;
use crate::format::root::{Root, Span};
use crate::store::{Positional, ReaderTable, WriterFile};
use parking_lot::{Condvar, Mutex, MutexGuard};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use super::array::{self, Sink};
use super::oplog::OpLog;

pub struct Core {
    pub file: WriterFile,
    pub readers: Option<Arc<ReaderTable>>,
    pub st: Mutex<State>,
    /// Signalled whenever the state changes in a way the other thread may be waiting for.
    pub cv: Condvar,
    /// A sealed log waits for the worker (checked between merge steps, and by commits,
    /// without the lock).
    pub sealed: AtomicBool,
    /// `State::broken` is set (checked by every call without the lock).
    pub broken: AtomicBool,
    /// How far the flush of the sealed log and the running merge have come, for pacing
    /// commits (`checkpoint::may_fill`).
    pub flush_progress: Progress,
    pub flush_clock: Clock,
    pub merge_progress: Progress,
    /// Delta tables the running merge removes when it ends (0: no merge runs).
    pub merge_frees: AtomicU32,
    /// Delta tables the last root published lists.
    pub runs: AtomicU32,
}

/// A fraction of a task done, in 1/65536ths, written by the thread doing it and read by
/// commits without the lock.
#[derive(Default)]
pub struct Progress(AtomicU32);

impl Progress {
    /// The task has reached hash `h` of the hash space (tasks that run in hash order).
    pub fn at_hash(&self, h: u64) {
        self.set((h >> 48) as u32);
    }

    pub fn set(&self, done: u32) {
        self.0.store(done.min(ALL_DONE), Ordering::Relaxed);
    }

    pub fn get(&self) -> f64 {
        self.0.load(Ordering::Relaxed) as f64 / ALL_DONE as f64
    }
}

/// `Progress` of a task done.
pub const ALL_DONE: u32 = 1 << 16;

/// How long the flush of a sealed log has run (since the log was sealed) against how long
/// the slowest of the last flushes took, for pacing commits by time where the flush's
/// progress stands still (a sort window, a large key's set, a sync): commits then move on
/// evenly and wait only for what a flush takes beyond that. The slowest, not the mean: a
/// flush beside a merge into the base runs up to half again as long as one without, and
/// commits timed by the mean would run out of log and stop for the difference at once.
pub struct Clock {
    born: std::time::Instant,
    /// Microseconds since `born` when the sealed log was sealed.
    started: AtomicU64,
    /// Microseconds the slowest of the last `CLOCK_MEMORY` flushes took; 0 until one has
    /// finished.
    expect: AtomicU64,
    /// Those flushes' times, newest first (only the flush thread writes them).
    last: Mutex<[u64; CLOCK_MEMORY]>,
}

/// Flushes the clock remembers.
const CLOCK_MEMORY: usize = 4;

impl Default for Clock {
    fn default() -> Clock {
        Clock {
            born: std::time::Instant::now(),
            started: AtomicU64::new(0),
            expect: AtomicU64::new(0),
            last: Mutex::new([0; CLOCK_MEMORY]),
        }
    }
}

impl Clock {
    fn now(&self) -> u64 {
        self.born.elapsed().as_micros() as u64
    }

    /// A log was sealed: its flush's time starts.
    pub fn start(&self) {
        self.started.store(self.now(), Ordering::Relaxed);
    }

    /// The flush of the sealed log is published.
    pub fn finish(&self) {
        let took = self
            .now()
            .saturating_sub(self.started.load(Ordering::Relaxed));
        self.learn(took);
    }

    /// Remembers a flush that took `took` microseconds.
    fn learn(&self, took: u64) {
        let mut last = self.last.lock();
        last.rotate_right(1);
        last[0] = took;
        let slowest = last.iter().copied().max().unwrap_or(took);
        self.expect.store(slowest.max(1), Ordering::Relaxed);
    }

    /// The part of the expected flush time gone by, scaled to at most `CLOCK_SHARE` (0 while
    /// no flush has finished yet): the rest waits for the flush's own progress.
    pub fn fraction(&self) -> f64 {
        let expect = self.expect.load(Ordering::Relaxed);
        if expect == 0 {
            return 0.0;
        }
        let gone = self
            .now()
            .saturating_sub(self.started.load(Ordering::Relaxed));
        (gone as f64 / expect as f64).min(1.0) * CLOCK_SHARE
    }
}

/// How much of a flush's progress its time alone stands for.
const CLOCK_SHARE: f64 = 0.9;

pub struct State {
    /// The last root published.
    pub root: Root,
    /// The newest root known durable.
    pub durable: u64,
    pub space: Space,
    /// The ops of `root.sealed`, for the worker to turn into a delta table.
    pub sealed_ops: Option<OpLog>,
    /// Why the writer refuses work (a failed sync, a failed background step).
    pub broken: Option<Broken>,
    /// The background threads are to stop at their next step boundary.
    pub stop: bool,
    /// Someone waits for every delta table to be merged into the base.
    pub compact: bool,
    /// Each background thread (by `Work`) has nothing to do.
    pub idle: [bool; 2],
    /// The id the next table written gets.
    pub next_table_id: u64,
    /// Log size for the next log the worker sets aside (0: automatic).
    pub log_bytes: u64,
    /// A publish is under way (it may have let go of the lock to sync).
    pub publishing: bool,
}

/// The locked state.
pub type Guard<'a> = MutexGuard<'a, State>;

/// Why a writer refuses work, and whether it was damage in the file (reported as such) or
/// an operating-system error (its errno is kept).
pub struct Broken {
    pub why: String,
    pub corrupt: Option<(&'static str, u64)>,
    pub errno: Option<i32>,
}

/// How a root is published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A log switch: references nothing new; not made durable (the next sync or durable
    /// publish does).
    Switch,
    /// Everything else: references new pages; durable when it returns.
    Durable,
}

/// Space a root stops referencing, and the background work whose pending space it
/// references from now on (`space::Work`).
#[derive(Default)]
pub struct Frees {
    pub runs: Vec<Run>,
    pub pages: Vec<u64>,
    pub settles: Option<Work>,
}

impl State {
    /// Both background threads have nothing to do.
    pub fn idle(&self) -> bool {
        self.idle.iter().all(|i| *i)
    }

    /// An id for a new table.
    pub fn new_table_id(&mut self) -> u64 {
        self.next_table_id += 1;
        self.next_table_id - 1
    }
}

impl Core {
    /// Marks the writer unusable (first reason wins) and wakes whoever waits.
    pub fn fail(&self, st: &mut State, why: String, errno: Option<i32>) {
        st.broken.get_or_insert(Broken {
            why,
            corrupt: None,
            errno,
        });
        self.broken.store(true, Ordering::Release);
        self.cv.notify_all();
    }

    /// Marks the writer unusable because of `e`; damage keeps its kind.
    pub fn fail_with(&self, st: &mut State, context: &str, e: &Error) {
        let corrupt = match e {
            Error::Corrupt { what, offset, .. } => Some((*what, *offset)),
            _ => None,
        };
        st.broken.get_or_insert(Broken {
            why: format!("{context}: {e}"),
            corrupt,
            errno: e.errno(),
        });
        self.broken.store(true, Ordering::Release);
        self.cv.notify_all();
    }

    /// The error a refused call reports.
    pub fn refused(&self, b: &Broken) -> Error {
        let unusable = Error::Unusable {
            why: b.why.clone(),
            errno: b.errno,
        };
        match b.corrupt {
            Some((what, offset)) => Error::corrupt(what, offset, unusable.to_string()),
            None => unusable,
        }
    }

    /// The state once no publish is under way: whoever builds a root to publish locks the
    /// state here, so that no other publish lands between its reading the root and its own.
    pub fn publisher(&self) -> Guard<'_> {
        let mut st = self.st.lock();
        while st.publishing {
            self.cv.wait(&mut st);
        }
        st
    }

    /// [`Core::publisher`] once what the caller wrote is on the device: its fdatasync runs
    /// before the caller takes the publisher's place, so log switches and other publishes go
    /// on meanwhile, and the publish's own sync, which they would wait for, finds little left
    /// to write (a merge's table is gigabytes).
    pub fn publisher_synced(&self) -> Result<Guard<'_>> {
        let synced = self.file.sync();
        let mut st = self.publisher();
        if let Err(e) = synced {
            self.fail(&mut st, format!("fdatasync failed: {e}"), e.errno());
            return Err(e);
        }
        Ok(st)
    }

    /// fdatasync without the lock (other threads' work goes on; publishers wait); a failure
    /// breaks the writer, and so does one another thread saw meanwhile: nothing written
    /// before a failed sync can be trusted durable.
    fn sync(&self, st: &mut Guard) -> Result<()> {
        match MutexGuard::unlocked(st, || self.file.sync()) {
            Ok(()) => match &st.broken {
                None => Ok(()),
                Some(why) => Err(self.refused(why)),
            },
            Err(e) => {
                self.fail(st, format!("fdatasync failed: {e}"), e.errno());
                Err(e)
            }
        }
    }

    /// Publishes `next` (its epoch and free lists are set here) with `frees` applied; `st`
    /// comes from [`Core::publisher`], and `next` from its root.
    pub fn publish(&self, st: &mut Guard, next: Root, frees: Frees, mode: Mode) -> Result<()> {
        self.publish_then(st, next, frees, mode, |_| {})
    }

    /// [`Core::publish`], running `then` on the state once the root is published, before
    /// anyone else may publish or switch logs.
    pub fn publish_then(
        &self,
        st: &mut Guard,
        next: Root,
        frees: Frees,
        mode: Mode,
        then: impl FnOnce(&mut State),
    ) -> Result<()> {
        debug_assert!(!st.publishing, "a publish started without `publisher`");
        st.publishing = true;
        let r = self.publish_now(st, next, frees, mode);
        if r.is_ok() {
            then(st);
        }
        st.publishing = false;
        self.cv.notify_all();
        r?;
        if mode == Mode::Durable {
            // After giving up the publisher's place: punching the gigabytes a merge freed
            // takes seconds, which a flush's publish and a log switch need not wait for.
            self.release(st)?;
        }
        Ok(())
    }

    fn publish_now(&self, st: &mut Guard, mut next: Root, frees: Frees, mode: Mode) -> Result<()> {
        if let Some(why) = &st.broken {
            return Err(self.refused(why));
        }
        let epoch = st.root.epoch + 1;
        next.epoch = epoch;
        next.next_table_id = next.next_table_id.max(st.next_table_id);
        if let Some(work) = frees.settles {
            st.space.settle(work);
        }
        for (off, n) in frees.runs {
            st.space.free(off, n);
        }
        for p in frees.pages {
            st.space.free_page(p);
        }
        // Space is freed in memory from here on: a root that fails to reach the file would
        // leave it free while the file's root still uses it, so any failure breaks the writer
        // (reopening recovers from the file).
        let r = self.write_root(st, next, epoch, mode);
        if let Err(e) = &r {
            self.fail_with(st, "publishing a root failed", e);
        }
        r
    }

    /// `publish` once the space is accounted: lists, barrier, root slot, barrier.
    fn write_root(&self, st: &mut Guard, mut next: Root, epoch: u64, mode: Mode) -> Result<()> {
        let wrote = mode == Mode::Durable;
        match mode {
            Mode::Durable => self.write_lists(st, &mut next, epoch)?,
            Mode::Switch => {
                next.free_segments = st.root.free_segments;
                next.free_pages = st.root.free_pages;
                next.segments_used = st.root.segments_used;
                next.lists = st.root.lists;
            }
        }
        if wrote || st.durable < st.root.epoch {
            self.sync(st)?;
            st.durable = st.durable.max(st.root.epoch);
        }
        failpoint::hit("publish.synced");
        let slot = self.file.root_offset() + (epoch % 2) * ROOT_SLOT as u64;
        let bytes = next.encode();
        if cfg!(feature = "failpoints") && failpoint::armed("publish.root_torn") {
            // A torn root slot: its first part reaches the file, then the process dies.
            self.file.write_at(slot, &bytes[..ROOT_SLOT / 8])?;
            failpoint::hit("publish.root_torn");
        }
        if let Err(e) = self.file.write_at(slot, &bytes) {
            // The slot may be half written; the other slot holds a durable root, but this
            // handle can no longer tell which root the file has.
            self.fail(st, format!("writing root {epoch} failed: {e}"), e.errno());
            return Err(e);
        }
        failpoint::hit("publish.root_written");
        self.runs.store(next.deltas.len() as u32, Ordering::Relaxed);
        st.root = next;
        st.space.publish(epoch);
        if mode == Mode::Durable {
            self.sync(st)?;
            st.durable = epoch;
        }
        self.cv.notify_all();
        Ok(())
    }

    /// Writes the free lists for root `epoch` into `next`, in the list area the last root's
    /// lists are not in (a log switch keeps the lists of the root before it, so the area in
    /// use does not follow the epoch's parity), growing the area first if the lists would not
    /// fit.
    fn write_lists(&self, st: &mut State, next: &mut Root, epoch: u64) -> Result<()> {
        let last = &st.root;
        let in_area = |a: &Span| {
            [last.free_segments.top, last.free_pages.top]
                .iter()
                .any(|t| *t != 0 && (a.offset..a.offset + a.bytes).contains(t))
        };
        let side = usize::from(in_area(&last.lists[0]));
        loop {
            let runs: Vec<u64> = st
                .space
                .listed_runs()
                .into_iter()
                .flat_map(|(o, n)| [o, n])
                .collect();
            let pages = st.space.listed_pages();
            let need = (fresh_pages(runs.len() as u64) + fresh_pages(pages.len() as u64)) as u64;
            let area = next.lists[side];
            if need * PAGE_BYTES > area.bytes {
                // A larger area, with room to grow; the old one was last used two roots ago.
                let segs = (2 * need * PAGE_BYTES).div_ceil(SEGMENT).max(1);
                let off = st.space.alloc(segs)?;
                st.space.free(area.offset, area.bytes / SEGMENT);
                next.lists[side] = Span {
                    offset: off,
                    bytes: segs * SEGMENT,
                };
                continue; // the lists changed
            }
            let mut at = area.offset;
            let mut alloc = || -> Result<(u64, u64)> {
                at += PAGE_BYTES;
                Ok((at - PAGE_BYTES, epoch))
            };
            let mut out: Vec<(u64, Box<Page>)> = Vec::new();
            let (seg_ref, _) = array::write(
                &runs,
                &mut Sink {
                    alloc: &mut alloc,
                    out: &mut out,
                },
            )?;
            let (page_ref, _) = array::write(
                &pages,
                &mut Sink {
                    alloc: &mut alloc,
                    out: &mut out,
                },
            )?;
            for (off, p) in &out {
                self.file.write_at(*off, &p[..])?;
            }
            next.free_segments = seg_ref;
            next.free_pages = page_ref;
            next.segments_used = st.space.used;
            return Ok(());
        }
    }

    /// Makes reusable what durable roots freed and no pinned reader can read. Its segments'
    /// blocks go back to the filesystem later, a piece at a time (`trim::trim_thread`): a
    /// punch holds the file's inode lock, and with online discard it issues the discards
    /// while holding it, so a large one stops every write to the file (a commit's log frame
    /// waited 1.2 s behind a merge's).
    pub fn release(&self, st: &mut Guard) -> Result<()> {
        let oldest = self.readers.as_ref().and_then(|t| t.oldest());
        let upto = st.durable.min(oldest.unwrap_or(u64::MAX));
        st.space.release(upto);
        Ok(())
    }

    pub fn wake(&self) {
        self.cv.notify_all();
    }

    pub fn sealed_waiting(&self) -> bool {
        self.sealed.load(Ordering::Acquire)
    }
}

/// A background thread's allocator: space from the shared state, pending for its work until
/// a root references it, stamped with the epoch after the last published root (larger than
/// that of anything written before at the same place, since space is reused only after the
/// root that freed it).
pub struct CoreAlloc<'a>(pub &'a Core, pub Work);

impl Alloc for CoreAlloc<'_> {
    fn segments(&mut self, n: u64) -> Result<(u64, u64)> {
        let mut st = self.0.st.lock();
        let off = st.space.alloc_for(self.1, n)?;
        Ok((off, st.root.epoch + 1))
    }

    fn page(&mut self) -> Result<(u64, u64)> {
        let mut st = self.0.st.lock();
        let off = st.space.alloc_page_for(self.1)?;
        Ok((off, st.root.epoch + 1))
    }
}

/// The pages an array takes, read from the file (to free an array a root stops using).
pub fn array_pages(file: &WriterFile, aref: ArrayRef, max_epoch: u64) -> Result<Vec<u64>> {
    let shape = super::source::settled(array::shape(file, aref, max_epoch))?;
    Ok(shape.pages().collect())
}

const PAGE_BYTES: u64 = PAGE as u64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_expects_the_slowest_of_the_last_flushes() {
        let c = Clock::default();
        assert_eq!(c.fraction(), 0.0, "no flush finished yet");
        for took in [3_000_000, 5_000_000, 2_000_000, 3_000_000] {
            c.learn(took);
        }
        assert_eq!(c.expect.load(Ordering::Relaxed), 5_000_000);
        // The slow one ages out once CLOCK_MEMORY flushes came after it.
        c.learn(2_000_000);
        assert_eq!(c.expect.load(Ordering::Relaxed), 5_000_000);
        c.learn(2_000_000);
        assert_eq!(c.expect.load(Ordering::Relaxed), 3_000_000);
        c.start();
        let f = c.fraction();
        assert!((0.0..0.1).contains(&f), "{f}: just started");
    }
}
