//! Root slots: the `root` dataset holds two; a publish with epoch `e` writes slot `e % 2` and
//! the valid slot with the highest epoch is the state of the file. Layout of a slot
//! (ROOT_SLOT bytes; docs/FORMAT.md §2):
//!
//! ```text
//!    0 magic "HDIRROOT" | 8 format u32 | 12 crc32c u32 of bytes 16..ROOT_SLOT | 16 epoch u64
//!   24 flags u32 | 28 zero u32 | 32 capacity u64 | 40 data offset u64 | 48 segments used u64
//!   56 next table id u64 | 64 free segments ArrayRef | 96 free pages ArrayRef
//!  128 log: gen u64 | lsn u64 | offset u64 | bytes u64
//!  160 sealed log: gen u64 | lsn u64 | end lsn u64 | offset u64 | bytes u64
//!  200 next log: offset u64 | bytes u64
//!  216 merge cursor u64 | 224 merged deltas u32 | 228 deltas u32
//!  232 free-list areas: 2 × (offset u64 | segments u32)
//!  256 base table | 384 merge's new base table | 512 delta tables, oldest first (128 each)
//! ```

use super::array::ArrayRef;
use super::bytes::*;
use super::layout::{FORMAT_VERSION, MAX_CAPACITY, MAX_RUNS, PAGE, ROOT_SLOT, SEGMENT};
use super::table::{Kind, TableRef, TABLE_BYTES};

pub const MAGIC: &[u8; 8] = b"HDIRROOT";

/// A log: frames of generation `gen` from LSN `lsn` on, in the file range `offset..+bytes`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogRef {
    pub gen: u64,
    pub lsn: u64,
    pub offset: u64,
    pub bytes: u64,
}

/// The log a root stopped appending to and whose batches are not yet in a delta table: its
/// frames from `lsn` up to (not including) `end`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SealedLog {
    pub log: LogRef,
    pub end: u64,
}

/// A range of `/data` (file offset, bytes); bytes 0 = none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub offset: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Root {
    pub epoch: u64,
    pub flags: u32,
    /// Bytes of `/data`.
    pub capacity: u64,
    /// File offset of `/data`.
    pub data_offset: u64,
    /// Segments handed out from the start of `/data` (the rest has never been used).
    pub segments_used: u64,
    pub next_table_id: u64,
    /// Free segments as item pairs (file offset of the first, count), ascending.
    pub free_segments: ArrayRef,
    /// Free array pages: their file offsets.
    pub free_pages: ArrayRef,
    /// The log commits append to.
    pub log: LogRef,
    /// A log sealed for a delta table that is not published yet (gen 0: none).
    pub sealed: Option<SealedLog>,
    /// Space set aside for the next log, so that switching logs writes nothing but a root.
    pub next_log: Span,
    /// Hashes below it are merged into `merging` (meaningful while `merging` is a table).
    pub cursor: u64,
    /// The oldest `merged` delta tables are being merged with `base` into `merging`.
    pub merged: u32,
    /// Two areas the free lists are written in, in turn (their pages come from these runs,
    /// never from the free lists themselves): a root's lists lie in one, and the next root
    /// that writes lists writes them in the other.
    pub lists: [Span; 2],
    pub base: TableRef,
    pub merging: TableRef,
    /// Oldest first.
    pub deltas: Vec<TableRef>,
}

const LOG_AT: usize = 128;
const SEALED_AT: usize = 160;
const NEXT_LOG_AT: usize = 200;
const CURSOR_AT: usize = 216;
const LISTS_AT: usize = 232;
const BASE_AT: usize = 256;
const MERGING_AT: usize = BASE_AT + TABLE_BYTES;
const DELTAS_AT: usize = MERGING_AT + TABLE_BYTES;

const _: () = assert!(DELTAS_AT + MAX_RUNS * TABLE_BYTES <= ROOT_SLOT);

fn put_log(b: &mut [u8], at: usize, l: &LogRef) {
    put_u64(b, at, l.gen);
    put_u64(b, at + 8, l.lsn);
    put_u64(b, at + 16, l.offset);
    put_u64(b, at + 24, l.bytes);
}

fn get_log(b: &[u8], at: usize) -> LogRef {
    LogRef {
        gen: get_u64(b, at),
        lsn: get_u64(b, at + 8),
        offset: get_u64(b, at + 16),
        bytes: get_u64(b, at + 24),
    }
}

