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
use crate::format::bucket::Mark;
use crate::format::hash::key_hash;
use crate::store::{ReadFile, ReaderTable};
use crate::{Key, Value};
pub use copy::CopyProgress;
use hold::Hold;
use parking_lot::{Mutex, RwLock};
use snap::{Newest, Snap};
use std::cell::RefCell;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;

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
                    s.first_from(&keys[i], b.hash[j], b.mark[j])?
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

/// Keys a batch takes through each stage of its search together: enough misses in flight to
/// keep the core's line-fill buffers busy, few enough that the lines of the group's first
/// key are still cached when its last key's have arrived.
const GROUP: usize = 16;

/// Keys of a batch per page-cache sample: a batch asks the kernel for all its pages at once
/// when one sampled page is not in the page cache.
const SAMPLE: usize = 64;

/// A batch's search in stages, a group of keys at a time, pipelined over the groups (Chen et
/// al., "Improving hash join performance through prefetching", ICDE 2004): while the keys of
/// one group are searched, the first lines of the next group's pages and the directory items
/// of the group after are loading. A group's stages: hash every key and start loading its
/// directory items; then the first lines of its pages; then scan their tags for each key's
/// entry and start loading it (and, for `get`, find each entry and start loading its extent);
/// the searches themselves then find their lines cached. Before the first group,
/// a batch whose pages are not in the page cache asks the kernel for all of them (and, for
/// `get`, then for its extents), so that the device serves them in parallel.
struct Batch<'k> {
    keys: &'k [Key],
    /// Whether whole sets are wanted (their extents are loaded too).
    sets_too: bool,
    /// The keys of the current group: `start..start + len`.
    start: usize,
    len: usize,
    hash: [u64; GROUP],
    mark: [Option<Mark>; GROUP],
    sets: Vec<Newest>,
}

impl<'k> Batch<'k> {
    /// The staged search of `keys`; None for a single key, which goes straight through.
    fn new(keys: &'k [Key], sets_too: bool) -> Option<Batch<'k>> {
        (keys.len() > 1).then(|| Batch {
            keys,
            sets_too,
            start: 0,
            len: 0,
            hash: [0; GROUP],
            mark: [None; GROUP],
            sets: Vec::new(),
        })
    }

    /// The place of key `i` in its group, the group loaded first when `i` is past the current
    /// one or is where the steps in snapshot `s` began (`from`).
    fn at(&mut self, s: &Snap, i: usize, from: usize) -> Res<usize> {
        if i == from {
            self.fetch(s, i);
        }
        if i == from || i >= self.start + self.len {
            self.load(s, i, i == from)?;
        }
        Ok(i - self.start)
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
                if let Ok(set) = s.newest(k, key_hash(k), None) {
                    s.will_need_set(&set, false);
                }
            }
        }
    }

    /// Runs the stages ahead of the searches for the group of keys from `i`: its marks (and
    /// sets), the first lines of the next group's pages and the directory items of the group
    /// after, so that each stage finds what the one before started loading a group earlier
    /// (`prime`: the first group, nothing started yet).
    fn load(&mut self, s: &Snap, i: usize, prime: bool) -> Res<()> {
        let n = self.keys.len();
        let group = |g: usize| &self.keys[(i + g * GROUP).min(n)..(i + (g + 1) * GROUP).min(n)];
        if prime {
            group(0)
                .iter()
                .chain(group(1))
                .for_each(|k| s.warm_stage(key_hash(k), 0));
            group(0).iter().for_each(|k| s.warm_stage(key_hash(k), 1));
        }
        group(2).iter().for_each(|k| s.warm_stage(key_hash(k), 0));
        group(1).iter().for_each(|k| s.warm_stage(key_hash(k), 1));
        let keys = group(0);
        self.start = i;
        self.len = keys.len();
        for ((h, m), k) in self.hash.iter_mut().zip(&mut self.mark).zip(keys) {
            *h = key_hash(k);
            *m = s.mark(*h);
        }
        if self.sets_too {
            self.sets.clear();
            for (j, k) in keys.iter().enumerate() {
                let set = s.newest(k, self.hash[j], self.mark[j])?;
                s.will_need_set(&set, true);
                self.sets.push(set);
            }
        }
        Ok(())
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
