//! The file: HDF5 container, its datasets, the writer's lock, raw positional I/O.
//!
//! Only this module calls HDF5 or the OS file APIs. The engine addresses its data by file
//! offsets inside HDF5 chunks that are allocated early and never move (DESIGN.md §3), so the
//! hot paths are plain `pwrite`/`pread`/mmap with no HDF5 call and no global lock.

mod file;
mod h5;
mod lock;
mod map;
mod memory;
mod readers;
pub mod trace;

use crate::format::layout::{BLOB_CHUNK, PAGE, PAGES_PER_CHUNK, VALUE_SHARDS};

pub use file::{drop_cache, FileSize, RawIo, ReadFile, WriterFile};
pub use map::Mmap;
pub use memory::huge_pages;
pub use readers::{table_path, ReaderTable, Slot, SLOTS};

/// Positional I/O on the writer's file, by its own handle or a helper thread's [`RawIo`].
pub trait Positional {
    /// Writes all of `data` at file offset `off`.
    fn write_at(&self, off: u64, data: &[u8]) -> crate::error::Result<()>;

    /// Writes all of `bufs`, one after another, at file offset `off`, without first copying
    /// them into one buffer.
    fn write_vectored_at(&self, off: u64, bufs: &[&[u8]]) -> crate::error::Result<()>;

    /// Reads exactly `buf.len()` bytes at `off`; a range past the end of the file is `Corrupt`.
    fn read_at(&self, off: u64, buf: &mut [u8]) -> crate::error::Result<()>;

    /// End of the furthest chunk (no system call: a bound for reads of engine data).
    fn data_end(&self) -> u64;
}

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

impl Ds {
    /// Every dataset the engine fills, in slot order.
    pub fn all() -> impl Iterator<Item = Ds> {
        [Ds::Pages, Ds::Wal]
            .into_iter()
            .chain((0..VALUE_SHARDS as u8).map(Ds::Values))
    }

    /// The dataset's path inside the file.
    pub fn name(self) -> String {
        match self {
            Ds::Pages => "pages".to_owned(),
            Ds::Wal => "wal".to_owned(),
            Ds::Values(i) => format!("values/shard_{i:02}"),
        }
    }

    /// Dense index of the dataset (position in [`Ds::all`]); `None` for a shard number out of range.
    pub(crate) fn slot(self) -> Option<usize> {
        match self {
            Ds::Pages => Some(0),
            Ds::Wal => Some(1),
            Ds::Values(i) if (i as usize) < VALUE_SHARDS => Some(2 + i as usize),
            Ds::Values(_) => None,
        }
    }

    /// Chunk shape: its first dimension is the one that grows.
    pub(crate) fn chunk_dims(self) -> &'static [u64] {
        match self {
            Ds::Pages => &[PAGES_PER_CHUNK, PAGE as u64],
            Ds::Wal | Ds::Values(_) => &[BLOB_CHUNK],
        }
    }
}
