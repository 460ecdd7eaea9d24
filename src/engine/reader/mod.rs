//! Readers: a snapshot of the newest root (its tables' directories cached, the log frames that
//! followed it applied as overlays), lookups from a read-only mapping — no HDF5 call, no
//! syscall and no global lock on the lookup path. While any view of a root is alive, a
//! reader-table slot pins it (the writer then reuses none of its space), so a table page is
//! validated in full (checksum, epoch, range, the epoch its directory item names) the first
//! time the root's views read it and after that read in place: only its header, tags and the
//! matching entry. Without a slot (table full or read-only) every page is copied and
//! validated on every read, and one that fails because the writer reused it makes the reader
//! refresh and retry.

mod copy;
mod hold;
mod snap;
mod view;

use super::options::{Options, Stats};
use super::source::{Fault, Res};
use crate::error::{Error, Result};
use crate::format::hash::key_hash;
use crate::store::{ReadFile, ReaderTable};
use crate::{Key, Value};
pub use copy::CopyProgress;
use hold::Hold;
use parking_lot::{Mutex, RwLock};
use snap::{Learned, Newest, Snap};
use std::cell::RefCell;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;
#[cfg(feature = "testing")]
pub use view::FILTERS_IN_PLACE;

/// Tries per key before a page that keeps failing validation is reported as corrupt.
const RETRIES: usize = 4;
/// Readers whose snapshot a thread keeps a copy of.
const CACHED_READERS: usize = 4;

thread_local! {
    /// What this thread keeps of the readers it used last.
    static SNAPS: RefCell<Vec<Cached>> = const { RefCell::new(Vec::new()) };
}

/// A thread's copy of a reader's snapshot.
struct Cached {
    id: u64,
    gen: u64,
    snap: Arc<Snap>,
}

/// A reader of a hashdir file: a snapshot of the last commit it saw, shared by any number of
/// threads (`Sync`). Lookups answer from the snapshot until [`refresh`](Reader::refresh) (or
/// the automatic refresh of `Options::refresh_interval_ms`) moves it to the newest commit.
pub struct Reader {
    /// Unique for the life of the process (addresses are reused after close).
    id: u64,
    file: ReadFile,
    /// Where this reader pins the roots it reads so the writer holds that space back.
    table: Option<Arc<ReaderTable>>,
    /// Every pin this reader made: closing releases those that threads' caches still hold.
    holds: Mutex<Vec<Weak<Hold>>>,
    snap: RwLock<Arc<Snap>>,
    /// Bumped after `snap` changes; threads keep their copy of `snap` while it is unchanged.
    gen: AtomicU64,
    refreshing: Mutex<()>,
    interval_ms: u64,
    born: Instant,
    last_refresh_ms: AtomicU64,
}

impl Reader {
    /// Opens the file at `path` for reading, seeing its last commit. Any number of readers,
    /// in any processes, may be open alongside the one writer. Errors: `NotFound`,
    /// `NotHashdir`, `Io`, `Corrupt`.
    pub fn open(path: &Path, opts: &Options) -> Result<Reader> {
        let file = ReadFile::open(path)?;
        // A reader works without a table it cannot use (validating every read instead).
        let table = ReaderTable::open(path).ok().flatten();
        let snap =
            Snap::load(&file, None, table.as_ref()).map_err(|f| stale_to_corrupt(f, "root"))?;
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Ok(Reader {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            file,
            table,
            holds: Mutex::new(snap.hold.iter().map(Arc::downgrade).collect()),
            snap: RwLock::new(Arc::new(snap)),
            gen: AtomicU64::new(0),
            refreshing: Mutex::new(()),
            interval_ms: opts.refresh_interval_ms as u64,
            born: Instant::now(),
            last_refresh_ms: AtomicU64::new(0),
        })
    }

    fn snapshot(&self) -> Arc<Snap> {
        self.snap.read().clone()
    }

    /// Runs `f` on this thread's copy of the current snapshot: while the snapshot is unchanged
    /// a lookup writes no shared cache line (no lock, no reference count), so threads scale.
    fn with_snap<T>(&self, f: impl FnOnce(&Snap) -> T) -> T {
        let gen = self.gen.load(Ordering::Acquire);
        SNAPS.with(|cache| {
            let mut cache = cache.borrow_mut();
            let at = match cache.iter().position(|e| e.id == self.id) {
                Some(at) if cache[at].gen == gen => at,
                Some(at) => {
                    cache[at] = self.cached(gen);
                    at
                }
                None => {
                    if cache.len() >= CACHED_READERS {
                        cache.remove(0);
                    }
                    cache.push(self.cached(gen));
                    cache.len() - 1
                }
            };
            f(&cache[at].snap)
        })
    }

