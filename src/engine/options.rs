//! Options of writers and readers, and the statistics they report.

use crate::format::root::Root;

/// Memtable/WAL bytes that trigger a checkpoint when the caller gives 0.
pub const DEFAULT_CHECKPOINT_BYTES: u64 = 128 << 20;

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
    pub fn checkpoint_bytes(&self) -> u64 {
        match self.checkpoint_bytes {
            0 => DEFAULT_CHECKPOINT_BYTES,
            n => n,
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
