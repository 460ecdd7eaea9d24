//! Readers: a snapshot of the newest root (directory cached, WAL tail applied as an overlay),
//! lookups from a read-only mapping — no HDF5 call, no syscall and no global lock on the lookup
//! path. While any view of a root is alive, a reader-table slot pins it (the writer then reuses
//! none of its space), so a bucket page is validated in full (checksum, epoch, header) the first
//! time the root's views read it and after that read in place: only its header, tags and the
//! matching entry. Without a slot (table full or read-only) every page is copied and validated
//! on every read, and one that fails because the writer reused it makes the reader refresh and
//! retry.

use super::array::{self, Shape};
use super::extents;
use super::memtable::Delta;
use super::options::{Options, Stats};
use super::overlay::{Log, Overlay};
use super::source::{Fault, Res, Source};
use super::wal::{self, Cursor};
use crate::error::{Error, Result};
use crate::format::array::LEAF;
use crate::format::bucket::{self, Set};
use crate::format::hash::{dir_index, key_hash, Range};
use crate::format::layout::{PAGE, ROOT_SLOT};
use crate::format::page::MAGIC_BUCKET;
use crate::format::root::{self, Root, LOG_MOVES};
use crate::store::{Mmap, ReadFile, ReaderTable, Slot};
use crate::{Key, Value};
use parking_lot::{Mutex, RwLock};
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;

/// Tries per key before a page that keeps failing validation is reported as corrupt.
const RETRIES: usize = 4;
/// Bytes at the start of a bucket page that a search reads: header, tags and entry offsets of
/// a page with about 70 entries (one value per key).
const SEARCH_LINES: usize = 6 * 64;
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

/// Keeps a root's space from reuse while any view of it is alive: a reader-table slot pinned
/// at the root's epoch. Pages cannot change under it, so it also remembers which bucket pages
/// have passed validation (one bit per page-sized stretch of the file).
struct Hold {
    slot: Mutex<Option<Slot>>,
    verified: Box<[AtomicU64]>,
}

impl Hold {
    /// A hold on root `epoch` by `slot`, already pinned at or below it, for a file of `len` bytes.
    fn new(slot: Slot, epoch: u64, len: usize) -> Hold {
        slot.pin(epoch);
        Hold {
            slot: Mutex::new(Some(slot)),
            verified: (0..len / PAGE / 64 + 1)
                .map(|_| AtomicU64::new(0))
                .collect(),
        }
    }

    /// Word and bit of the page at `off`; distinct pages never share one (they are PAGE apart).
    fn bit(&self, off: u64) -> Option<(&AtomicU64, u64)> {
        let i = off / PAGE as u64;
        let word = self.verified.get(usize::try_from(i / 64).ok()?)?;
        Some((word, 1 << (i % 64)))
    }

    fn verified(&self, off: u64) -> bool {
        self.bit(off)
            .is_some_and(|(w, b)| w.load(Ordering::Relaxed) & b != 0)
    }

    fn mark(&self, off: u64) {
        if let Some((w, b)) = self.bit(off) {
            w.fetch_or(b, Ordering::Relaxed);
        }
    }

    /// Unpins for good: the reader is closing, so no view of the root will be read again.
    fn release(&self) {
        self.slot.lock().take();
    }
}

struct Leaf {
    id: (u64, u64),
    /// Page numbers (file offset / PAGE; 0 = no page): every chunk starts on a page boundary
    /// (FORMAT.md §1), so four bytes reach 16 TiB and the directory takes half the memory and
    /// cache of its 8-byte items (134 MB instead of 268 per reader at 1 B keys).
    pages: Vec<u32>,
}

