//! The single writer: batches ops into a WAL frame and commits it to the log; when the log is
//! full it seals it (a root switch that writes nothing else) and goes on in the log set aside
//! for it, while the worker thread flushes the sealed log into a delta table and merges delta
//! tables into the base (`checkpoint`).

use super::checkpoint::{self, MIN_LOG};
use super::core::{Clock, Core, Frees, Mode, Progress, State};
use super::failpoint;
use super::gc::{self, GcReport};
use super::oplog::OpLog;
use super::options::{Options, Stats};
use super::recovery::{self, RecoveryReport};
use super::wal::{self, Cursor};
use crate::error::{Error, Result};
use crate::format::layout::{DEFAULT_CAPACITY, SEGMENT};
use crate::format::root::{LogRef, Root, SealedLog, Span};
use crate::format::wal::{FrameBuf, Op};
use crate::store::{Create, Positional, ReaderTable, WriterFile};
use crate::{Key, Value};
use parking_lot::{Condvar, Mutex};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

/// Tables smaller than this together are merged into one base table when the writer closes,
/// so a small file at rest has one table; a larger one keeps its delta tables until its next
/// writer (or `checkpoint`) merges them.
pub const CLOSE_MERGE: u64 = 256 << 20;

/// The one writer of a hashdir file: inserts and deletes go into a batch that
/// [`commit`](Writer::commit) makes visible and durable at once. Holds the file's writer lock
/// until closed or dropped; [`close`](Writer::close) it to merge small tables and give free
/// space back.
pub struct Writer {
    core: Arc<Core>,
    /// The background threads (`checkpoint`).
    workers: Vec<std::thread::JoinHandle<()>>,
    sync: bool,
    /// Log bytes after which the log is sealed (0: when its range is nearly full).
    limit: u64,
    /// Ops committed to the log commits append to.
    mem: OpLog,
    wal: Cursor,
    log: LogRef,
    batch: FrameBuf,
    recovered: RecoveryReport,
}

/// The root a new file starts with: a first log and the next one set aside, nothing else.
fn initial_root(data: u64, capacity: u64) -> Root {
    Root {
        epoch: 0,
        capacity,
        data_offset: data,
        segments_used: 2 * MIN_LOG / SEGMENT,
        next_table_id: 1,
        log: LogRef {
            gen: wal::new_gen(),
            lsn: 1,
            offset: data,
            bytes: MIN_LOG,
        },
        next_log: Span {
            offset: data + MIN_LOG,
            bytes: MIN_LOG,
        },
        ..Root::default()
    }
}

impl Writer {
    /// Opens (creating if asked) and recovers: the newest valid root, then its logs.
    pub fn open(path: &Path, opts: &Options) -> Result<Writer> {
        Writer::start(Writer::lock(path, opts)?, opts, None)
    }

    /// Opens (creating if asked) and locks the file, recovering nothing yet: `start` does.
    pub(crate) fn lock(path: &Path, opts: &Options) -> Result<WriterFile> {
        opts.log_bytes()?;
        opts.check_capacity()?;
        let capacity = match opts.capacity {
            0 => DEFAULT_CAPACITY,
            n => n,
        };
        let root = |data, cap| initial_root(data, cap).encode().to_vec();
        let create = Create {
            capacity,
            root: &root,
        };
        WriterFile::open(path, opts.create.then_some(&create))
    }

