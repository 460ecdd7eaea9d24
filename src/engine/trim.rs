//! Giving free space back to the filesystem: the blocks under pages, extents and log chunks
//! that no root still in use references are punched out of the file, so the file takes on disk
//! what its live data takes, not what its copy-on-write history once took.
//!
//! Only space that is free *and* released (no pinned reader's root can reach it) is punched,
//! and only after the root that stopped referencing it is published: what is punched reads as
//! zeros, which no root still readable references. A reader without a pin that reads a punched
//! page sees a bad magic number, exactly as when the page is reused, and refreshes.

use super::state::State;
use crate::error::Result;
use crate::format::layout::{BLOB_CHUNK, PAGE};
use crate::store::WriterFile;

/// What the filesystem allocates in: a range is punched only in whole blocks of this size.
const BLOCK: u64 = 4096;

/// Punches the free, released space of `st`; with `log_empty`, also the current log's chunks
/// (after a checkpoint they hold only frames of older generations). Returns the bytes punched:
/// 0 on a filesystem that cannot punch holes.
pub fn trim(file: &WriterFile, st: &State, log_empty: bool) -> Result<u64> {
    let mut ranges = free_ranges(st, log_empty);
    ranges.sort_unstable();
    let mut punched = 0;
    for (start, end) in whole_blocks(coalesce(ranges)) {
        if !file.punch(start, end - start)? {
            return Ok(0);
        }
        punched += end - start;
    }
    Ok(punched)
}

/// Every free and released range of the file, as (start, end) file offsets, unsorted.
fn free_ranges(st: &State, log_empty: bool) -> Vec<(u64, u64)> {
    let pages = st.pages.free.iter().map(|&off| (off, off + PAGE as u64));
    let extents = (st.extents.free.iter())
        .flat_map(|(&(_, len), offs)| offs.iter().map(move |&off| (off, off + len)));
    let log = log_empty.then_some(&st.wal_chunks).into_iter().flatten();
    let chunks = (st.wal_spare.free.iter())
        .chain(log)
        .map(|&off| (off, off + BLOB_CHUNK));
    pages.chain(extents).chain(chunks).collect()
}

/// Merges sorted ranges that touch or overlap.
fn coalesce(sorted: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(sorted.len());
    for (start, end) in sorted {
        match out.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => out.push((start, end)),
        }
    }
    out
}

/// The whole blocks inside each range: punching part of a block only zeroes it.
fn whole_blocks(ranges: Vec<(u64, u64)>) -> impl Iterator<Item = (u64, u64)> {
    ranges.into_iter().filter_map(|(start, end)| {
        let (start, end) = (start.next_multiple_of(BLOCK), end / BLOCK * BLOCK);
        (start < end).then_some((start, end))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn touching_ranges_merge_and_part_blocks_are_left() {
        let merged = coalesce(vec![
            (0, 4096),
            (4096, 8192),
            (8000, 9000),
            (20_000, 20_100),
        ]);
        assert_eq!(merged, vec![(0, 9000), (20_000, 20_100)]);
        let blocks: Vec<_> = whole_blocks(vec![(100, 12_000), (20_000, 20_100)]).collect();
        assert_eq!(blocks, vec![(4096, 8192)]);
    }
}
