//! Space in `/data`: segments (1 MiB) for logs and the streams tables are written in, and
//! pages carved from segments for arrays (directories, segment lists, free lists).
//!
//! Space a root stops referencing is *freed* by that root; once the root is published it is
//! *held* (readers of earlier roots may still read it), and it becomes *free* — reusable, and
//! its blocks given back to the filesystem — only when the root that freed it is durable and
//! no pinned reader reads under an earlier root. So a power cut never finds a durable root
//! whose space was rewritten, and a reader's pinned root is never overwritten under it.

use crate::error::{Error, Result};
use crate::format::layout::{PAGE, PAGES_PER_SEGMENT, SEGMENT};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Space freed by published roots that a reader may still read: batches by the epoch of the
/// root that stopped referencing them.
pub struct Held<T> {
    batches: VecDeque<(u64, Vec<T>)>,
}

impl<T> Default for Held<T> {
    fn default() -> Self {
        Held {
            batches: VecDeque::new(),
        }
    }
}

impl<T> Held<T> {
    /// Holds what root `epoch` (just published) stopped referencing.
    pub fn hold(&mut self, epoch: u64, items: Vec<T>) {
        if !items.is_empty() {
            self.batches.push_back((epoch, items));
        }
    }

    /// Hands back what was freed by roots up to `upto`.
    pub fn release(&mut self, upto: u64, mut f: impl FnMut(T)) {
        while self.batches.front().is_some_and(|(e, _)| *e <= upto) {
            let (_, items) = self.batches.pop_front().expect("checked front");
            items.into_iter().for_each(&mut f);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.batches.iter().flat_map(|(_, v)| v.iter())
    }
}

/// A run of segments: file offset of the first, and how many.
pub type Run = (u64, u64);

/// Background work that writes a table over many calls while roots are published by others:
/// what it has allocated and no published root references yet is *pending*. A root lists
/// pending space as free — after a crash the work is gone and its space with it — while the
/// allocator keeps it taken; the work's own publish settles it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Work {
    Flush = 0,
    Merge = 1,
}

#[derive(Default)]
struct Pending {
    runs: Vec<Run>,
    pages: Vec<u64>,
}

pub struct Space {
    /// File offset of `/data`.
    data: u64,
    /// Segments `/data` has.
    total: u64,
    /// Segments handed out from the start of `/data`.
    pub used: u64,
    /// Free runs by first segment index: reusable now.
    free: BTreeMap<u64, u64>,
    held: Held<Run>,
    freed: Vec<Run>,
    /// Free pages (file offsets), reusable now; handed out lowest first.
    pages: Vec<u64>,
    pages_held: Held<u64>,
    pages_freed: Vec<u64>,
    /// Runs [`Space::take_punch`] handed out for punching, not yet back with
    /// [`Space::reuse`]: still listed free, since a root may be published while they are
    /// punched.
    punching: BTreeSet<Run>,
    /// Free segments (index, count) whose blocks the filesystem still holds: a subset of
    /// `free`, punched a piece at a time by the trim thread, or taken again by `alloc`.
    unpunched: BTreeMap<u64, u64>,
    /// Segments in `unpunched`.
    unpunched_segments: u64,
    /// Space each kind of background work holds that no root references yet.
    pending: [Pending; 2],
}

impl Space {
    /// The space of a root: `used` segments handed out, `free_runs` and `free_pages` listed
    /// free by it. Everything listed starts out held at `epoch` (readers of older roots may
    /// still read it).
    pub fn new(
        data: u64,
        capacity: u64,
        used: u64,
        free_runs: &[Run],
        free_pages: &[u64],
        epoch: u64,
    ) -> Result<Space> {
        let total = capacity / SEGMENT;
        let mut s = Space {
            data,
            total,
            used,
            free: BTreeMap::new(),
            punching: BTreeSet::new(),
            unpunched: BTreeMap::new(),
            unpunched_segments: 0,
            held: Held::default(),
            freed: Vec::new(),
            pages: Vec::new(),
            pages_held: Held::default(),
            pages_freed: Vec::new(),
            pending: Default::default(),
        };
        let mut runs = free_runs.to_vec();
        runs.sort_unstable();
        for w in runs.windows(2) {
            if w[0].0 + w[0].1 * SEGMENT > w[1].0 {
                return Err(Error::corrupt(
                    "free segment list",
                    w[1].0,
                    "overlapping runs",
                ));
            }
        }
        for &(off, n) in &runs {
            if n == 0 || s.index(off).is_none_or(|i| i + n > used) {
                return Err(Error::corrupt(
                    "free segment list",
                    off,
                    "run outside the used segments",
                ));
            }
        }
        for &p in free_pages {
            if !s.page_inside(p) {
                return Err(Error::corrupt(
                    "free page list",
                    p,
                    "page outside the used segments",
                ));
            }
        }
        s.held.hold(epoch, runs);
        s.pages_held.hold(epoch, free_pages.to_vec());
        Ok(s)
    }

