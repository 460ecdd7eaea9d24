//! u64 arrays kept as page trees (format::array): loading them whole or leaf by leaf, and
//! writing them copy-on-write, reusing unchanged leaves.

use super::pages::PageBatch;
use super::source::{Fault, Res, Source};
use crate::error::{Error, Result};
use crate::format::array::{decode, encode, ArrayRef, LEAF, NODE};
use crate::format::page::MAGIC_ARRAY;

/// Where an array's pages are: each leaf's (offset, epoch) in order (offset 0 = all zero;
/// epoch 0 = unknown) and every node page's offset.
#[derive(Clone, Debug, Default)]
pub struct Shape {
    pub leaves: Vec<(u64, u64)>,
    pub nodes: Vec<u64>,
}

fn leaf_count(len: u64) -> usize {
    len.div_ceil(LEAF as u64) as usize
}

/// Items under the leaf at index `i` of an array of `len` items.
pub fn leaf_len(len: u64, i: usize) -> usize {
    (len - (i * LEAF) as u64).min(LEAF as u64) as usize
}

/// Walks the node pages of an array and returns where its leaves are.
pub fn shape(src: &dyn Source, aref: ArrayRef, max_epoch: u64) -> Res<Shape> {
    let mut s = Shape::default();
    if aref.levels != ArrayRef::levels_for(aref.len) {
        return Err(Fault::Fail(Error::corrupt(
            "array",
            aref.top,
            format!("{} levels for {} items", aref.levels, aref.len),
        )));
    }
    if aref.levels > 0 {
        walk(
            src,
            aref,
            aref.levels - 1,
            0,
            (aref.top, 0),
            max_epoch,
            &mut s,
        )?;
    }
    if s.leaves.len() != leaf_count(aref.len) {
        return Err(Fault::Fail(Error::corrupt(
            "array",
            aref.top,
            "tree does not cover its length",
        )));
    }
    Ok(s)
}

fn walk(
    src: &dyn Source,
    aref: ArrayRef,
    level: u32,
    first: u64,
    (off, epoch): (u64, u64),
    max_epoch: u64,
    s: &mut Shape,
) -> Res<()> {
    if off == 0 {
        // Only a new file's one-leaf directory is a hole; a bigger one would let a damaged
        // length make us allocate without bound.
        if level != 0 || aref.len > LEAF as u64 {
            return Err(Fault::Fail(Error::corrupt(
                "array",
                aref.top,
                "page offset 0 in an array longer than a leaf",
            )));
        }
        s.leaves.push((0, 0));
        return Ok(());
    }
    let covered = ArrayRef::span(level).min(aref.len - first);
    if level == 0 {
        s.leaves.push((off, epoch));
        return Ok(());
    }
    let p = src.page(off, MAGIC_ARRAY, max_epoch, "array node page")?;
    let words = decode(&p, level, first, off)?;
    let child_span = ArrayRef::span(level - 1);
    if (words.len() / 2) as u64 != covered.div_ceil(child_span) {
        return Err(Fault::Fail(Error::corrupt(
            "array node page",
            off,
            "child count does not match the array length",
        )));
    }
    s.nodes.push(off);
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
    (off, epoch): (u64, u64),
    max_epoch: u64,
) -> Res<Vec<u64>> {
    let n = leaf_len(len, i);
    if off == 0 {
        return Ok(vec![0; n]);
    }
    let p = src.page(off, MAGIC_ARRAY, max_epoch, "array leaf page")?;
    if epoch != 0 && crate::format::page::epoch(&p) != epoch {
        return Err(Fault::Stale);
    }
    let items = decode(&p, 0, (i * LEAF) as u64, off)?;
    if items.len() != n {
        return Err(Fault::Fail(Error::corrupt(
            "array leaf page",
            off,
            "item count does not match the array length",
        )));
    }
    Ok(items)
}

/// A whole array and its shape.
pub fn load(src: &dyn Source, aref: ArrayRef, max_epoch: u64) -> Res<(Vec<u64>, Shape)> {
    let s = shape(src, aref, max_epoch)?;
    // The leaves were all read, so the length is backed by pages that exist.
    let mut items = Vec::with_capacity(aref.len.min((s.leaves.len() * LEAF) as u64) as usize);
    for (i, leaf) in s.leaves.iter().enumerate() {
        items.extend(read_leaf(src, aref.len, i, *leaf, max_epoch)?);
    }
    Ok((items, s))
}

/// Pages a freshly written array of `len` items takes: its leaves and its node pages.
pub fn fresh_pages(len: u64) -> usize {
    let mut level = leaf_count(len);
    let mut total = level;
    for _ in 1..ArrayRef::levels_for(len) {
        level = level.div_ceil(NODE);
        total += level;
    }
    total
}

/// Writes `items` copy-on-write. Leaves keep their old page when `old` has the same length and
/// `dirty` (one flag per leaf; None = all dirty) says unchanged. Replaced pages go to `freed`.
pub fn store(
    items: &[u64],
    old: &Shape,
    dirty: Option<&[bool]>,
    epoch: u64,
    alloc: &mut dyn FnMut() -> Result<u64>,
    batch: &mut PageBatch,
    freed: &mut Vec<u64>,
) -> Result<(ArrayRef, Shape)> {
    let len = items.len() as u64;
    let reuse = old.leaves.len() == leaf_count(len);
    let mut shape = Shape::default();
    for (i, chunk) in items.chunks(LEAF).enumerate() {
        let keep = reuse && dirty.is_some_and(|d| !d[i]) && old.leaves[i].0 != 0;
        if keep {
            shape.leaves.push(old.leaves[i]);
            continue;
        }
        let off = alloc()?;
        batch.push(off, encode(0, (i * LEAF) as u64, chunk, epoch));
        shape.leaves.push((off, epoch));
    }
    for (i, (off, _)) in old.leaves.iter().enumerate() {
        if *off != 0 && shape.leaves.get(i).map(|l| l.0) != Some(*off) {
            freed.push(*off);
        }
    }
    freed.extend_from_slice(&old.nodes);
    let levels = ArrayRef::levels_for(len);
    let mut level_refs: Vec<u64> = shape.leaves.iter().flat_map(|(o, e)| [*o, *e]).collect();
    let mut top = shape.leaves.first().map_or(0, |l| l.0);
    for level in 1..levels {
        let child_span = ArrayRef::span(level - 1);
        let per_node = (ArrayRef::span(level) / child_span) as usize;
        let mut next = Vec::new();
        for (j, pairs) in level_refs.chunks(2 * per_node).enumerate() {
            let off = alloc()?;
            let first = j as u64 * ArrayRef::span(level);
            batch.push(off, encode(level, first, pairs, epoch));
            shape.nodes.push(off);
            next.extend([off, epoch]);
        }
        top = next[0];
        level_refs = next;
    }
    Ok((ArrayRef { len, top, levels }, shape))
}
