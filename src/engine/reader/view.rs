//! A reader's view of one table: its directory in memory (4-byte page numbers, leaves shared
//! between snapshots while their page is unchanged), its key filter read in place, and the
//! search of a key's entry.

use super::super::array;
use super::super::source::{Fault, Res, Source};
use super::hold::Hold;
use crate::error::Error;
use crate::format::array::{leaf_count, LEAF};
use crate::format::bucket::{self, Body, Mark};
use crate::format::filter::{self, block_of, BLOCK_WORDS};
use crate::format::hash::dir_index;
use crate::format::layout::PAGE;
use crate::format::page::{epoch as page_epoch, HEADER, MAGIC_BUCKET};
use crate::format::table::TableRef;
use crate::store::{prefetch, Mmap};
use crate::Key;
use std::collections::HashMap;
use std::sync::Arc;

/// Bytes at the start of a table page that a search reads first: header, tags and the first
/// entries of a page of one-value keys.
pub const SEARCH_LINES: usize = 6 * 64;

pub struct Leaf {
    /// The leaf page (offset, epoch); (0, 0) for a leaf of empty slots.
    pub id: (u64, u64),
    /// Page numbers (file offset / PAGE; 0 = no page): a page starts on a page boundary, so
    /// four bytes reach 16 TiB. Held in the leaf itself, so a search follows one pointer to
    /// them, not two.
    pages: [u32; LEAF],
    /// The items' top halves: the epoch each page was written at (its low 32 bits), which a
    /// page read for the first time under a pin must carry. Kept apart from `pages`, so a
    /// search's hot loads stay four bytes an item, and in memory, so that first read needs
    /// neither the leaf page nor a system call to ask whether it is cached.
    stamps: [u32; LEAF],
}

impl Leaf {
    /// The leaf of directory items `items`, read from the array leaf page `id`.
    pub fn new(id: (u64, u64), items: &[u64]) -> Leaf {
        let mut leaf = Leaf::zero();
        leaf.id = id;
        for ((p, s), &i) in leaf.pages.iter_mut().zip(&mut leaf.stamps).zip(items) {
            (*p, *s) = (i as u32, (i >> 32) as u32);
        }
        leaf
    }

    fn zero() -> Leaf {
        Leaf {
            id: (0, 0),
            pages: [0; LEAF],
            stamps: [0; LEAF],
        }
    }
}

/// Leaves known from earlier snapshots, by (offset, epoch).
pub type Known = HashMap<(u64, u64), Arc<Leaf>>;

pub struct TableView {
    pub t: TableRef,
    leaves: Arc<[Arc<Leaf>]>,
    filter: Option<Filter>,
}

/// Where a table's key filter is: its blocks, and every leaf of the directory array (the
/// filter's words follow the directory items); and the words themselves, when the filter is
/// small enough to copy into memory. In memory, a probe is one load from the reader's heap,
/// with no page of the file to walk to and no leaf to validate first; else the words are read
/// in place through the mapping, shared with other readers in the page cache, each leaf page
/// validated once under a hold.
struct Filter {
    blocks: u64,
    leaves: Box<[(u64, u64)]>,
    words: Option<Box<[u64]>>,
}

/// Key filters up to this size (about 6.7 M keys) are copied into a reader's memory when it
/// loads the table's view; the views of unchanged tables are shared by later snapshots, so
/// each is copied once. A root lists at most 28 tables: at most 224 MiB of filters a reader.
pub const FILTER_IN_MEMORY: u64 = 8 << 20;

/// Set by tests to have every filter read in place, as those too large to copy are.
#[cfg(feature = "testing")]
pub static FILTERS_IN_PLACE: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

fn copies_filters() -> bool {
    #[cfg(feature = "testing")]
    return !FILTERS_IN_PLACE.load(std::sync::atomic::Ordering::Relaxed);
    #[cfg(not(feature = "testing"))]
    true
}

impl Filter {
    /// The filter of table `t`, whose directory array has `leaves`; its words copied out of
    /// the leaf pages (each validated) when small enough and every leaf reads back valid.
    fn load(map: &Mmap, t: &TableRef, leaves: Box<[(u64, u64)]>, epoch: u64) -> Filter {
        let n = t.filter_words();
        let words = (8 * n <= FILTER_IN_MEMORY && copies_filters())
            .then(|| Filter::copy(map, t, &leaves, epoch))
            .flatten();
        Filter {
            blocks: n / BLOCK_WORDS,
            leaves,
            words,
        }
    }

    /// The filter's words, read from the leaf pages that hold them; None when one fails
    /// validation (the filter is then read in place, leaf by leaf).
    fn copy(map: &Mmap, t: &TableRef, leaves: &[(u64, u64)], epoch: u64) -> Option<Box<[u64]>> {
        let range = t.filter_items();
        let n = range.len();
        let words = array::read_items(map, t.dir.len, leaves, range, epoch).ok()?;
        // A filter running past the array's end is read in place, where each probe is checked.
        (words.len() == n).then(|| words.into())
    }
}

