//! A delta table's key filter (docs/FORMAT.md §5.6): a blocked Bloom filter over the keys'
//! hashes, stored after the directory items in the table's directory array. A search skips a
//! table whose filter rules its key out, so a key present in few of the delta tables costs
//! one probe of a 32-byte block per other table instead of a bucket page each.
//!
//! The filter has `blocks` blocks of `BLOCK_WORDS` u64 words (256 bits, within one 64-byte
//! cache line of an array leaf page). A hash `h` sets or tests `PROBES` bits of block
//! `block_of(h, blocks)`, the multiply-shift `(h × blocks) >> 64`: bit `(g >> (16 + 8p)) & 255`
//! for p = 0 … 5, with `g = fmix64(h ^ 0x6a09e667f3bcc909)`. The block follows the hash's
//! order, as the table's entries do, so a table writer fills its filter front to back
//! instead of missing the caches on every key of a large table.

use super::hash::fmix64;

/// Words of one block: 256 bits.
pub const BLOCK_WORDS: u64 = 4;
/// Bits set per key.
pub const PROBES: u32 = 6;
/// Filter bits per key of the table: about 1 % false positives with `PROBES` bits a key.
pub const BITS_PER_KEY: u64 = 10;
/// A table of fewer directory slots has no filter (it is one or two pages).
pub const MIN_DEPTH: u32 = 2;

/// Filter words for a table of `keys` keys (a whole number of blocks; 0 for no keys).
pub fn words_for(keys: u64) -> u64 {
    (keys * BITS_PER_KEY).div_ceil(64 * BLOCK_WORDS) * BLOCK_WORDS
}

/// The block hash `h` falls in, of `blocks` (> 0): a multiply-shift of the hash itself, so
/// blocks go up with the hash (the bit positions come from a second mix, independent of it).
#[inline]
pub fn block_of(h: u64, blocks: u64) -> u64 {
    ((u128::from(h) * u128::from(blocks)) >> 64) as u64
}

/// The block's bits of hash `h`.
#[inline]
pub fn mask(h: u64) -> [u64; BLOCK_WORDS as usize] {
    let g = fmix64(h ^ 0x6a09_e667_f3bc_c909);
    let mut m = [0u64; BLOCK_WORDS as usize];
    for p in 0..PROBES {
        let bit = (g >> (16 + 8 * p)) & 255;
        m[(bit / 64) as usize] |= 1 << (bit % 64);
    }
    m
}

/// Whether a block may hold hash `h` (false: no key of that hash was added).
#[inline]
pub fn may_hold(block: &[u64], h: u64) -> bool {
    let m = mask(h);
    block.iter().zip(m).all(|(b, m)| b & m == m)
}

/// Whether the filter `words` (whole blocks) may hold hash `h`.
pub fn holds(words: &[u64], h: u64) -> bool {
    let blocks = words.len() as u64 / BLOCK_WORDS;
    if blocks == 0 {
        return false;
    }
    let at = (block_of(h, blocks) * BLOCK_WORDS) as usize;
    may_hold(&words[at..at + BLOCK_WORDS as usize], h)
}

/// A filter being built.
pub struct FilterBuilder {
    words: Vec<u64>,
}

impl FilterBuilder {
    /// A filter for up to about `keys` keys.
    pub fn new(keys: u64) -> FilterBuilder {
        FilterBuilder {
            words: vec![0; words_for(keys) as usize],
        }
    }

    pub fn add(&mut self, h: u64) {
        let blocks = self.words.len() as u64 / BLOCK_WORDS;
        if blocks == 0 {
            return;
        }
        let at = (block_of(h, blocks) * BLOCK_WORDS) as usize;
        for (w, m) in self.words[at..].iter_mut().zip(mask(h)) {
            *w |= m;
        }
    }

    pub fn words(&self) -> &[u64] {
        &self.words
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_false_negatives_and_few_false_positives() {
        let n = 100_000u64;
        let mut f = FilterBuilder::new(n);
        assert_eq!(f.words().len() as u64, words_for(n));
        let hash = |i: u64| fmix64(i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 17);
        for i in 0..n {
            f.add(hash(i));
        }
        assert!((0..n).all(|i| holds(f.words(), hash(i))));
        let fp = (n..3 * n).filter(|&i| holds(f.words(), hash(i))).count();
        let rate = fp as f64 / (2 * n) as f64;
        assert!(rate < 0.02, "false positive rate {rate}");
        assert!(rate > 0.0001, "a filter that rules out everything: {rate}");
    }

    #[test]
    fn sizes() {
        assert_eq!(words_for(0), 0);
        assert_eq!(words_for(1), 4);
        assert_eq!(words_for(26), 8);
        assert_eq!(words_for(1000) % BLOCK_WORDS, 0);
    }
}
