//! The writer's and the readers' view of one hashdir file.
//!
//! HDF5 creates the file (all of its metadata, once) and, at every open, tells us where `/root`
//! and `/data` are; after that, data moves by `pwrite`/`pread` on our own descriptor and by
//! readers' mmap. The file's length never changes after creation, so a reader's mapping never
//! has to grow and a store into it can never land past the end of the file.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::h5::{self, locked, Hid, Layout};
use super::lock::lock_writer;
use super::map::Mmap;
use super::trace;
use super::Positional;
use crate::error::{Error, Result};
use crate::format::layout::{MAX_CAPACITY, MIN_CAPACITY, ROOT_SLOT, SEGMENT};

/// Readers map the file in steps of this many bytes as the data in use grows (a mapping of
/// the whole data area, terabytes of address space, is refused by some tools, valgrind
/// among them).
const MAP_STEP: u64 = 1 << 30;
/// Identity of an open file, independent of the path used to reach it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(file: &File, path: &Path) -> Result<FileId> {
        let m = file.metadata().map_err(|e| Error::io("fstat", path, e))?;
        Ok(FileId {
            dev: m.dev(),
            ino: m.ino(),
        })
    }
}

fn not_found_or_io(op: &'static str, path: &Path, e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::NotFound {
        Error::NotFound {
            path: path.to_path_buf(),
        }
    } else {
        Error::io(op, path, e)
    }
}

fn not_hashdir(path: &Path, reason: impl Into<String>) -> Error {
    Error::NotHashdir {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Opens `path` read-only in HDF5 and checks it is a hashdir file whose inode is `id`;
/// returns where its root slots and data are. The HDF5 file is closed again before returning.
fn inspect(path: &Path, fd: &File, id: FileId) -> Result<Layout> {
    locked(|| {
        let file = h5::open_file(path).map_err(|e| open_failure(path, fd, e))?;
        same_file(&file, id, path)?;
        h5::check_identity(&file).map_err(|reason| not_hashdir(path, reason))?;
        let layout = h5::layout(&file)?;
        file.close()?;
        Ok(layout)
    })
}

/// Start of every HDF5 file we create (we never write a user block).
const HDF5_SIGNATURE: &[u8; 8] = b"\x89HDF\r\n\x1a\n";

/// Without the HDF5 signature the file is not ours. With it, the open may have failed for a
/// passing reason (e.g. a writer clearing a crashed writer's flags right now), so the HDF5
/// error is kept for the caller to see or retry.
fn open_failure(path: &Path, fd: &File, e: Error) -> Error {
    let mut head = [0u8; 8];
    match fd.read_exact_at(&mut head, 0) {
        Ok(()) if &head == HDF5_SIGNATURE => e,
        _ => not_hashdir(path, "not an HDF5 file"),
    }
}

/// Guards against the path being replaced between our `open` and HDF5's.
fn same_file(file: &Hid, id: FileId, path: &Path) -> Result<()> {
    let (dev, ino) = h5::vfd_inode(file)?;
    if (FileId { dev, ino }) == id {
        return Ok(());
    }
    let e = io::Error::other("the path was replaced while it was being opened");
    Err(Error::io("open", path, e))
}

// ---------------------------------------------------------------------------------------------
// Atomic creation

/// Distinguishes temp files of concurrent creations within one process.
static CREATE_SEQ: AtomicU64 = AtomicU64::new(0);

/// Removes a temp file unless it was consumed; a crash leaves it for an operator, never a
/// half-made file at the real path.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// `<path>.<what>.<pid>.<seq>` beside `path`.
fn temp_path(path: &Path, what: &str) -> Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| Error::InvalidArgument(format!("{} has no file name", path.display())))?;
    let mut tmp = name.to_os_string();
    let seq = CREATE_SEQ.fetch_add(1, Ordering::Relaxed);
    tmp.push(format!(".{what}.{}.{seq}", std::process::id()));
    Ok(parent_dir(path).join(tmp))
}

