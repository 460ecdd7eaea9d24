//! The full garbage-collection pass: recomputes live space from the root and frees every
//! segment and array page below the high-water mark that is neither live nor already free.
//! By construction a crash leaks nothing (space allocated after the last durable root is free
//! in it), so a pass normally finds nothing; it is the check of that, and the repair if a bug
//! or damage ever broke it. Idempotent, and safe to interrupt: it changes only the free lists,
//! and those only through a published root.

use super::core::{Core, Frees, Guard, Mode};
use super::walk::walk;
use crate::error::{Error, Result};
use crate::format::layout::{PAGE, PAGES_PER_SEGMENT, SEGMENT};
use std::collections::HashSet;

/// What a full pass reclaimed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Pages (of 4 KiB) returned to the free lists.
    pub pages_reclaimed: u64,
    /// Segments (of 1 MiB) returned to the free lists.
    pub segments_reclaimed: u64,
}

/// Finds orphaned space under the current root and publishes a root that lists it free.
/// Refuses to reclaim anything from an unsound file.
pub fn collect(core: &Core, st: &mut Guard) -> Result<GcReport> {
    let root = st.root.clone();
    let live = walk(&core.file, &root, false);
    if let Some(first) = live.problems.first() {
        return Err(Error::corrupt(
            "file",
            0,
            format!("gc reclaims nothing from a file that fails verification: {first}"),
        ));
    }
    super::failpoint::hit("gc.marked");
    let data = root.data_offset;
    let seg_of = |off: u64| data + (off - data) / SEGMENT * SEGMENT;
    let mut whole: HashSet<u64> = live.segments.iter().map(|s| s.0).collect();
    for (off, n) in st.space.listed_runs() {
        whole.extend((0..n).map(|i| off + i * SEGMENT));
    }
    let mut pages: HashSet<u64> = live.pages.iter().map(|p| p.0).collect();
    pages.extend(st.space.listed_pages());
    let page_segs: HashSet<u64> = pages.iter().map(|p| seg_of(*p)).collect();
    let mut frees = Frees::default();
    for i in 0..st.space.used {
        let seg = data + i * SEGMENT;
        if whole.contains(&seg) {
            continue;
        }
        if !page_segs.contains(&seg) {
            frees.runs.push((seg, 1));
            continue;
        }
        for p in 0..PAGES_PER_SEGMENT {
            let page = seg + p * PAGE as u64;
            if !pages.contains(&page) {
                frees.pages.push(page);
            }
        }
    }
    let report = GcReport {
        pages_reclaimed: frees.pages.len() as u64,
        segments_reclaimed: frees.runs.len() as u64,
    };
    if report != GcReport::default() {
        let next = st.root.clone();
        core.publish(st, next, frees, Mode::Durable)?;
    }
    Ok(report)
}
