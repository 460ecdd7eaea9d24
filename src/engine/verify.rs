//! `verify`: checks a file against every rule of the format, from its newest root down.

use super::source::Source;
use super::walk::{walk, Live};
use crate::error::Result;
use crate::format::layout::{PAGE, ROOT_SLOT};
use crate::format::root::{self, Root};
use crate::store::{Mmap, ReadFile};
use std::path::Path;

/// What `verify` found: `problems` is empty for a sound file.
#[derive(Clone, Debug, Default)]
pub struct VerifyReport {
    pub problems: Vec<String>,
    pub epoch: u64,
    pub keys: u64,
    pub values: u64,
    pub buckets: u64,
    /// Pages the root references.
    pub pages: u64,
    /// Value extents the root references.
    pub extents: u64,
}

impl VerifyReport {
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
        let map = file.map()?;
        map.sequential();
        let Some(root) = newest_root(&map, file.root_offset(), &mut last)? else {
            return Ok(last);
        };
        last = check(&*map, map.len() as u64, &root);
        let again = file.map()?;
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
    bounds(&mut live, file_len);
    pages_once(&mut live);
    extents_disjoint(&mut live);
    VerifyReport {
        epoch: root.epoch,
        keys: live.keys,
        values: live.values,
        buckets: live.buckets,
        pages: live.pages.len() as u64,
        extents: live.extents.len() as u64,
        problems: live.problems,
    }
}

fn counts(live: &mut Live, root: &Root) {
    let pairs = [
        ("keys", live.keys, root.keys),
        ("values", live.values, root.values),
        ("buckets", live.buckets, root.buckets),
        ("extents", live.extents.len() as u64, root.extents),
    ];
    for (what, found, said) in pairs {
        if found != said {
            live.problems
                .push(format!("root says {said} {what}, the pages hold {found}"));
        }
    }
}

fn bounds(live: &mut Live, file_len: u64) {
    let pages = live.pages.iter().map(|(o, w)| (*o, PAGE as u64, *w));
    let extents = live.extents.iter().map(|(o, l)| (*o, *l, "extent"));
    let free = live
        .free_pages
        .iter()
        .map(|o| (*o, PAGE as u64, "free page"));
    let mut bad = Vec::new();
    for (off, len, what) in pages.chain(extents).chain(free) {
        if off == 0 || off.saturating_add(len) > file_len {
            bad.push(format!(
                "{what} at {off} (+{len}) lies outside the file ({file_len} bytes)"
            ));
        }
    }
    live.problems.extend(bad);
}

fn pages_once(live: &mut Live) {
    let mut all: Vec<(u64, &str)> = live.pages.clone();
    all.extend(live.free_pages.iter().map(|o| (*o, "free page")));
    all.sort_unstable();
    for w in all.windows(2) {
        if w[0].0 == w[1].0 {
            live.problems.push(format!(
                "page at {} is both {} and {}",
                w[0].0, w[0].1, w[1].1
            ));
        }
    }
}

fn extents_disjoint(live: &mut Live) {
    let mut all: Vec<(u64, u64, &str)> =
        live.extents.iter().map(|(o, l)| (*o, *l, "live")).collect();
    let mask = (1u64 << 56) - 1;
    all.extend(
        live.free_extents
            .iter()
            .map(|(o, l)| (*o, l & mask, "free")),
    );
    all.sort_unstable();
    for w in all.windows(2) {
        if w[0].0.saturating_add(w[0].1) > w[1].0 {
            live.problems.push(format!(
                "{} extent at {} (+{}) overlaps {} extent at {}",
                w[0].2, w[0].0, w[0].1, w[1].2, w[1].0
            ));
        }
    }
}
