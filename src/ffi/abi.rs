//! The plain-data types and constants shared with C. Their layout is ABI: the asserts at
//! the bottom turn an accidental change into a build error.

use crate::{Key, Value};
use std::mem::{align_of, offset_of, size_of};

/// A key: 16 opaque bytes, compared bytewise.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct hashdir_key {
    /// The key's bytes; all 2^128 values are valid keys.
    pub bytes: [u8; 16],
}

/// A value: 16 opaque bytes, compared bytewise. A key maps to a *set* of values.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct hashdir_value {
    /// The value's bytes; all 2^128 values are valid values.
    pub bytes: [u8; 16],
}

/// What a call returned. `HASHDIR_OK` is 0; on any other status `hashdir_last_error()`
/// describes the failure.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum hashdir_status {
    /// Success.
    HASHDIR_OK = 0,
    /// A NULL pointer, a bad size, an unknown flag, overlapping buffers, ...; nothing was done.
    HASHDIR_ERR_INVALID_ARGUMENT = 1,
    /// The operating system or HDF5 failed to read or write the file.
    HASHDIR_ERR_IO = 2,
    /// A checksum or structural check of the file failed.
    HASHDIR_ERR_CORRUPT = 3,
    /// The file is not HDF5, not a hashdir file, or of an unknown format version.
    HASHDIR_ERR_NOT_HASHDIR = 4,
    /// Another writer has the file open.
    HASHDIR_ERR_LOCKED = 5,
    /// The file does not exist (and, for a writer, `HASHDIR_CREATE` was not given).
    HASHDIR_ERR_NOT_FOUND = 6,
    /// `hashdir_reader_get`'s value buffer is too small; the counts and total are filled.
    HASHDIR_ERR_BUFFER_TOO_SMALL = 7,
    /// The library panicked (a bug); the message says where. A writer that panicked
    /// refuses further calls, so that a half-applied change is never committed.
    HASHDIR_ERR_PANIC = 8,
}

// The `u32` suffixes make cbindgen write `1u`, unsigned like the `flags` field.
/// Writer flag: create the file if it does not exist. Set by `hashdir_options_init`.
pub const HASHDIR_CREATE: u32 = 1u32;
/// Writer flag: fdatasync the file at every commit, so every acknowledged batch survives a
/// power cut (one fdatasync per commit). Without it a power cut may lose the batches since
/// the last durable point, never older data (see `hashdir_writer_commit`).
pub const HASHDIR_SYNC_COMMIT: u32 = 2u32;

/// Options for `hashdir_writer_open` and `hashdir_reader_open`.
///
/// Call `hashdir_options_init` first, then change fields. `struct_size` lets the library
/// and the caller be built against different versions of this header: the library reads
/// only the fields that lie wholly within `struct_size` (missing ones take their
/// defaults), and accepts a larger struct only when the bytes it does not know are all
/// zero. A `struct_size` below 8 or above 4096 is rejected.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct hashdir_options {
    /// `sizeof(hashdir_options)` as the caller was compiled; set by `hashdir_options_init`.
    pub struct_size: u32,
    /// `HASHDIR_CREATE` | `HASHDIR_SYNC_COMMIT`; other bits are rejected. Readers ignore both.
    pub flags: u32,
    /// Writer: bytes of WAL after which the log is sealed and turned into a delta table in
    /// the background; 0 = grow with the tables (a quarter of their bytes, between 4 MiB and
    /// 512 MiB). At most 4 GiB. Recovery after a crash replays up to two logs (the one being
    /// turned into a table and the current one); the writer holds their changes in memory
    /// (about 1.3 times their bytes), and so does every reader, as an index of about half
    /// their bytes (with a reader-table slot; without one, a copy of about 1.6 times).
    pub checkpoint_bytes: u64,
    /// Reader: refresh automatically every this many milliseconds; 0 = only on
    /// `hashdir_reader_refresh`.
    pub refresh_interval_ms: u32,
    /// Writer creating a file: bytes of its data area, fixed for the life of the file; 0 =
    /// 4 TiB. The file is that long from the start but takes disk only as data is written
    /// (it is sparse: `du` shows its use, `ls -l` its length). A multiple of 1 MiB between
    /// 64 MiB and 16 TiB - 64 MiB. Ignored when the file exists.
    pub capacity: u64,
    /// Writer creating a store with `HASHDIR_CREATE`: more than 1 makes `path` a directory
    /// holding that many files, each an ordinary hashdir file holding the keys
    /// `hashdir_shard_of` routes to it (at most 4096); 0 or 1 = one file. When `path` exists
    /// it must then be a sharded store of that many shards. Writers and readers open a sharded
    /// store's directory whatever this says.
    pub shards: u32,
}

