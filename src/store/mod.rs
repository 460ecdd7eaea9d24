//! The file: HDF5 container, its datasets, the writer's lock, raw positional I/O.
//!
//! Only this module calls HDF5 or the OS file APIs. The engine addresses its data by file
//! offsets inside HDF5 chunks that are allocated early and never move (DESIGN.md §3), so the
//! hot paths are plain `pwrite`/`pread`/mmap with no HDF5 call and no global lock.

mod file;
mod lock;
mod map;

pub use file::{ReadFile, WriterFile};
pub use map::Mmap;

/// The chunked datasets whose chunks the engine fills.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ds {
    /// `/pages`: shape [n, PAGE] u8, chunk [PAGES_PER_CHUNK, PAGE].
    Pages,
    /// `/wal`: shape [n] u8, chunk [BLOB_CHUNK].
    Wal,
    /// `/values/shard_NN`: shape [n] u8, chunk [BLOB_CHUNK].
    Values(u8),
}
