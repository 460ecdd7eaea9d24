//! u64 arrays kept as page trees (format::array): loading them whole or leaf by leaf, writing
//! small ones whole, and writing long ones (table directories and segment lists) as a stream
//! whose written prefix can be published at any point.
//!
//! Every reference to a page — a node's child, an array ref's top — carries the epoch the page
//! was written with, and a page is accepted only with exactly that epoch: a page that a lost
//! write left stale, or that was reused since, is never taken for the one referenced. A child
//! offset of 0 stands for a subtree of zeros.

use super::source::{Fault, Res, Source};
use crate::error::{Error, Result};
use crate::format::array::{decode, encode, leaf_count, ArrayRef, LEAF, NODE};
use crate::format::page::{epoch as page_epoch, Page, MAGIC_ARRAY};

/// Where an array's pages are: each leaf's (offset, epoch) in order ((0, 0) for a leaf of
/// zeros) and every node page's offset.
#[derive(Clone, Debug, Default)]
pub struct Shape {
    pub leaves: Vec<(u64, u64)>,
    pub nodes: Vec<u64>,
}

impl Shape {
    /// Every page of the array.
    pub fn pages(&self) -> impl Iterator<Item = u64> + '_ {
        self.leaves
            .iter()
            .map(|l| l.0)
            .chain(self.nodes.iter().copied())
            .filter(|o| *o != 0)
    }
}

/// Items under the leaf at index `i` of an array of `len` items.
pub fn leaf_len(len: u64, i: usize) -> usize {
    (len - (i * LEAF) as u64).min(LEAF as u64) as usize
}

fn bad(aref: &ArrayRef, why: &str) -> Fault {
    Fault::Fail(Error::corrupt("array", aref.top, why.to_owned()))
}

/// Reads the page at `(off, epoch)`: an array page of exactly that epoch.
fn page(
    src: &dyn Source,
    (off, epoch): (u64, u64),
    max_epoch: u64,
    what: &'static str,
) -> Res<Box<Page>> {
    let p = src.page(off, MAGIC_ARRAY, max_epoch, what)?;
    if page_epoch(&p) != epoch {
        return Err(Fault::Stale);
    }
    Ok(p)
}

/// Walks the node pages of an array and returns where its leaves are.
pub fn shape(src: &dyn Source, aref: ArrayRef, max_epoch: u64) -> Res<Shape> {
    let mut s = Shape::default();
    if aref.levels != ArrayRef::levels_for(aref.len) {
        return Err(bad(
            &aref,
            &format!("{} levels for {} items", aref.levels, aref.len),
        ));
    }
    if aref.levels > 0 {
        walk(
            src,
            &aref,
            aref.levels - 1,
            0,
            aref.top_ref(),
            max_epoch,
            &mut s,
        )?;
    }
    if s.leaves.len() != leaf_count(aref.len) {
        return Err(bad(&aref, "tree does not cover its length"));
    }
    Ok(s)
}

fn walk(
    src: &dyn Source,
    aref: &ArrayRef,
    level: u32,
    first: u64,
    child: (u64, u64),
    max_epoch: u64,
    s: &mut Shape,
) -> Res<()> {
    let covered = ArrayRef::span(level).min(aref.len - first);
    if child.0 == 0 {
        let leaves = leaf_count(first + covered) - leaf_count(first);
        s.leaves.extend(std::iter::repeat_n((0, 0), leaves));
        return Ok(());
    }
    if level == 0 {
        s.leaves.push(child);
        return Ok(());
    }
    let p = page(src, child, max_epoch, "array node page")?;
    let words = decode(&p, level, first, child.0)?;
    let child_span = ArrayRef::span(level - 1);
    if (words.len() / 2) as u64 != covered.div_ceil(child_span) {
        return Err(Fault::Fail(Error::corrupt(
            "array node page",
            child.0,
            "child count does not match the array length",
        )));
    }
    s.nodes.push(child.0);
    for (i, pair) in words.chunks_exact(2).enumerate() {
        let child_first = first + i as u64 * child_span;
        walk(
            src,
            aref,
            level - 1,
            child_first,
            (pair[0], pair[1]),
            max_epoch,
            s,
        )?;
    }
    Ok(())
}

