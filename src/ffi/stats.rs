//! Filling a caller's `hashdir_stats`, whatever version of the struct it was built with.

use super::abi::hashdir_stats;
use super::args::{field_ends, write_versioned};
use super::call::CallResult;
use crate::Stats;

/// Writes `s` into the caller's `out` (only the fields its `struct_size` covers).
///
/// # Safety
/// `out` is NULL or points at `out->struct_size` writable bytes.
pub(super) unsafe fn write(s: &Stats, out: *mut hashdir_stats) -> CallResult {
    let full = hashdir_stats {
        struct_size: 0,
        global_depth: s.global_depth,
        keys: s.keys,
        values: s.values,
        buckets: s.buckets,
        file_bytes: s.file_bytes,
        epoch: s.epoch,
        wal_bytes: s.wal_bytes,
        extents: s.extents,
        disk_bytes: s.disk_bytes,
        delta_tables: s.delta_tables,
        delta_bytes: s.delta_bytes,
        merging: u32::from(s.merging),
    };
    let fields = field_ends!(hashdir_stats, full;
        global_depth, keys, values, buckets, file_bytes, epoch, wal_bytes, extents, disk_bytes,
        delta_tables, delta_bytes, merging);
    // SAFETY: passed on from this function's contract.
    unsafe { write_versioned(&full, out, &fields, "out") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    fn sample() -> Stats {
        Stats {
            global_depth: 3,
            keys: 4,
            values: 5,
            buckets: 6,
            file_bytes: 7,
            epoch: 8,
            wal_bytes: 9,
            extents: 10,
            disk_bytes: 11,
            delta_tables: 12,
            delta_bytes: 13,
            merging: true,
        }
    }

    #[test]
    fn full_struct_gets_every_field() {
        let mut out = hashdir_stats {
            struct_size: size_of::<hashdir_stats>() as u32,
            ..Default::default()
        };
        // SAFETY: a live struct of its declared size.
        unsafe { write(&sample(), &mut out) }.ok().unwrap();
        let got = (
            out.global_depth,
            out.keys,
            out.epoch,
            out.wal_bytes,
            out.extents,
            out.disk_bytes,
        );
        assert_eq!(got, (3, 4, 8, 9, 10, 11));
        assert_eq!(out.struct_size, size_of::<hashdir_stats>() as u32);
    }

    #[test]
    fn short_struct_leaves_the_rest_alone() {
        let size = offset_of!(hashdir_stats, values) as u32 + 4; // half of `values`
        let mut out = hashdir_stats {
            struct_size: size,
            values: u64::MAX,
            ..Default::default()
        };
        // SAFETY: the struct is larger than the size it declares.
        unsafe { write(&sample(), &mut out) }.ok().unwrap();
        assert_eq!((out.global_depth, out.keys, out.values), (3, 4, u64::MAX));
    }

    #[test]
    fn bad_size_is_rejected() {
        let mut out = hashdir_stats {
            struct_size: 0,
            ..Default::default()
        };
        // SAFETY: rejected before any write.
        assert!(unsafe { write(&sample(), &mut out) }.is_err());
        // SAFETY: NULL is allowed and rejected.
        assert!(unsafe { write(&sample(), std::ptr::null_mut()) }.is_err());
    }
}