impl Root {
    pub fn encode(&self) -> [u8; ROOT_SLOT] {
        let mut b = [0u8; ROOT_SLOT];
        b[0..8].copy_from_slice(MAGIC);
        put_u32(&mut b, 8, FORMAT_VERSION);
        put_u64(&mut b, 16, self.epoch);
        put_u32(&mut b, 24, self.flags);
        put_u64(&mut b, 32, self.capacity);
        put_u64(&mut b, 40, self.data_offset);
        put_u64(&mut b, 48, self.segments_used);
        put_u64(&mut b, 56, self.next_table_id);
        self.free_segments.put(&mut b, 64);
        self.free_pages.put(&mut b, 96);
        put_log(&mut b, LOG_AT, &self.log);
        if let Some(s) = &self.sealed {
            put_u64(&mut b, SEALED_AT, s.log.gen);
            put_u64(&mut b, SEALED_AT + 8, s.log.lsn);
            put_u64(&mut b, SEALED_AT + 16, s.end);
            put_u64(&mut b, SEALED_AT + 24, s.log.offset);
            put_u64(&mut b, SEALED_AT + 32, s.log.bytes);
        }
        put_u64(&mut b, NEXT_LOG_AT, self.next_log.offset);
        put_u64(&mut b, NEXT_LOG_AT + 8, self.next_log.bytes);
        put_u64(&mut b, CURSOR_AT, self.cursor);
        put_u32(&mut b, CURSOR_AT + 8, self.merged);
        put_u32(&mut b, CURSOR_AT + 12, self.deltas.len() as u32);
        for (i, l) in self.lists.iter().enumerate() {
            put_u64(&mut b, LISTS_AT + 12 * i, l.offset);
            put_u32(&mut b, LISTS_AT + 12 * i + 8, (l.bytes / SEGMENT) as u32);
        }
        self.base.put(&mut b, BASE_AT);
        self.merging.put(&mut b, MERGING_AT);
        for (i, t) in self.deltas.iter().enumerate() {
            t.put(&mut b, DELTAS_AT + i * TABLE_BYTES);
        }
        let crc = crc32c::crc32c(&b[16..]);
        put_u32(&mut b, 12, crc);
        b
    }

    /// The root in a slot, or why the slot is not valid (torn, never written, foreign version,
    /// fields that contradict each other).
    pub fn decode(b: &[u8]) -> Result<Root, &'static str> {
        if b.len() < ROOT_SLOT || &b[0..8] != MAGIC {
            return Err("no root magic");
        }
        if crc32c::crc32c(&b[16..ROOT_SLOT]) != get_u32(b, 12) {
            return Err("root checksum mismatch");
        }
        if get_u32(b, 8) != FORMAT_VERSION {
            return Err("unknown format version");
        }
        let deltas_n = get_u32(b, CURSOR_AT + 12) as usize;
        if deltas_n > MAX_RUNS {
            return Err("more delta tables than a root holds");
        }
        let sealed = match get_u64(b, SEALED_AT) {
            0 => None,
            gen => Some(SealedLog {
                log: LogRef {
                    gen,
                    lsn: get_u64(b, SEALED_AT + 8),
                    offset: get_u64(b, SEALED_AT + 24),
                    bytes: get_u64(b, SEALED_AT + 32),
                },
                end: get_u64(b, SEALED_AT + 16),
            }),
        };
        let deltas = (0..deltas_n)
            .map(|i| TableRef::get(b, DELTAS_AT + i * TABLE_BYTES))
            .collect::<Result<Vec<_>, _>>()?;
        let r = Root {
            epoch: get_u64(b, 16),
            flags: get_u32(b, 24),
            capacity: get_u64(b, 32),
            data_offset: get_u64(b, 40),
            segments_used: get_u64(b, 48),
            next_table_id: get_u64(b, 56),
            free_segments: ArrayRef::get(b, 64),
            free_pages: ArrayRef::get(b, 96),
            log: get_log(b, LOG_AT),
            sealed,
            next_log: Span {
                offset: get_u64(b, NEXT_LOG_AT),
                bytes: get_u64(b, NEXT_LOG_AT + 8),
            },
            cursor: get_u64(b, CURSOR_AT),
            merged: get_u32(b, CURSOR_AT + 8),
            lists: [0, 1].map(|i| Span {
                offset: get_u64(b, LISTS_AT + 12 * i),
                bytes: u64::from(get_u32(b, LISTS_AT + 12 * i + 8)) * SEGMENT,
            }),
            base: TableRef::get(b, BASE_AT)?,
            merging: TableRef::get(b, MERGING_AT)?,
            deltas,
        };
        r.consistent()?;
        Ok(r)
    }

    /// Checks that the fields agree with each other and stay inside `/data`.
    fn consistent(&self) -> Result<(), &'static str> {
        // Everything a root references lies in the segments handed out.
        let data = self.data_offset
            ..self
                .data_offset
                .saturating_add(self.segments_used.saturating_mul(SEGMENT));
        let inside = |off: u64, bytes: u64| {
            bytes == 0
                || data.start <= off
                    && (off - data.start).is_multiple_of(SEGMENT)
                    && off.saturating_add(bytes) <= data.end
        };
        if !self.capacity.is_multiple_of(SEGMENT) || !self.data_offset.is_multiple_of(PAGE as u64) {
            return Err("data area not segment-aligned");
        }
        if self.capacity > MAX_CAPACITY || self.data_offset > MAX_CAPACITY {
            return Err("data area larger than a file can hold");
        }
        if self.segments_used > self.capacity / SEGMENT {
            return Err("more segments in use than the data area has");
        }
        if self.flags != 0 {
            return Err("unknown root flags");
        }
        if self.log.gen == 0 || !inside(self.log.offset, self.log.bytes) || self.log.bytes == 0 {
            return Err("log outside the segments in use");
        }
        if let Some(s) = &self.sealed {
            if !inside(s.log.offset, s.log.bytes) || s.log.bytes == 0 || s.end < s.log.lsn {
                return Err("sealed log outside the segments in use");
            }
            if s.end != self.log.lsn || s.log.gen == self.log.gen {
                return Err("sealed log does not lead to the log");
            }
        }
        if !inside(self.next_log.offset, self.next_log.bytes) {
            return Err("next log outside the segments in use");
        }
        if self.lists.iter().any(|l| !inside(l.offset, l.bytes)) {
            return Err("free-list area outside the segments in use");
        }
        if self.base.is_some() && self.base.kind != Kind::Base
            || self.merging.is_some() && self.merging.kind != Kind::Base
            || self
                .deltas
                .iter()
                .any(|t| !t.is_some() || t.kind != Kind::Delta)
        {
            return Err("table of the wrong kind");
        }
        if self.merged as usize > self.deltas.len()
            || !self.merging.is_some() && (self.merged != 0 || self.cursor != 0)
        {
            return Err("merge state does not match the tables");
        }
        let ids = [self.base.id, self.merging.id]
            .into_iter()
            .chain(self.deltas.iter().map(|t| t.id));
        if ids.filter(|i| *i != 0).any(|i| i >= self.next_table_id) {
            return Err("table id not below the next table id");
        }
        Ok(())
    }
}