    fn cached(&self, gen: u64) -> Cached {
        Cached {
            id: self.id,
            gen,
            snap: self.snapshot(),
        }
    }

    /// Calls `step(snap, i, from)` for i in 0..n, refreshing and resuming at the same i when a
    /// page turns out stale; `from` is the i this snapshot's steps began at (what a step
    /// learned in an earlier snapshot does not hold in this one).
    fn each(&self, n: usize, mut step: impl FnMut(&Snap, usize, usize) -> Res<()>) -> Result<()> {
        self.maybe_refresh()?;
        let (mut i, mut tries) = (0, 0);
        while i < n {
            let fault = self.with_snap(|s| {
                let from = i;
                while i < n {
                    if let Err(f) = step(s, i, from) {
                        return Some(f);
                    }
                    i += 1;
                }
                None
            });
            match fault {
                None => break,
                Some(f) if f.retryable() && tries < RETRIES => {
                    tries += 1;
                    self.refresh()?;
                }
                Some(f) => return Err(stale_to_corrupt(f, "page or extent")),
            }
        }
        Ok(())
    }

    /// Moves to the newest committed state: a new root if there is one, then the WAL tail.
    pub fn refresh(&self) -> Result<()> {
        let _one_at_a_time = self.refreshing.lock();
        self.refresh_locked()
    }

    fn refresh_locked(&self) -> Result<()> {
        let mut last = Fault::Stale;
        for _ in 0..RETRIES {
            let cur = self.snapshot();
            match Snap::load(&self.file, Some(&cur), self.table.as_ref()) {
                Ok(next) => {
                    self.track(&next);
                    *self.snap.write() = Arc::new(next);
                    self.gen.fetch_add(1, Ordering::Release);
                    let now = self.born.elapsed().as_millis() as u64;
                    self.last_refresh_ms.store(now, Ordering::Relaxed);
                    return Ok(());
                }
                Err(f) if f.retryable() => last = f,
                Err(f) => return Err(stale_to_corrupt(f, "directory")),
            }
        }
        Err(stale_to_corrupt(last, "directory"))
    }

    /// Remembers a new root's hold, so closing can release it.
    fn track(&self, snap: &Snap) {
        let Some(hold) = &snap.hold else { return };
        let mut holds = self.holds.lock();
        if !holds.iter().any(|h| h.as_ptr() == Arc::as_ptr(hold)) {
            holds.retain(|h| h.strong_count() > 0);
            holds.push(Arc::downgrade(hold));
        }
    }

    /// Refreshes when the automatic interval has passed, unless another thread is at it.
    fn maybe_refresh(&self) -> Result<()> {
        if self.interval_ms == 0 {
            return Ok(());
        }
        let now = self.born.elapsed().as_millis() as u64;
        if now - self.last_refresh_ms.load(Ordering::Relaxed) < self.interval_ms {
            return Ok(());
        }
        match self.refreshing.try_lock() {
            Some(_g) => self.refresh_locked(),
            None => Ok(()),
        }
    }

    /// For each `keys[i]`: `found[i] = 1` and `first[i]` one of its values (which one is
    /// unspecified), or `found[i] = 0`. The output slices must be at least as long as `keys`.
    /// A batch goes through its search in stages, group by group, so that its keys' cache
    /// misses and device reads overlap.
    pub fn lookup(&self, keys: &[Key], first: &mut [Value], found: &mut [u8]) -> Result<()> {
        if first.len() < keys.len() || found.len() < keys.len() {
            return Err(Error::InvalidArgument(
                "output arrays shorter than keys".into(),
            ));
        }
        let mut batch = Batch::new(keys, false);
        self.each(keys.len(), |s, i, from| {
            let v = match &mut batch {
                None => s.first(&keys[i])?,
                Some(b) => {
                    let j = b.at(s, i, from)?;
                    s.first_from(&keys[i], b.hash[j], b.learned[j])?
                }
            };
            found[i] = u8::from(v.is_some());
            first[i] = v.unwrap_or_default();
            Ok(())
        })
    }