    /// Segment index of a segment's file offset.
    fn index(&self, off: u64) -> Option<u64> {
        let rel = off.checked_sub(self.data)?;
        (rel % SEGMENT == 0).then_some(rel / SEGMENT)
    }

    fn offset(&self, index: u64) -> u64 {
        self.data + index * SEGMENT
    }

    /// Whether `off` is a page inside the segments handed out.
    pub fn page_inside(&self, off: u64) -> bool {
        off >= self.data
            && (off - self.data).is_multiple_of(PAGE as u64)
            && (off - self.data) / SEGMENT < self.used
    }

    /// `n` contiguous segments: the lowest free run that has them, else from the end.
    pub fn alloc(&mut self, n: u64) -> Result<u64> {
        debug_assert!(n > 0);
        let fit = self
            .free
            .iter()
            .find(|(_, len)| **len >= n)
            .map(|(s, l)| (*s, *l));
        let start = match fit {
            Some((start, len)) => {
                self.free.remove(&start);
                if len > n {
                    self.free.insert(start + n, len - n);
                }
                self.punched(start, n);
                start
            }
            None => {
                if self.used + n > self.total {
                    return Err(Error::NoSpace {
                        needed: n * SEGMENT,
                        capacity: self.total * SEGMENT,
                    });
                }
                self.used += n;
                self.used - n
            }
        };
        Ok(self.offset(start))
    }

    /// Frees a run of segments this root referenced (reusable once it is published, durable
    /// and unpinned).
    pub fn free(&mut self, off: u64, n: u64) {
        if n > 0 {
            self.freed.push((off, n));
        }
    }

    /// One page for an array.
    pub fn alloc_page(&mut self) -> Result<u64> {
        if self.pages.is_empty() {
            let seg = self.alloc(1)?;
            self.pages
                .extend((0..PAGES_PER_SEGMENT).rev().map(|i| seg + i * PAGE as u64));
        }
        Ok(self.pages.pop().expect("refilled"))
    }

    /// `n` contiguous segments for `work`, pending until it settles.
    pub fn alloc_for(&mut self, work: Work, n: u64) -> Result<u64> {
        let off = self.alloc(n)?;
        self.pending[work as usize].runs.push((off, n));
        Ok(off)
    }

    /// One array page for `work`, pending until it settles.
    pub fn alloc_page_for(&mut self, work: Work) -> Result<u64> {
        let off = self.alloc_page()?;
        self.pending[work as usize].pages.push(off);
        Ok(off)
    }

    /// The root about to be published references (or frees) everything `work` allocated.
    pub fn settle(&mut self, work: Work) {
        self.pending[work as usize] = Pending::default();
    }

    /// `work` stopped before publishing what it wrote: no root ever referenced its pending
    /// space, so it is free at once.
    pub fn abandon(&mut self, work: Work) {
        let p = std::mem::take(&mut self.pending[work as usize]);
        for (off, n) in p.runs {
            self.insert_free(off, n);
            self.unpunch(off, n);
        }
        self.pages.extend(p.pages);
        self.pages.sort_unstable_by(|a, b| b.cmp(a));
    }

    pub fn free_page(&mut self, off: u64) {
        if off != 0 {
            self.pages_freed.push(off);
        }
    }

    /// After root `epoch` is published: what it freed is held for readers and durability.
    pub fn publish(&mut self, epoch: u64) {
        self.held.hold(epoch, std::mem::take(&mut self.freed));
        self.pages_held
            .hold(epoch, std::mem::take(&mut self.pages_freed));
    }

    /// Makes reusable what roots up to `upto` freed (`upto`: the least of the newest durable
    /// root and the oldest root a pinned reader reads under), at once. The runs' blocks stay
    /// with the file until the trim thread punches them ([`Space::take_punch`]) or an
    /// allocation takes them again (most freed space is written again soon: a log, a merge's
    /// output).
    pub fn release(&mut self, upto: u64) {
        let mut runs = Vec::new();
        self.held.release(upto, |r| runs.push(r));
        for (off, n) in runs {
            self.insert_free(off, n);
            self.unpunch(off, n);
        }
        let before = self.pages.len();
        let pages = &mut self.pages;
        self.pages_held.release(upto, |p| pages.push(p));
        if self.pages.len() != before {
            // Highest first, so that pops hand out ascending offsets.
            self.pages.sort_unstable_by(|a, b| b.cmp(a));
        }
    }

    /// A run just made free whose blocks the file still holds.
    fn unpunch(&mut self, off: u64, n: u64) {
        if let Some(i) = self.index(off) {
            self.unpunched.insert(i, n);
            self.unpunched_segments += n;
        }
    }

