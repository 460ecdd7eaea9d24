//! WAL frames: one frame per committed batch, appended to a log's range of segments in `/data`.
//!
//! Frame: magic "HDWL" u32 | crc32c u32 of bytes 8..len | gen u64 | lsn u64 | len u32 (whole
//! frame, a multiple of 8) | n_ops u32 | ops | zero padding. An op is a tag byte then a key, and
//! for inserts and pair deletes a value: 1 = insert, 2 = delete pair, 3 = delete key.
//! A frame counts only whole: the CRC covers all of it, so a torn batch is no batch.
//!
//! The CRCs are chained: a frame's CRC continues the CRC of the frame before it in its log
//! (0 before the first). A frame is thus valid only after the very frame it followed when it
//! was written: after a power cut lost frame n but kept frame n+1, recovery ends the log at n,
//! and when new commits write a new frame n, the old n+1 does not validate after it.

use super::bytes::*;
use crate::{Key, Value};

pub const HEADER: usize = 32;
pub const MAGIC: u32 = u32::from_le_bytes(*b"HDWL");
const INSERT: u8 = 1;
const DELETE_PAIR: u8 = 2;
const DELETE_KEY: u8 = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Insert(Key, Value),
    DeletePair(Key, Value),
    DeleteKey(Key),
}

impl Op {
    pub fn key(&self) -> &Key {
        match self {
            Op::Insert(k, _) | Op::DeletePair(k, _) | Op::DeleteKey(k) => k,
        }
    }
}

/// The batch being built by the writer: header space first, so finishing needs no copy.
#[derive(Default)]
pub struct FrameBuf {
    bytes: Vec<u8>,
    ops: u32,
}

impl FrameBuf {
    pub fn new() -> FrameBuf {
        FrameBuf {
            bytes: vec![0; HEADER],
            ops: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ops == 0
    }

    /// Bytes the frame will take once finished.
    pub fn frame_len(&self) -> usize {
        self.bytes.len().next_multiple_of(8)
    }

    /// Room for `n` more ops of the largest kind; false when the frame would outgrow u32.
    pub fn reserve(&mut self, n: usize) -> bool {
        let need = n.saturating_mul(33);
        if self.bytes.len().saturating_add(need) > u32::MAX as usize - 8 {
            return false;
        }
        self.bytes.reserve(need);
        true
    }

    pub fn push(&mut self, op: &Op) {
        match op {
            Op::Insert(k, v) => self.push_pair(INSERT, k, v),
            Op::DeletePair(k, v) => self.push_pair(DELETE_PAIR, k, v),
            Op::DeleteKey(k) => {
                self.bytes.push(DELETE_KEY);
                self.bytes.extend_from_slice(k);
            }
        }
        self.ops += 1;
    }

    fn push_pair(&mut self, tag: u8, k: &Key, v: &Value) {
        self.bytes.push(tag);
        self.bytes.extend_from_slice(k);
        self.bytes.extend_from_slice(v);
    }

    /// Seals the frame for (gen, lsn) after a frame of CRC `prev` and returns its bytes;
    /// `clear` starts the next batch.
    pub fn finish(&mut self, gen: u64, lsn: u64, prev: u32) -> &[u8] {
        let len = self.frame_len();
        self.bytes.resize(len, 0);
        let b = &mut self.bytes;
        put_u32(b, 0, MAGIC);
        put_u64(b, 8, gen);
        put_u64(b, 16, lsn);
        put_u32(b, 24, len as u32);
        put_u32(b, 28, self.ops);
        let crc = chained_crc(b, prev);
        put_u32(b, 4, crc);
        &self.bytes
    }

    pub fn clear(&mut self) {
        self.bytes.truncate(HEADER);
        self.bytes[..HEADER].fill(0);
        self.ops = 0;
    }

    /// The ops pushed so far.
    pub fn iter(&self) -> OpIter<'_> {
        OpIter {
            b: &self.bytes[..],
            at: HEADER,
            left: self.ops,
        }
    }
}

/// Length of the frame whose header is `hdr` if the header belongs to (gen, lsn); the caller
/// then reads `len` bytes and calls [`validate`].
pub fn header_len(hdr: &[u8], gen: u64, lsn: u64) -> Option<usize> {
    if hdr.len() < HEADER || get_u32(hdr, 0) != MAGIC {
        return None;
    }
    if get_u64(hdr, 8) != gen || get_u64(hdr, 16) != lsn {
        return None;
    }
    let len = get_u32(hdr, 24) as usize;
    (len >= HEADER && len.is_multiple_of(8)).then_some(len)
}

/// The CRC a frame must hold after a frame of CRC `prev`.
pub fn chained_crc(frame: &[u8], prev: u32) -> u32 {
    crc32c::crc32c_append(prev, &frame[8..])
}

/// The CRC field of a frame (the `prev` of the frame after it).
pub fn crc_of(frame: &[u8]) -> u32 {
    get_u32(frame, 4)
}

/// The ops of a whole frame, if it is the frame of (gen, lsn) its header promised, its
/// checksum holds after a frame of CRC `prev`, and its op encoding holds. The header is checked again because the writer may have
/// replaced the frame between the header read and this one: a valid frame of a later
/// generation at the same place must not pass for the one the reader was after.
pub fn validate(frame: &[u8], gen: u64, lsn: u64, prev: u32) -> Option<OpIter<'_>> {
    if header_len(frame, gen, lsn) != Some(frame.len()) {
        return None;
    }
    if chained_crc(frame, prev) != crc_of(frame) {
        return None;
    }
    // A frame with a good CRC but ops running past its end was not written by us.
    let it = frame_ops(frame);
    ops_fit(frame, it.at, it.left).then_some(it)
}

