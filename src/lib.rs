//! hashdir: a disk-backed, concurrent hash directory mapping 128-bit keys to sets of
//! 128-bit values, kept in one HDF5 file shared by one writer and many readers (SWMR).
//!
//! Layers, top to bottom (arrows point down only):
//! - [`ffi`]: the C surface (`hashdir_*`), panics and errors turned into status codes.
//! - [`engine`]: writer, background flush and merge, tables, space, readers, WAL, recovery.
//! - [`format`]: bytes only — root slots, pages, WAL frames, CRC; no I/O.
//! - [`store`]: the file, its lock, and the only code that calls HDF5.

pub mod engine;
pub mod error;
pub mod ffi;
pub mod format;
pub mod store;

pub use engine::{verify, CopyProgress, GcReport, Options, Reader, Stats, VerifyReport, Writer};
pub use error::{Error, Result};

/// A key: 16 opaque bytes, compared bytewise.
pub type Key = [u8; 16];
/// A value: 16 opaque bytes, compared bytewise.
pub type Value = [u8; 16];
