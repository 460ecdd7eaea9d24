//! The single writer: batches ops into a WAL frame, commits it, checkpoints when the log is full.

use super::checkpoint;
use super::failpoint;
use super::gc::{self, GcReport};
use super::oplog::OpLog;
use super::options::{LogLimit, Options, Stats};
use super::recovery::{self, RecoveryReport};
use super::state::{initial_root, State};
use super::trim::{self, Scope};
use super::wal::{self, Cursor};
use crate::error::{Error, Result};
use crate::format::wal::{FrameBuf, Op};
use crate::store::{ReaderTable, WriterFile};
use crate::{Key, Value};
use std::path::Path;
use std::sync::Arc;

/// Log size of a new file (it grows as the file grows, up to the log limit).
const MIN_LOG: u64 = 4 << 20;
/// How much the log grows at each checkpoint it forces. A full log means a checkpoint that
/// rewrites about every bucket page a random load touched, so a bulk load's page writes are
/// dominated by the last few before the log reaches its limit: growing 4x rather than
/// 2x halves how many there are.
const LOG_GROWTH: u64 = 4;

pub struct Writer {
    file: WriterFile,
    sync: bool,
    limit: LogLimit,
    st: State,
    mem: OpLog,
    wal: Cursor,
    batch: FrameBuf,
    recovered: RecoveryReport,
    /// Where readers pin the roots they read under; `None` if it cannot be written here.
    readers: Option<Arc<ReaderTable>>,
    /// Why the writer refuses work: a failed checkpoint whose half-made in-memory state could
    /// not be rebuilt from the file. The file is intact; reopening recovers it.
    broken: Option<String>,
}

impl Writer {
    /// Opens (creating if asked) and recovers: newest valid root, then the WAL's valid prefix.
    pub fn open(path: &Path, opts: &Options) -> Result<Writer> {
        let limit = opts.log_limit()?;
        let init = initial_root().encode();
        let file = WriterFile::open(path, opts.create.then_some(&init[..]))?;
        let (st, mem, wal, recovered) = recovery::recover(&file)?;
        let readers = ReaderTable::open(path)?;
        let mut w = Writer {
            file,
            sync: opts.sync_commit,
            limit,
            st,
            mem,
            wal,
            batch: FrameBuf::new(),
            recovered,
            readers,
            broken: None,
        };
        if w.st.wal_chunks.is_empty() {
            w.checkpoint_now(w.grown_log(0))?;
        }
        Ok(w)
    }

    fn log_capacity(&self) -> u64 {
        wal::capacity(&self.st.wal_chunks)
    }

    /// The log size at which this writer checkpoints, for the table as it is now.
    pub fn log_limit(&self) -> u64 {
        self.limit.bytes(self.st.root.buckets)
    }

    /// The next log size: growing from MIN_LOG up to the log limit, so a small file keeps a
    /// small log, and never less than the batch that has to fit.
    fn grown_log(&self, frame: usize) -> u64 {
        let limit = self.log_limit();
        let most = limit.max(frame as u64);
        let least = MIN_LOG.min(limit);
        (self.log_capacity() * LOG_GROWTH)
            .clamp(least, most)
            .max(frame as u64)
    }

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

    pub fn delete_keys(&mut self, keys: &[Key]) -> Result<()> {
        self.push_all(keys.len(), keys.iter().map(|k| Op::DeleteKey(*k)))
    }

    pub fn delete_pairs(&mut self, keys: &[Key], values: &[Value]) -> Result<()> {
        same_len(keys, values)?;
        self.push_all(
            keys.len(),
            keys.iter().zip(values).map(|(k, v)| Op::DeletePair(*k, *v)),
        )
    }

