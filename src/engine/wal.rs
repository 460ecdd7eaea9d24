//! The write-ahead log: frames appended to the log's range, which every switch moves to a new
//! range with a new, random generation; scanning stops at the first frame that is not whole,
//! not of this generation or not the next LSN. A log is read as a list of segments.

use super::source::{Fault, Res, Source};
use crate::error::Result;
use crate::format::layout::{SEGMENT, SEGMENT as BLOB_CHUNK};
use crate::format::root::LogRef;
use crate::format::wal::{
    crc_of, frame_ops, header_len, op_at, validate, Op, OpIter, HEADER, OP_MAX,
};
use crate::store::{Positional, WriterFile};

/// Position in the log: generation, next LSN, next byte (logical offset over the chunks),
/// and the CRC of the last frame, which the next frame's CRC continues.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    pub gen: u64,
    pub lsn: u64,
    pub pos: u64,
    pub prev: u32,
}

impl Cursor {
    /// The start of `log`.
    pub fn start(log: &LogRef) -> Cursor {
        Cursor {
            gen: log.gen,
            lsn: log.lsn,
            pos: 0,
            prev: 0,
        }
    }
}

/// The segments of a log, in order (a log is one contiguous range of whole segments).
pub fn chunks(log: &LogRef) -> Vec<u64> {
    (0..log.bytes / SEGMENT)
        .map(|i| log.offset + i * SEGMENT)
        .collect()
}

pub fn capacity(chunks: &[u64]) -> u64 {
    chunks.len() as u64 * BLOB_CHUNK
}

/// Visits the chunk-contiguous pieces of the logical range [pos, pos + len).
fn pieces(
    chunks: &[u64],
    mut pos: u64,
    len: usize,
    mut f: impl FnMut(u64, usize, usize) -> Result<()>,
) -> Result<()> {
    let mut done = 0usize;
    while done < len {
        let chunk = (pos / BLOB_CHUNK) as usize;
        let within = pos % BLOB_CHUNK;
        let n = ((BLOB_CHUNK - within) as usize).min(len - done);
        f(chunks[chunk] + within, done, n)?;
        done += n;
        pos += n as u64;
    }
    Ok(())
}

/// Log bytes handed to the device at once as commits fill them.
const WRITE_BEHIND: u64 = 8 << 20;

/// Appends a sealed frame at the cursor of the log at `log` (its file offset); the caller
/// checked it fits. On error the cursor stays: the next commit writes over what reached the
/// file.
pub fn append(file: &WriterFile, log: u64, cur: &mut Cursor, frame: &[u8]) -> Result<()> {
    let off = log + cur.pos;
    if frame.len() > 64 && super::failpoint::armed("commit.half_frame") {
        // A torn frame: the first half reaches the file, then the process dies.
        file.write_at(off, &frame[..frame.len() / 2])?;
        super::failpoint::hit("commit.half_frame");
    }
    file.write_at(off, frame)?;
    let before = cur.pos / WRITE_BEHIND;
    cur.pos += frame.len() as u64;
    cur.lsn += 1;
    cur.prev = crc_of(frame);
    if cur.pos / WRITE_BEHIND > before {
        // Whole chunks of the log go to the device as they fill, not all at the next sync.
        let upto = cur.pos / WRITE_BEHIND * WRITE_BEHIND;
        file.write_behind(log + before * WRITE_BEHIND, upto - before * WRITE_BEHIND);
    }
    Ok(())
}

/// A fresh log generation: random, so that frames a lost root's log left behind are never
/// taken for frames of a later log.
pub fn new_gen() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let local = 0u8;
    let mix = t
        ^ u64::from(std::process::id()).rotate_left(32)
        ^ SEQ
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ (&raw const local) as u64;
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&mix.to_le_bytes());
    k[8..].copy_from_slice(&t.rotate_left(17).to_le_bytes());
    crate::format::hash::key_hash(&k).max(1)
}

