//! hashdir: a disk-backed, concurrent hash directory mapping 128-bit keys to sets of
//! 128-bit values, kept in one HDF5 file shared by one writer and many readers (SWMR).
//!
//! One [`Writer`] per file (in all processes together) batches inserts and deletes and
//! [`commit`](Writer::commit)s them atomically; any number of [`Reader`]s, in any processes,
//! look keys up in a snapshot of the last commit they saw and [`refresh`](Reader::refresh) to
//! newer ones. [`verify`] checks a file; [`Reader::copy_to`] copies a snapshot to a new file
//! while the writer goes on.
//!
//! ```no_run
//! use hashdir::{Options, Reader, Writer};
//! # fn main() -> hashdir::Result<()> {
//! let path = std::path::Path::new("data.h5");
//! let mut w = Writer::open(path, &Options::default())?;
//! w.insert(&[[1; 16], [1; 16]], &[[7; 16], [8; 16]])?;
//! w.commit()?;
//! let r = Reader::open(path, &Options::default())?;
//! let (mut values, mut counts) = (vec![[0; 16]; 8], [0u64; 1]);
//! let n = r.get(&[[1; 16]], &mut values, &mut counts)?;
//! assert_eq!(n, 2);
//! w.close()?;
//! # Ok(())
//! # }
//! ```
//!
//! Layers, top to bottom (arrows point down only): `ffi`, the C surface (`hashdir_*`), panics
//! and errors turned into status codes; `engine`: writer, background flush and merge, tables,
//! space, readers, WAL, recovery; `format`: bytes only — root slots, pages, WAL frames, CRC;
//! no I/O; `store`: the file, its lock, and the only code that calls HDF5.

// The internals `testing` re-exports are documented for the crate, not as public API.
#![cfg_attr(not(feature = "testing"), warn(missing_docs))]

mod engine;
mod error;
#[doc(hidden)]
pub mod ffi;
mod format;
mod store;
#[doc(hidden)]
pub mod workload;

pub use engine::{
    verify, verify_store, CopyProgress, GcReport, Options, Reader, RecoveryReport, Stats,
    StoreReader, StoreWriter, VerifyReport, Writer, MAX_CHECKPOINT_BYTES,
};
pub use engine::{Alone, Collective, ShardedWriter};
pub use error::{Error, Result};
pub use format::shard::shard_of;

use std::path::{Path, PathBuf};

/// A key: 16 opaque bytes, compared bytewise.
pub type Key = [u8; 16];
/// A value: 16 opaque bytes, compared bytewise.
pub type Value = [u8; 16];

/// The reader table beside the file at `path`: `<path>.readers`, where readers pin the
/// snapshots they read. It holds no data; delete it along with the file.
pub fn reader_table_path(path: &Path) -> PathBuf {
    store::table_path(path)
}

/// Internals for this crate's own tests, benchmarks and fuzz targets (cargo feature
/// `testing`): no stability promise, not for users.
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod testing {
    pub use crate::engine::{failpoint, fuzz, FILTERS_IN_PLACE};
    pub use crate::format::{layout, root};
    pub use crate::store::{
        drop_cache, table_path, trace, Create, Mmap, Positional, ReadFile, ReaderTable, WriterFile,
        SLOTS,
    };
}