    /// Recovers a locked file and starts the writer; with `below`, keeps only the batches
    /// below that LSN (`recovery::recover`) and wipes the frames after them from the log.
    pub(crate) fn start(file: WriterFile, opts: &Options, below: Option<u64>) -> Result<Writer> {
        let log_bytes = opts.log_bytes()?;
        let rec = recovery::recover(&file, below)?;
        if let Some((off, bytes)) = rec.discard {
            file.write_at(off, &vec![0u8; bytes as usize])?;
            file.sync()?;
        }
        let readers = ReaderTable::open(file.path())?;
        let sealed = rec.sealed.is_some();
        let core = Arc::new(Core {
            file,
            readers,
            st: Mutex::new(State {
                durable: rec.root.epoch,
                next_table_id: rec.root.next_table_id,
                root: rec.root.clone(),
                space: rec.space,
                sealed_ops: rec.sealed,
                broken: None,
                stop: false,
                compact: false,
                idle: [false; 2],
                log_bytes,
                publishing: false,
            }),
            cv: Condvar::new(),
            sealed: AtomicBool::new(sealed),
            broken: AtomicBool::new(false),
            flush_progress: Progress::default(),
            flush_clock: Clock::default(),
            merge_progress: Progress::default(),
            merge_frees: AtomicU32::new(0),
            runs: AtomicU32::new(rec.root.deltas.len() as u32),
        });
        let mut log = rec.root.log;
        if let Some(next) = rec.fix {
            log = next.log;
            let mut frees = Frees::default();
            if next.log.offset != rec.root.log.offset {
                frees
                    .runs
                    .push((rec.root.log.offset, rec.root.log.bytes / SEGMENT));
            }
            let mut st = core.publisher();
            core.publish(&mut st, next, frees, Mode::Durable)?;
        }
        let workers = checkpoint::spawn(core.clone())?;
        Ok(Writer {
            core,
            workers,
            sync: opts.sync_commit,
            limit: log_bytes,
            mem: rec.mem,
            wal: rec.wal,
            log,
            batch: FrameBuf::new(),
            recovered: rec.report,
        })
    }

    /// Adds `values[i]` to the set of `keys[i]` in the pending batch (a pair already there
    /// stays once). The slices must have the same length.
    pub fn insert(&mut self, keys: &[Key], values: &[Value]) -> Result<()> {
        same_len(keys, values)?;
        self.push_all(
            keys.len(),
            keys.iter().zip(values).map(|(k, v)| Op::Insert(*k, *v)),
        )
    }

    /// Adds every value of `values` to `key`'s set: `insert` without repeating the key.
    pub fn insert_values(&mut self, key: &Key, values: &[Value]) -> Result<()> {
        self.push_all(values.len(), values.iter().map(|v| Op::Insert(*key, *v)))
    }

    /// Deletes each key with all its values, in the pending batch.
    pub fn delete_keys(&mut self, keys: &[Key]) -> Result<()> {
        self.push_all(keys.len(), keys.iter().map(|k| Op::DeleteKey(*k)))
    }

    /// Deletes `values[i]` from the set of `keys[i]`, in the pending batch.
    pub fn delete_pairs(&mut self, keys: &[Key], values: &[Value]) -> Result<()> {
        same_len(keys, values)?;
        self.push_all(
            keys.len(),
            keys.iter().zip(values).map(|(k, v)| Op::DeletePair(*k, *v)),
        )
    }

    /// Refuses work once the writer cannot be trusted (a failed sync, failed background work).
    fn usable(&self) -> Result<()> {
        if !self.core.broken.load(Ordering::Acquire) {
            return Ok(());
        }
        match &self.core.st.lock().broken {
            None => Ok(()),
            Some(why) => Err(self.core.refused(why)),
        }
    }

    fn push_all(&mut self, n: usize, ops: impl Iterator<Item = Op>) -> Result<()> {
        self.usable()?;
        if !self.batch.reserve(n) {
            return Err(Error::InvalidArgument(format!(
                "batch too large: {n} more ops would exceed 4 GiB in one commit; commit more often"
            )));
        }
        ops.for_each(|op| self.batch.push(&op));
        Ok(())
    }

    /// Makes the pending batch durable against a process crash (with `sync_commit`, against a
    /// power cut too) and visible to readers, atomically.
    pub fn commit(&mut self) -> Result<()> {
        self.append()?;
        self.seal_full()
    }

    /// `commit` without sealing the log afterwards: the batch is in the log and in memory.
    pub(crate) fn append(&mut self) -> Result<()> {
        self.usable()?;
        if self.batch.is_empty() {
            return Ok(());
        }
        let len = self.batch.frame_len() as u64;
        if self.wal.pos + len > self.log.bytes {
            self.switch(len)?;
        } else {
            self.pace(len)?;
        }
        let frame = self.batch.finish(self.wal.gen, self.wal.lsn, self.wal.prev);
        wal::append(&self.core.file, self.log.offset, &mut self.wal, frame)?;
        failpoint::hit("commit.frame_written");
        if self.sync {
            self.sync_file()?;
        }
        failpoint::hit("commit.durable");
        for op in self.batch.iter() {
            self.mem.apply(&op);
        }
        self.batch.clear();
        Ok(())
    }

    /// Seals a nearly full log now, while the previous one is flushed already, so the next
    /// commits rarely wait.
    pub(crate) fn seal_full(&mut self) -> Result<()> {
        if self.nearly_full() {
            self.switch(0)?;
        }
        Ok(())
    }