impl Leaf {
    /// The leaf of directory items `items`, read from the array leaf page `id` (offset, epoch).
    fn new(id: (u64, u64), items: &[u64]) -> Res<Leaf> {
        let page = |off: u64| {
            u32::try_from(off / PAGE as u64)
                .ok()
                .filter(|_| off.is_multiple_of(PAGE as u64))
                .ok_or_else(|| {
                    Fault::Fail(Error::corrupt(
                        "directory leaf",
                        id.0,
                        format!("item {off} is not the offset of a page below 16 TiB"),
                    ))
                })
        };
        let pages = items.iter().map(|&off| page(off)).collect::<Res<_>>()?;
        Ok(Leaf { id, pages })
    }
}

/// One consistent state: a root, its directory, and the WAL frames that followed it.
struct Snap {
    map: Arc<Mmap>,
    root: Root,
    /// Shared by every snapshot of the root: a refresh that only reads new log frames copies
    /// one pointer, not one per leaf (16 K leaves at 100 M keys).
    dir: Arc<[Arc<Leaf>]>,
    wal_chunks: Arc<Vec<u64>>,
    wal: Cursor,
    /// Deltas from the WAL tail.
    overlay: Overlay,
    /// The pin on `root` (shared by every view of it); None when no slot was free.
    hold: Option<Arc<Hold>>,
}

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
    pub fn open(path: &Path, opts: &Options) -> Result<Reader> {
        let file = ReadFile::open(path)?;
        let table = ReaderTable::open(path)?;
        let snap = load(&file, None, table.as_ref()).map_err(|f| stale_to_corrupt(f, "root"))?;
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

    /// Calls `step(snap, i)` for i in 0..n, refreshing and resuming at the same i when a page
    /// turns out stale.
    fn each(&self, n: usize, mut step: impl FnMut(&Snap, usize) -> Res<()>) -> Result<()> {
        self.maybe_refresh()?;
        let (mut i, mut tries) = (0, 0);
        while i < n {
            let fault = self.with_snap(|s| {
                while i < n {
                    if let Err(f) = step(s, i) {
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
            match load(&self.file, Some(&cur), self.table.as_ref()) {
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

    pub fn lookup(&self, keys: &[Key], first: &mut [Value], found: &mut [u8]) -> Result<()> {
        if first.len() < keys.len() || found.len() < keys.len() {
            return Err(Error::InvalidArgument(
                "output arrays shorter than keys".into(),
            ));
        }
        self.each(keys.len(), |s, i| {
            let v = s.first(&keys[i])?;
            found[i] = u8::from(v.is_some());
            first[i] = v.unwrap_or_default();
            Ok(())
        })
    }

    pub fn get(&self, keys: &[Key], values: &mut [Value], counts: &mut [u64]) -> Result<usize> {
        if counts.len() < keys.len() {
            return Err(Error::InvalidArgument("counts shorter than keys".into()));
        }
        let mut total = 0usize;
        self.each(keys.len(), |s, i| {
            let set = s.all(&keys[i])?;
            counts[i] = set.len() as u64;
            if let Some(out) = values.get_mut(total..total + set.len()) {
                out.copy_from_slice(&set);
            }
            total += set.len();
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
    /// false. A scan the writer overtakes (pages reused under it) refreshes and resumes after
    /// the last bucket it finished, so every key is visited once.
    pub fn scan(&self, mut f: impl FnMut(&Key, &[Value]) -> bool) -> Result<()> {
        let mut next = Some(0u64);
        let mut tries = 0;
        loop {
            // Holding the snapshot holds its root's pin for the whole scan.
            let snap = self.snapshot();
            match snap.scan_from(&mut next, &mut f) {
                Ok(()) => return Ok(()),
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
        self.snapshot().overlay.indexed()
    }

    pub fn stats(&self) -> Result<Stats> {
        let s = self.snapshot();
        Ok(Stats::of(&s.root, self.file.size()?, s.wal.pos))
    }
}

/// The error a reader reports once refreshing did not cure a fault.
fn stale_to_corrupt(f: Fault, what: &'static str) -> Error {
    match f {
        Fault::Suspect(e) | Fault::Fail(e) => e,
        Fault::Stale => Error::corrupt(what, 0, "still failing validation after refreshing"),
    }
}

/// The newest state of the file, reusing what `cur` already has; a new root gets a slot of
/// `table` (if one is free) to pin it.
fn load(file: &ReadFile, cur: Option<&Snap>, table: Option<&Arc<ReaderTable>>) -> Res<Snap> {
    let map = file.map()?;
    if let Some(cur) = cur {
        let root = read_root(&map, file.root_offset())?;
        check_forward(&root, cur)?;
        if root.epoch == cur.root.epoch {
            return Ok(tail(cur, map)?);
        }
    }
    // Pinned while loading at the root we have (0 on open), which no newer root's space can
    // be reused under; the root is read after pinning. Not at 0 on refresh: readers refresh
    // often, and a pin at 0 would keep the writer from reusing anything.
    let slot = table.and_then(|t| t.claim());
    if let Some(s) = &slot {
        s.pin(cur.map_or(0, |c| c.root.epoch));
    }
    let root = read_root(&map, file.root_offset())?;
    if let Some(cur) = cur {
        check_forward(&root, cur)?;
    }
    let shape = array::shape(&*map, root.dir, root.epoch)?;
    let dir = dir_leaves(&map, &root, &shape, cur)?;
    let (chunks, _) = array::load(&*map, root.wal_map, root.epoch)?;
    let hold = slot.map(|s| Arc::new(Hold::new(s, root.epoch, map.len())));
    // The log can be read in place only while it stays there: under a pin, from a writer that
    // moves the log, at positions a u32 can hold.
    let in_place =
        hold.is_some() && root.flags & LOG_MOVES != 0 && wal::capacity(&chunks) <= u32::MAX as u64;
    let base = Snap {
        map: map.clone(),
        wal: Cursor {
            gen: root.wal_gen,
            lsn: root.wal_lsn,
            pos: 0,
        },
        root,
        dir,
        wal_chunks: Arc::new(chunks),
        overlay: Overlay::new(in_place),
        hold,
    };
    Ok(tail(&base, map)?)
}

/// The two root slots are copied one after the other: while the writer publishes two roots in
/// quick succession the copy can pair an old slot with a torn one and find an older root than
/// this reader already has. Going back is never right: read again.
fn check_forward(root: &Root, cur: &Snap) -> Res<()> {
    if root.epoch < cur.root.epoch {
        return Err(Fault::Stale);
    }
    Ok(())
}

fn read_root(map: &Mmap, at: u64) -> Res<Root> {
    let mut slots = vec![0u8; 2 * ROOT_SLOT];
    map.read(at, &mut slots)?;
    root::newest(&slots[..ROOT_SLOT], &slots[ROOT_SLOT..])
        .map_err(|why| Fault::Fail(Error::corrupt("root", at, why)))
}

fn dir_leaves(map: &Mmap, root: &Root, shape: &Shape, cur: Option<&Snap>) -> Res<Arc<[Arc<Leaf>]>> {
    let known: HashMap<(u64, u64), &Arc<Leaf>> = cur
        .map(|c| {
            c.dir
                .iter()
                .filter(|l| l.id.0 != 0 && l.id.1 != 0)
                .map(|l| (l.id, l))
                .collect()
        })
        .unwrap_or_default();
    let mut out = Vec::with_capacity(shape.leaves.len());
    for (i, id) in shape.leaves.iter().enumerate() {
        if let Some(l) = known.get(id) {
            out.push(Arc::clone(l));
            continue;
        }
        let items = array::read_leaf(map, root.dir.len, i, *id, root.epoch)?;
        out.push(Arc::new(Leaf::new(*id, &items)?));
    }
    Ok(out.into())
}

/// `snap` with the WAL frames written after its cursor applied.
fn tail(snap: &Snap, map: Arc<Mmap>) -> Result<Snap> {
    let log = Log {
        src: &*map,
        chunks: &snap.wal_chunks,
    };
    let (overlay, end) = snap.overlay.extended(&log, snap.wal)?;
    Ok(Snap {
        map: map.clone(),
        root: snap.root.clone(),
        dir: snap.dir.clone(),
        wal_chunks: snap.wal_chunks.clone(),
        wal: end,
        overlay,
        hold: snap.hold.clone(),
    })
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

impl Snap {
    fn dir_entry(&self, idx: u64) -> u64 {
        let i = idx as usize;
        u64::from(self.dir[i / LEAF].pages[i % LEAF]) * PAGE as u64
    }

    /// Reads the bucket page at `off` that the directory gives for a key with hash `h`.
    fn bucket(&self, off: u64, h: u64, page: &mut [u8; PAGE]) -> Res<()> {
        self.map
            .page_into(off, MAGIC_BUCKET, self.root.epoch, "bucket page", page)?;
        if !bucket::header(page).1.contains(h) {
            return Err(Fault::Stale);
        }
        Ok(())
    }

    /// The last slot of the run of empty slots that starts at `idx`.
    fn empty_until(&self, idx: u64) -> u64 {
        let slots = 1u64 << self.root.global_depth;
        (idx + 1..slots)
            .find(|&j| self.dir_entry(j) != 0)
            .map_or(slots - 1, |j| j - 1)
    }

    /// Starts loading the first lines of the bucket page for hash `h`, so that its cache
    /// misses overlap a large overlay's instead of following them.
    fn warm(&self, h: u64) {
        if !self.overlay.large() {
            return;
        }
        let off = self.dir_entry(dir_index(h, self.root.global_depth));
        if off != 0 {
            self.map.prefetch(off, SEARCH_LINES);
        }
    }

    /// The key's set as of the root.
    fn base(&self, h: u64, key: &Key) -> Res<Option<Set>> {
        let off = self.dir_entry(dir_index(h, self.root.global_depth));
        if off == 0 {
            return Ok(None);
        }
        if self.hold.as_deref().is_some_and(|hd| hd.verified(off)) {
            // Validated under this pin and unchanged since: read only what the search needs,
            // its first lines (header, tags, entry offsets of a typical page) all at once.
            self.map.prefetch(off, SEARCH_LINES);
            let mut read = |at: usize, out: &mut [u8]| self.map.read(off + at as u64, out);
            return Ok(bucket::find_in(&mut read, h, key, off)?);
        }
        let mut page = [0u8; PAGE];
        self.bucket(off, h, &mut page)?;
        let found = bucket::find(&page, h, key, off)?;
        if let Some(hold) = &self.hold {
            hold.mark(off);
        }
        Ok(found)
    }

    fn log(&self) -> Log<'_> {
        Log {
            src: &*self.map,
            chunks: &self.wal_chunks,
        }
    }

    /// Every key the overlay changes, with its composed delta, in (hash, key) order.
    fn overlay_keys(&self) -> Res<Vec<(u64, Key, Delta)>> {
        let mut out = Vec::new();
        for k in self.overlay.keys(&self.log())? {
            if let Some(d) = self.delta(&k)? {
                out.push((key_hash(&k), k, d));
            }
        }
        out.sort_unstable_by_key(|a| (a.0, a.1));
        Ok(out)
    }

    /// Scans buckets from hash `*next` on; leaves `*next` at the first hash not yet visited
    /// (None when done or when `f` asked to stop).
    fn scan_from(
        &self,
        next: &mut Option<u64>,
        f: &mut impl FnMut(&Key, &[Value]) -> bool,
    ) -> Res<()> {
        let overlay = self.overlay_keys()?;
        let gd = self.root.global_depth;
        while let Some(from) = *next {
            let idx = dir_index(from, gd);
            let off = self.dir_entry(idx);
            let mut base = Vec::new();
            let hi = if off != 0 {
                let mut page = [0u8; PAGE];
                self.bucket(off, from, &mut page)?;
                base = bucket::decode(&page, off)?;
                bucket::header(&page).1.hi
            } else {
                Range::slots(idx, self.empty_until(idx), gd).hi
            };
            let a = overlay.partition_point(|x| x.0 < from);
            let b = overlay.partition_point(|x| x.0 <= hi);
            if !self.emit(&base, &overlay[a..b], from, f)? {
                *next = None;
                return Ok(());
            }
            *next = hi.checked_add(1);
        }
        Ok(())
    }

    /// Hands `f` the keys of one bucket merged with the overlay; false when `f` said stop.
    fn emit(
        &self,
        base: &[bucket::Entry],
        overlay: &[(u64, Key, Delta)],
        from: u64,
        f: &mut impl FnMut(&Key, &[Value]) -> bool,
    ) -> Res<bool> {
        let mut base = base.iter().filter(|e| e.hash >= from).peekable();
        let mut over = overlay.iter().peekable();
        loop {
            let take_base = match (base.peek(), over.peek()) {
                (None, None) => return Ok(true),
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some(e), Some(o)) => (e.hash, e.key) <= (o.0, o.1),
            };
            let (key, stored, delta) = if take_base {
                let e = base.next().unwrap();
                let d = over.next_if(|o| o.1 == e.key).map(|o| &o.2);
                (e.key, Some(e.set.clone()), d)
            } else {
                let o = over.next().unwrap();
                (o.1, None, Some(&o.2))
            };
            let have = match stored {
                Some(set) if !delta.is_some_and(|d| d.cleared) => self.values(set)?,
                _ => Vec::new(),
            };
            let values = match delta {
                Some(d) => d.resolve(&have),
                None => have,
            };
            if !values.is_empty() && !f(&key, &values) {
                return Ok(false);
            }
        }
    }

    /// The key's delta over the root, all overlay layers composed.
    fn delta(&self, key: &Key) -> Res<Option<Delta>> {
        self.overlay.delta(key, &self.log())
    }

    fn values(&self, set: Set) -> Res<Vec<Value>> {
        match set {
            Set::One(v) => Ok(vec![v]),
            Set::Few(vs) => Ok(vs.into_vec()),
            Set::Extent(x) => extents::read(&*self.map, x.offset, x.count, x.crc),
        }
    }

    fn first(&self, key: &Key) -> Res<Option<Value>> {
        let h = key_hash(key);
        self.warm(h);
        let Some(d) = self.delta(key)? else {
            return Ok(self.base(h, key)?.map(|s| s.first()));
        };
        if let Some(v) = d.adds.first() {
            return Ok(Some(v));
        }
        if d.cleared {
            return Ok(None);
        }
        match self.base(h, key)? {
            None => Ok(None),
            Some(s) if !d.dels.contains(&s.first()) => Ok(Some(s.first())),
            Some(s) => Ok(self.values(s)?.into_iter().find(|v| !d.dels.contains(v))),
        }
    }

    fn all(&self, key: &Key) -> Res<Vec<Value>> {
        let h = key_hash(key);
        self.warm(h);
        let d = self.delta(key)?;
        let base = match (&d, self.base(h, key)?) {
            (Some(d), _) if d.cleared => Vec::new(),
            (_, Some(s)) => self.values(s)?,
            (_, None) => Vec::new(),
        };
        Ok(match d {
            Some(d) => d.resolve(&base),
            None => base,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Directory items become page numbers and back; an item that is not a page's offset, or
    /// lies past what four bytes of page number reach, is corruption, not a wrong page.
    #[test]
    fn directory_leaves_hold_page_numbers() {
        let page = PAGE as u64;
        let top = u64::from(u32::MAX) * page;
        let leaf = Leaf::new((page, 1), &[0, page, 7 * page, top]).unwrap();
        assert_eq!(leaf.pages, [0, 1, 7, u32::MAX]);
        for bad in [page + 8, top + page, u64::MAX] {
            match Leaf::new((page, 1), &[0, bad]) {
                Err(Fault::Fail(e)) => assert!(e.to_string().contains(&bad.to_string()), "{e}"),
                _ => panic!("item {bad} accepted"),
            }
        }
    }
}
