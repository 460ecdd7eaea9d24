//! Options of writers and readers, and the statistics they report.

use crate::error::{Error, Result};
use crate::format::layout::{MAX_CAPACITY, MIN_CAPACITY, SEGMENT};
use crate::format::root::Root;
use crate::store::FileSize;

/// The largest log. Recovery replays up to two logs (the one being flushed and the current
/// one), the writer keeps their ops in memory (about 1.3x the log's bytes each) and every
/// reader an index of them (about half the log's bytes each, at one value per op).
pub const MAX_CHECKPOINT_BYTES: u64 = 4 << 30;

/// Options of [`Writer::open`](crate::Writer::open) and [`Reader::open`](crate::Reader::open);
/// each field says which of the two reads it.
#[derive(Clone, Debug)]
pub struct Options {
    /// Writer: create the file if it does not exist.
    pub create: bool,
    /// Writer: fsync at every commit.
    pub sync_commit: bool,
    /// Writer: bytes of log that are turned into a delta table at once; 0 = grow with the
    /// tables (a quarter of their bytes, between 4 MiB and 512 MiB).
    pub checkpoint_bytes: u64,
    /// Writer creating a file: bytes of its data area, fixed for the life of the file (the
    /// file is this long, but takes disk only as it is written); 0 = 4 TiB.
    pub capacity: u64,
    /// Reader: automatic refresh interval in ms; 0 = only explicit refresh.
    pub refresh_interval_ms: u32,
    /// Writer creating a store: more than 1 makes it a sharded store of that many files.
    pub shards: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            create: true,
            sync_commit: false,
            checkpoint_bytes: 0,
            capacity: 0,
            refresh_interval_ms: 0,
            shards: 0,
        }
    }
}

impl Options {
    /// The log size in effect (0 = automatic); more than [`MAX_CHECKPOINT_BYTES`] is
    /// refused.
    pub fn log_bytes(&self) -> Result<u64> {
        match self.checkpoint_bytes {
            n if n > MAX_CHECKPOINT_BYTES => Err(Error::InvalidArgument(format!(
                "checkpoint_bytes {n} is above the maximum {MAX_CHECKPOINT_BYTES} (4 GiB)"
            ))),
            n => Ok(n),
        }
    }

    /// Checks `capacity` (0 = the default).
    pub fn check_capacity(&self) -> Result<()> {
        match self.capacity {
            0 => Ok(()),
            n if (MIN_CAPACITY..=MAX_CAPACITY).contains(&n) && n % SEGMENT == 0 => Ok(()),
            n => Err(Error::InvalidArgument(format!(
                "capacity {n} must be 0 or a multiple of {SEGMENT} between {MIN_CAPACITY} and {MAX_CAPACITY} bytes"
            ))),
        }
    }
}

/// Counters of a file as of a writer's or a reader's current root.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Directory depth of the base table.
    pub global_depth: u32,
    /// Keys and values of the base table: the state as of the last completed merge (exact
    /// after `checkpoint`).
    pub keys: u64,
    /// Values of the base table, as `keys`.
    pub values: u64,
    /// Pages of the base table.
    pub buckets: u64,
    /// The file's length.
    pub file_bytes: u64,
    /// Bytes the filesystem holds for the file: less than its length where space was never
    /// written or was given back.
    pub disk_bytes: u64,
    /// The root's epoch: it grows with every root published.
    pub epoch: u64,
    /// Value sets of the base table stored in extents (the rest are inline in their entry).
    pub extents: u64,
    /// WAL bytes committed to the current log (a reader: those it has applied).
    pub wal_bytes: u64,
    /// Delta tables waiting to be merged into the base, and their bytes.
    pub delta_tables: u64,
    /// Bytes of those delta tables.
    pub delta_bytes: u64,
    /// A merge is under way.
    pub merging: bool,
}

impl Stats {
    pub(crate) fn of(root: &Root, size: FileSize, wal_bytes: u64) -> Stats {
        Stats {
            global_depth: root.base.depth,
            keys: root.base.entries,
            values: root.base.values,
            buckets: root.base.pages,
            extents: root.base.extents,
            file_bytes: size.len,
            disk_bytes: size.allocated,
            epoch: root.epoch,
            wal_bytes,
            delta_tables: root.deltas.len() as u64,
            delta_bytes: root.deltas.iter().map(|t| t.bytes).sum(),
            merging: root.merging.is_some(),
        }
    }
}