    /// Segments [start, start + n) left the free list: none of them is to be punched.
    fn punched(&mut self, start: u64, n: u64) {
        let end = start + n;
        let hit: Vec<(u64, u64)> = self
            .unpunched
            .range(..end)
            .rev()
            .take_while(|(s, l)| *s + *l > start)
            .map(|(s, l)| (*s, *l))
            .collect();
        for (s, l) in hit {
            self.unpunched.remove(&s);
            self.unpunched_segments -= l;
            // What lies outside [start, end) stays to be punched.
            for (a, b) in [(s, start), (end, s + l)] {
                if a < b {
                    self.unpunched.insert(a, b - a);
                    self.unpunched_segments += b - a;
                }
            }
        }
    }

    /// Whether free segments whose blocks the file still holds exceed an eighth of the
    /// segments in use (at least `floor`): the trim thread then punches some.
    pub fn unpunched_over(&self, floor: u64) -> bool {
        // The trim thread asks at every wake-up, under the state lock: the free runs are
        // summed only once the floor is passed.
        if self.unpunched_segments <= floor {
            return false;
        }
        let free: u64 = self.free.values().sum();
        let live = self.used.saturating_sub(free);
        self.unpunched_segments > live / 8
    }

    /// Up to `max` free segments to punch, the highest first (allocations take the lowest):
    /// out of the free list, and listed, until handed back with [`Space::reuse`].
    pub fn take_punch(&mut self, max: u64) -> Option<Run> {
        let (&s, &l) = self.unpunched.iter().next_back()?;
        let n = l.min(max);
        let start = s + l - n;
        self.punched(start, n);
        let (&fs, &fl) = self.free.range(..=start).next_back()?;
        debug_assert!(fs + fl >= start + n, "unpunched space is free");
        self.free.remove(&fs);
        if fs < start {
            self.free.insert(fs, start - fs);
        }
        if start + n < fs + fl {
            self.free.insert(start + n, fs + fl - start - n);
        }
        let run = (self.offset(start), n);
        self.punching.insert(run);
        Some(run)
    }

    /// Every free segment's blocks went back to the filesystem (`trim`).
    pub fn all_punched(&mut self) {
        self.unpunched.clear();
        self.unpunched_segments = 0;
    }

    /// Runs [`Space::take_punch`] handed out, punched: free from now on.
    pub fn reuse(&mut self, runs: &[Run]) {
        for &(off, n) in runs {
            self.punching.remove(&(off, n));
            self.insert_free(off, n);
        }
    }

    /// Adds a run to the free map, joining its neighbours.
    fn insert_free(&mut self, off: u64, n: u64) {
        let Some(mut start) = self.index(off) else {
            return;
        };
        let mut len = n;
        if let Some((&s, &l)) = self.free.range(..start).next_back() {
            if s + l == start {
                self.free.remove(&s);
                start = s;
                len += l;
            }
        }
        if let Some(&l) = self.free.get(&(start + len)) {
            self.free.remove(&(start + len));
            len += l;
        }
        self.free.insert(start, len);
    }

    /// Every run a root must list as free: free, held, freed and pending (as runs of file
    /// offsets).
    pub fn listed_runs(&self) -> Vec<Run> {
        let mut runs: Vec<Run> = self
            .free
            .iter()
            .map(|(s, l)| (self.offset(*s), *l))
            .collect();
        runs.extend(self.held.iter().chain(&self.freed).copied());
        runs.extend(self.punching.iter().copied());
        runs.extend(self.pending.iter().flat_map(|p| &p.runs));
        runs.sort_unstable();
        runs
    }

    /// Every page a root must list as free: free, held, freed and pending.
    pub fn listed_pages(&self) -> Vec<u64> {
        let mut p: Vec<u64> = self
            .pages
            .iter()
            .chain(self.pages_held.iter())
            .chain(&self.pages_freed)
            .chain(self.pending.iter().flat_map(|p| &p.pages))
            .copied()
            .collect();
        p.sort_unstable();
        p
    }

    /// The free runs reusable now (for giving their blocks back at close).
    pub fn free_runs(&self) -> Vec<Run> {
        self.free
            .iter()
            .map(|(s, l)| (self.offset(*s), *l))
            .collect()
    }

