//! Table descriptors: what a root records of each table it lists (the base table, the base
//! table a merge is building, and the delta tables), 128 bytes each:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | id: unique within the file, never reused (0: no table) |
//! | 8 | 1 | kind: 1 base (whole sets), 2 delta (changes to sets) |
//! | 9 | 3 | zero |
//! | 12 | 4 | directory depth `g` (≤ 32) |
//! | 16 | 32 | directory: array ref, `2^g` items (page number \| page epoch low 32 bits << 32), then the key filter's words if any (`filter`) |
//! | 48 | 32 | segments: array ref, item pairs (segment offset, last hash it holds data of) |
//! | 80 | 8 | entries (keys) |
//! | 88 | 8 | values (in a base table: of all sets; in a delta table: values added) |
//! | 96 | 8 | pages |
//! | 104 | 8 | extents |
//! | 112 | 8 | bytes of its segments in use (pages and extents) |
//! | 120 | 8 | general changes (DELTA entries; 0 in a base table) |

use super::array::ArrayRef;
use super::bytes::*;
use super::filter::{BLOCK_WORDS, MIN_DEPTH};

pub const TABLE_BYTES: usize = 128;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Kind {
    /// Whole sets: the state as of its merge.
    #[default]
    Base,
    /// Changes to the sets of the tables before it.
    Delta,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableRef {
    pub id: u64,
    pub kind: Kind,
    pub depth: u32,
    pub dir: ArrayRef,
    pub segs: ArrayRef,
    pub entries: u64,
    pub values: u64,
    pub pages: u64,
    pub extents: u64,
    /// Bytes of its pages and extents.
    pub bytes: u64,
    /// Entries that are general changes (they drop or remove values); 0 in a base table. A
    /// delta table without any holds only values added: read as a base table, it is the same
    /// sets when no table comes before it.
    pub changes: u64,
}

impl TableRef {
    pub fn is_some(&self) -> bool {
        self.id != 0
    }

    /// Directory slots: the first items of the directory array.
    pub fn slots(&self) -> u64 {
        1u64 << self.depth
    }

    /// Words of the key filter after the directory items (0: no filter).
    pub fn filter_words(&self) -> u64 {
        self.dir.len.saturating_sub(self.slots())
    }

    /// The items of the directory array that are the key filter's words.
    pub fn filter_items(&self) -> std::ops::Range<usize> {
        self.slots().min(self.dir.len) as usize..self.dir.len as usize
    }

    pub fn put(&self, b: &mut [u8], at: usize) {
        b[at..at + TABLE_BYTES].fill(0);
        if !self.is_some() {
            return;
        }
        put_u64(b, at, self.id);
        b[at + 8] = match self.kind {
            Kind::Base => 1,
            Kind::Delta => 2,
        };
        put_u32(b, at + 12, self.depth);
        self.dir.put(b, at + 16);
        self.segs.put(b, at + 48);
        put_u64(b, at + 80, self.entries);
        put_u64(b, at + 88, self.values);
        put_u64(b, at + 96, self.pages);
        put_u64(b, at + 104, self.extents);
        put_u64(b, at + 112, self.bytes);
        put_u64(b, at + 120, self.changes);
    }

    /// The descriptor at `at`, or why it is not one (an all-zero one is "no table").
    pub fn get(b: &[u8], at: usize) -> Result<TableRef, &'static str> {
        let id = get_u64(b, at);
        if id == 0 {
            return match b[at..at + TABLE_BYTES].iter().all(|x| *x == 0) {
                true => Ok(TableRef::default()),
                false => Err("table descriptor without an id"),
            };
        }
        let kind = match b[at + 8] {
            1 => Kind::Base,
            2 => Kind::Delta,
            _ => return Err("unknown table kind"),
        };
        let t = TableRef {
            id,
            kind,
            depth: get_u32(b, at + 12),
            dir: ArrayRef::get(b, at + 16),
            segs: ArrayRef::get(b, at + 48),
            entries: get_u64(b, at + 80),
            values: get_u64(b, at + 88),
            pages: get_u64(b, at + 96),
            extents: get_u64(b, at + 104),
            bytes: get_u64(b, at + 112),
            changes: get_u64(b, at + 120),
        };
        if t.depth > 32 || t.dir.len < 1u64 << t.depth {
            return Err("table directory size does not match its depth");
        }
        let filter = t.filter_words();
        if filter > 0 && (t.depth < MIN_DEPTH || !filter.is_multiple_of(BLOCK_WORDS)) {
            return Err("table key filter of a size the format does not allow");
        }
        if !t.segs.len.is_multiple_of(2) {
            return Err("table segment list of odd length");
        }
        Ok(t)
    }
}

/// A directory item: the page covering the slot (page number = file offset / PAGE) and the
/// low 32 bits of the epoch it was written with; 0 for a slot without entries.
pub fn dir_item(offset: u64, epoch: u64) -> u64 {
    (offset / super::layout::PAGE as u64) | ((epoch & 0xFFFF_FFFF) << 32)
}

/// The file offset and epoch (low 32 bits) of a directory item.
pub fn dir_item_parts(item: u64) -> (u64, u32) {
    (
        (item & 0xFFFF_FFFF) * super::layout::PAGE as u64,
        (item >> 32) as u32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_round_trip() {
        let t = TableRef {
            id: 7,
            kind: Kind::Delta,
            depth: 3,
            dir: ArrayRef {
                len: 8,
                top: 4096,
                levels: 1,
                epoch: 9,
            },
            segs: ArrayRef {
                len: 4,
                top: 8192,
                levels: 1,
                epoch: 9,
            },
            entries: 10,
            values: 20,
            pages: 2,
            extents: 1,
            bytes: 9000,
            changes: 3,
        };
        let mut b = [0u8; 256];
        t.put(&mut b, 64);
        assert_eq!(TableRef::get(&b, 64), Ok(t));
        assert_eq!(TableRef::get(&[0; 128], 0), Ok(TableRef::default()));
        b[64 + 12] = 4; // depth no longer matches the directory's length
        assert!(TableRef::get(&b, 64).is_err());
        b[64 + 12] = 2; // 4 slots, then a filter of one block
        assert_eq!(TableRef::get(&b, 64).map(|t| t.filter_words()), Ok(4));
        assert_eq!(TableRef::get(&b, 64).map(|t| t.filter_items()), Ok(4..8));
        b[64 + 12] = 1; // 2 slots: too few for a filter
        assert!(TableRef::get(&b, 64).is_err());
        b[64 + 12] = 3;
        b[64 + 16] = 10; // 8 slots, then 2 words: not a whole block
        assert!(TableRef::get(&b, 64).is_err());
        assert_eq!(
            dir_item_parts(dir_item(3 << 12, 0x1_0000_0005)),
            (3 << 12, 5)
        );
    }
}
