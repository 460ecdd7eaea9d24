//! The reader table: a small file next to the data file (`<path>.readers`) where each reader
//! announces the root epochs it holds views of, so the writer reuses freed space only once no
//! live reader can still be reading it (LMDB keeps its reader table in `lock.mdb` the same way).
//!
//! Layout (all little-endian): a 64-byte header — magic `"HDREADR1"`, slot count u32 — then
//! `SLOTS` slots of 64 bytes: pin u64 (0 = pins nothing, else root epoch + 1), pid u32. A slot
//! belongs to whoever holds an OFD write lock on its 64 bytes; the lock dies with its owner, so
//! the writer ignores (and clears) pins whose slot nobody holds. The file holds no data:
//! deleting it while no process has the data file open loses nothing.
//!
//! The table is read and written with `pread`/`pwrite`, never through a mapping: a store into a
//! shared mapping of a file on a full disk (or one another process shortened) kills the
//! process with SIGBUS, where a `pwrite` returns an error. A pin is written when a reader moves
//! to a new root, and the writer reads the table before it reuses space: both rare next to
//! lookups, which never touch it. The table's blocks are allocated when it is created
//! (`posix_fallocate`), so pins never need new disk space.
//!
//! When the table cannot be opened or allocated for writing (a read-only directory or file
//! system, a full disk) readers run without pins and rely on validation and retry alone.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
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
    path: PathBuf,
    /// Slots this table's descriptor holds (OFD locks do not conflict within one descriptor).
    claimed: Mutex<Vec<bool>>,
}

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

fn pin_at(idx: usize) -> u64 {
    ((idx + 1) * SLOT) as u64
}

impl ReaderTable {
    /// Opens (creating it if needed) the table of the data file at `path`; `None` when it
    /// cannot be written here (permissions, read-only file system, no space) or is not a
    /// reader table.
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
        // Concurrent creators all allocate the same size; zeros are a valid empty table.
        // SAFETY: a valid descriptor for the call; posix_fallocate reads no memory of ours.
        let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, BYTES as libc::off_t) };
        if rc != 0 {
            let e = io::Error::from_raw_os_error(rc);
            return match unusable(&e) {
                true => Ok(None),
                false => Err(Error::io("posix_fallocate", &path, e)),
            };
        }
        let t = ReaderTable {
            file,
            path,
            claimed: Mutex::new(vec![false; SLOTS]),
        };
        match t.stamp() {
            Ok(true) => Ok(Some(Arc::new(t))),
            Ok(false) => Ok(None),
            Err(e) if unusable(&e) => Ok(None),
            Err(e) => Err(Error::io("reader table", &t.path, e)),
        }
    }

    /// Writes the header of a new table; false when the file is something else.
    fn stamp(&self) -> io::Result<bool> {
        let mut want = [0u8; 12];
        want[..8].copy_from_slice(MAGIC);
        want[8..].copy_from_slice(&(SLOTS as u32).to_le_bytes());
        let mut hdr = [0u8; 12];
        self.file.read_exact_at(&mut hdr, 0)?;
        if hdr == [0; 12] {
            // Two creators write the same bytes.
            self.file.write_all_at(&want, 0)?;
            self.file.read_exact_at(&mut hdr, 0)?;
        }
        Ok(hdr == want)
    }

    fn write_pin(&self, idx: usize, pin: u64) -> io::Result<()> {
        self.file.write_all_at(&pin.to_le_bytes(), pin_at(idx))
    }

    /// Claims a free slot; `None` when all are taken (or the table cannot be written).
    pub fn claim(self: &Arc<Self>) -> Option<Slot> {
        let mut claimed = self.claimed.lock();
        let start = std::process::id() as usize % SLOTS;
        for k in 0..SLOTS {
            let idx = (start + k) % SLOTS;
            if claimed[idx] || lock_slot(&self.file, idx, libc::F_WRLCK).is_err() {
                continue;
            }
            let mut slot = [0u8; 12];
            slot[8..].copy_from_slice(&std::process::id().to_le_bytes());
            if self.file.write_all_at(&slot, pin_at(idx)).is_err() {
                let _ = lock_slot(&self.file, idx, libc::F_UNLCK);
                return None;
            }
            claimed[idx] = true;
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
    /// A table that cannot be read counts as pinning everything (epoch 0): holding space back
    /// is safe, reusing it might not be.
    pub fn oldest(&self) -> Option<u64> {
        let mut all = vec![0u8; BYTES];
        if self.file.read_exact_at(&mut all, 0).is_err() {
            return Some(0);
        }
        let mut oldest: Option<u64> = None;
        for idx in 0..SLOTS {
            let at = pin_at(idx) as usize;
            let pin = u64::from_le_bytes(all[at..at + 8].try_into().expect("8 bytes"));
            if pin == 0 {
                continue;
            }
            if !held(&self.file, idx) {
                let _ = self.write_pin(idx, 0);
                continue;
            }
            oldest = Some(oldest.map_or(pin - 1, |o| o.min(pin - 1)));
        }
        oldest
    }

    #[cfg(any(test, feature = "testing"))]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Slot {
    /// Announces that its owner reads under root `epoch` (or a later one) from now on. A pin
    /// that cannot be written leaves the slot pinning its earlier root or nothing; `false`
    /// then, and the caller must read as an unpinned reader does.
    pub fn pin(&self, epoch: u64) -> bool {
        self.table.write_pin(self.idx, epoch + 1).is_ok()
    }

    pub fn unpin(&self) {
        let _ = self.table.write_pin(self.idx, 0);
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
        Some(libc::EACCES)
            | Some(libc::EPERM)
            | Some(libc::EROFS)
            | Some(libc::ENOSPC)
            | Some(libc::EDQUOT)
            | Some(libc::EOPNOTSUPP)
    )
}

fn slot_lock(idx: usize, kind: libc::c_int) -> libc::flock {
    // SAFETY: `flock` is plain old data; all-zero is a valid value and OFD locks require l_pid 0.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = pin_at(idx) as libc::off_t;
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
