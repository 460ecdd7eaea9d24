//! Sizes and names fixed by format version 2 (see docs/FORMAT.md).

/// Format version written in the root slots and the file attribute `hashdir_format`.
pub const FORMAT_VERSION: u32 = 2;
/// Bytes of one page (bucket, directory, array pages) in the `pages` dataset.
pub const PAGE: usize = 4096;
/// Pages per chunk of the `pages` dataset (chunk = 1 MiB).
pub const PAGES_PER_CHUNK: u64 = 256;
/// Bytes of one chunk of the `wal` dataset and of each value shard dataset.
pub const BLOB_CHUNK: u64 = 1 << 20;
/// Number of value shard datasets (`values/shard_00` …).
pub const VALUE_SHARDS: usize = 8;
/// Bytes of one root slot; the `root` dataset holds two.
pub const ROOT_SLOT: usize = 1024;
