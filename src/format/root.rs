//! Root slots: the `root` dataset holds two; a checkpoint writes slot `epoch % 2` and the valid
//! slot with the highest epoch is the state. Layout of a slot (ROOT_SLOT bytes, rest zero):
//!   0 magic "HDIRROOT" | 8 format u32 | 12 crc32c u32 of bytes 16..ROOT_SLOT | 16 epoch u64
//!  24 global_depth u32 | 28 flags u32 | 32 dir ArrayRef | 56 free_pages ArrayRef
//!  80 free_extents ArrayRef | 104 wal_map ArrayRef | 128 wal_gen u64 | 136 wal_lsn u64
//! 144 pages_hw u64 | 152 values_hw [u64; VALUE_SHARDS] | 216 keys u64 | 224 values u64
//! 232 buckets u64 | 240 extents u64 (sets stored in extents)

use super::array::ArrayRef;
use super::bytes::*;
use super::layout::{FORMAT_VERSION, ROOT_SLOT, VALUE_SHARDS};

pub const MAGIC: &[u8; 8] = b"HDIRROOT";

/// Root flag: the writer moves the log to other chunks at every checkpoint and reuses the
/// chunks of a replaced root's log only once no pinned reader reads under that root, so a
/// pinned reader may read its log in place instead of copying it. Writers before this flag
/// restarted the log in place.
pub const LOG_MOVES: u32 = 1;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Root {
    pub epoch: u64,
    pub global_depth: u32,
    /// [`LOG_MOVES`]; other bits are zero.
    pub flags: u32,
    /// Directory: 2^global_depth entries, each the file offset of the bucket page covering
    /// the slot (0: no keys). A page covers a run of whole slots.
    pub dir: ArrayRef,
    /// File offsets of free pages.
    pub free_pages: ArrayRef,
    /// Free value extents as item pairs: file offset, byte length.
    pub free_extents: ArrayRef,
    /// File address of each WAL chunk, in log order.
    pub wal_map: ArrayRef,
    /// Generation of the WAL frames that follow this root (frames of other generations are stale).
    pub wal_gen: u64,
    /// LSN of the first frame that follows this root.
    pub wal_lsn: u64,
    /// Pages handed out from the end of the `pages` dataset.
    pub pages_hw: u64,
    /// Bytes handed out from the end of each value shard.
    pub values_hw: [u64; VALUE_SHARDS],
    pub keys: u64,
    pub values: u64,
    pub buckets: u64,
    pub extents: u64,
}

impl Root {
    pub fn encode(&self) -> [u8; ROOT_SLOT] {
        let mut b = [0u8; ROOT_SLOT];
        b[0..8].copy_from_slice(MAGIC);
        put_u32(&mut b, 8, FORMAT_VERSION);
        put_u64(&mut b, 16, self.epoch);
        put_u32(&mut b, 24, self.global_depth);
        put_u32(&mut b, 28, self.flags);
        self.dir.put(&mut b, 32);
        self.free_pages.put(&mut b, 56);
        self.free_extents.put(&mut b, 80);
        self.wal_map.put(&mut b, 104);
        put_u64(&mut b, 128, self.wal_gen);
        put_u64(&mut b, 136, self.wal_lsn);
        put_u64(&mut b, 144, self.pages_hw);
        for (i, hw) in self.values_hw.iter().enumerate() {
            put_u64(&mut b, 152 + 8 * i, *hw);
        }
        put_u64(&mut b, 216, self.keys);
        put_u64(&mut b, 224, self.values);
        put_u64(&mut b, 232, self.buckets);
        put_u64(&mut b, 240, self.extents);
        let crc = crc32c::crc32c(&b[16..]);
        put_u32(&mut b, 12, crc);
        b
    }

    /// The root in a slot, or why the slot is not valid (torn, never written, foreign version).
    pub fn decode(b: &[u8]) -> std::result::Result<Root, &'static str> {
        if b.len() < ROOT_SLOT || &b[0..8] != MAGIC {
            return Err("no root magic");
        }
        if crc32c::crc32c(&b[16..ROOT_SLOT]) != get_u32(b, 12) {
            return Err("root checksum mismatch");
        }
        if get_u32(b, 8) != FORMAT_VERSION {
            return Err("unknown format version");
        }
        let mut values_hw = [0u64; VALUE_SHARDS];
        for (i, hw) in values_hw.iter_mut().enumerate() {
            *hw = get_u64(b, 152 + 8 * i);
        }
        let r = Root {
            epoch: get_u64(b, 16),
            global_depth: get_u32(b, 24),
            flags: get_u32(b, 28),
            dir: ArrayRef::get(b, 32),
            free_pages: ArrayRef::get(b, 56),
            free_extents: ArrayRef::get(b, 80),
            wal_map: ArrayRef::get(b, 104),
            wal_gen: get_u64(b, 128),
            wal_lsn: get_u64(b, 136),
            pages_hw: get_u64(b, 144),
            values_hw,
            keys: get_u64(b, 216),
            values: get_u64(b, 224),
            buckets: get_u64(b, 232),
            extents: get_u64(b, 240),
        };
        if r.global_depth > 32 || r.dir.len != 1u64 << r.global_depth {
            return Err("directory size does not match global depth");
        }
        Ok(r)
    }
}

/// The newest valid root of the two slots, or the reasons both failed.
pub fn newest(slot0: &[u8], slot1: &[u8]) -> std::result::Result<Root, String> {
    match (Root::decode(slot0), Root::decode(slot1)) {
        (Ok(a), Ok(b)) => Ok(if b.epoch > a.epoch { b } else { a }),
        (Ok(a), Err(_)) => Ok(a),
        (Err(_), Ok(b)) => Ok(b),
        (Err(x), Err(y)) => Err(format!("no valid root slot (slot 0: {x}; slot 1: {y})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_valid_slot_wins() {
        let a = Root {
            epoch: 4,
            dir: ArrayRef {
                len: 1,
                top: 0,
                levels: 1,
            },
            ..Default::default()
        };
        let b = Root {
            epoch: 5,
            ..a.clone()
        };
        let (ea, mut eb) = (a.encode(), b.encode());
        assert_eq!(newest(&ea, &eb).unwrap(), b);
        eb[300] ^= 1; // torn newer slot: fall back to the older one
        assert_eq!(newest(&ea, &eb).unwrap(), a);
        assert!(newest(&[0; ROOT_SLOT], &eb).is_err());
    }
}
