//! Everything a root references — its tables (directories, segment lists, pages, extents),
//! its logs, the space set aside for the next log and for the free lists, the free lists
//! themselves — visited and checked. `verify` reports what the walk finds wrong; `gc` frees
//! what the walk finds neither referenced nor free.

use super::array;
use super::source::{Fault, Source};
use super::table::scan::{pairs, read_values, Scan};
use crate::format::bucket::Body;
use crate::format::filter;
use crate::format::layout::{PAGE, SEGMENT};
use crate::format::root::{Root, Span};
use crate::format::table::TableRef;
use std::collections::HashSet;

/// Space in use under a root, and what is wrong with it.
#[derive(Default)]
pub struct Live {
    /// Segments in use, with what uses them.
    pub segments: Vec<(u64, String)>,
    /// Array pages in use, with what uses them.
    pub pages: Vec<(u64, String)>,
    /// Table pages and extents (offset, bytes) read on the way.
    pub data: Vec<(u64, u64)>,
    pub free_runs: Vec<(u64, u64)>,
    pub free_pages: Vec<u64>,
    pub problems: Vec<String>,
    /// Entries, values, pages and extents of the base table.
    pub keys: u64,
    pub values: u64,
    pub table_pages: u64,
    pub extents: u64,
}

impl Live {
    fn problem(&mut self, p: String) {
        if self.problems.len() < 100 {
            self.problems.push(p);
        }
    }

    fn range(&mut self, s: Span, what: &str) {
        for i in 0..s.bytes / SEGMENT {
            self.segments
                .push((s.offset + i * SEGMENT, what.to_owned()));
        }
    }

    fn fault(&mut self, what: &str, f: Fault) {
        let why = match f {
            Fault::Stale => "a page newer than the root".to_owned(),
            Fault::Suspect(e) | Fault::Fail(e) => e.to_string(),
        };
        self.problem(format!("{what}: {why}"));
    }
}

/// The segment holding `off` (of a data area starting at `data`).
fn segment_of(data: u64, off: u64) -> u64 {
    data + (off.saturating_sub(data)) / SEGMENT * SEGMENT
}

/// Walks everything `root` references. `deep`: also reads every extent and checks its CRC and
/// order.
pub fn walk(src: &dyn Source, root: &Root, deep: bool) -> Live {
    let mut live = Live::default();
    let epoch = root.epoch;
    live.range(
        Span {
            offset: root.log.offset,
            bytes: root.log.bytes,
        },
        "log",
    );
    if let Some(s) = &root.sealed {
        live.range(
            Span {
                offset: s.log.offset,
                bytes: s.log.bytes,
            },
            "sealed log",
        );
    }
    live.range(root.next_log, "next log");
    live.range(root.lists[0], "free-list area");
    live.range(root.lists[1], "free-list area");
    // The free lists' pages lie in the list areas (whole segments in use), so they are data
    // read on the way, not array pages of their own.
    match array::load(src, root.free_segments, epoch) {
        Ok((items, s)) => {
            live.free_runs = pairs(&items);
            live.data.extend(s.pages().map(|p| (p, PAGE as u64)));
        }
        Err(f) => live.fault("free segment list", f),
    }
    match array::load(src, root.free_pages, epoch) {
        Ok((items, s)) => {
            live.free_pages = items;
            live.data.extend(s.pages().map(|p| (p, PAGE as u64)));
        }
        Err(f) => live.fault("free page list", f),
    }
    let cursor = if root.merging.is_some() {
        root.cursor
    } else {
        0
    };
    let merged = root.merged as usize;
    if root.base.is_some() {
        let counts = table(
            src,
            root,
            &root.base,
            "base table",
            cursor,
            u64::MAX,
            deep,
            &mut live,
        );
        if cursor == 0 {
            (live.keys, live.values, live.table_pages, live.extents) = counts;
        }
    }
    if root.merging.is_some() {
        table(
            src,
            root,
            &root.merging,
            "merging table",
            0,
            cursor,
            deep,
            &mut live,
        );
    }
    for (i, t) in root.deltas.iter().enumerate() {
        let from = if i < merged { cursor } else { 0 };
        table(src, root, t, "delta table", from, u64::MAX, deep, &mut live);
    }
    live
}