    /// All values of each key: `counts[i]` values of `keys[i]` go to `values`, one key after
    /// the other (unordered within a key); returns their total. When they do not fit,
    /// `counts` is still filled and the error is `BufferTooSmall` with the total needed.
    pub fn get(&self, keys: &[Key], values: &mut [Value], counts: &mut [u64]) -> Result<usize> {
        if counts.len() < keys.len() {
            return Err(Error::InvalidArgument("counts shorter than keys".into()));
        }
        let mut total = 0usize;
        let mut batch = Batch::new(keys, true);
        self.each(keys.len(), |s, i, from| {
            let room = values.get_mut(total..).unwrap_or_default();
            let n = match &mut batch {
                None => s.all_into(&keys[i], room)?,
                Some(b) => {
                    let j = b.at(s, i, from)?;
                    let set = std::mem::replace(&mut b.sets[j], Newest::None);
                    s.set_into(&keys[i], set, room)?
                }
            };
            counts[i] = n as u64;
            total += n;
            Ok(())
        })?;
        if total > values.len() {
            return Err(Error::BufferTooSmall {
                needed: total,
                capacity: values.len(),
            });
        }
        Ok(total)
    }

    /// Calls `f(key, values)` for every key that has values, in hash order, until `f` returns
    /// false. A scan the writer overtakes (space reused under an unpinned reader) refreshes and
    /// resumes after the last key it handed to `f`, so every key is visited once.
    pub fn scan(&self, mut f: impl FnMut(&Key, &[Value]) -> bool) -> Result<()> {
        let mut after = None;
        let mut tries = 0;
        loop {
            // Holding the snapshot holds its root's pin for the whole scan.
            let snap = self.snapshot();
            match snap.scan(&mut after, &mut f) {
                Ok(_) => return Ok(()),
                Err(f) if f.retryable() && tries < RETRIES => {
                    tries += 1;
                    self.refresh()?;
                }
                Err(f) => return Err(stale_to_corrupt(f, "page or extent")),
            }
        }
    }

    /// Drops the file's pages from this reader's mapping and from the OS page cache, so the
    /// next lookups read from the device: the benchmark's cold mode. Threads' cached views of
    /// older mappings keep theirs.
    #[doc(hidden)]
    pub fn evict(&self) -> Result<()> {
        self.snapshot().map.evict();
        crate::store::drop_cache(self.file.path())
    }

    /// Whether the current snapshot reads its log tail in place (else it holds a copy).
    #[doc(hidden)]
    pub fn reads_log_in_place(&self) -> bool {
        self.snapshot().current.overlay.indexed()
    }

    /// The counters of this reader's snapshot.
    pub fn stats(&self) -> Result<Stats> {
        let s = self.snapshot();
        Ok(Stats::of(&s.root, self.file.size()?, s.log_pos()))
    }
}

/// How many keys ahead of its search each stage runs for a key of a batch: its directory
/// items (or key-filter blocks) start loading, then its pages' first lines, then its tags are
/// scanned (which starts loading its entry), then, for `get`, its entry is read (which starts
/// loading its set). Each stage finds what the one before started loading a few keys
/// earlier; each key's step issues one key's loads of each kind, so that the loads in flight
/// stay even rather than coming in bursts the core's line-fill buffers cannot take.
const AHEAD_ITEMS: usize = 24;
const AHEAD_PAGES: usize = 16;
const AHEAD_MARK: usize = 8;
const AHEAD_SET: usize = 4;

/// Keys whose pages start loading together, every that many steps: the first touch of a page
/// walks the page tables, which a prefetch waits for, and walks overlap only when their
/// prefetches come close together (at 100 M keys, where the page tables miss the caches,
/// 0.47–0.59 µs a key one at a time, 0.30–0.35 four at a time).
const PAGES_AT_ONCE: usize = 4;

/// Slots of a batch's ring of keys in flight: at least as many as the furthest stage looks
/// ahead.
const RING: usize = 32;

// Each stage runs for a key after the one before it (its hash first), and a key's slot is not
// reused while it is in flight.
const _: () = assert!(
    AHEAD_SET < AHEAD_MARK
        && AHEAD_MARK < AHEAD_PAGES
        && AHEAD_PAGES + PAGES_AT_ONCE <= AHEAD_ITEMS
        && AHEAD_ITEMS <= RING
);

/// Keys of a batch per page-cache sample: a batch asks the kernel for all its pages at once
/// when one sampled page is not in the page cache.
const SAMPLE: usize = 64;

