//! Options of writers and readers, and the statistics they report.

use crate::error::{Error, Result};
use crate::format::layout::PAGE;
use crate::format::root::Root;
use crate::store::FileSize;

/// With `checkpoint_bytes` 0 the log grows with the table: to half the table's bucket pages, at
/// least `AUTO_LOG_MIN`, up to `AUTO_LOG_KNEE`; past that, to an eighth of them, up to
/// `AUTO_LOG_MAX`. A checkpoint rewrites about every page once the table is large against the
/// log, so the share bounds the page bytes written per logged byte: about 2 up to 2 GiB of
/// pages (about 50 M keys), at most 8 up to 16 GiB, where a fixed log lets it grow with the
/// table (38 at 1 B keys with 1 GiB).
pub const AUTO_LOG_MIN: u64 = 128 << 20;
/// Where the log stops growing at half the table: a 1 GiB log costs the writer about 1.3 GB
/// (41 bytes per op) and every reader about a third of it, so mid-sized tables, whose pages
/// mostly sit in the page cache, keep that.
pub const AUTO_LOG_KNEE: u64 = 1 << 30;
const AUTO_LOG_SHARE: u64 = 2;
const AUTO_LOG_TAIL_SHARE: u64 = 8;
/// The most the automatic log grows to (at 16 GiB of pages, about 420 M keys): recovery
/// replays 2 GiB of log in about 1–1.7 s, the writer holds about 2.6 GB of ops and each reader
/// about 0.6 GB of index (PERFORMANCE.md, "1 B keys"), small against such a table.
pub const AUTO_LOG_MAX: u64 = 2 << 30;
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
            LogLimit::Auto => {
                let table = buckets.saturating_mul(PAGE as u64);
                let tail = (table / AUTO_LOG_TAIL_SHARE).max(AUTO_LOG_KNEE);
                (table / AUTO_LOG_SHARE)
                    .min(tail)
                    .clamp(AUTO_LOG_MIN, AUTO_LOG_MAX)
            }
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
    /// to [`AUTO_LOG_MAX`], see [`LogLimit::bytes`]).
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The automatic limit at table sizes on each side of its bends.
    #[test]
    fn automatic_log_follows_the_table() {
        let pages = |bytes: u64| bytes / PAGE as u64;
        let at = |table: u64| LogLimit::Auto.bytes(pages(table));
        const G: u64 = 1 << 30;
        assert_eq!(at(0), AUTO_LOG_MIN);
        assert_eq!(at(200 << 20), AUTO_LOG_MIN);
        assert_eq!(at(G), G / 2);
        assert_eq!(at(2 * G), G);
        assert_eq!(at(8 * G), G, "1 GiB up to 8 GiB of pages");
        assert_eq!(at(12 * G), 12 * G / 8);
        assert_eq!(at(16 * G), 2 * G);
        assert_eq!(at(40 * G), AUTO_LOG_MAX);
        assert_eq!(LogLimit::Auto.bytes(u64::MAX), AUTO_LOG_MAX);
        assert_eq!(LogLimit::Fixed(5).bytes(1 << 30), 5);
    }
}
