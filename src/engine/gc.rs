//! The full garbage-collection pass: recomputes live space from the root and returns every
//! page and extent byte that is neither live nor already free to the free lists. Idempotent
//! (a second pass finds nothing) and safe to interrupt (it only changes the free lists, and
//! those only through a checkpoint's root flip).

use super::extents::MIN_CAP;
use super::state::State;
use super::walk::walk;
use crate::error::{Error, Result};
use crate::format::layout::{BLOB_CHUNK, PAGE, PAGES_PER_CHUNK, VALUE_SHARDS};
use crate::store::{Ds, WriterFile};
use std::collections::HashSet;

/// What a full pass reclaimed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    pub pages_reclaimed: u64,
    pub extent_bytes_reclaimed: u64,
}

/// Finds orphaned space under the current root and adds it to the free lists in memory; the
/// caller publishes them with a checkpoint. Refuses to reclaim anything from an unsound file.
pub fn collect(file: &WriterFile, st: &mut State) -> Result<GcReport> {
    let live = walk(file, &st.root, false);
    if let Some(first) = live.problems.first() {
        return Err(Error::corrupt(
            "file",
            0,
            format!("gc reclaims nothing from a file that fails verification: {first}"),
        ));
    }
    super::failpoint::hit("gc.marked");
    let mut report = GcReport::default();
    let used: HashSet<u64> = live
        .pages
        .iter()
        .map(|p| p.0)
        .chain(st.pages.listed())
        .collect();
    let chunks = file.chunks(Ds::Pages);
    for idx in 0..st.pages.hw {
        let off = chunks[(idx / PAGES_PER_CHUNK) as usize] + (idx % PAGES_PER_CHUNK) * PAGE as u64;
        if !used.contains(&off) {
            st.pages.free.push(off);
            report.pages_reclaimed += 1;
        }
    }
    st.pages.order();
    let mut taken: Vec<(u64, u64)> = live.extents.clone();
    for ((_, len), offs) in &st.extents.free {
        taken.extend(offs.iter().map(|o| (*o, *len)));
    }
    let held = st.extents.held.iter();
    taken.extend(held.chain(&st.extents.freed).map(|(_, o, l)| (*o, *l)));
    for shard in 0..VALUE_SHARDS {
        report.extent_bytes_reclaimed += reclaim_shard(file, st, shard, &taken);
    }
    Ok(report)
}

/// Frees the bytes of a shard below its high-water mark that no taken range covers.
fn reclaim_shard(file: &WriterFile, st: &mut State, shard: usize, taken: &[(u64, u64)]) -> u64 {
    let chunks = file.chunks(Ds::Values(shard as u8)).to_vec();
    let hw = st.extents.hw[shard];
    // Logical ranges of this shard that are taken, found through the chunk of each offset.
    let mut by_addr: Vec<(u64, u64)> = chunks
        .iter()
        .enumerate()
        .map(|(i, a)| (*a, i as u64))
        .collect();
    by_addr.sort_unstable();
    let mut covered: Vec<(u64, u64)> = taken
        .iter()
        .filter_map(|(off, len)| {
            let i = by_addr
                .partition_point(|(a, _)| *a <= *off)
                .checked_sub(1)?;
            let (addr, chunk) = by_addr[i];
            (*off < addr + BLOB_CHUNK).then(|| {
                let start = chunk * BLOB_CHUNK + (off - addr);
                (start, start + len)
            })
        })
        .collect();
    covered.sort_unstable();
    let unit = MIN_CAP as u64 * 16;
    let mut reclaimed = 0;
    let mut at = 0u64;
    for (start, end) in covered.into_iter().chain([(hw, hw)]) {
        let gap_end = start.min(hw);
        if gap_end > at && (gap_end - at) >= unit {
            st.extents.free_range(&chunks, shard, (at, gap_end));
            reclaimed += gap_end - at;
        }
        at = at.max(end);
    }
    reclaimed
}