/// Whether `left` ops of known kinds lie whole in `b` from `at`: [`OpIter`]'s checks without
/// decoding the ops (recovery checks 60 M of them for a full 2 GiB log).
fn ops_fit(b: &[u8], mut at: usize, left: u32) -> bool {
    for _ in 0..left {
        match b.get(at).and_then(|&tag| op_len(tag)) {
            Some(len) if at + len <= b.len() => at += len,
            _ => return false,
        }
    }
    true
}

/// Bytes an op of kind `tag` takes, if the kind is known.
fn op_len(tag: u8) -> Option<usize> {
    match tag {
        DELETE_KEY => Some(17),
        INSERT | DELETE_PAIR => Some(33),
        _ => None,
    }
}

/// The ops of a frame that [`validate`] accepted.
pub fn frame_ops(frame: &[u8]) -> OpIter<'_> {
    OpIter {
        b: frame,
        at: HEADER,
        left: get_u32(frame, 28),
    }
}

#[derive(Clone)]
pub struct OpIter<'a> {
    b: &'a [u8],
    at: usize,
    left: u32,
}

/// The op at the start of `b` and its length in bytes, if `b` holds a whole, known one.
pub fn op_at(b: &[u8]) -> Option<(Op, usize)> {
    let tag = *b.first()?;
    let need = op_len(tag)?;
    if need > b.len() {
        return None;
    }
    let k = get_16(b, 1);
    let op = match tag {
        INSERT => Op::Insert(k, get_16(b, 17)),
        DELETE_PAIR => Op::DeletePair(k, get_16(b, 17)),
        DELETE_KEY => Op::DeleteKey(k),
        _ => return None,
    };
    Some((op, need))
}

/// Bytes an op takes at most.
pub const OP_MAX: usize = 33;

impl OpIter<'_> {
    /// The next op and its offset within the frame.
    pub fn next_at(&mut self) -> Option<(usize, Op)> {
        if self.left == 0 {
            return None;
        }
        let (op, len) = op_at(self.b.get(self.at..)?)?;
        let at = self.at;
        self.at += len;
        self.left -= 1;
        Some((at, op))
    }
}

impl Iterator for OpIter<'_> {
    type Item = Op;

    fn next(&mut self) -> Option<Op> {
        self.next_at().map(|(_, op)| op)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CRC of the frame before the ones tested.
    const PREV: u32 = 0x5eed_c0de;

    #[test]
    fn frame_round_trip_and_torn_frame() {
        let mut f = FrameBuf::new();
        let ops = [
            Op::Insert([1; 16], [2; 16]),
            Op::DeleteKey([3; 16]),
            Op::DeletePair([4; 16], [5; 16]),
        ];
        ops.iter().for_each(|o| f.push(o));
        let bytes = f.finish(7, 42, PREV).to_vec();
        assert_eq!(header_len(&bytes, 7, 42), Some(bytes.len()));
        assert_eq!(header_len(&bytes, 8, 42), None);
        assert_eq!(header_len(&bytes, 7, 43), None);
        assert_eq!(
            validate(&bytes, 7, 42, PREV).unwrap().collect::<Vec<_>>(),
            ops
        );
        let mut torn = bytes.clone();
        torn[40] ^= 0x10;
        assert!(validate(&torn, 7, 42, PREV).is_none());
        // A whole, valid frame of another generation or LSN is not the frame asked for.
        assert!(validate(&bytes, 8, 42, PREV).is_none());
        assert!(validate(&bytes, 7, 41, PREV).is_none());
        // Nor is it after any frame but the one it was written after.
        assert!(validate(&bytes, 7, 42, PREV ^ 1).is_none());
        assert!(validate(&bytes, 7, 42, 0).is_none());
        f.clear();
        assert!(f.is_empty());
    }

    /// A frame whose checksum holds but whose ops do not (a foreign writer's) is refused.
    #[test]
    fn well_summed_frame_with_bad_ops_is_refused() {
        let mut f = FrameBuf::new();
        f.push(&Op::Insert([1; 16], [2; 16]));
        f.push(&Op::DeleteKey([3; 16]));
        let good = f.finish(7, 42, PREV).to_vec();
        let resum = |mut b: Vec<u8>| {
            let crc = chained_crc(&b, PREV);
            b[4..8].copy_from_slice(&crc.to_le_bytes());
            b
        };
        assert!(validate(&resum(good.clone()), 7, 42, PREV).is_some());
        let mut tag = good.clone();
        tag[HEADER + 33] = 9; // the second op's kind
        assert!(validate(&resum(tag), 7, 42, PREV).is_none());
        let mut count = good.clone();
        count[28..32].copy_from_slice(&3u32.to_le_bytes()); // one op more than the frame holds
        assert!(validate(&resum(count), 7, 42, PREV).is_none());
        let mut long = good;
        long[HEADER + 33] = INSERT; // a 17-byte op read as 33 runs past the end
        let end = HEADER + 33 + 33;
        assert!(long.len() < end, "the frame ends inside the longer op");
        assert!(validate(&resum(long), 7, 42, PREV).is_none());
    }
}