/// A batch's search as a software pipeline over its keys (Chen et al., "Improving hash join
/// performance through prefetching", ICDE 2004; Kocberber et al., "Asynchronous Memory
/// Access Chaining", VLDB 2015): the step of key `i` runs one stage for each of the keys
/// `AHEAD_*` after it, then searches key `i`, whose lines those stages loaded while the keys
/// between were searched. Before its first key, a batch whose pages are not in the page
/// cache asks the kernel for all of them (and, for `get`, then for its extents), so that the
/// device serves them in parallel.
struct Batch<'k> {
    keys: &'k [Key],
    /// Whether whole sets are wanted (their extents are loaded too).
    sets_too: bool,
    /// Per key in flight, at `i % RING`: its hash, what its stages learned (its mark, its
    /// filters' answers), and (for `get`) what settles it.
    hash: [u64; RING],
    learned: [Learned; RING],
    sets: Vec<Newest>,
}

impl<'k> Batch<'k> {
    /// The pipelined search of `keys`; None for a single key, which goes straight through.
    fn new(keys: &'k [Key], sets_too: bool) -> Option<Batch<'k>> {
        let sets = if sets_too { RING } else { 0 };
        (keys.len() > 1).then(|| Batch {
            keys,
            sets_too,
            hash: [0; RING],
            learned: [Learned::default(); RING],
            sets: (0..sets).map(|_| Newest::None).collect(),
        })
    }

    /// The ring slot of key `i`, once the stages due at its step have run: every stage for
    /// the keys it looks ahead to when `i` is where the steps in snapshot `s` began (`from`:
    /// what was learned in an earlier snapshot does not hold in this one), else each stage
    /// for the keys that come into its reach.
    fn at(&mut self, s: &Snap, i: usize, from: usize) -> Res<usize> {
        if i == from {
            self.fetch(s, i);
        }
        let n = self.keys.len();
        // A stage `ahead` keys ahead, for `bunch` keys every `bunch` steps: the keys from
        // `ahead - 1` past the step on, up to `ahead + bunch - 1` past the first step.
        let due = |ahead: usize, bunch: usize| match i == from {
            true => i..(i + ahead + bunch - 1).min(n),
            false if (i - from).is_multiple_of(bunch) => {
                (i + ahead - 1).min(n)..(i + ahead + bunch - 1).min(n)
            }
            false => 0..0,
        };
        for k in due(AHEAD_ITEMS, 1) {
            self.hash[k % RING] = key_hash(&self.keys[k]);
            s.warm_first(self.hash[k % RING]);
        }
        for k in due(AHEAD_PAGES, PAGES_AT_ONCE) {
            let ruled = s.warm_pages(self.hash[k % RING]);
            self.learned[k % RING] = Learned {
                mark: None,
                ruled: Some(ruled),
            };
        }
        for k in due(AHEAD_MARK, 1) {
            self.learned[k % RING].mark = s.mark(self.hash[k % RING]);
        }
        if self.sets_too {
            for k in due(AHEAD_SET, 1) {
                let j = k % RING;
                let set = s.newest(&self.keys[k], self.hash[j], self.learned[j])?;
                s.will_need_set(&set, true);
                self.sets[j] = set;
            }
        }
        Ok(i % RING)
    }

    /// Asks the kernel for the pages of keys `i..` at once, when a sample of them finds one
    /// missing from the page cache (a batch in cache costs a few `mincore` calls).
    fn fetch(&self, s: &Snap, i: usize) {
        let keys = &self.keys[i..];
        if keys.iter().step_by(SAMPLE).all(|k| s.resident(key_hash(k))) {
            return;
        }
        for k in keys {
            s.will_need(key_hash(k));
        }
        if self.sets_too {
            // The pages were asked for all at once; finding the extents waits for them in turn.
            for k in keys {
                if let Ok(set) = s.newest(k, key_hash(k), Learned::default()) {
                    s.will_need_set(&set, false);
                }
            }
        }
    }
}

/// The error a reader reports once refreshing did not cure a fault.
fn stale_to_corrupt(f: Fault, what: &'static str) -> Error {
    match f {
        Fault::Suspect(e) | Fault::Fail(e) => e,
        Fault::Stale => Error::corrupt(what, 0, "still failing validation after refreshing"),
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        // Other threads' copies go when they use other readers or exit; their pins go now.
        let _ = SNAPS.try_with(|c| c.borrow_mut().retain(|e| e.id != self.id));
        for hold in self.holds.get_mut().iter().filter_map(Weak::upgrade) {
            hold.release();
        }
    }
}