/// What a search reads with.
pub struct Ctx<'a> {
    pub map: &'a Mmap,
    pub epoch: u64,
    pub hold: Option<&'a Hold>,
}

impl TableView {
    /// The view of table `t` under a root of epoch `epoch`, reusing the leaves of `known`.
    pub fn load(map: &Mmap, t: TableRef, epoch: u64, known: &Known) -> Res<TableView> {
        let shape = array::shape(map, t.dir, epoch)?;
        let zero = Arc::new(Leaf::zero());
        let dir_leaves = leaf_count(t.slots());
        let mut leaves = Vec::with_capacity(dir_leaves);
        for (i, id) in shape.leaves[..dir_leaves].iter().enumerate() {
            if id.0 == 0 {
                leaves.push(zero.clone());
            } else if let Some(l) = known.get(id) {
                leaves.push(Arc::clone(l));
            } else {
                let items = array::read_leaf(map, t.dir.len, i, *id, epoch)?;
                leaves.push(Arc::new(Leaf::new(*id, &items)));
            }
        }
        let filter =
            (t.filter_words() > 0).then(|| Filter::load(map, &t, shape.leaves.into(), epoch));
        Ok(TableView {
            t,
            leaves: leaves.into(),
            filter,
        })
    }

    /// The leaf (index, page) and the file offset of the filter block for hash `h`.
    fn block(&self, f: &Filter, h: u64) -> (usize, (u64, u64), u64) {
        let item = self.t.slots() + block_of(h, f.blocks) * BLOCK_WORDS;
        let i = (item / LEAF as u64) as usize;
        let leaf = f.leaves[i];
        (i, leaf, leaf.0 + (HEADER as u64 + 8 * (item % LEAF as u64)))
    }

    /// Whether the table may hold a key of hash `h`: false only when its key filter rules
    /// the hash out. Without a filter, or, for a filter read in place, without a hold to
    /// remember a validated leaf by or with a leaf that does not read back as valid, the table
    /// is searched.
    pub fn may_hold(&self, cx: &Ctx, h: u64) -> bool {
        if let Some(words) = self.filter.as_ref().and_then(|f| f.words.as_deref()) {
            return filter::holds(words, h);
        }
        let (Some(f), Some(hold)) = (&self.filter, cx.hold) else {
            return true;
        };
        let (i, leaf, at) = self.block(f, h);
        if leaf.0 == 0 {
            return false; // a leaf of zeros: no key's bits
        }
        if !hold.leaf_verified(leaf.0) {
            if array::read_leaf(cx.map, self.t.dir.len, i, leaf, cx.epoch).is_err() {
                return true;
            }
            hold.mark_leaf(leaf.0);
        }
        let Ok(b) = cx.map.read_array::<{ 8 * BLOCK_WORDS as usize }>(at) else {
            return true;
        };
        let mut words = [0u64; BLOCK_WORDS as usize];
        for (w, b) in words.iter_mut().zip(b.chunks_exact(8)) {
            *w = u64::from_le_bytes(b.try_into().expect("8 bytes"));
        }
        filter::may_hold(&words, h)
    }

    /// Starts loading the filter block for hash `h` (when the table has a filter).
    fn warm_filter(&self, map: &Mmap, h: u64) {
        if let Some(f) = &self.filter {
            if let Some(words) = &f.words {
                prefetch(&words[(block_of(h, f.blocks) * BLOCK_WORDS) as usize]);
                return;
            }
            let (_, leaf, at) = self.block(f, h);
            if leaf.0 != 0 {
                map.prefetch(at, 8 * BLOCK_WORDS as usize);
            }
        }
    }

    /// Whether the filter block for hash `h` can be read without waiting for the device.
    fn filter_resident(&self, map: &Mmap, h: u64) -> bool {
        self.filter.as_ref().is_none_or(|f| {
            if f.words.is_some() {
                return true;
            }
            let (_, leaf, _) = self.block(f, h);
            leaf.0 == 0 || map.resident(leaf.0)
        })
    }

    /// Adds this view's leaves to `known`.
    pub fn remember(&self, known: &mut Known) {
        for l in self.leaves.iter().filter(|l| l.id.0 != 0) {
            known.insert(l.id, Arc::clone(l));
        }
    }

    /// The file offset of the page holding slot `idx` (0: none), and where its item is.
    fn slot(&self, idx: u64) -> (u64, &Leaf, usize) {
        let i = idx as usize;
        let leaf = &self.leaves[i / LEAF];
        (
            u64::from(leaf.pages[i % LEAF]) * PAGE as u64,
            leaf,
            i % LEAF,
        )
    }