/// The items of leaf `i` (zeros for offset 0).
pub fn read_leaf(
    src: &dyn Source,
    len: u64,
    i: usize,
    leaf: (u64, u64),
    max_epoch: u64,
) -> Res<Vec<u64>> {
    let n = leaf_len(len, i);
    if leaf.0 == 0 {
        return Ok(vec![0; n]);
    }
    let p = page(src, leaf, max_epoch, "array leaf page")?;
    let items = decode(&p, 0, (i * LEAF) as u64, leaf.0)?;
    if items.len() != n {
        return Err(Fault::Fail(Error::corrupt(
            "array leaf page",
            leaf.0,
            "item count does not match the array length",
        )));
    }
    Ok(items)
}

/// A whole array and its shape.
pub fn load(src: &dyn Source, aref: ArrayRef, max_epoch: u64) -> Res<(Vec<u64>, Shape)> {
    let s = shape(src, aref, max_epoch)?;
    let items = read_items(src, aref.len, &s.leaves, 0..aref.len as usize, max_epoch)?;
    Ok((items, s))
}

/// Items `range` of an array of `len` items whose leaves are `leaves` (its shape's), read
/// from the leaves that hold them only.
pub fn read_items(
    src: &dyn Source,
    len: u64,
    leaves: &[(u64, u64)],
    range: std::ops::Range<usize>,
    max_epoch: u64,
) -> Res<Vec<u64>> {
    // Only leaves that exist are read, so the capacity is backed by a tree that exists.
    let mut items = Vec::with_capacity(range.len().min(leaves.len() * LEAF));
    for i in range.start / LEAF..range.end.div_ceil(LEAF) {
        let leaf = leaves.get(i).ok_or_else(|| {
            Fault::Fail(Error::corrupt(
                "array",
                0,
                "fewer leaves than its length needs",
            ))
        })?;
        let got = read_leaf(src, len, i, *leaf, max_epoch)?;
        let hi = (range.end - i * LEAF).min(got.len());
        items.extend_from_slice(&got[range.start.saturating_sub(i * LEAF).min(hi)..hi]);
    }
    Ok(items)
}

/// Where array pages go: `alloc` gives a page's offset and the epoch to write it with; written
/// pages are collected to be written out together.
pub struct Sink<'a> {
    pub alloc: &'a mut dyn FnMut() -> Result<(u64, u64)>,
    pub out: &'a mut Vec<(u64, Box<Page>)>,
}

impl Sink<'_> {
    fn put(&mut self, level: u32, first: u64, words: &[u64]) -> Result<(u64, u64)> {
        let (off, epoch) = (self.alloc)()?;
        self.out.push((off, encode(level, first, words, epoch)));
        Ok((off, epoch))
    }
}

/// Writes `items` as a new array (every page new); returns its ref and its pages.
pub fn write(items: &[u64], sink: &mut Sink) -> Result<(ArrayRef, Vec<u64>)> {
    let mut w = ArrayWriter::new(None);
    for &x in items {
        w.push(x, sink)?;
    }
    let aref = w.snapshot(sink)?;
    Ok((aref, w.written))
}

/// An array written as a stream: items are pushed in order, full pages are written as they
/// fill, and `snapshot` writes the partial pages on the path to the last item so that the
/// prefix pushed so far (and, for an array of fixed length, zeros after it) can be published.
/// The partial pages of one snapshot are replaced by the next one's: `retired` lists them for
/// freeing.
#[derive(Default)]
pub struct ArrayWriter {
    /// Length of the array when it is fixed (a directory: zeros after the items pushed).
    fixed: Option<u64>,
    pushed: u64,
    /// Items of the leaf being filled.
    leaf: Vec<u64>,
    /// Per level `k`: the full level-`k` pages under the level-`k + 1` node being filled.
    pending: Vec<Vec<(u64, u64)>>,
    /// Pages of the last snapshot that the next one replaces.
    tail: Vec<u64>,
    /// Replaced pages, for the caller to free.
    pub retired: Vec<u64>,
    /// Every page written and not retired (to free the array should it be dropped).
    pub written: Vec<u64>,
}

impl ArrayWriter {
    /// A writer of an array of `fixed` items (zeros after those pushed), or of as many as are
    /// pushed.
    pub fn new(fixed: Option<u64>) -> ArrayWriter {
        ArrayWriter {
            fixed,
            ..ArrayWriter::default()
        }
    }

    fn len(&self) -> u64 {
        self.fixed.unwrap_or(self.pushed)
    }

    pub fn push(&mut self, item: u64, sink: &mut Sink) -> Result<()> {
        debug_assert!(self.fixed.is_none_or(|f| self.pushed < f));
        self.leaf.push(item);
        self.pushed += 1;
        if self.leaf.len() == LEAF {
            let first = self.pushed - LEAF as u64;
            let r = sink.put(0, first, &self.leaf)?;
            self.written.push(r.0);
            self.leaf.clear();
            self.carry(r, sink)?;
        }
        Ok(())
    }

