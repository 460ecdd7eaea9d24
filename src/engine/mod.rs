//! The engine: one writer, many readers, over the `format` and `store` layers.
//!
//! Writer path: ops → WAL frame (`wal`) → commit → `oplog`. A full log is sealed and the
//! background worker (`checkpoint`) turns it into a delta table (`checkpoint::flush`) and
//! merges delta tables into the base table (`checkpoint::merge`), writing tables as streams
//! (`table`) into space handed out in segments (`space`), publishing roots (`core`).
//! `recovery` rebuilds the writer's state from the newest root and its logs.
//! Reader path: `reader` snapshots a root, views its tables, and tails its logs into overlays
//! (`overlay`, `logindex`, `delta`).

mod array;
mod checkpoint;
mod core;
mod delta;
pub mod failpoint;
#[cfg(feature = "testing")]
pub mod fuzz;
mod gc;
mod logindex;
mod oplog;
mod options;
mod overlay;
mod reader;
mod recovery;
mod sets;
mod sharded;
mod source;
mod space;
mod store;
mod table;
mod trim;
mod verify;
mod wal;
mod walk;
mod writer;

pub use gc::GcReport;
pub use options::{Options, Stats, MAX_CHECKPOINT_BYTES};
#[cfg(feature = "testing")]
pub use reader::FILTERS_IN_PLACE;
pub use reader::{CopyProgress, Reader};
pub use recovery::RecoveryReport;
pub use sharded::{Alone, Collective, ShardedWriter};
pub use store::{verify_store, StoreReader, StoreWriter};
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