/// The newest valid root of the two slots, or the reasons both failed.
pub fn newest(slot0: &[u8], slot1: &[u8]) -> Result<Root, String> {
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

    fn root(epoch: u64) -> Root {
        Root {
            epoch,
            capacity: 64 * SEGMENT,
            data_offset: 8192,
            segments_used: 3,
            next_table_id: 5,
            log: LogRef {
                gen: 0x1234,
                lsn: 7,
                offset: 8192,
                bytes: SEGMENT,
            },
            sealed: Some(SealedLog {
                log: LogRef {
                    gen: 0x99,
                    lsn: 3,
                    offset: 8192 + SEGMENT,
                    bytes: SEGMENT,
                },
                end: 7,
            }),
            deltas: vec![TableRef {
                id: 4,
                kind: Kind::Delta,
                dir: ArrayRef {
                    len: 1,
                    ..ArrayRef::default()
                },
                ..TableRef::default()
            }],
            ..Root::default()
        }
    }

    #[test]
    fn newest_valid_slot_wins() {
        let (a, b) = (root(4), root(5));
        let (ea, mut eb) = (a.encode(), b.encode());
        assert_eq!(Root::decode(&ea).unwrap(), a);
        assert_eq!(newest(&ea, &eb).unwrap(), b);
        eb[300] ^= 1; // torn newer slot: fall back to the older one
        assert_eq!(newest(&ea, &eb).unwrap(), a);
        assert!(newest(&[0; ROOT_SLOT], &eb).is_err());
    }

    #[test]
    fn contradictions_are_refused() {
        let mut r = root(4);
        r.sealed.as_mut().unwrap().end = 6; // the sealed log must end where the log starts
        assert_eq!(
            Root::decode(&r.encode()),
            Err("sealed log does not lead to the log")
        );
        let mut r = root(4);
        r.log.offset = 8192 + 3 * SEGMENT;
        assert_eq!(
            Root::decode(&r.encode()),
            Err("log outside the segments in use")
        );
        let mut r = root(4);
        r.merged = 1; // merging deltas without a table to merge into
        assert_eq!(
            Root::decode(&r.encode()),
            Err("merge state does not match the tables")
        );
        let mut r = root(4);
        r.deltas[0].id = 5;
        assert_eq!(
            Root::decode(&r.encode()),
            Err("table id not below the next table id")
        );
    }
}
