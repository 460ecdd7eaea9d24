//! Options of writers and readers, and the statistics they report.

use crate::error::{Error, Result};
use crate::format::layout::PAGE;
use crate::format::root::Root;
use crate::store::FileSize;

/// With `checkpoint_bytes` 0 the log grows with the table: to half the table's bucket pages,
/// at least `AUTO_LOG_MIN` and at most `AUTO_LOG_MAX`. A checkpoint rewrites about every page
/// once the table is large against the log, so the share bounds the page bytes written per
/// logged byte (about 2) at any size, where a fixed log lets that grow with the table.
pub const AUTO_LOG_MIN: u64 = 128 << 20;
/// The most the automatic log grows to: recovery replays 1 GiB of log in about 1 s, the
/// writer holds about 1.5x the log's bytes (its ops; 3x while a checkpoint sorts them) and each
/// reader about a third of it (an index of the log, PERFORMANCE.md).
pub const AUTO_LOG_MAX: u64 = 1 << 30;
const AUTO_LOG_SHARE: u64 = 2;
/// The largest setting. Recovery replays up to this much log, the writer keeps its ops in memory
/// (about 1.5x the log's bytes) and so does every reader, as its overlay (about 0.3x the log in
/// place, 1.6x as a copy for one-value inserts, more for other changes; PERFORMANCE.md).
pub const MAX_CHECKPOINT_BYTES: u64 = 4 << 30;

/// The log size at which a writer checkpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLimit {
    /// Grows with the table (`checkpoint_bytes` 0).
    Auto,
    Fixed(u64),
}

impl LogLimit {
    /// The limit for a table of `buckets` bucket pages.
    pub fn bytes(self, buckets: u64) -> u64 {
        match self {
            LogLimit::Fixed(n) => n,
            LogLimit::Auto => (buckets.saturating_mul(PAGE as u64) / AUTO_LOG_SHARE)
                .clamp(AUTO_LOG_MIN, AUTO_LOG_MAX),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Options {
    /// Writer: create the file if it does not exist.
    pub create: bool,
    /// Writer: fsync at every commit.
    pub sync_commit: bool,
    /// Writer: WAL bytes that trigger a checkpoint; 0 = grow with the table ([`AUTO_LOG_MIN`]
    /// to [`AUTO_LOG_MAX`]).
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
    pub fn log_limit(&self) -> Result<LogLimit> {
        match self.checkpoint_bytes {
            0 => Ok(LogLimit::Auto),
            n if n > MAX_CHECKPOINT_BYTES => Err(Error::InvalidArgument(format!(
                "checkpoint_bytes {n} is above the maximum {MAX_CHECKPOINT_BYTES} (4 GiB)"
            ))),
            n => Ok(LogLimit::Fixed(n)),
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
    /// The file's length.
    pub file_bytes: u64,
    /// Bytes the filesystem holds for the file: less than its length where free space has
    /// been given back (`Writer::close`, `Writer::gc`) or allocated space never written.
    pub disk_bytes: u64,
    pub epoch: u64,
    /// Value sets stored in extents (the rest are inline in their bucket entry).
    pub extents: u64,
    /// WAL bytes committed since the last checkpoint (a reader: those it has applied).
    pub wal_bytes: u64,
}

impl Stats {
    pub fn of(root: &Root, size: FileSize, wal_bytes: u64) -> Stats {
        Stats {
            global_depth: root.global_depth,
            keys: root.keys,
            values: root.values,
            buckets: root.buckets,
            extents: root.extents,
            file_bytes: size.len,
            disk_bytes: size.allocated,
            epoch: root.epoch,
            wal_bytes,
        }
    }
}