    /// Whether `seal_full` would seal the log now. Stays true until it does: only a seal of
    /// this writer's makes a sealed log wait.
    pub(crate) fn nearly_full(&self) -> bool {
        let limit = self.log_limit();
        self.wal.pos + limit / 16 >= limit && !self.core.sealed_waiting()
    }

    /// Whether `append` will seal the log before it writes the pending batch (which does not
    /// fit).
    pub(crate) fn switch_due(&self) -> bool {
        !self.batch.is_empty() && self.wal.pos + self.batch.frame_len() as u64 > self.log.bytes
    }

    /// The LSN the next batch will take: the batches below it are committed.
    pub(crate) fn next_lsn(&self) -> u64 {
        self.wal.lsn
    }

    /// Whether ops are waiting for a commit.
    pub(crate) fn pending(&self) -> bool {
        !self.batch.is_empty()
    }

    /// Waits while a frame of `len` bytes would fill the log further than the background work
    /// allows (`checkpoint::may_fill`): each commit waits about as long as that work takes
    /// for a batch's worth, instead of one commit waiting for all of it when the log is full.
    fn pace(&self, len: u64) -> Result<()> {
        let limit = self.log_limit().max(1) as f64;
        // A frame past the limit seals the log after it; it waits as one that fills it.
        let fill = ((self.wal.pos + len) as f64 / limit).min(1.0);
        // Sleeps rather than waits on the state lock, which a publish holds while it syncs.
        while fill > checkpoint::may_fill(&self.core) {
            self.usable()?;
            std::thread::sleep(checkpoint::PACE_TICK);
        }
        Ok(())
    }

    /// Makes everything committed so far durable against a power cut: one `fdatasync`,
    /// cheaper than a checkpoint.
    pub fn sync(&mut self) -> Result<()> {
        self.usable()?;
        self.sync_file()
    }

    fn sync_file(&self) -> Result<()> {
        let epoch = self.core.st.lock().root.epoch;
        let synced = self.core.file.sync();
        let mut st = self.core.st.lock();
        match synced {
            Ok(()) => {
                st.durable = st.durable.max(epoch);
                Ok(())
            }
            Err(e) => {
                self.core
                    .fail(&mut st, format!("fdatasync failed: {e}"), e.errno());
                Err(e)
            }
        }
    }

    /// Seals the log and moves commits to the log set aside (one at least `need` bytes long);
    /// waits while the previous sealed log is being flushed. With nothing in the log, only
    /// replaces it by a larger one when `need` says so.
    fn switch(&mut self, need: u64) -> Result<()> {
        let core = self.core.clone();
        let mut st = core.st.lock();
        // A publish under way may let go of the lock: the switch publishes after it.
        while (st.root.sealed.is_some() || st.publishing) && st.broken.is_none() {
            core.cv.wait(&mut st);
        }
        if let Some(why) = &st.broken {
            return Err(core.refused(why));
        }
        if self.wal.pos == 0 && need <= self.log.bytes {
            return Ok(());
        }
        if st.root.next_log.bytes == 0 || st.root.next_log.bytes < need {
            // No log set aside is large enough: set one aside now (a durable publish).
            let bytes = need
                .max(checkpoint::log_bytes(&st))
                .next_multiple_of(SEGMENT);
            let mut next = st.root.clone();
            let old = next.next_log;
            next.next_log = Span {
                offset: st.space.alloc(bytes / SEGMENT)?,
                bytes,
            };
            let mut frees = Frees::default();
            if old.bytes > 0 {
                frees.runs.push((old.offset, old.bytes / SEGMENT));
            }
            core.publish(&mut st, next, frees, Mode::Durable)?;
        }
        let mut next = st.root.clone();
        let log = LogRef {
            gen: wal::new_gen(),
            lsn: self.wal.lsn,
            offset: next.next_log.offset,
            bytes: next.next_log.bytes,
        };
        next.next_log = Span::default();
        let mut frees = Frees::default();
        let mode = if self.wal.pos == 0 {
            // An empty log too small for the batch: replaced, not sealed.
            frees.runs.push((next.log.offset, next.log.bytes / SEGMENT));
            Mode::Durable
        } else {
            next.sealed = Some(SealedLog {
                log: next.log,
                end: self.wal.lsn,
            });
            Mode::Switch
        };
        next.log = log;
        core.publish(&mut st, next, frees, mode)?;
        failpoint::hit("log.switched");
        if mode == Mode::Switch {
            st.sealed_ops = Some(std::mem::take(&mut self.mem));
            core.flush_progress.set(0);
            core.flush_clock.start();
            core.sealed.store(true, Ordering::Release);
            core.wake();
        }
        drop(st);
        self.log = log;
        self.wal = Cursor::start(&log);
        Ok(())
    }

