//! The engine: one writer, many readers, over the `format` and `store` layers.
//!
//! Writer path: ops → WAL frame (`wal`) → commit → `oplog`; `checkpoint` merges the memtable
//! into bucket pages and value extents (`valueset`, `extents`) copy-on-write and publishes a new
//! root; `recovery` rebuilds the writer's `state` from the newest root and the WAL.
//! Reader path: `reader` snapshots a root, caches the directory, tails the WAL into `memtable`
//! overlays.

mod array;
mod checkpoint;
mod extents;
pub mod failpoint;
#[doc(hidden)]
pub mod fuzz;
mod gc;
mod logindex;
mod memtable;
mod oplog;
mod options;
mod overlay;
mod pages;
mod reader;
mod recovery;
mod source;
mod state;
mod trim;
mod valueset;
mod verify;
mod wal;
mod walk;
mod writer;

pub use gc::GcReport;
pub use options::{
    LogLimit, Options, Stats, AUTO_LOG_KNEE, AUTO_LOG_MAX, AUTO_LOG_MIN, MAX_CHECKPOINT_BYTES,
};
pub use reader::Reader;
pub use recovery::RecoveryReport;
pub use verify::{verify, VerifyReport};
pub use writer::Writer;

/// The tests' random numbers (xorshift64): small, seedable, and the same on every machine.
#[cfg(test)]
pub(crate) fn xorshift(mut x: u64) -> impl FnMut() -> u64 {
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}