    /// Refuses work once the in-memory state is no longer trustworthy.
    fn usable(&self) -> Result<()> {
        match &self.broken {
            None => Ok(()),
            Some(why) => Err(Error::io(
                "writer",
                self.file.path(),
                std::io::Error::other(format!(
                    "unusable after a failed checkpoint ({why}); reopen the file: nothing committed is lost"
                )),
            )),
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

    /// Makes the pending batch durable (WAL) and visible, atomically; checkpoints when the log
    /// has reached its limit.
    pub fn commit(&mut self) -> Result<()> {
        self.usable()?;
        if self.batch.is_empty() {
            return Ok(());
        }
        let len = self.batch.frame_len();
        if self.wal.pos + len as u64 > self.log_capacity() {
            self.checkpoint_now(self.grown_log(len))?;
        }
        let frame = self.batch.finish(self.wal.gen, self.wal.lsn);
        wal::append(&self.file, &self.st.wal_chunks, &mut self.wal, frame)?;
        failpoint::hit("commit.frame_written");
        if self.sync {
            self.file.sync()?;
        }
        failpoint::hit("commit.durable");
        for op in self.batch.iter() {
            self.mem.apply(&op);
        }
        self.batch.clear();
        if self.wal.pos >= self.log_limit() {
            // The batch is committed whatever happens here; a failed checkpoint is retried at
            // the next commit, and the log still has room for the next batches or says so.
            let _ = self.checkpoint_now(self.grown_log(0));
        }
        Ok(())
    }

    /// Merges everything committed into the pages and publishes a new root.
    pub fn checkpoint(&mut self) -> Result<()> {
        self.checkpoint_now(self.log_capacity())
    }

    /// Checkpoints and makes the log at least `room` bytes.
    fn checkpoint_now(&mut self, room: u64) -> Result<()> {
        self.usable()?;
        let idle = self.mem.is_empty() && self.wal.pos == 0;
        if idle && self.log_capacity() >= room {
            return Ok(());
        }
        self.run_checkpoint(room)
    }

    /// Runs a checkpoint (even with nothing committed: it still publishes changed free lists
    /// and log size); after a failure, rebuilds the in-memory state from the file.
    fn run_checkpoint(&mut self, room: u64) -> Result<()> {
        self.release();
        let r = checkpoint::run(
            &mut self.file,
            &mut self.st,
            &mut self.mem,
            &mut self.wal,
            room,
            self.sync,
        );
        match r {
            Ok(()) => {
                self.mem.clear();
                Ok(())
            }
            Err(e) => {
                // The in-memory state may be half-changed: rebuild it from the file, which
                // still holds the previous root and every committed batch.
                match recovery::recover(&self.file) {
                    Ok((st, mem, wal, _)) => (self.st, self.mem, self.wal) = (st, mem, wal),
                    Err(again) => self.broken = Some(format!("{e}; then {again}")),
                }
                Err(e)
            }
        }
    }

    /// Makes reusable what no pinned reader can read any more.
    fn release(&mut self) {
        let oldest = self.readers.as_ref().and_then(|t| t.oldest());
        self.st.pages.release(oldest.unwrap_or(u64::MAX));
        self.st.extents.release(oldest.unwrap_or(u64::MAX));
        self.st.wal_spare.release(oldest.unwrap_or(u64::MAX));
    }

    /// Gives the free space of `scope` that no pinned reader can read back to the filesystem;
    /// run right after a checkpoint, when the current log is empty. Returns the bytes given
    /// back.
    fn trim(&mut self, scope: Scope) -> Result<u64> {
        self.release();
        trim::trim(&self.file, &self.st, scope, self.wal.pos)
    }

    /// The full garbage-collection pass: checkpoints what is committed, then reclaims every
    /// page and extent that the root neither references nor lists as free, and publishes the
    /// new free lists and gives the free pages and extent space back to the filesystem. The
    /// pending (uncommitted) batch is left as it is.
    pub fn gc(&mut self) -> Result<GcReport> {
        self.checkpoint()?;
        let report = gc::collect(&self.file, &mut self.st)?;
        failpoint::hit("gc.reclaimed");
        if report != GcReport::default() {
            self.run_checkpoint(self.log_capacity())?;
        }
        self.trim(Scope::Table)?;
        Ok(report)
    }

    /// What this open recovered: the root it started from, the batches it replayed, and
    /// what it dropped (a damaged root slot, an incomplete, never acknowledged last batch).
    pub fn recovery(&self) -> &RecoveryReport {
        &self.recovered
    }

    pub fn stats(&self) -> Result<Stats> {
        Ok(Stats::of(&self.st.root, self.file.size()?, self.wal.pos))
    }

    /// Commits, checkpoints, gives free space back to the filesystem and releases the file.
    pub fn close(mut self) -> Result<()> {
        self.commit()?;
        self.checkpoint()?;
        let trimmed = self.trim(Scope::All);
        self.file.close()?;
        trimmed.map(drop)
    }
}

fn same_len(keys: &[Key], values: &[Value]) -> Result<()> {
    if keys.len() != values.len() {
        return Err(Error::InvalidArgument(format!(
            "{} keys but {} values",
            keys.len(),
            values.len()
        )));
    }
    Ok(())
}