    /// Starts loading the first lines of the page for hash `h`, so that its cache misses
    /// overlap others instead of following them; returns false, loading nothing, when the key
    /// filter rules `h` out.
    pub fn warm(&self, cx: &Ctx, h: u64) -> bool {
        if !self.may_hold(cx, h) {
            return false;
        }
        let (off, _, _) = self.slot(dir_index(h, self.t.depth));
        if off != 0 {
            cx.map.prefetch(off, SEARCH_LINES);
        }
        true
    }

    /// Starts loading what the first stage of a search for hash `h` reads: the key filter's
    /// block, or the directory item of a table without one (a filter that rules `h` out
    /// spares the item too).
    pub fn warm_first(&self, map: &Mmap, h: u64) {
        match self.filter {
            Some(_) => self.warm_filter(map, h),
            None => self.warm_item(h),
        }
    }

    /// Starts loading the directory item of hash `h`: the first stage of a batch's search.
    fn warm_item(&self, h: u64) {
        let i = dir_index(h, self.t.depth) as usize;
        prefetch(&self.leaves[i / LEAF].pages[i % LEAF]);
    }

    /// Where the search for hash `h` starts in its page, when the page was validated under the
    /// pin (else a search copies it whole); the lines of that entry start loading. Run while
    /// other keys' pages load, this takes the tag scan off the search.
    pub fn mark(&self, cx: &Ctx, h: u64) -> Option<Mark> {
        let (off, _, _) = self.slot(dir_index(h, self.t.depth));
        if off == 0 || !cx.hold.is_some_and(|hd| hd.verified(off)) {
            return None;
        }
        let mut read = |at: usize, out: &mut [u8]| cx.map.read(off + at as u64, out);
        let m = bucket::mark_in(&mut read, h, off).ok()?;
        cx.map.prefetch(off + m.at() as u64, m.len());
        Some(m)
    }

    /// Asks the kernel to read what a search for hash `h` will read, without waiting: its
    /// page (unless the key filter, when in memory, rules `h` out; else the filter's page
    /// too).
    pub fn will_need(&self, cx: &Ctx, h: u64) {
        let (off, _, _) = self.slot(dir_index(h, self.t.depth));
        if off == 0 {
            return;
        }
        match (&self.filter, self.filter_resident(cx.map, h)) {
            (Some(_), true) if !self.may_hold(cx, h) => return,
            (Some(f), false) => cx
                .map
                .will_need(self.block(f, h).2, 8 * BLOCK_WORDS as usize),
            _ => {}
        }
        cx.map.will_need(off, PAGE);
    }

    /// Whether the page for hash `h` is in the page cache (true when there is none).
    pub fn resident(&self, map: &Mmap, h: u64) -> bool {
        let (off, _, _) = self.slot(dir_index(h, self.t.depth));
        off == 0 || map.resident(off)
    }

    /// The entry of `key` (hash `h`), if the table has one; the search starts at `from`, this
    /// table's [`TableView::mark`] for `h` in the same snapshot, when given, and does not
    /// consult the key filter again when `filtered` (it let `h` through already).
    pub fn find(
        &self,
        cx: &Ctx,
        h: u64,
        key: &Key,
        from: Option<Mark>,
        filtered: bool,
    ) -> Res<Option<Body>> {
        if !filtered && !self.may_hold(cx, h) {
            return Ok(None);
        }
        let (off, leaf, i) = self.slot(dir_index(h, self.t.depth));
        if off == 0 {
            return Ok(None);
        }
        if cx.hold.is_some_and(|hd| hd.verified(off)) {
            // Validated under this pin and unchanged since: read only what the search needs.
            if from.is_none() {
                cx.map.prefetch(off, SEARCH_LINES);
            }
            let mut read = |at: usize, out: &mut [u8]| cx.map.read(off + at as u64, out);
            return Ok(bucket::find_in_from(&mut read, h, key, off, from)?);
        }
        let mut page = [0u8; PAGE];
        cx.map
            .page_into(off, MAGIC_BUCKET, cx.epoch, "table page", &mut page)?;
        // The page must be the one the directory item names: its epoch is the item's stamp.
        if page_epoch(&page) as u32 != leaf.stamps[i] || !bucket::header(&page).1.contains(h) {
            return Err(Fault::Stale);
        }
        let found = bucket::find(&page, h, key, off)?;
        if let Some(hold) = cx.hold {
            hold.mark(off);
        }
        Ok(found)
    }
}

/// A reader-side error for an entry that makes no sense in its table.
pub fn misplaced(what: &str) -> Fault {
    Fault::Suspect(Error::corrupt("table entry", 0, what.to_owned()))
}
