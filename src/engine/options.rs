//! Options of writers and readers, and the statistics they report.

use crate::error::{Error, Result};
use crate::format::root::Root;

/// Memtable/WAL bytes that trigger a checkpoint when the caller gives 0.
pub const DEFAULT_CHECKPOINT_BYTES: u64 = 128 << 20;
/// The largest setting. Recovery replays up to this much log, the writer keeps its ops in memory
/// (about 1.5x the log's bytes) and so does every reader, as its overlay (1.6x for one-value
/// inserts, more for other changes; PERFORMANCE.md).
pub const MAX_CHECKPOINT_BYTES: u64 = 4 << 30;

#[derive(Clone, Debug)]
pub struct Options {
    /// Writer: create the file if it does not exist.
    pub create: bool,
    /// Writer: fsync at every commit.
    pub sync_commit: bool,
    /// Writer: WAL bytes that trigger a checkpoint; 0 = default.
    pub checkpoint_bytes: u64,
    /// Reader: automatic refresh interval in ms; 0 = only explicit refresh.
    pub refresh_interval_ms: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            create: true,
            sync_commit: false,
            checkpoint_bytes: 0,
            refresh_interval_ms: 0,
        }
    }
}

impl Options {
    /// The checkpoint size in effect; more than [`MAX_CHECKPOINT_BYTES`] is refused.
    pub fn checkpoint_bytes(&self) -> Result<u64> {
        match self.checkpoint_bytes {
            0 => Ok(DEFAULT_CHECKPOINT_BYTES),
            n if n > MAX_CHECKPOINT_BYTES => Err(Error::InvalidArgument(format!(
                "checkpoint_bytes {n} is above the maximum {MAX_CHECKPOINT_BYTES} (4 GiB)"
            ))),
            n => Ok(n),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub global_depth: u32,
    /// Keys and values as of the last checkpoint (`epoch`).
    pub keys: u64,
    pub values: u64,
    pub buckets: u64,
    pub file_bytes: u64,
    pub epoch: u64,
    /// Value sets stored in extents (the rest are inline in their bucket entry).
    pub extents: u64,
    /// WAL bytes committed since the last checkpoint (a reader: those it has applied).
    pub wal_bytes: u64,
}

impl Stats {
    pub fn of(root: &Root, file_bytes: u64, wal_bytes: u64) -> Stats {
        Stats {
            global_depth: root.global_depth,
            keys: root.keys,
            values: root.values,
            buckets: root.buckets,
            extents: root.extents,
            file_bytes,
            epoch: root.epoch,
            wal_bytes,
        }
    }
}
