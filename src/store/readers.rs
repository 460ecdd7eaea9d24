//! The reader table: a small shared-memory file next to the data file (`<path>.readers`) where
//! each reader announces the root epochs it holds views of, so the writer reuses freed
//! space only once no live reader can still be reading it (LMDB keeps its reader table in
//! `lock.mdb` the same way).
//!
//! Layout (all little-endian): a 64-byte header — magic `"HDREADR1"`, slot count u32 — then
//! `SLOTS` slots of 64 bytes (one cache line each): pin u64 (0 = pins nothing, else root
//! epoch + 1), pid u32. A slot belongs to whoever holds an OFD write lock on its 64 bytes; the lock
//! dies with its owner, so the writer ignores (and clears) pins whose slot nobody holds. The
//! file holds no data: deleting it while no process has the data file open loses nothing.
//!
//! When the table cannot be opened for writing (a read-only directory or file system) readers
//! run without pins and rely on validation and retry alone.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::{Error, Result};

const MAGIC: &[u8; 8] = b"HDREADR1";
const SLOT: usize = 64;
/// Roots that readers can pin at once; a root loaded while all are taken is read unpinned.
pub const SLOTS: usize = 1023;
const BYTES: usize = SLOT * (SLOTS + 1);

pub struct ReaderTable {
    file: File,
    base: NonNull<u8>,
    path: PathBuf,
    /// Slots this table's descriptor holds (OFD locks do not conflict within one descriptor).
    claimed: Mutex<Vec<bool>>,
}

// SAFETY: the mapping is only accessed through atomics (pins) and plain byte copies into slots
// this process owns; it is unmapped once, on drop.
unsafe impl Send for ReaderTable {}
// SAFETY: as above.
unsafe impl Sync for ReaderTable {}

/// A claimed slot: one pinned root of a reader. Released (pin cleared, lock dropped) on drop.
pub struct Slot {
    table: Arc<ReaderTable>,
    idx: usize,
}

/// The table's path for the data file at `path`.
pub fn table_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".readers");
    PathBuf::from(p)
}

impl ReaderTable {
    /// Opens (creating it if needed) the table of the data file at `path`; `None` when it cannot
    /// be written here (permissions, read-only file system) or is not a reader table.
    pub fn open(path: &Path) -> Result<Option<Arc<ReaderTable>>> {
        let path = table_path(path);
        let file = match OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o666)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if unusable(&e) => return Ok(None),
            Err(e) => return Err(Error::io("open", &path, e)),
        };
        let len = file
            .metadata()
            .map_err(|e| Error::io("fstat", &path, e))?
            .len();
        if len < BYTES as u64 {
            // Concurrent creators all extend to the same size; zeros are a valid empty table.
            if let Err(e) = file.set_len(BYTES as u64) {
                return if unusable(&e) {
                    Ok(None)
                } else {
                    Err(Error::io("ftruncate", &path, e))
                };
            }
        }
        let base = map(&file, &path)?;
        let t = ReaderTable {
            file,
            base,
            path,
            claimed: Mutex::new(vec![false; SLOTS]),
        };
        if !t.stamp() {
            return Ok(None);
        }
        Ok(Some(Arc::new(t)))
    }

    /// Writes the header of a new table; false when the file is something else.
    fn stamp(&self) -> bool {
        let mut hdr = [0u8; 12];
        hdr[..8].copy_from_slice(MAGIC);
        hdr[8..].copy_from_slice(&(SLOTS as u32).to_le_bytes());
        let word = self.word(0);
        let magic = u64::from_le_bytes(*MAGIC);
        match word.compare_exchange(0, magic, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => {
                self.word(1).store(SLOTS as u64, Ordering::SeqCst);
                true
            }
            Err(found) => found == magic,
        }
    }

    /// The 8-byte word `i` of the mapping.
    fn word(&self, i: usize) -> &AtomicU64 {
        debug_assert!(i < BYTES / 8);
        // SAFETY: the mapping is BYTES long, page-aligned and lives as long as `self`; word `i`
        // is in bounds and 8-aligned, and every access to shared words is atomic.
        unsafe { &*self.base.as_ptr().add(8 * i).cast::<AtomicU64>() }
    }

    fn pin_word(&self, idx: usize) -> &AtomicU64 {
        self.word((idx + 1) * SLOT / 8)
    }

    /// Claims a free slot; `None` when all are taken.
    pub fn claim(self: &Arc<Self>) -> Option<Slot> {
        let mut claimed = self.claimed.lock();
        let start = std::process::id() as usize % SLOTS;
        for k in 0..SLOTS {
            let idx = (start + k) % SLOTS;
            if claimed[idx] || lock_slot(&self.file, idx, libc::F_WRLCK).is_err() {
                continue;
            }
            claimed[idx] = true;
            self.pin_word(idx).store(0, Ordering::SeqCst);
            self.word((idx + 1) * SLOT / 8 + 1)
                .store(std::process::id() as u64, Ordering::Relaxed);
            return Some(Slot {
                table: self.clone(),
                idx,
            });
        }
        None
    }

    /// The oldest root epoch a live reader is reading under, if any. Pins of readers that died
    /// (their slot lock is gone) are cleared. For the writer's table, which claims no slots:
    /// OFD locks of this very descriptor do not show as held, so its own pins would be cleared.
    pub fn oldest(&self) -> Option<u64> {
        let mut oldest: Option<u64> = None;
        for idx in 0..SLOTS {
            let w = self.pin_word(idx);
            let pin = w.load(Ordering::SeqCst);
            if pin == 0 {
                continue;
            }
            if !held(&self.file, idx) {
                let _ = w.compare_exchange(pin, 0, Ordering::SeqCst, Ordering::SeqCst);
                continue;
            }
            oldest = Some(oldest.map_or(pin - 1, |o| o.min(pin - 1)));
        }
        oldest
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ReaderTable {
    fn drop(&mut self) {
        // SAFETY: `base` came from a successful mmap of BYTES bytes and is unmapped only here;
        // no `Slot` outlives the table (each holds an Arc to it).
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), BYTES);
        }
    }
}