    /// Records a full leaf and writes each parent that it fills.
    fn carry(&mut self, mut r: (u64, u64), sink: &mut Sink) -> Result<()> {
        let mut level = 0;
        loop {
            if self.pending.len() <= level {
                self.pending.push(Vec::new());
            }
            self.pending[level].push(r);
            if self.pending[level].len() < NODE {
                return Ok(());
            }
            let span = ArrayRef::span(level as u32 + 1);
            let first = (self.pushed - 1) / span * span;
            let words: Vec<u64> = self.pending[level]
                .iter()
                .flat_map(|(o, e)| [*o, *e])
                .collect();
            r = sink.put(level as u32 + 1, first, &words)?;
            self.written.push(r.0);
            self.pending[level].clear();
            level += 1;
        }
    }

    /// First item under the level-`k` pages of `pending[k]`: the start of the node being
    /// filled at level `k + 1`.
    fn pending_start(&self, k: u32) -> u64 {
        let span = ArrayRef::span(k + 1);
        self.pushed / span * span
    }

    /// The array as pushed so far (for a fixed one, zeros after): writes the partial pages and
    /// returns its ref. The previous snapshot's partial pages go to `retired`.
    pub fn snapshot(&mut self, sink: &mut Sink) -> Result<ArrayRef> {
        let old = std::mem::take(&mut self.tail);
        self.written.retain(|p| !old.contains(p));
        self.retired.extend(old);
        let len = self.len();
        let levels = ArrayRef::levels_for(len);
        if levels == 0 {
            return Ok(ArrayRef::default());
        }
        let (top, epoch) = self.subtree(levels - 1, 0, sink)?;
        let tail = self.tail.clone();
        self.written.extend(tail);
        Ok(ArrayRef {
            len,
            top,
            levels,
            epoch,
        })
    }

    /// The page of the level-`level` subtree covering items from `first` on: a zero subtree
    /// past the items pushed, a full page already written, or a partial page written now.
    fn subtree(&mut self, level: u32, first: u64, sink: &mut Sink) -> Result<(u64, u64)> {
        let span = ArrayRef::span(level);
        if first >= self.pushed {
            return Ok((0, 0));
        }
        if first + span <= self.pushed {
            let i = ((first - self.pending_start(level)) / span) as usize;
            return Ok(self.pending[level as usize][i]);
        }
        let r = if level == 0 {
            // A fixed array's partial leaf holds zeros after the items pushed.
            let mut items = self.leaf.clone();
            items.resize(leaf_len(self.len(), (first / LEAF as u64) as usize), 0);
            sink.put(0, first, &items)?
        } else {
            let child_span = ArrayRef::span(level - 1);
            let covered = span.min(self.len() - first);
            let mut words = Vec::new();
            for i in 0..covered.div_ceil(child_span) {
                let (o, e) = self.subtree(level - 1, first + i * child_span, sink)?;
                words.extend([o, e]);
            }
            sink.put(level, first, &words)?
        };
        self.tail.push(r.0);
        Ok(r)
    }