/// Walks one table: its arrays, every page from hash `from` on (entries must lie below
/// `below`), every extent; returns its entries, values, pages and extents (all of them only
/// when `from` is 0).
#[allow(clippy::too_many_arguments)]
fn table(
    src: &dyn Source,
    root: &Root,
    t: &TableRef,
    what: &str,
    from: u64,
    below: u64,
    deep: bool,
    live: &mut Live,
) -> (u64, u64, u64, u64) {
    let epoch = root.epoch;
    let name = format!("{what} {}", t.id);
    match array::shape(src, t.dir, epoch) {
        Ok(s) => live
            .pages
            .extend(s.pages().map(|p| (p, format!("{name} directory")))),
        Err(f) => live.fault(&format!("{name} directory"), f),
    }
    let segs = match array::load(src, t.segs, epoch) {
        Ok((items, s)) => {
            live.pages
                .extend(s.pages().map(|p| (p, format!("{name} segment list"))));
            pairs(&items)
        }
        Err(f) => {
            live.fault(&format!("{name} segment list"), f);
            return (0, 0, 0, 0);
        }
    };
    let mine: HashSet<u64> = segs.iter().map(|s| s.0).collect();
    for (seg, hi) in &segs {
        if *hi >= from {
            live.segments.push((*seg, name.clone()));
        }
    }
    let data = root.data_offset;
    let inside = |off: u64, len: u64| match off.checked_add(len) {
        Some(end) if len <= 1 << 40 => (segment_of(data, off)..end)
            .step_by(SEGMENT as usize)
            .all(|s| mine.contains(&s)),
        _ => false,
    };
    let filter = match t.filter_words() {
        0 => None,
        _ => match array::shape(src, t.dir, epoch)
            .and_then(|s| array::read_items(src, t.dir.len, &s.leaves, t.filter_items(), epoch))
        {
            Ok(words) => Some(words),
            Err(f) => {
                live.fault(&format!("{name} key filter"), f);
                None
            }
        },
    };
    let mut scan = match Scan::new(src, *t, epoch, from, None) {
        Ok(s) => s,
        Err(f) => {
            live.fault(&name, f);
            return (0, 0, 0, 0);
        }
    };
    let (mut entries, mut values, mut extents, mut changes) = (0u64, 0u64, 0u64, 0u64);
    let mut pages = HashSet::new();
    let mut last: Option<(u64, [u8; 16])> = None;
    loop {
        let item = match scan.next() {
            Ok(Some(i)) => i,
            Ok(None) => break,
            Err(f) => {
                live.fault(&name, f);
                break;
            }
        };
        if last.is_some_and(|l| l >= (item.hash, item.key)) {
            live.problem(format!(
                "{name}: entries out of order at hash {:#x}",
                item.hash
            ));
        }
        if item.hash >= below {
            live.problem(format!(
                "{name}: an entry at hash {:#x} past its merge cursor {below:#x}",
                item.hash
            ));
        }
        last = Some((item.hash, item.key));
        if filter
            .as_deref()
            .is_some_and(|f| !filter::holds(f, item.hash))
        {
            live.problem(format!(
                "{name}: its key filter rules out the key at hash {:#x}",
                item.hash
            ));
        }
        let page = scan.page_offset();
        if pages.insert(page) {
            live.data.push((page, PAGE as u64));
            if !inside(page, PAGE as u64) {
                live.problem(format!("{name}: page {page} outside its segments"));
            }
        }
        entries += 1;
        changes += u64::from(matches!(item.body, Body::Delta(_)));
        values = values.saturating_add(item.body.count());
        let crc = match &item.body {
            Body::Extent(x) => x.crc,
            Body::Delta(d) => d.crc,
            _ => 0,
        };
        if let Some((off, n)) = item.body.extent() {
            extents += 1;
            live.data.push((off, n.saturating_mul(16)));
            if !inside(off, n.saturating_mul(16)) {
                live.problem(format!(
                    "{name}: extent {off} of {n} values outside its segments"
                ));
            } else if deep {
                match read_values(src, off, n, crc) {
                    Err(f) => live.fault(&format!("{name} extent at {off}"), f),
                    Ok(v) => {
                        let ordered = match &item.body {
                            Body::Delta(d) => {
                                let (a, b) = v.split_at(d.adds as usize);
                                super::sets::is_set(a) && super::sets::is_set(b)
                            }
                            Body::Extent(x) => {
                                v.first() == Some(&x.first) && super::sets::is_set(&v)
                            }
                            _ => true,
                        };
                        if !ordered {
                            live.problem(format!(
                                "{name}: extent {off} out of order or its first value wrong"
                            ));
                        }
                    }
                }
            }
        }
        if let Some(vs) = item.body.inline_values() {
            if !super::sets::is_set(vs) {
                live.problem(format!(
                    "{name}: inline values out of order at hash {:#x}",
                    item.hash
                ));
            }
        }
    }
    let n_pages = pages.len() as u64;
    if from == 0
        && below == u64::MAX
        && (entries, values, n_pages, extents, changes)
            != (t.entries, t.values, t.pages, t.extents, t.changes)
    {
        live.problem(format!(
            "{name}: holds {entries} entries, {values} values, {n_pages} pages, {extents} extents, {changes} changes; its descriptor says {}, {}, {}, {}, {}",
            t.entries, t.values, t.pages, t.extents, t.changes
        ));
    }
    (entries, values, n_pages, extents)
}
