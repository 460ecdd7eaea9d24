//! The write-ahead log: frames appended to the WAL chunks the root lists, restarted at offset 0
//! with a new generation after every checkpoint; scanning stops at the first frame that is not
//! whole, not of this generation or not the next LSN.

use super::source::{Fault, Source};
use crate::error::Result;
use crate::format::layout::BLOB_CHUNK;
use crate::format::wal::{header_len, validate, OpIter, HEADER};
use crate::store::{Positional, WriterFile};

/// Position in the log: generation, next LSN, next byte (logical offset over the chunks).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    pub gen: u64,
    pub lsn: u64,
    pub pos: u64,
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

/// Reads whole frames from `cur` on, handing each frame's ops to `f`; returns the cursor after
/// the last whole frame. Bytes past the end of a reader's mapping end the scan too.
pub fn scan(
    src: &dyn Source,
    chunks: &[u64],
    mut cur: Cursor,
    mut f: impl FnMut(OpIter<'_>),
) -> Result<Cursor> {
    let cap = capacity(chunks);
    let mut hdr = [0u8; HEADER];
    let mut frame = Vec::new();
    while cur.pos + HEADER as u64 <= cap {
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
        let Some(ops) = validate(&frame, cur.gen, cur.lsn) else {
            break;
        };
        f(ops);
        cur.pos += len as u64;
        cur.lsn += 1;
    }
    Ok(cur)
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
