//! The file: HDF5 container, its writer lock, raw positional I/O, readers' mappings and the
//! reader table.
//!
//! Only this module calls HDF5 or the OS file APIs. HDF5 writes a file's metadata once, at
//! creation; the engine then addresses its data by file offsets inside the contiguous `/data`
//! dataset, so the hot paths are plain `pwrite`/`pread`/mmap with no HDF5 call and no global
//! lock.

mod file;
mod h5;
mod lock;
mod map;
mod memory;
mod readers;
mod shards;
pub mod trace;

pub use file::{drop_cache, Create, FileSize, ReadFile, Staged, WriterFile};
pub use map::Mmap;
pub use memory::{huge_pages, prefetch};
#[cfg(feature = "testing")]
pub use readers::SLOTS;
pub use readers::{table_path, ReaderTable, Slot};
pub use shards::{read_manifest, shard_path, unfinished_store, write_manifest, SetLog, MANIFEST};

/// Positional I/O on the writer's file.
pub trait Positional {
    /// Writes all of `data` at file offset `off`.
    fn write_at(&self, off: u64, data: &[u8]) -> crate::error::Result<()>;

    #[cfg(any(test, feature = "testing"))]
    /// Writes all of `bufs`, one after another, at file offset `off`, without first copying
    /// them into one buffer.
    fn write_vectored_at(&self, off: u64, bufs: &[&[u8]]) -> crate::error::Result<()>;

    /// Reads exactly `buf.len()` bytes at `off`; a range past the end of the file is `Corrupt`.
    fn read_at(&self, off: u64, buf: &mut [u8]) -> crate::error::Result<()>;

    /// End of the data area (no system call: a bound for reads of engine data).
    fn data_end(&self) -> u64;

    /// Says that `[off, off + len)` is written and will not change soon (a file may start
    /// writing it back).
    fn written(&self, _off: u64, _len: u64) {}

    /// Says that `[off, off + len)` will hold nothing: a file may give its blocks back (they
    /// may hold what the space held before it was freed, which nothing reads).
    fn unused(&self, _off: u64, _len: u64) {}

    /// Says that `[off, off + len)` will be read soon: a file may start reading it from the
    /// device now, so that the reads find it in memory instead of waiting one after another.
    fn will_need(&self, _off: u64, _len: u64) {}
}
