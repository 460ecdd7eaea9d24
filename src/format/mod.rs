//! Bytes only: layout constants, root slots, pages, WAL frames, checksums. No I/O.

pub mod array;
pub mod bucket;
pub mod bytes;
pub mod filter;
pub mod hash;
pub mod layout;
pub mod page;
pub mod root;
pub mod shard;
pub mod table;
pub mod wal;