/// Builds the file completely under a temporary name, makes it durable, then links it into
/// place. Returns normally if another process won the race (its file is used instead).
fn create_atomically(path: &Path, create: &Create) -> Result<()> {
    let tmp = TempFile(temp_path(path, "creating")?);
    h5::create_file(&tmp.0, create.capacity, |l| {
        (create.root)(l.data, l.capacity)
    })?;
    sync_path(&tmp.0)?;
    match fs::hard_link(&tmp.0, path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io("link", path, e)),
    }
    drop(tmp);
    sync_path(parent_dir(path))
}

/// A file built under a temporary name beside its destination and linked there once complete:
/// a failed or interrupted build leaves nothing at the destination, and a file already there
/// is never replaced.
pub struct Staged {
    tmp: PathBuf,
    dest: PathBuf,
}

/// The error for a destination that exists.
fn exists(dest: &Path) -> Error {
    Error::io("create", dest, io::Error::from_raw_os_error(libc::EEXIST))
}

impl Staged {
    /// Errors: `InvalidArgument` (an empty path or one without a file name), `Io` with
    /// `EEXIST` when something is at `dest` already.
    pub fn new(dest: &Path) -> Result<Staged> {
        if dest.as_os_str().is_empty() {
            return Err(Error::InvalidArgument(
                "the destination path is empty".into(),
            ));
        }
        if dest.symlink_metadata().is_ok() {
            return Err(exists(dest));
        }
        Ok(Staged {
            tmp: temp_path(dest, "copying")?,
            dest: dest.to_path_buf(),
        })
    }

    /// Where to build the file.
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// Removes what was built so far (and the reader table a writer made beside it).
    pub fn discard(&self) {
        let _ = fs::remove_file(&self.tmp);
        let _ = fs::remove_file(super::table_path(&self.tmp));
    }

    /// Links the built file (closed, durable) to the destination and makes the link durable.
    pub fn publish(self) -> Result<()> {
        match fs::hard_link(&self.tmp, &self.dest) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(exists(&self.dest)),
            Err(e) => return Err(Error::io("link", &self.dest, e)),
        }
        self.discard();
        sync_path(parent_dir(&self.dest))
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        self.discard();
    }
}

fn sync_path(path: &Path) -> Result<()> {
    let f = File::open(path).map_err(|e| Error::io("open", path, e))?;
    let synced = match f.metadata().is_ok_and(|m| m.is_dir()) {
        true => trace::sync_dir(path, || f.sync_all()),
        false => trace::sync(path, || f.sync_all()),
    };
    synced.map_err(|e| Error::io("fsync", path, e))
}

// ---------------------------------------------------------------------------------------------
// Writer

/// How to create a missing file: the size of `/data`, and the first root slot given the data
/// area's file offset and size.
pub struct Create<'a> {
    pub capacity: u64,
    pub root: &'a dyn Fn(u64, u64) -> Vec<u8>,
}

/// The single writer's handle on a hashdir file. Holds the writer lock until dropped. All I/O
/// is positional on one descriptor, so the handle is shared by the writer's threads.
pub struct WriterFile {
    path: PathBuf,
    layout: Layout,
    /// Our descriptor for raw I/O; it carries the writer lock.
    fd: File,
    /// Held through each fdatasync; the errno of the first that failed.
    synced: Mutex<Option<i32>>,
}