impl Slot {
    /// Announces that its owner reads under root `epoch` (or a later one) from now on.
    #[inline]
    pub fn pin(&self, epoch: u64) {
        self.table
            .pin_word(self.idx)
            .store(epoch + 1, Ordering::SeqCst);
    }

    #[inline]
    pub fn unpin(&self) {
        self.table.pin_word(self.idx).store(0, Ordering::Release);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.unpin();
        let _ = lock_slot(&self.table.file, self.idx, libc::F_UNLCK);
        self.table.claimed.lock()[self.idx] = false;
    }
}

fn unusable(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::EROFS)
    )
}

fn map(file: &File, path: &Path) -> Result<NonNull<u8>> {
    // SAFETY: a fresh shared read-write mapping chosen by the kernel (addr null) of a file we
    // just made at least BYTES long; no existing memory is affected.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            BYTES,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(Error::io("mmap", path, io::Error::last_os_error()));
    }
    NonNull::new(p.cast()).ok_or_else(|| Error::io("mmap", path, io::Error::other("null map")))
}

fn slot_lock(idx: usize, kind: libc::c_int) -> libc::flock {
    // SAFETY: `flock` is plain old data; all-zero is a valid value and OFD locks require l_pid 0.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = ((idx + 1) * SLOT) as libc::off_t;
    fl.l_len = SLOT as libc::off_t;
    fl
}

fn lock_slot(file: &File, idx: usize, kind: libc::c_int) -> io::Result<()> {
    let mut fl = slot_lock(idx, kind);
    loop {
        // SAFETY: the descriptor is open for the lifetime of `file`; `fl` is a valid flock.
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &mut fl) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Whether some open file description (other than `file`'s) holds slot `idx`.
fn held(file: &File, idx: usize) -> bool {
    let mut fl = slot_lock(idx, libc::F_WRLCK);
    // SAFETY: as in `lock_slot`; F_OFD_GETLK only fills `fl`.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) };
    // On error assume a live reader: holding space back is safe, reusing it might not be.
    rc != 0 || fl.l_type != libc::F_UNLCK as libc::c_short
}
