//! Walks everything a root references — directory, bucket pages, extents, free lists, WAL map —
//! checking each piece, for `verify` and for the full garbage-collection pass.

use super::array::{self, Shape};
use super::extents::MIN_CAP;
use super::source::{Fault, Source};
use crate::format::bucket::{self, Set, INLINE_MAX};
use crate::format::hash::Range;
use crate::format::page::MAGIC_BUCKET;
use crate::format::root::Root;
use std::collections::HashSet;

/// What a root references, and what was wrong with it.
#[derive(Default)]
pub struct Live {
    /// Every page the root references, with what it is.
    pub pages: Vec<(u64, &'static str)>,
    /// Every live extent: (file offset, byte length).
    pub extents: Vec<(u64, u64)>,
    pub free_pages: Vec<u64>,
    /// Free extents: (file offset, shard << 56 | byte length).
    pub free_extents: Vec<(u64, u64)>,
    pub wal_chunks: Vec<u64>,
    pub keys: u64,
    pub values: u64,
    pub buckets: u64,
    pub problems: Vec<String>,
}

impl Live {
    fn problem(&mut self, p: String) {
        self.problems.push(p);
    }
}

fn describe(f: Fault) -> String {
    match f {
        Fault::Stale => "page newer than the root".into(),
        Fault::Suspect(e) | Fault::Fail(e) => e.to_string(),
    }
}

fn shape_pages(live: &mut Live, s: &Shape, what: &'static str) {
    for (off, _) in &s.leaves {
        if *off != 0 {
            live.pages.push((*off, what));
        }
    }
    live.pages.extend(s.nodes.iter().map(|o| (*o, what)));
}

/// Loads an array, recording its pages; None (and a problem) when it cannot be read.
fn array_items(
    src: &dyn Source,
    live: &mut Live,
    aref: crate::format::array::ArrayRef,
    epoch: u64,
    what: &'static str,
) -> Option<Vec<u64>> {
    match array::load(src, aref, epoch) {
        Ok((items, shape)) => {
            shape_pages(live, &shape, what);
            Some(items)
        }
        Err(f) => {
            live.problem(format!("{what}: {}", describe(f)));
            None
        }
    }
}

/// Walks the root; `extent_crcs` also reads every extent and checks its CRC.
pub fn walk(src: &dyn Source, root: &Root, extent_crcs: bool) -> Live {
    let mut live = Live::default();
    let epoch = root.epoch;
    if let Some(items) = array_items(src, &mut live, root.free_pages, epoch, "free-page list") {
        live.free_pages = items;
    }
    if let Some(items) = array_items(src, &mut live, root.free_extents, epoch, "free-extent list") {
        live.free_extents = items.chunks_exact(2).map(|p| (p[0], p[1])).collect();
    }
    if let Some(items) = array_items(src, &mut live, root.wal_map, epoch, "WAL map") {
        live.wal_chunks = items;
    }
    if let Some(dir) = array_items(src, &mut live, root.dir, epoch, "directory") {
        walk_buckets(src, root, &dir, extent_crcs, &mut live);
    }
    live
}

fn walk_buckets(src: &dyn Source, root: &Root, dir: &[u64], extent_crcs: bool, live: &mut Live) {
    let gd = root.global_depth;
    let mut seen = HashSet::new();
    let mut i = 0usize;
    while i < dir.len() {
        let off = dir[i];
        let last = dir[i..]
            .iter()
            .position(|e| *e != off)
            .map_or(dir.len(), |j| i + j)
            - 1;
        if off != 0 {
            if !seen.insert(off) {
                live.problem(format!(
                    "directory slots {i}..={last}: page {off} also covers slots elsewhere"
                ));
            }
            let range = Range::slots(i as u64, last as u64, gd);
            walk_bucket(src, root, off, range, extent_crcs, live);
        }
        i = last + 1;
    }
}

fn walk_bucket(
    src: &dyn Source,
    root: &Root,
    off: u64,
    range: Range,
    extent_crcs: bool,
    live: &mut Live,
) {
    live.pages.push((off, "bucket page"));
    live.buckets += 1;
    let entries = match src.page(off, MAGIC_BUCKET, root.epoch, "bucket page") {
        Ok(p) => {
            let (_, r) = bucket::header(&p[..]);
            if r != range {
                live.problem(format!(
                    "bucket page at {off}: covers {:#x}..={:#x}, the directory {:#x}..={:#x}",
                    r.lo, r.hi, range.lo, range.hi
                ));
            }
            match bucket::decode(&p, off) {
                Ok(es) => es,
                Err(e) => return live.problem(e.to_string()),
            }
        }
        Err(f) => return live.problem(format!("bucket page at {off}: {}", describe(f))),
    };
    for (n, e) in entries.iter().enumerate() {
        if !range.contains(e.hash) {
            live.problem(format!(
                "bucket page at {off}: entry {n} has a key of another bucket"
            ));
        }
        if n > 0 && (entries[n - 1].hash, entries[n - 1].key) >= (e.hash, e.key) {
            live.problem(format!(
                "bucket page at {off}: entry {n} out of order or duplicated"
            ));
        }
        live.keys += 1;
        live.values += e.set.count();
        if let Set::Extent(x) = &e.set {
            check_extent(src, off, x, extent_crcs, live);
        }
    }
}

fn check_extent(
    src: &dyn Source,
    page: u64,
    x: &crate::format::bucket::ExtentRef,
    crcs: bool,
    live: &mut Live,
) {
    let len = x.cap as u64 * 16;
    live.extents.push((x.offset, len));
    if !x.cap.is_power_of_two() || x.cap < MIN_CAP || x.count as usize <= INLINE_MAX {
        live.problem(format!(
            "extent at {} (bucket page {page}): count {} cap {} break the extent rules",
            x.offset, x.count, x.cap
        ));
    }
    if crcs {
        if let Err(f) = super::extents::read(src, x.offset, x.count, x.crc) {
            live.problem(format!(
                "extent at {} (bucket page {page}): {}",
                x.offset,
                describe(f)
            ));
        }
    }
}
