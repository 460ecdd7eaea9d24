//! The key hash that places keys in the directory. Part of the format: changing it moves keys.

use crate::Key;

/// murmur3's 64-bit finaliser: a bijection with full avalanche.
#[inline]
fn fmix64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// 64-bit hash of a key. For a fixed half the map from the other half is a bijection, so keys
/// that share 8 (or 12) bytes never collide among themselves and counters spread like random keys.
#[inline]
pub fn key_hash(key: &Key) -> u64 {
    let lo = u64::from_le_bytes(key[0..8].try_into().unwrap());
    let hi = u64::from_le_bytes(key[8..16].try_into().unwrap());
    fmix64(lo ^ fmix64(hi ^ 0x9e37_79b9_7f4a_7c15) ^ 0x2545_f491_4f6c_dd1d)
}

/// Directory slot of a hash under `depth` leading bits.
#[inline]
pub fn dir_index(hash: u64, depth: u32) -> u64 {
    if depth == 0 {
        0
    } else {
        hash >> (64 - depth)
    }
}

/// The `depth` leading bits of `hash`, left-aligned (the prefix a bucket at that depth covers).
#[inline]
pub fn prefix(hash: u64, depth: u32) -> u64 {
    if depth == 0 {
        0
    } else {
        hash & (!0u64 << (64 - depth))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_spread_over_directory_slots() {
        let depth = 8;
        let mut hits = vec![0u32; 1 << depth];
        for i in 0u64..(1 << 16) {
            let mut k = [0u8; 16];
            k[..8].copy_from_slice(&i.to_be_bytes());
            hits[dir_index(key_hash(&k), depth) as usize] += 1;
        }
        // 256 per slot expected; a raw-bits "hash" would put all of them in one slot.
        let (min, max) = (*hits.iter().min().unwrap(), *hits.iter().max().unwrap());
        assert!(min > 180 && max < 340, "min {min} max {max}");
    }

    #[test]
    fn prefix_and_index_agree() {
        let h = 0xdead_beef_0123_4567u64;
        assert_eq!(prefix(h, 0), 0);
        assert_eq!(prefix(h, 4), 0xd000_0000_0000_0000);
        assert_eq!(dir_index(h, 4), 0xd);
        assert_eq!(dir_index(h, 64), h);
    }
}
