//! `hashdir_options`: defaults, and decoding a caller's (possibly other-version) struct.

use super::abi::{hashdir_options, HASHDIR_CREATE, HASHDIR_SYNC_COMMIT};
use super::args::{field_ends, read_versioned};
use super::call::{guard, CallResult, Failure};
use crate::Options;
use std::mem::size_of;

const KNOWN_FLAGS: u32 = HASHDIR_CREATE | HASHDIR_SYNC_COMMIT;

/// What `hashdir_options_init` writes and what a NULL `opts` means.
fn default_options() -> hashdir_options {
    hashdir_options {
        struct_size: size_of::<hashdir_options>() as u32,
        flags: HASHDIR_CREATE,
        checkpoint_bytes: 0,
        refresh_interval_ms: 0,
        capacity: 0,
        shards: 0,
    }
}

/// Fills `*opts` with the defaults: `struct_size = sizeof(hashdir_options)`,
/// `flags = HASHDIR_CREATE`, everything else 0. Does nothing if `opts` is NULL.
///
/// # Threads
/// Any thread.
///
/// # Safety
/// `opts` is NULL or points at a writable `hashdir_options` (this header's size).
#[no_mangle]
pub unsafe extern "C" fn hashdir_options_init(opts: *mut hashdir_options) {
    guard("hashdir_options_init", (), || {
        if !opts.is_null() {
            // SAFETY: non-NULL and writable by contract; unaligned write so a packed or
            // odd buffer is not undefined behaviour.
            unsafe { opts.write_unaligned(default_options()) }
        }
    })
}

/// Decodes the `opts` argument of an open: NULL means the defaults.
///
/// # Safety
/// `opts` is NULL or points at `opts->struct_size` readable bytes.
pub(super) unsafe fn decode(opts: *const hashdir_options) -> CallResult<Options> {
    let raw = if opts.is_null() {
        default_options()
    } else {
        let fields = field_ends!(hashdir_options, default_options();
            flags, checkpoint_bytes, refresh_interval_ms, capacity, shards);
        // SAFETY: passed on from this function's contract.
        unsafe { read_versioned(opts, default_options(), &fields, "opts") }?
    };
    let unknown = raw.flags & !KNOWN_FLAGS;
    if unknown != 0 {
        return Err(Failure::invalid(format!(
            "opts->flags has unknown bits {unknown:#x}"
        )));
    }
    Ok(Options {
        create: raw.flags & HASHDIR_CREATE != 0,
        sync_commit: raw.flags & HASHDIR_SYNC_COMMIT != 0,
        checkpoint_bytes: raw.checkpoint_bytes,
        refresh_interval_ms: raw.refresh_interval_ms,
        capacity: raw.capacity,
        shards: raw.shards,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::offset_of;

    /// This header's struct followed by what a newer header could append.
    #[repr(C)]
    struct Newer {
        v1: hashdir_options,
        extra: u64,
    }

    fn decode_ref(o: &hashdir_options) -> Result<Options, String> {
        // SAFETY: a live struct of its declared size (or less).
        unsafe { decode(o) }.map_err(|f| f.message)
    }

    #[test]
    fn null_means_defaults() {
        // SAFETY: NULL is allowed.
        let o = unsafe { decode(std::ptr::null()) }.ok().unwrap();
        assert!(o.create && !o.sync_commit);
        assert_eq!((o.checkpoint_bytes, o.refresh_interval_ms), (0, 0));
    }

    #[test]
    fn short_struct_reads_only_whole_fields() {
        let mut o = default_options();
        o.flags = HASHDIR_SYNC_COMMIT;
        o.checkpoint_bytes = 7;
        o.refresh_interval_ms = 9;
        o.struct_size = offset_of!(hashdir_options, checkpoint_bytes) as u32 + 4;
        let d = decode_ref(&o).unwrap();
        assert!(!d.create && d.sync_commit);
        assert_eq!((d.checkpoint_bytes, d.refresh_interval_ms), (0, 0));
        o.struct_size = offset_of!(hashdir_options, refresh_interval_ms) as u32;
        assert_eq!(decode_ref(&o).unwrap().checkpoint_bytes, 7);
        assert_eq!(decode_ref(&o).unwrap().refresh_interval_ms, 0);
    }

    #[test]
    fn bad_sizes_and_flags_are_rejected() {
        for size in [0, 4, 7, 4097, u32::MAX] {
            let o = hashdir_options {
                struct_size: size,
                ..default_options()
            };
            assert!(
                decode_ref(&o).unwrap_err().contains("struct_size"),
                "{size}"
            );
        }
        let o = hashdir_options {
            flags: 0x10,
            ..default_options()
        };
        assert_eq!(
            decode_ref(&o).unwrap_err(),
            "invalid argument: opts->flags has unknown bits 0x10"
        );
    }

    #[test]
    fn shards_is_read_only_within_struct_size() {
        let mut o = default_options();
        o.shards = 4;
        assert_eq!(decode_ref(&o).unwrap().shards, 4);
        o.struct_size = offset_of!(hashdir_options, shards) as u32;
        assert_eq!(decode_ref(&o).unwrap().shards, 0);
    }

    #[test]
    fn newer_struct_needs_zero_extra_bytes() {
        let mut n = Newer {
            v1: default_options(),
            extra: 0,
        };
        n.v1.struct_size = size_of::<Newer>() as u32;
        assert!(decode_ref(&n.v1).is_ok());
        n.extra = 1;
        assert!(decode_ref(&n.v1)
            .unwrap_err()
            .contains("unknown to this library"));
    }
}