    /// The free pages reusable now.
    pub fn free_page_list(&self) -> &[u64] {
        &self.pages
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: u64 = 1 << 20;

    #[test]
    fn freed_space_waits_for_its_root() {
        let mut s = Space::new(D, 64 * SEGMENT, 0, &[], &[], 0).unwrap();
        let a = s.alloc(4).unwrap();
        let b = s.alloc(2).unwrap();
        assert_eq!((a, b), (D, D + 4 * SEGMENT));
        s.free(a, 4);
        assert_eq!(
            s.alloc(1).unwrap(),
            D + 6 * SEGMENT,
            "not before its root is published"
        );
        s.publish(5);
        s.release(4);
        assert_eq!(
            s.alloc(1).unwrap(),
            D + 7 * SEGMENT,
            "not before it is durable and unpinned"
        );
        s.release(5);
        assert_eq!(s.alloc(3).unwrap(), a, "the lowest run that fits");
        assert_eq!(s.alloc(1).unwrap(), a + 3 * SEGMENT);
        assert!(s.listed_runs().is_empty());
    }

    #[test]
    fn runs_join_and_space_runs_out() {
        let mut s = Space::new(D, 8 * SEGMENT, 0, &[], &[], 0).unwrap();
        let a = s.alloc(2).unwrap();
        let b = s.alloc(2).unwrap();
        let c = s.alloc(4).unwrap();
        assert!(matches!(s.alloc(1), Err(Error::NoSpace { .. })));
        s.free(b, 2);
        s.free(a, 2);
        s.free(c, 4);
        s.publish(1);
        s.release(1);
        assert_eq!(s.free_runs(), vec![(a, 8)]);
        assert_eq!(s.alloc(8).unwrap(), a);
    }

    #[test]
    fn released_runs_are_punched_a_piece_at_a_time_unless_taken_again() {
        let mut s = Space::new(D, 128 * SEGMENT, 0, &[], &[], 0).unwrap();
        let a = s.alloc(20).unwrap();
        let keep = s.alloc(40).unwrap();
        s.free(a, 20);
        s.publish(1);
        assert!(!s.unpunched_over(0), "held, not free yet");
        s.release(1);
        assert!(s.unpunched_over(4) && !s.unpunched_over(20));
        // An allocation takes the lowest segments back: they need no punching.
        assert_eq!(s.alloc(6).unwrap(), a);
        assert_eq!(s.unpunched_segments, 14);
        // Pieces come from the top, out of the free list but still listed.
        let p = s.take_punch(8).unwrap();
        assert_eq!(p, (a + 12 * SEGMENT, 8));
        assert!(
            s.listed_runs().contains(&p),
            "a root published now lists it"
        );
        assert_eq!(s.free_runs(), vec![(a + 6 * SEGMENT, 6)]);
        assert_eq!(
            s.alloc(8).unwrap(),
            keep + 40 * SEGMENT,
            "not while punched"
        );
        s.reuse(&[p]);
        assert_eq!(s.take_punch(8), Some((a + 6 * SEGMENT, 6)));
        s.reuse(&[(a + 6 * SEGMENT, 6)]);
        assert_eq!(s.take_punch(8), None, "all punched");
        assert_eq!(s.free_runs(), vec![(a + 6 * SEGMENT, 14)]);
        assert_eq!(s.unpunched_segments, 0);
    }

    #[test]
    fn pending_space_is_listed_free_until_settled() {
        let mut s = Space::new(D, 64 * SEGMENT, 0, &[], &[], 0).unwrap();
        let a = s.alloc_for(Work::Merge, 2).unwrap();
        let p = s.alloc_page_for(Work::Flush).unwrap();
        assert_eq!(
            s.listed_runs(),
            vec![(a, 2)],
            "a crash now loses the merge's space"
        );
        assert!(s.listed_pages().contains(&p));
        assert_ne!(s.alloc(1).unwrap(), a, "but it stays taken");
        s.settle(Work::Merge);
        assert!(s.listed_runs().is_empty());
        assert!(s.listed_pages().contains(&p), "the flush has not settled");
        let b = s.alloc_for(Work::Merge, 1).unwrap();
        s.abandon(Work::Merge);
        assert_eq!(s.unpunched_segments, 1, "its blocks are to be given back");
        assert_eq!(s.alloc(1).unwrap(), b, "abandoned space is free at once");
        assert_eq!(s.unpunched_segments, 0, "written again instead");
    }

    #[test]
    fn pages_come_from_segments_and_go_back_as_pages() {
        let mut s = Space::new(D, 8 * SEGMENT, 0, &[], &[], 0).unwrap();
        let p = s.alloc_page().unwrap();
        let q = s.alloc_page().unwrap();
        assert_eq!((p, q), (D, D + PAGE as u64));
        s.free_page(p);
        s.publish(1);
        assert_eq!(s.listed_pages().len(), PAGES_PER_SEGMENT as usize - 1);
        s.release(1);
        assert_eq!(s.alloc_page().unwrap(), p, "lowest first");
        let bad = Space::new(D, 8 * SEGMENT, 1, &[], &[D + SEGMENT], 0);
        assert!(bad.is_err(), "a free page outside the used segments");
    }
}