impl WriterFile {
    /// Opens `path` for the single writer, creating it first (atomically) if it does not exist
    /// and `create` is given.
    ///
    /// Errors: `NotFound` (missing, no `create`), `Locked` (another writer, in this process or
    /// another), `NotHashdir` (the file is left untouched), `Corrupt` (our attributes but a
    /// broken layout), `InvalidArgument` (a capacity out of range), `Io`/`Hdf5`.
    pub fn open(path: &Path, create: Option<&Create>) -> Result<WriterFile> {
        if let Some(c) = create {
            check_capacity(c.capacity)?;
        }
        let fd = match open_rw(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => match create {
                Some(c) => {
                    create_atomically(path, c)?;
                    open_rw(path)
                }
                None => Err(e),
            },
            other => other,
        }
        .map_err(|e| not_found_or_io("open", path, e))?;
        lock_writer(&fd, path)?;
        let id = FileId::of(&fd, path)?;
        // Validation is read-only, so a foreign file is never modified.
        let layout = inspect(path, &fd, id)?;
        Ok(WriterFile {
            path: path.to_path_buf(),
            layout,
            fd,
            synced: Mutex::new(None),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// File offset of root slot 0; slot 1 is at `+ROOT_SLOT`. Page-aligned.
    pub fn root_offset(&self) -> u64 {
        self.layout.root
    }

    /// File offset of `/data`. Page-aligned.
    pub fn data_offset(&self) -> u64 {
        self.layout.data
    }

    /// Bytes of `/data`.
    pub fn capacity(&self) -> u64 {
        self.layout.capacity
    }

    /// fdatasync: makes every write before it durable. A failure means some of them may be
    /// lost (and the kernel may not report it again): the caller must not go on as if they
    /// were durable.
    ///
    /// One at a time, and none succeeds after one failed: the kernel reports a failed
    /// writeback to one fdatasync of the file only, so a sync that ran beside a failed one, or
    /// after it, could return Ok for writes the failure lost.
    pub fn sync(&self) -> Result<()> {
        let mut failed = self.synced.lock();
        if let Some(errno) = *failed {
            let e = io::Error::from_raw_os_error(errno);
            return Err(Error::io(
                "fdatasync (an earlier one failed)",
                &self.path,
                e,
            ));
        }
        let synced = trace::sync(&self.path, || self.fd.sync_data());
        if let Err(e) = &synced {
            *failed = Some(e.raw_os_error().unwrap_or(libc::EIO));
        }
        synced.map_err(|e| Error::io("fdatasync", &self.path, e))
    }

    pub fn size(&self) -> Result<FileSize> {
        FileSize::of(&self.fd, &self.path)
    }

    /// Gives the blocks of `[off, off + len)` back to the filesystem; the range then reads as
    /// zeros and the file's length is unchanged. `false` where the filesystem cannot punch
    /// holes (the bytes then stay as they were).
    pub fn punch(&self, off: u64, len: u64) -> Result<bool> {
        let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
        let punched = trace::punch(&self.path, off, len, || {
            // SAFETY: a valid descriptor for the call; fallocate reads no memory of ours.
            let rc = unsafe {
                libc::fallocate(
                    self.fd.as_raw_fd(),
                    mode,
                    off as libc::off_t,
                    len as libc::off_t,
                )
            };
            if rc == 0 {
                return Ok(true);
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => Ok(false),
                _ => Err(e),
            }
        });
        punched.map_err(|e| Error::io("fallocate(PUNCH_HOLE)", &self.path, e))
    }

    /// Starts writing `[off, off + len)` back to the device without waiting for it: data
    /// written in bulk goes out as it is written, so the next `fdatasync` waits for little
    /// (only the sync makes anything durable). Failure only loses the hint.
    pub fn write_behind(&self, off: u64, len: u64) {
        // SAFETY: a valid descriptor for the call; sync_file_range reads no memory of ours.
        unsafe {
            libc::sync_file_range(
                self.fd.as_raw_fd(),
                off as libc::off64_t,
                len as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
    }
}

/// The filesystem block a punch gives back whole.
const BLOCK: u64 = 4096;

fn check_capacity(capacity: u64) -> Result<()> {
    if !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity) || !capacity.is_multiple_of(SEGMENT) {
        return Err(Error::InvalidArgument(format!(
            "capacity {capacity} must be a multiple of {SEGMENT} between {MIN_CAPACITY} and \
             {MAX_CAPACITY} bytes"
        )));
    }
    Ok(())
}

impl Positional for WriterFile {
    fn write_at(&self, off: u64, data: &[u8]) -> Result<()> {
        write_at(&self.fd, &self.path, off, data)
    }

    #[cfg(any(test, feature = "testing"))]
    fn write_vectored_at(&self, off: u64, bufs: &[&[u8]]) -> Result<()> {
        write_vectored_at(&self.fd, &self.path, off, bufs)
    }

    fn read_at(&self, off: u64, buf: &mut [u8]) -> Result<()> {
        read_at(&self.fd, &self.path, off, buf)
    }

    fn written(&self, off: u64, len: u64) {
        self.write_behind(off, len);
    }

    fn unused(&self, off: u64, len: u64) {
        // Whole blocks only; a filesystem without hole punching keeps the bytes.
        let start = off.next_multiple_of(BLOCK);
        let end = (off + len) / BLOCK * BLOCK;
        if end > start {
            let _ = self.punch(start, end - start);
        }
    }

    fn data_end(&self) -> u64 {
        self.layout.data + self.layout.capacity
    }

    fn will_need(&self, off: u64, len: u64) {
        // SAFETY: a valid descriptor for the call; posix_fadvise only advises the kernel.
        // Failure only loses the hint.
        unsafe {
            libc::posix_fadvise(
                self.fd.as_raw_fd(),
                off as libc::off_t,
                len as libc::off_t,
                libc::POSIX_FADV_WILLNEED,
            );
        }
    }
}

fn write_at(fd: &File, path: &Path, off: u64, data: &[u8]) -> Result<()> {
    trace::write(path, off, &[data], || {
        fd.write_all_at(data, off).map(|()| data.len())
    })
    .map(drop)
    .map_err(|e| Error::io("pwrite", path, e))
}

#[cfg(any(test, feature = "testing"))]
/// Buffers one `pwritev` takes (Linux's `IOV_MAX`).
const IOV_MAX: usize = 1024;

#[cfg(any(test, feature = "testing"))]
fn write_vectored_at(fd: &File, path: &Path, mut off: u64, bufs: &[&[u8]]) -> Result<()> {
    let mut left: Vec<&[u8]> = bufs.iter().copied().filter(|b| !b.is_empty()).collect();
    let mut first = 0;
    while first < left.len() {
        let iov: Vec<libc::iovec> = left[first..]
            .iter()
            .take(IOV_MAX)
            .map(|b| libc::iovec {
                iov_base: b.as_ptr() as *mut libc::c_void,
                iov_len: b.len(),
            })
            .collect();
        let written = trace::write(path, off, &left[first..], || {
            // SAFETY: each iovec points at a slice of `left`, alive for the call, with its
            // length; pwritev only reads through them, and `fd` is an open descriptor we own.
            let n = unsafe {
                libc::pwritev(fd.as_raw_fd(), iov.as_ptr(), iov.len() as i32, off as i64)
            };
            match n {
                n if n > 0 => Ok(n as usize),
                0 => Err(io::Error::from(io::ErrorKind::WriteZero)),
                _ => Err(io::Error::last_os_error()),
            }
        });
        let mut n = match written {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("pwritev", path, e)),
        };
        off += n as u64;
        while n > 0 {
            let len = left[first].len();
            if n < len {
                left[first] = &left[first][n..];
                break;
            }
            n -= len;
            first += 1;
        }
    }
    Ok(())
}

fn read_at(fd: &File, path: &Path, off: u64, buf: &mut [u8]) -> Result<()> {
    fd.read_exact_at(buf, off).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            let detail = format!("{} bytes reach past the end of the file", buf.len());
            Error::corrupt("file range", off, detail)
        } else {
            Error::io("pread", path, e)
        }
    })
}