/// The collective a group writer agrees through (`hashdir_group_writer_open`): called by
/// every member at the same step with `n` values; it replaces each value by the largest any
/// member passed at its place (an all-reduce with max over `uint64_t`, e.g.
/// `MPI_Allreduce(MPI_IN_PLACE, values, n, MPI_UINT64_T, MPI_MAX, comm)`), and returns 0, or
/// anything else if it failed.
pub type hashdir_group_max =
    Option<unsafe extern "C" fn(ctx: *mut core::ffi::c_void, values: *mut u64, n: usize) -> i32>;

/// The group of processes (e.g. the ranks of an MPI communicator) whose members write the
/// shards of one store together through `hashdir_group_writer_open`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct hashdir_group {
    /// `sizeof(hashdir_group)` as the caller was compiled.
    pub struct_size: u32,
    /// This process's index in the group, below `members`. Member 0 keeps the set log.
    pub member: u32,
    /// How many processes the group has (at least 1).
    pub members: u32,
    /// Passed to `max` as it is.
    pub ctx: *mut core::ffi::c_void,
    /// The collective maximum; must not be NULL.
    pub max: hashdir_group_max,
}

/// Counters of an open file, filled by `hashdir_writer_stats` / `hashdir_reader_stats`.
///
/// Set `struct_size` to `sizeof(hashdir_stats)` before the call: the library writes only
/// the fields that lie wholly within it and leaves the rest of the caller's struct alone,
/// so a caller built against an older header keeps working. New fields are appended.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct hashdir_stats {
    /// Set by the caller: the size of its struct. Not written by the library.
    pub struct_size: u32,
    /// Bits of key hash that select a directory slot of the base table.
    pub global_depth: u32,
    /// Distinct keys of the base table (as of the last completed merge).
    pub keys: u64,
    /// Key-value pairs of the base table.
    pub values: u64,
    /// Pages of the base table.
    pub buckets: u64,
    /// Length of the file in bytes.
    pub file_bytes: u64,
    /// Number of the last root published.
    pub epoch: u64,
    /// WAL bytes committed to the current log (for a reader: those its view has applied).
    pub wal_bytes: u64,
    /// Value sets of the base table large enough to live in extents of their own rather
    /// than inline in their page.
    pub extents: u64,
    /// Bytes the filesystem holds for the file (`st_blocks` × 512): less than `file_bytes`
    /// where space was never written or was given back.
    pub disk_bytes: u64,
    /// Delta tables waiting to be merged into the base table (`keys`, `values`, `buckets`
    /// and `extents` count the base table: exact after `hashdir_writer_checkpoint`).
    pub delta_tables: u64,
    /// Bytes of those delta tables.
    pub delta_bytes: u64,
    /// 1 while a merge of delta tables into the base is under way, else 0.
    pub merging: u32,
}

/// What opening a writer recovered, filled by `hashdir_writer_recovery` (versioned like
/// `hashdir_stats`: set `struct_size` to `sizeof(hashdir_recovery)`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct hashdir_recovery {
    /// Set by the caller: the size of its struct. Not written by the library.
    pub struct_size: u32,
    /// Things recovery dropped or ignored (a damaged root slot, an incomplete last
    /// batch that was never acknowledged); the report text has one line for each.
    pub dropped: u32,
    /// Epoch of the root the writer started from.
    pub root_epoch: u64,
    /// Committed batches replayed from the WAL on top of that root's tables.
    pub batches_replayed: u64,
    /// WAL bytes those batches took.
    pub log_bytes_replayed: u64,
    /// Microseconds the open spent recovering (loading the root and replaying the WAL).
    pub micros: u64,
}

// The arrays of keys and values C passes are read as `&[Key]` / `&[Value]` in place.
const _: () = assert!(size_of::<hashdir_key>() == size_of::<Key>());
const _: () = assert!(align_of::<hashdir_key>() == align_of::<Key>());
const _: () = assert!(size_of::<hashdir_value>() == size_of::<Value>());
const _: () = assert!(align_of::<hashdir_value>() == align_of::<Value>());
// v1 layouts as published in the header; growing them is fine, moving a field is not.
const _: () = assert!(size_of::<hashdir_options>() == 40);
const _: () = assert!(offset_of!(hashdir_options, shards) == 32);
const _: () = assert!(offset_of!(hashdir_options, checkpoint_bytes) == 8);
const _: () = assert!(offset_of!(hashdir_options, refresh_interval_ms) == 16);
const _: () = assert!(size_of::<hashdir_stats>() == 96);
const _: () = assert!(offset_of!(hashdir_stats, disk_bytes) == 64);
const _: () = assert!(offset_of!(hashdir_stats, keys) == 8);
const _: () = assert!(offset_of!(hashdir_stats, wal_bytes) == 48);
const _: () = assert!(size_of::<hashdir_recovery>() == 40);
const _: () = assert!(size_of::<hashdir_group>() == 32);
const _: () = assert!(offset_of!(hashdir_group, ctx) == 16);
const _: () = assert!(offset_of!(hashdir_recovery, root_epoch) == 8);
