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

/// Which free space to punch.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Free pages and extents (what `gc` gives back). Not the log chunks: a writer that stays
    /// open writes its next logs into them at once, and a write into a hole costs the
    /// filesystem an allocation (a `gc` every 300 batches cost the stress test's writer a fifth
    /// of its batches that way).
    Table,
    /// Those, the free log chunks and the current log's, empty after the closing checkpoint
    /// (what closing gives back).
    All,
}

/// Punches the free, released space of `st` within `scope`; the current log's chunks only when
/// `log_bytes` (the log's length) is 0. Returns the bytes punched: 0 on a filesystem that
/// cannot punch holes.
pub fn trim(file: &WriterFile, st: &State, scope: Scope, log_bytes: u64) -> Result<u64> {
    let mut ranges = free_ranges(st, scope, log_bytes == 0);
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

/// The free and released ranges of `scope`, as (start, end) file offsets, unsorted.
fn free_ranges(st: &State, scope: Scope, log_empty: bool) -> Vec<(u64, u64)> {
    let pages = st.pages.free.iter().map(|&off| (off, off + PAGE as u64));
    let extents = (st.extents.free.iter())
        .flat_map(|(&(_, len), offs)| offs.iter().map(move |&off| (off, off + len)));
    let current = log_empty.then_some(&st.wal_chunks).into_iter().flatten();
    let logs = (scope == Scope::All).then_some(st.wal_spare.free.iter().chain(current));
    let chunks = (logs.into_iter().flatten()).map(|&off| (off, off + BLOB_CHUNK));
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
