//! The C surface: every `hashdir_*` symbol of `libhashdir.so` / `libhashdir.a`.
//!
//! `include/hashdir.h` is generated from this module by cbindgen (see `cbindgen.toml`;
//! `tests/header.rs` fails when the committed header is stale), so the doc comments of
//! the exported items here *are* the C documentation.
//!
//! Shape, after rustls-ffi and hyper's C API: opaque heap handles, a `#[repr(C)]` status
//! enum, a per-thread last-error message, and names that read the same in Rust and in C
//! (`hashdir_key`, `HASHDIR_OK`) so the header greps back to this code.
//!
//! Rules that hold for every export, enforced in one place each:
//! - no panic crosses the boundary: `call::ffi_call` / `call::guard` catch it and
//!   report `HASHDIR_ERR_PANIC`;
//! - every argument is checked before the engine sees it (`args`), so a bad call
//!   changes no data;
//! - all `unsafe` of the crate lives below this module, each block with its reason.

// The exported names are the C names, on purpose (see above).
#![allow(non_camel_case_types)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod abi;
mod args;
mod call;
mod options;
mod stats;
mod verify;
mod writer;
// After the writer on purpose: cbindgen lists functions in module order, the writer's first,
// then the group writer's (which refers to them), then the reader's.
mod group;
mod reader;

pub use abi::{
    hashdir_group, hashdir_group_max, hashdir_key, hashdir_options, hashdir_recovery,
    hashdir_stats, hashdir_status, hashdir_value, HASHDIR_CREATE, HASHDIR_SYNC_COMMIT,
};
pub use call::{hashdir_last_error, hashdir_status_name, hashdir_version};
pub use group::hashdir_group_writer_open;
pub use options::hashdir_options_init;
pub use reader::{
    hashdir_copy, hashdir_reader, hashdir_reader_close, hashdir_reader_get, hashdir_reader_lookup,
    hashdir_reader_open, hashdir_reader_refresh, hashdir_reader_stats,
};
pub use verify::hashdir_verify;
pub use writer::{
    hashdir_shard_of, hashdir_shard_writer_open, hashdir_writer, hashdir_writer_checkpoint,
    hashdir_writer_close, hashdir_writer_commit, hashdir_writer_delete_keys,
    hashdir_writer_delete_pairs, hashdir_writer_gc, hashdir_writer_insert,
    hashdir_writer_insert_values, hashdir_writer_open, hashdir_writer_recovery,
    hashdir_writer_stats, hashdir_writer_sync,
};
