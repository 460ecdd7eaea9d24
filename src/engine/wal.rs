//! The write-ahead log: frames appended to the WAL chunks the root lists, restarted at offset 0
//! with a new generation after every checkpoint; scanning stops at the first frame that is not
//! whole, not of this generation or not the next LSN.

use super::pages::Held;
use super::source::{Fault, Res, Source};
use crate::error::Result;
use crate::format::layout::BLOB_CHUNK;
use crate::format::wal::{frame_ops, header_len, op_at, validate, Op, OpIter, HEADER, OP_MAX};
use crate::store::{Positional, WriterFile};

/// Position in the log: generation, next LSN, next byte (logical offset over the chunks).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    pub gen: u64,
    pub lsn: u64,
    pub pos: u64,
}

/// WAL chunks that are not the current log's. Every checkpoint moves the log to other chunks:
/// readers of the root before it still read its log (their overlay refers to it in place), so
/// that log's chunks are held like the pages that root referenced, then reused.
#[derive(Default)]
pub struct Spare {
    pub free: Vec<u64>,
    /// The log the running checkpoint replaces; held once its root is published.
    pub retired: Vec<u64>,
    pub held: Held<u64>,
}

impl Spare {
    /// The chunks of `all` that `current` does not list, held for readers of roots up to `epoch`.
    pub fn load(all: &[u64], current: &[u64], epoch: u64) -> Spare {
        let used: std::collections::HashSet<&u64> = current.iter().collect();
        let mut spare = Spare::default();
        spare.held.hold(
            epoch,
            all.iter().filter(|c| !used.contains(c)).copied().collect(),
        );
        spare
    }

    /// Takes up to `n` free chunks, lowest addresses first (a log written in file order).
    pub fn take(&mut self, n: usize) -> Vec<u64> {
        self.free.sort_unstable();
        self.free.drain(..n.min(self.free.len())).collect()
    }

    pub fn publish(&mut self, epoch: u64) {
        let retired = std::mem::take(&mut self.retired);
        self.held.hold(epoch, retired);
    }

    pub fn release(&mut self, oldest: u64) {
        let free = &mut self.free;
        self.held.release(oldest, |c| free.push(c));
    }
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

/// Appends a sealed frame at the cursor; the caller checked it fits.
pub fn append(file: &WriterFile, chunks: &[u64], cur: &mut Cursor, frame: &[u8]) -> Result<()> {
    debug_assert!(cur.pos + frame.len() as u64 <= capacity(chunks));
    pieces(chunks, cur.pos, frame.len(), |off, at, n| {
        if n > 64 && super::failpoint::armed("commit.half_frame") {
            // A torn frame: the first half reaches the file, then the process dies.
            file.write_at(off, &frame[at..at + n / 2])?;
            super::failpoint::hit("commit.half_frame");
        }
        file.write_at(off, &frame[at..at + n])
    })?;
    cur.pos += frame.len() as u64;
    cur.lsn += 1;
    Ok(())
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
    mut cur: Cursor,
    until: u64,
    mut f: impl FnMut(u64, Vec<u8>) -> Vec<u8>,
) -> Result<Cursor> {
    let cap = capacity(chunks);
    let mut hdr = [0u8; HEADER];
    let mut frame = Vec::new();
    while cur.pos < until && cur.pos + HEADER as u64 <= cap {
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
        if validate(&frame, cur.gen, cur.lsn).is_none() {
            break;
        }
        frame = f(cur.pos, frame);
        cur.pos += len as u64;
        cur.lsn += 1;
    }
    Ok(cur)
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
