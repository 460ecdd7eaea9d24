//! Sizes and names fixed by format version 5 (see docs/FORMAT.md).

/// Format version written in the root slots and the file attribute `hashdir_format`.
pub const FORMAT_VERSION: u32 = 5;
/// Bytes of one page (table pages and array pages).
pub const PAGE: usize = 4096;
/// Bytes of one segment: the unit in which `/data` is handed out (logs, table streams, and
/// the pages that arrays are written into).
pub const SEGMENT: u64 = 1 << 20;
/// Pages per segment.
pub const PAGES_PER_SEGMENT: u64 = SEGMENT / PAGE as u64;
/// Bytes of one root slot; the `root` dataset holds two.
pub const ROOT_SLOT: usize = 4096;
/// `/data` of a new file when the writer asks for no particular size: the file's length, most
/// of it a hole that takes no disk until written.
pub const DEFAULT_CAPACITY: u64 = 4 << 40;
/// The least `/data` a file may have.
pub const MIN_CAPACITY: u64 = 64 << 20;
/// The most: directory items hold page numbers (offset / PAGE) in 32 bits, so every byte of the
/// file lies below 16 TiB; a little is left for HDF5's metadata and the root slots.
pub const MAX_CAPACITY: u64 = (16 << 40) - (64 << 20);
/// Delta tables a root lists at most (they fill the root slot after its fixed fields).
pub const MAX_RUNS: usize = 28;