impl std::fmt::Debug for WriterFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterFile")
            .field("path", &self.path)
            .field("layout", &self.layout)
            .finish_non_exhaustive()
    }
}

fn open_rw(path: &Path) -> io::Result<File> {
    // std opens with O_CLOEXEC.
    OpenOptions::new().read(true).write(true).open(path)
}

// ---------------------------------------------------------------------------------------------
// Reader

/// A file's length, and the bytes the filesystem holds for it (less where it has holes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileSize {
    pub len: u64,
    pub allocated: u64,
}

impl FileSize {
    fn of(fd: &File, path: &Path) -> Result<FileSize> {
        let m = fd.metadata().map_err(|e| Error::io("fstat", path, e))?;
        Ok(FileSize {
            len: m.len(),
            allocated: m.blocks() * 512,
        })
    }
}

/// A reader's handle: where the root slots and data are, and a descriptor to map. No HDF5
/// state after open.
pub struct ReadFile {
    path: PathBuf,
    layout: Layout,
    fd: File,
    /// The mapping of the whole file, made on first use.
    map: Mutex<Option<Arc<Mmap>>>,
}

impl ReadFile {
    /// Opens a reader: the file is opened in HDF5 (read-only) just long enough to validate it
    /// and learn where its root slots and data are. Errors: `NotFound`, `NotHashdir`,
    /// `Corrupt`, `Io`/`Hdf5`.
    pub fn open(path: &Path) -> Result<ReadFile> {
        let fd = File::open(path).map_err(|e| not_found_or_io("open", path, e))?;
        let id = FileId::of(&fd, path)?;
        let layout = inspect(path, &fd, id)?;
        Ok(ReadFile {
            path: path.to_path_buf(),
            layout,
            fd,
            map: Mutex::new(None),
        })
    }