    /// Carries on writing an array published as `aref` whose first `pushed` items were
    /// written (the rest zero, when `fixed`): finds the full pages on the path to the last
    /// item and reads back the partial leaf; the partial pages are replaced by the next
    /// snapshot.
    pub fn resume(
        src: &dyn Source,
        aref: ArrayRef,
        pushed: u64,
        fixed: Option<u64>,
        max_epoch: u64,
    ) -> Res<ArrayWriter> {
        let len = fixed.unwrap_or(pushed);
        if aref.len != len || pushed > len || aref.levels != ArrayRef::levels_for(len) {
            return Err(bad(&aref, "does not match the array being resumed"));
        }
        let mut w = ArrayWriter::new(fixed);
        w.pushed = pushed;
        w.pending = vec![Vec::new(); aref.levels as usize];
        if aref.levels == 0 {
            return Ok(w);
        }
        // Down the path to item `pushed`: each node on it is partial (its full children are
        // the pending pages of the level below) unless it is wholly before `pushed`.
        let (mut cur, mut level, mut first) = (aref.top_ref(), aref.levels - 1, 0u64);
        loop {
            let span = ArrayRef::span(level);
            if cur.0 == 0 || first >= pushed {
                break;
            }
            if first + span <= pushed {
                // A full page: it is pending at its level (the walk only gets here at the top).
                w.pending[level as usize].push(cur);
                break;
            }
            w.tail.push(cur.0);
            if level == 0 {
                w.leaf = read_leaf(src, len, (first / LEAF as u64) as usize, cur, max_epoch)?;
                w.leaf.truncate((pushed - first) as usize);
                break;
            }
            let p = page(src, cur, max_epoch, "array node page")?;
            let words = decode(&p, level, first, cur.0)?;
            let child_span = ArrayRef::span(level - 1);
            let full = ((pushed - first) / child_span) as usize;
            let pairs: Vec<(u64, u64)> = words.chunks_exact(2).map(|c| (c[0], c[1])).collect();
            if pairs.len() < full || pairs[..full].iter().any(|c| c.0 == 0) {
                return Err(bad(&aref, "a full subtree is missing"));
            }
            w.pending[level as usize - 1] = pairs[..full].to_vec();
            let Some(&next) = pairs.get(full) else { break };
            cur = next;
            first += full as u64 * child_span;
            level -= 1;
        }
        let tail = w.tail.clone();
        w.written = shape(src, aref, max_epoch)?
            .pages()
            .filter(|p| !tail.contains(p))
            .collect();
        Ok(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::layout::PAGE;
    use std::collections::HashMap;

    /// Pages in memory, as a file would hold them.
    #[derive(Default)]
    struct Mem {
        pages: HashMap<u64, Box<Page>>,
        next: u64,
        epoch: u64,
    }

    impl Source for Mem {
        fn read(&self, off: u64, buf: &mut [u8]) -> Res<()> {
            let p = self
                .pages
                .get(&off)
                .ok_or_else(|| Fault::Fail(Error::corrupt("mem", off, "no page")))?;
            buf.copy_from_slice(&p[..buf.len()]);
            Ok(())
        }
        fn size(&self) -> u64 {
            u64::MAX
        }
    }

    impl Mem {
        fn store(&mut self, out: Vec<(u64, Box<Page>)>) {
            self.pages.extend(out);
        }
    }

    fn sink_into<'a>(
        alloc: &'a mut dyn FnMut() -> Result<(u64, u64)>,
        out: &'a mut Vec<(u64, Box<Page>)>,
    ) -> Sink<'a> {
        Sink { alloc, out }
    }

    /// Pushes items with snapshots at random points, resuming from a published snapshot now
    /// and then, and checks every snapshot reads back as the prefix pushed plus zeros.
    #[test]
    fn streamed_arrays_read_back_at_every_snapshot() {
        let seed = 0x8f1b_bcdc_bfa5_3e0bu64;
        println!("seed {seed:#x}");
        let mut rnd = crate::engine::xorshift(seed);
        for fixed in [None, Some(3 * (LEAF * NODE) as u64 + 17)] {
            let mut mem = Mem::default();
            let mut w = ArrayWriter::new(fixed);
            let total = fixed.unwrap_or(2 * (LEAF * NODE) as u64 + 1000);
            let mut pushed = 0u64;
            while pushed < total {
                let n = (rnd() % 3000).min(total - pushed);
                let mut out = Vec::new();
                let (mut next, epoch) = (mem.next, mem.epoch + 1);
                let mut alloc = || {
                    next += PAGE as u64;
                    Ok((next, epoch))
                };
                let mut sink = sink_into(&mut alloc, &mut out);
                for i in pushed..pushed + n {
                    w.push(i * 3 + 1, &mut sink).unwrap();
                }
                pushed += n;
                let aref = w.snapshot(&mut sink).unwrap();
                mem.next = next;
                mem.epoch = epoch;
                mem.store(out);
                let (items, s) = load(&mem, aref, epoch).unwrap();
                assert_eq!(items.len() as u64, fixed.unwrap_or(pushed));
                for (i, x) in items.iter().enumerate() {
                    let want = if (i as u64) < pushed {
                        i as u64 * 3 + 1
                    } else {
                        0
                    };
                    assert_eq!(*x, want, "item {i} of {pushed} pushed");
                }
                let live: std::collections::HashSet<u64> = s.pages().collect();
                assert!(
                    w.retired.iter().all(|p| !live.contains(p)),
                    "a retired page is in use"
                );
                assert!(
                    live.iter().all(|p| w.written.contains(p)),
                    "a page in use is not listed"
                );
                if rnd().is_multiple_of(3) {
                    w = ArrayWriter::resume(&mem, aref, pushed, fixed, epoch).unwrap();
                }
            }
        }
    }
}
