//! Array pages: a u64 array (table directories and segment lists, free lists) stored as a tree
//! of pages. Leaves (level 0) hold up to LEAF array items; a node at level k > 0 holds up to NODE
//! children of level k-1 as (file offset, epoch) pairs — the epoch lets a reader keep a cached
//! child only if it is the very page it read before, even when the offset was reused.
//! Kind fields (page bytes 16..32): level u8 | 0 u8 | count u16 (items or children) | 0 u32 |
//! first u64 (array index of the first item below this page). Body: the u64 words.

use super::bytes::*;
use super::layout::PAGE;
use super::page::{seal, Page, HEADER, MAGIC_ARRAY};
use crate::error::{Error, Result};

/// Items per leaf page.
pub const LEAF: usize = (PAGE - HEADER) / 8;
/// Children per node page.
pub const NODE: usize = LEAF / 2;

/// Where an array lives: its length, tree height (0 for an empty array), top page and the
/// epoch that page was written with (a page at that offset with another epoch is stale).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArrayRef {
    pub len: u64,
    pub top: u64,
    pub levels: u32,
    pub epoch: u64,
}

impl ArrayRef {
    pub fn put(&self, b: &mut [u8], at: usize) {
        put_u64(b, at, self.len);
        put_u64(b, at + 8, self.top);
        put_u32(b, at + 16, self.levels);
        put_u32(b, at + 20, 0);
        put_u64(b, at + 24, self.epoch);
    }

    pub fn get(b: &[u8], at: usize) -> ArrayRef {
        ArrayRef {
            len: get_u64(b, at),
            top: get_u64(b, at + 8),
            levels: get_u32(b, at + 16),
            epoch: get_u64(b, at + 24),
        }
    }

    /// The top page as a node would reference it: (offset, epoch).
    pub fn top_ref(&self) -> (u64, u64) {
        (self.top, self.epoch)
    }

    /// Levels a tree holding `len` items needs (0 for none).
    pub fn levels_for(len: u64) -> u32 {
        if len == 0 {
            return 0;
        }
        let mut levels = 1;
        while ArrayRef::span(levels - 1) < len {
            levels += 1;
        }
        levels
    }

    /// Items one page at `level` covers.
    pub fn span(level: u32) -> u64 {
        (LEAF as u64).saturating_mul((NODE as u64).saturating_pow(level))
    }
}

/// Words per item at `level`: leaves hold items, nodes (offset, epoch) pairs.
fn words(level: u32) -> usize {
    if level == 0 {
        1
    } else {
        2
    }
}

/// Encodes a page; `words` holds `count * words(level)` u64s.
pub fn encode(level: u32, first: u64, items: &[u64], epoch: u64) -> Box<Page> {
    assert!(items.len() <= LEAF && items.len().is_multiple_of(words(level)));
    let mut p = Box::new([0u8; PAGE]);
    p[16] = level as u8;
    put_u16(&mut p[..], 18, (items.len() / words(level)) as u16);
    put_u64(&mut p[..], 24, first);
    for (i, v) in items.iter().enumerate() {
        put_u64(&mut p[..], HEADER + 8 * i, *v);
    }
    seal(&mut p, MAGIC_ARRAY, epoch);
    p
}

/// Words of a validated array page, after checking it is the page the parent said it is.
pub fn decode(p: &Page, level: u32, first: u64, offset: u64) -> Result<Vec<u64>> {
    let count = get_u16(p, 18) as usize * words(level);
    if p[16] as u32 != level || get_u64(p, 24) != first || count > LEAF {
        return Err(Error::corrupt(
            "array page",
            offset,
            format!(
                "header says level {} first {} count {count}, expected level {level} first {first}",
                p[16],
                get_u64(p, 24)
            ),
        ));
    }
    Ok((0..count).map(|i| get_u64(p, HEADER + 8 * i)).collect())
}

/// Leaves an array of `len` items has.
pub fn leaf_count(len: u64) -> usize {
    len.div_ceil(LEAF as u64) as usize
}

/// Pages a freshly written array of `len` items takes: its leaves and its node pages.
pub fn fresh_pages(len: u64) -> usize {
    let mut level = leaf_count(len);
    let mut total = level;
    for _ in 1..ArrayRef::levels_for(len) {
        level = level.div_ceil(NODE);
        total += level;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_grow_with_length() {
        assert_eq!(ArrayRef::levels_for(0), 0);
        assert_eq!(ArrayRef::levels_for(1), 1);
        assert_eq!(ArrayRef::levels_for(LEAF as u64), 1);
        assert_eq!(ArrayRef::levels_for(LEAF as u64 + 1), 2);
        assert_eq!(ArrayRef::levels_for((LEAF * NODE) as u64), 2);
        assert_eq!(ArrayRef::levels_for((LEAF * NODE) as u64 + 1), 3);
    }

    #[test]
    fn page_round_trip_checks_identity() {
        let p = encode(1, 508, &[1, 2, 3, 4], 7);
        assert_eq!(decode(&p, 1, 508, 0).unwrap(), vec![1, 2, 3, 4]);
        assert!(decode(&p, 0, 508, 0).is_err());
        assert!(decode(&p, 1, 0, 0).is_err());
    }
}