/// Reads log bytes; false when they lie past the end of a reader's mapping (the end of the
/// log as far as that reader can see).
fn read(src: &dyn Source, chunks: &[u64], pos: u64, buf: &mut [u8]) -> Result<bool> {
    let len = buf.len();
    let mut visible = true;
    pieces(chunks, pos, len, |off, at, n| {
        match src.read(off, &mut buf[at..at + n]) {
            Ok(()) => {}
            Err(Fault::Stale) => visible = false,
            Err(Fault::Suspect(e) | Fault::Fail(e)) => return Err(e),
        }
        Ok(())
    })?;
    Ok(visible)
}

/// Reads whole frames from `cur` on, handing each frame's log position and ops to `f`; returns
/// the cursor after the last whole frame. Bytes past the end of a reader's mapping end the
/// scan too.
pub fn scan(
    src: &dyn Source,
    chunks: &[u64],
    cur: Cursor,
    f: impl FnMut(u64, OpIter<'_>),
) -> Result<Cursor> {
    scan_until(src, chunks, cur, u64::MAX, f)
}

/// [`scan`], stopping at the first frame that starts at or past log position `until`.
pub fn scan_until(
    src: &dyn Source,
    chunks: &[u64],
    cur: Cursor,
    until: u64,
    mut f: impl FnMut(u64, OpIter<'_>),
) -> Result<Cursor> {
    scan_frames(src, chunks, cur, until, |pos, frame| {
        f(pos, frame_ops(&frame));
        frame
    })
}

/// [`scan_until`] handing each valid frame over whole (its ops: `frame_ops`): `f` takes the
/// frame's bytes and returns the buffer to read the next frame into.
pub fn scan_frames(
    src: &dyn Source,
    chunks: &[u64],
    cur: Cursor,
    until: u64,
    f: impl FnMut(u64, Vec<u8>) -> Vec<u8>,
) -> Result<Cursor> {
    scan_frames_below(src, chunks, cur, until, u64::MAX, f)
}

/// [`scan_frames`], stopping also before the frame of LSN `below`.
pub fn scan_frames_below(
    src: &dyn Source,
    chunks: &[u64],
    mut cur: Cursor,
    until: u64,
    below: u64,
    mut f: impl FnMut(u64, Vec<u8>) -> Vec<u8>,
) -> Result<Cursor> {
    let cap = capacity(chunks);
    let mut hdr = [0u8; HEADER];
    let mut frame = Vec::new();
    let mut ahead = ReadAhead::new(cur.pos, until.min(cap));
    while cur.pos < until && cur.lsn < below && cur.pos + HEADER as u64 <= cap {
        ahead.at(src, chunks, cur.pos);
        if !read(src, chunks, cur.pos, &mut hdr)? {
            break;
        }
        let Some(len) = header_len(&hdr, cur.gen, cur.lsn) else {
            break;
        };
        if cur.pos + len as u64 > cap {
            break;
        }
        frame.resize(len, 0);
        if !read(src, chunks, cur.pos, &mut frame)? {
            break;
        }
        if validate(&frame, cur.gen, cur.lsn, cur.prev).is_none() {
            break;
        }
        let crc = crc_of(&frame);
        frame = f(cur.pos, frame);
        cur.pos += len as u64;
        cur.lsn += 1;
        cur.prev = crc;
    }
    Ok(cur)
}

/// Log bytes a long scan asks the source to read ahead of it.
const AHEAD: u64 = 32 << 20;
/// Log bytes a scan reads before it asks for any ahead: a reader following the log reads a
/// few frames at a time, and advice for bytes not written yet would only cost it.
const AHEAD_AFTER: u64 = 4 << 20;

/// The read-ahead of a scan: when a log is not in memory (recovery after a restart, a
/// reader opened on a cold file), its frames are read one after another, each waiting for
/// the device; the advice has the device read the next `AHEAD` bytes meanwhile.
struct ReadAhead {
    start: u64,
    end: u64,
    /// Log position up to which the source was advised.
    advised: u64,
}

impl ReadAhead {
    fn new(start: u64, end: u64) -> ReadAhead {
        ReadAhead {
            start,
            end,
            advised: start,
        }
    }

    /// The scan is at `pos`: advises the next `AHEAD` bytes once less than half of them are
    /// left advised.
    fn at(&mut self, src: &dyn Source, chunks: &[u64], pos: u64) {
        if pos - self.start < AHEAD_AFTER || self.advised >= (pos + AHEAD / 2).min(self.end) {
            return;
        }
        let from = self.advised.max(pos);
        let to = (pos + AHEAD).min(self.end);
        if to > from {
            let _ = pieces(chunks, from, (to - from) as usize, |off, _, n| {
                src.will_need(off, n as u64);
                Ok(())
            });
        }
        self.advised = to;
    }
}

/// The op at log position `pos`, which a scan found in a whole frame.
pub fn op(src: &dyn Source, chunks: &[u64], pos: u64) -> Res<Op> {
    let mut b = [0u8; OP_MAX];
    let n = (capacity(chunks).saturating_sub(pos) as usize).min(OP_MAX);
    if !read(src, chunks, pos, &mut b[..n])? {
        return Err(Fault::Stale);
    }
    op_at(&b[..n]).map(|(op, _)| op).ok_or_else(|| {
        Fault::Suspect(crate::error::Error::corrupt(
            "WAL op",
            pos,
            "no op where the log index says one is",
        ))
    })
}

/// The length a frame at `cur` claims when its header is whole but the frame is not: a batch
/// whose write was cut short, which the scan ended at.
pub fn torn_tail(src: &dyn Source, chunks: &[u64], cur: Cursor) -> Result<Option<usize>> {
    let mut hdr = [0u8; HEADER];
    if cur.pos + HEADER as u64 > capacity(chunks) || !read(src, chunks, cur.pos, &mut hdr)? {
        return Ok(None);
    }
    Ok(header_len(&hdr, cur.gen, cur.lsn))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// A source that only records the advice it gets.
    #[derive(Default)]
    struct Advised(RefCell<Vec<(u64, u64)>>);

    impl Source for Advised {
        fn read(&self, _off: u64, _buf: &mut [u8]) -> Res<()> {
            Ok(())
        }

        fn size(&self) -> u64 {
            u64::MAX
        }

        fn will_need(&self, off: u64, len: u64) {
            self.0.borrow_mut().push((off, len));
        }
    }

    /// A long scan is advised ahead of it, each log byte once, across segments and never past
    /// the log's end; a short one is not advised at all.
    #[test]
    fn a_long_scan_reads_ahead_and_a_short_one_does_not() {
        let chunks: Vec<u64> = (0..100).map(|i| (1000 - i) * SEGMENT).collect();
        let end = capacity(&chunks) - 123;
        let src = Advised::default();
        let mut ahead = ReadAhead::new(0, end);
        for pos in (0..AHEAD_AFTER).step_by(4096) {
            ahead.at(&src, &chunks, pos);
        }
        assert!(src.0.borrow().is_empty(), "advice within the first bytes");
        let mut pos = AHEAD_AFTER;
        while pos < end {
            ahead.at(&src, &chunks, pos);
            let advised: u64 = src.0.borrow().iter().map(|a| a.1).sum();
            assert!(
                AHEAD_AFTER + advised >= (pos + AHEAD / 2).min(end),
                "at {pos} only {advised} bytes advised"
            );
            pos += 3 << 20;
        }
        // Every piece lies in one segment; together they are the log from AHEAD_AFTER to its
        // end, once.
        let mut logical = Vec::new();
        for &(off, len) in src.0.borrow().iter() {
            let i = chunks
                .iter()
                .position(|c| (*c..*c + SEGMENT).contains(&off));
            let i = i.expect("advice outside the log") as u64;
            let at = i * SEGMENT + off % SEGMENT;
            assert!(off % SEGMENT + len <= SEGMENT, "a piece across segments");
            logical.push((at, at + len));
        }
        logical.sort_unstable();
        assert_eq!(logical[0].0, AHEAD_AFTER);
        assert_eq!(logical.last().unwrap().1, end);
        assert!(
            logical.windows(2).all(|w| w[0].1 == w[1].0),
            "gaps or overlaps"
        );
    }
}
