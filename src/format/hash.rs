//! The key hash that places keys in the directory. Part of the format: changing it moves keys.

use crate::Key;

/// murmur3's 64-bit finaliser: a bijection with full avalanche.
#[inline]
pub fn fmix64(mut x: u64) -> u64 {
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

/// The hashes a bucket page covers: `lo..=hi`, both on 32-bit boundaries (the directory never
/// has more than 2^32 slots), so a run of whole directory slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Range {
    pub lo: u64,
    pub hi: u64,
}

impl Range {
    #[cfg(test)]
    pub const ALL: Range = Range {
        lo: 0,
        hi: u64::MAX,
    };

    /// The hashes of directory slots `first..=last` under `depth` leading bits.
    pub fn slots(first: u64, last: u64, depth: u32) -> Range {
        let start = |i: u64| if depth == 0 { 0 } else { i << (64 - depth) };
        let hi = match last.checked_add(1) {
            Some(next) if next < 1u64 << depth => start(next) - 1,
            _ => u64::MAX,
        };
        Range {
            lo: start(first),
            hi,
        }
    }

    pub fn contains(&self, hash: u64) -> bool {
        (self.lo..=self.hi).contains(&hash)
    }

    /// Whether the range starts and ends on 32-bit boundaries, as a page can record it.
    pub fn aligned(&self) -> bool {
        self.lo as u32 == 0 && self.hi as u32 == u32::MAX && self.lo <= self.hi
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
    fn slot_ranges_tile_the_hash_space() {
        assert_eq!(Range::slots(0, 0, 0), Range::ALL);
        let r = Range::slots(3, 5, 4);
        assert_eq!((r.lo, r.hi), (0x3 << 60, (0x6 << 60) - 1));
        assert_eq!(Range::slots(15, 15, 4).hi, u64::MAX);
        assert!(r.aligned() && Range::slots(7, 9, 32).aligned());
        let h = 0xd123_4567_89ab_cdef;
        let i = dir_index(h, 12);
        assert!(Range::slots(i, i, 12).contains(h) && !Range::slots(i + 1, i + 1, 12).contains(h));
    }

    #[test]
    fn index_takes_the_leading_bits() {
        let h = 0xdead_beef_0123_4567u64;
        assert_eq!(dir_index(h, 0), 0);
        assert_eq!(dir_index(h, 4), 0xd);
        assert_eq!(dir_index(h, 64), h);
    }
}