    pub fn root_offset(&self) -> u64 {
        self.layout.root
    }

    #[cfg(any(test, feature = "testing"))]
    pub fn data_offset(&self) -> u64 {
        self.layout.data
    }

    /// A read-only shared mapping of the file from its start that covers at least `need`
    /// bytes (and the root slots), clamped to the end of the data area. The same mapping is
    /// returned while it covers what is asked; a larger one is made (with room to spare)
    /// when the data in use grows past it, and older mappings stay valid for whoever holds
    /// them. A file shorter than its data area was cut by someone else: refused, since reading
    /// the mapping past the end of the file would fault.
    pub fn map(&self, need: u64) -> Result<Arc<Mmap>> {
        let end = self.layout.data + self.layout.capacity;
        let need = need.max(self.layout.root + 2 * ROOT_SLOT as u64).min(end);
        let mut cached = self.map.lock();
        if let Some(m) = cached.as_ref().filter(|m| m.len() as u64 >= need) {
            return Ok(Arc::clone(m));
        }
        let len = self
            .fd
            .metadata()
            .map_err(|e| Error::io("fstat", &self.path, e))?
            .len();
        if len < end {
            return Err(Error::corrupt(
                "file length",
                len,
                format!("the data area ends at {end}: the file was truncated"),
            ));
        }
        let want = need.next_multiple_of(MAP_STEP).min(end);
        let m = Arc::new(Mmap::map(&self.fd, want, &self.path)?);
        *cached = Some(Arc::clone(&m));
        Ok(m)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn size(&self) -> Result<FileSize> {
        FileSize::of(&self.fd, &self.path)
    }
}

impl std::fmt::Debug for ReadFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadFile")
            .field("path", &self.path)
            .field("layout", &self.layout)
            .finish_non_exhaustive()
    }
}

/// Writes the file's dirty pages out and drops all its pages from the OS page cache, so the
/// next reads come from the device (benchmarks' cold mode). Pages mapped by a process stay.
pub fn drop_cache(path: &Path) -> Result<()> {
    let fd = File::open(path).map_err(|e| not_found_or_io("open", path, e))?;
    fd.sync_data()
        .map_err(|e| Error::io("fdatasync", path, e))?;
    // SAFETY: a valid descriptor for the call; posix_fadvise only advises the kernel.
    let rc = unsafe { libc::posix_fadvise(fd.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if rc != 0 {
        return Err(Error::io(
            "posix_fadvise",
            path,
            io::Error::from_raw_os_error(rc),
        ));
    }
    Ok(())
}
