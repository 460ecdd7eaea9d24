//! `verify`: checks a file against every rule of the format, from its newest root down.

use super::source::Source;
use super::walk::{walk, Live};
use crate::error::Result;
use crate::format::layout::{PAGE, ROOT_SLOT, SEGMENT};
use crate::format::root::{self, Root};
use crate::store::{Mmap, ReadFile};
use std::path::Path;

/// What `verify` found: `problems` is empty for a sound file.
#[derive(Clone, Debug, Default)]
pub struct VerifyReport {
    /// Every problem found, one line each.
    pub problems: Vec<String>,
    /// Epoch of the root checked.
    pub epoch: u64,
    /// Keys of the base table.
    pub keys: u64,
    /// Values of the base table.
    pub values: u64,
    /// Pages of the base table.
    pub buckets: u64,
    /// Array pages the root references.
    pub pages: u64,
    /// Extents of the base table.
    pub extents: u64,
}

impl VerifyReport {
    /// Whether the file is sound (no problems).
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks every checksum, the directory against the pages' ranges, the entry counts against
/// the root's statistics, extents against their checksums and the file, that no page is
/// referenced twice and that the free lists are disjoint from live space. Safe while a writer
/// runs: a walk the writer overtook is done again on the newer root.
pub fn verify(path: &Path) -> Result<VerifyReport> {
    let file = ReadFile::open(path)?;
    let mut last = VerifyReport::default();
    for _ in 0..3 {
        let map = file.map(0)?;
        let Some(root) = newest_root(&map, file.root_offset(), &mut last)? else {
            return Ok(last);
        };
        let map = file.map(
            root.data_offset
                .saturating_add(root.segments_used.saturating_mul(SEGMENT)),
        )?;
        map.sequential();
        last = check(&*map, file.size()?.len, &root);
        let again = file.map(0)?;
        let now = newest_root(&again, file.root_offset(), &mut VerifyReport::default())?;
        if last.is_ok() || now.is_none_or(|r| r.epoch == root.epoch) {
            return Ok(last);
        }
    }
    Ok(last)
}

fn newest_root(map: &Mmap, at: u64, report: &mut VerifyReport) -> Result<Option<Root>> {
    let mut slots = vec![0u8; 2 * ROOT_SLOT];
    map.read(at, &mut slots)?;
    match root::newest(&slots[..ROOT_SLOT], &slots[ROOT_SLOT..]) {
        Ok(r) => Ok(Some(r)),
        Err(why) => {
            report.problems.push(format!("root at {at}: {why}"));
            Ok(None)
        }
    }
}

/// Every rule of the format for the state `root` describes; `file_len` bounds all offsets.
pub(super) fn check(src: &dyn Source, file_len: u64, root: &Root) -> VerifyReport {
    let mut live = walk(src, root, true);
    counts(&mut live, root);
    space(&mut live, root, file_len);
    VerifyReport {
        epoch: root.epoch,
        keys: live.keys,
        values: live.values,
        buckets: live.table_pages,
        pages: live.pages.len() as u64,
        extents: live.extents,
        problems: live.problems,
    }
}

fn counts(live: &mut Live, root: &Root) {
    if root.merging.is_some() || !root.base.is_some() {
        return;
    }
    let pairs = [
        ("entries", live.keys, root.base.entries),
        ("values", live.values, root.base.values),
    ];
    for (what, found, said) in pairs {
        if found != said {
            live.problems.push(format!(
                "the base table says {said} {what}, its pages hold {found}"
            ));
        }
    }
}

/// Space rules: everything inside the segments handed out; no segment or page used twice or
/// both used and free; array pages only in segments that hold pages (not in a segment a
/// table, a log or a free run claims).
fn space(live: &mut Live, root: &Root, file_len: u64) {
    let data = root.data_offset;
    let end = data.saturating_add(root.segments_used.saturating_mul(SEGMENT));
    let mut problems = Vec::new();
    if data.saturating_add(root.capacity) > file_len {
        problems.push(format!(
            "the data area ends at {} past the file ({file_len} bytes)",
            data.saturating_add(root.capacity)
        ));
    }
    let mut segs: Vec<(u64, String)> = live.segments.clone();
    for &(off, n) in &live.free_runs {
        if n == 0 || n > root.segments_used || off.saturating_add(n.saturating_mul(SEGMENT)) > end {
            problems.push(format!(
                "free run at {off} of {n} segments is outside the segments in use"
            ));
            continue;
        }
        for i in 0..n {
            segs.push((off + i * SEGMENT, "free".to_owned()));
        }
    }
    segs.sort_unstable();
    for w in segs.windows(2) {
        if w[0].0 == w[1].0 {
            problems.push(format!(
                "segment at {} is both {} and {}",
                w[0].0, w[0].1, w[1].1
            ));
        }
    }
    for (off, what) in &segs {
        if *off < data || off.saturating_add(SEGMENT) > end || !(off - data).is_multiple_of(SEGMENT)
        {
            problems.push(format!(
                "{what} segment at {off} is outside the segments in use"
            ));
        }
    }
    let whole: std::collections::HashSet<u64> = segs.iter().map(|s| s.0).collect();
    let mut pages: Vec<(u64, String)> = live.pages.clone();
    pages.extend(live.free_pages.iter().map(|o| (*o, "free page".to_owned())));
    pages.sort_unstable();
    for w in pages.windows(2) {
        if w[0].0 == w[1].0 {
            problems.push(format!(
                "page at {} is both {} and {}",
                w[0].0, w[0].1, w[1].1
            ));
        }
    }
    for (off, what) in &pages {
        let seg = data + off.saturating_sub(data) / SEGMENT * SEGMENT;
        let in_lists = root
            .lists
            .iter()
            .any(|l| (l.offset..l.offset.saturating_add(l.bytes)).contains(off));
        if *off < data
            || off.saturating_add(PAGE as u64) > end
            || !(off - data).is_multiple_of(PAGE as u64)
        {
            problems.push(format!("{what} at {off} is outside the segments in use"));
        } else if whole.contains(&seg) && !in_lists {
            problems.push(format!("{what} at {off} lies in a segment used whole"));
        }
    }
    live.problems.extend(problems);
}