    /// Waits until `done` holds of the shared state (or the writer breaks).
    fn wait(&self, done: impl Fn(&State) -> bool) -> Result<()> {
        let core = &self.core;
        let mut st = core.st.lock();
        loop {
            if let Some(why) = &st.broken {
                return Err(core.refused(why));
            }
            if done(&st) {
                return Ok(());
            }
            core.cv.wait(&mut st);
        }
    }

    /// Everything committed merged into the base table, and that root durable: seals the log,
    /// waits for its flush and for a merge of every delta table. Its cost follows the whole
    /// table; the writer does the same work in the background on its own.
    pub fn checkpoint(&mut self) -> Result<()> {
        self.usable()?;
        if self.wal.pos > 0 {
            self.switch(0)?;
        }
        {
            let mut st = self.core.st.lock();
            st.compact = true;
            self.core.wake();
        }
        let done = self.wait(|st| {
            st.root.sealed.is_none() && st.root.deltas.is_empty() && !st.root.merging.is_some()
        });
        self.core.st.lock().compact = false;
        done
    }

    /// The full garbage-collection pass: a checkpoint, then every segment and page below the
    /// high-water mark that the root neither references nor lists as free goes back to the
    /// free lists (and its blocks to the filesystem). The pending batch is left as it is.
    pub fn gc(&mut self) -> Result<GcReport> {
        self.checkpoint()?;
        self.wait(|st| st.idle())?;
        let mut st = self.core.publisher();
        let report = gc::collect(&self.core, &mut st)?;
        failpoint::hit("gc.reclaimed");
        super::trim::trim(&self.core, &mut st, self.wal.pos)?;
        Ok(report)
    }

    /// Log bytes at which the log commits append to is sealed.
    pub fn log_limit(&self) -> u64 {
        match self.limit {
            0 => self.log.bytes,
            n => n.min(self.log.bytes),
        }
    }

    /// What this open recovered: the root it started from, the batches it replayed, and
    /// what it dropped (a damaged root slot, an incomplete, never acknowledged last batch).
    pub fn recovery(&self) -> &RecoveryReport {
        &self.recovered
    }

    /// The counters of the writer's current root (`wal_bytes`: bytes committed to its log).
    pub fn stats(&self) -> Result<Stats> {
        let st = self.core.st.lock();
        Ok(Stats::of(&st.root, self.core.file.size()?, self.wal.pos))
    }

    /// Commits, moves the log into a delta table, merges the delta tables into the base when
    /// the tables are small (below `CLOSE_MERGE` bytes: a fraction of a second), stops the
    /// worker (a merge in progress goes on at the next open), gives free space back to the
    /// filesystem and releases the file. Its cost follows the log, not a large table.
    pub fn close(mut self) -> Result<()> {
        self.commit()?;
        if self.wal.pos > 0 {
            self.switch(0)?;
        }
        self.wait(|st| st.root.sealed.is_none())?;
        let small = {
            let r = &self.core.st.lock().root;
            let bytes: u64 = [r.base, r.merging]
                .iter()
                .chain(&r.deltas)
                .map(|t| t.bytes)
                .sum();
            bytes <= CLOSE_MERGE && (!r.deltas.is_empty() || r.merging.is_some())
        };
        if small {
            self.checkpoint()?;
        }
        self.stop_worker();
        let mut st = self.core.st.lock();
        if let Some(why) = &st.broken {
            return Err(self.core.refused(why));
        }
        super::trim::trim(&self.core, &mut st, self.wal.pos).map(drop)
    }

    fn stop_worker(&mut self) {
        self.core.st.lock().stop = true;
        self.core.wake();
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop_worker();
    }
}

pub(crate) fn same_len(keys: &[Key], values: &[Value]) -> Result<()> {
    if keys.len() != values.len() {
        return Err(Error::InvalidArgument(format!(
            "{} keys but {} values",
            keys.len(),
            values.len()
        )));
    }
    Ok(())
}
