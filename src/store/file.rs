//! The writer's and the readers' view of one hashdir file.
//!
//! HDF5 is used at open, creation and growth only; data moves by `pwrite`/`pread` on our own
//! descriptor and by readers' mmap, at chunk addresses learnt once.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::h5::{self, locked, Hid, Mode, MAX_CHUNKS};
use super::lock::lock_writer;
use super::map::Mmap;
use super::trace;
use super::{Ds, Positional};
use crate::error::{Error, Result};
use crate::format::layout::ROOT_SLOT;

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

/// Files this process has open for writing, with their root offsets.
///
/// HDF5 refuses to open a file twice in one process with different SWMR flags, so a reader in
/// the writer's process takes the root offset from here instead of opening the file in HDF5.
/// It is only touched under the HDF5 lock, which makes "writer opened the file in HDF5" and
/// "writer is registered" one atomic step as far as a reader's `H5Fopen` is concerned.
static WRITERS: Mutex<Vec<(FileId, u64)>> = Mutex::new(Vec::new());

fn registered_root(id: FileId) -> Option<u64> {
    WRITERS
        .lock()
        .iter()
        .find(|(f, _)| *f == id)
        .map(|&(_, root)| root)
}

fn register(id: FileId, root: u64) {
    WRITERS.lock().push((id, root));
}

fn unregister(id: FileId) {
    WRITERS.lock().retain(|(f, _)| *f != id);
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

/// Opens `path` read-only in HDF5 (SWMR read: no writes, works beside a live or crashed
/// writer) and checks it is a hashdir file whose inode is `id`; returns the /root offset.
/// The HDF5 file is closed again before returning.
fn inspect(path: &Path, fd: &File, id: FileId) -> Result<u64> {
    locked(|| {
        let file = h5::open_file(path, Mode::Inspect).map_err(|e| open_failure(path, fd, e))?;
        same_file(&file, id, path)?;
        h5::check_identity(&file).map_err(|reason| not_hashdir(path, reason))?;
        let root = h5::root_offset(&file)?;
        file.close()?;
        Ok(root)
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

fn temp_path(path: &Path) -> Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| Error::InvalidArgument(format!("{} has no file name", path.display())))?;
    let mut tmp = name.to_os_string();
    let seq = CREATE_SEQ.fetch_add(1, Ordering::Relaxed);
    tmp.push(format!(".creating.{}.{seq}", std::process::id()));
    Ok(parent_dir(path).join(tmp))
}

/// Builds the file completely under a temporary name, makes it durable, then links it into
/// place. Returns normally if another process won the race (its file is used instead).
fn create_atomically(path: &Path, root: &[u8]) -> Result<()> {
    let tmp = TempFile(temp_path(path)?);
    h5::create_file(&tmp.0, root)?;
    sync_path(&tmp.0)?;
    match fs::hard_link(&tmp.0, path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io("link", path, e)),
    }
    drop(tmp);
    sync_path(parent_dir(path))
}

fn sync_path(path: &Path) -> Result<()> {
    let f = File::open(path).map_err(|e| Error::io("open", path, e))?;
    f.sync_all().map_err(|e| Error::io("fsync", path, e))
}

// ---------------------------------------------------------------------------------------------
// Writer

/// The writer's HDF5 handles: chunked datasets by slot, then the file (closed last).
struct Container {
    datasets: Vec<Hid>,
    file: Hid,
}

impl Container {
    fn close(self) -> Result<()> {
        let Container { datasets, file } = self;
        let closed: Result<()> = datasets.into_iter().try_for_each(Hid::close);
        // The file close flushes; attempt it even if a dataset close failed.
        let flushed = file.close();
        closed.and(flushed)
    }
}

/// The single writer's handle on a hashdir file. Holds the writer lock until closed.
pub struct WriterFile {
    path: PathBuf,
    id: FileId,
    root_offset: u64,
    /// Chunk addresses by dataset slot, then chunk index.
    chunks: Vec<Vec<u64>>,
    /// End of the furthest chunk: no data the engine addresses lies beyond it.
    data_end: u64,
    /// `None` once closed.
    h5: Option<Container>,
    /// Our descriptor for raw I/O; it carries the writer lock, so it must close last.
    fd: File,
}

impl WriterFile {
    /// Opens `path` for the single writer, creating it first (atomically, with `initial_root`
    /// in root slot 0) if it does not exist and `initial_root` is given.
    ///
    /// Errors: `NotFound` (missing, no `initial_root`), `Locked` (another writer, in this
    /// process or another), `NotHashdir` (the file is left untouched), `Corrupt` (our
    /// attributes but a broken layout), `Io`/`Hdf5`. A crashed writer's status flags are
    /// cleared here, without any manual step.
    pub fn open(path: &Path, initial_root: Option<&[u8]>) -> Result<WriterFile> {
        if let Some(root) = initial_root {
            if root.len() > ROOT_SLOT {
                return Err(Error::InvalidArgument(format!(
                    "initial root of {} bytes exceeds a root slot ({ROOT_SLOT})",
                    root.len()
                )));
            }
        }
        let fd = match open_rw(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => match initial_root {
                Some(root) => {
                    create_atomically(path, root)?;
                    open_rw(path)
                }
                None => Err(e),
            },
            other => other,
        }
        .map_err(|e| not_found_or_io("open", path, e))?;
        lock_writer(&fd, path)?;
        let id = FileId::of(&fd, path)?;
        // One lock hold from HDF5 open to registration: see WRITERS.
        locked(|| Self::open_locked(path, fd, id))
    }

    fn open_locked(path: &Path, fd: File, id: FileId) -> Result<WriterFile> {
        // Validation first, read-only, so a foreign file is never modified.
        inspect(path, &fd, id)?;
        let file = open_swmr_writer(path, &fd)?;
        same_file(&file, id, path)?;
        let root_offset = h5::root_offset(&file)?;
        let mut datasets = Vec::new();
        let mut chunks = Vec::new();
        for ds in Ds::all() {
            let (dset, n) = h5::open_chunked(&file, ds)?;
            chunks.push(h5::chunk_addrs(&dset, ds, n)?);
            datasets.push(dset);
        }
        register(id, root_offset);
        Ok(WriterFile {
            path: path.to_path_buf(),
            id,
            root_offset,
            data_end: data_end(&chunks),
            chunks,
            h5: Some(Container { datasets, file }),
            fd,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// File offset of root slot 0; slot 1 is at `+ROOT_SLOT`. Page-aligned.
    pub fn root_offset(&self) -> u64 {
        self.root_offset
    }

    /// Bytes per chunk of `ds`: `PAGE * PAGES_PER_CHUNK` for pages, `BLOB_CHUNK` otherwise.
    pub fn chunk_bytes(ds: Ds) -> u64 {
        ds.chunk_dims().iter().product()
    }

    /// File address of each chunk of `ds` (index = chunk index). Every address is
    /// page-aligned and stays valid for the life of the file.
    ///
    /// # Panics
    /// On a `Ds::Values` shard number `>= VALUE_SHARDS` (a caller bug).
    pub fn chunks(&self, ds: Ds) -> &[u64] {
        let slot = ds.slot().expect("value shard number out of range");
        &self.chunks[slot]
    }

    /// Extends `ds` to `total_chunks` chunks (no-op if it has that many) and learns the new
    /// chunks' addresses. On return the allocation has reached the OS (survives a process
    /// crash); a later `sync` makes it survive power loss.
    pub fn grow(&mut self, ds: Ds, total_chunks: u64) -> Result<()> {
        let slot = ds
            .slot()
            .ok_or_else(|| Error::InvalidArgument(format!("no dataset {ds:?}")))?;
        let have = self.chunks[slot].len() as u64;
        if total_chunks <= have {
            return Ok(());
        }
        if total_chunks > MAX_CHUNKS {
            return Err(Error::InvalidArgument(format!(
                "{total_chunks} chunks exceed the {MAX_CHUNKS} a dataset can hold"
            )));
        }
        let h5 = self.h5.as_ref().expect("open until close");
        let dset = &h5.datasets[slot];
        let addrs = locked(|| {
            h5::set_extent(dset, ds, total_chunks)?;
            // The new chunks' allocation must reach the OS before the engine writes into them,
            // or HDF5 could hand the same space out again after a crash.
            h5::flush(&h5.file)?;
            h5::chunk_addrs(dset, ds, total_chunks)
        })?;
        check_unmoved(ds, &self.chunks[slot], &addrs)?;
        self.chunks[slot] = addrs;
        self.data_end = data_end(&self.chunks);
        Ok(())
    }

    /// A second descriptor for positional I/O from helper threads, while this handle stays
    /// free for growth. It shares our open file description, so the writer lock is shared,
    /// not taken again, and outlives the helper's descriptor.
    pub fn raw_io(&self) -> Result<RawIo> {
        let fd = self
            .fd
            .try_clone()
            .map_err(|e| Error::io("dup", &self.path, e))?;
        Ok(RawIo {
            fd,
            path: self.path.clone(),
            data_end: self.data_end,
        })
    }

    /// fdatasync: covers HDF5's metadata writes too (same inode).
    pub fn sync(&self) -> Result<()> {
        trace::sync(|| self.fd.sync_data()).map_err(|e| Error::io("fdatasync", &self.path, e))
    }

    pub fn size(&self) -> Result<FileSize> {
        FileSize::of(&self.fd, &self.path)
    }

    /// Gives the blocks of `[off, off + len)` back to the filesystem; the range then reads as
    /// zeros and the file's length is unchanged. `false` where the filesystem cannot punch
    /// holes (the bytes then stay as they were).
    pub fn punch(&self, off: u64, len: u64) -> Result<bool> {
        let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
        let punched = trace::punch(off, len, || {
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

    /// Flushes and closes HDF5, unregisters, releases the lock. Does not fsync. Drop does the
    /// same, ignoring errors.
    pub fn close(mut self) -> Result<()> {
        self.shutdown()
    }

    /// Closes HDF5 and unregisters in one lock hold (so a reader in this process either sees
    /// the registration or can open the file itself); idempotent.
    fn shutdown(&mut self) -> Result<()> {
        let Some(h5) = self.h5.take() else {
            return Ok(());
        };
        locked(|| {
            let closed = h5.close();
            unregister(self.id);
            closed
        })
    }
}

/// Positional reads and writes on a duplicate of the writer's descriptor (see
/// [`WriterFile::raw_io`]). Reads are bounded by the data end when it was made.
pub struct RawIo {
    fd: File,
    path: PathBuf,
    data_end: u64,
}

/// Both handles hold `fd`, `path` and `data_end` (for a `RawIo`, the writer's when it was made).
macro_rules! positional {
    ($t:ty) => {
        impl Positional for $t {
            fn write_at(&self, off: u64, data: &[u8]) -> Result<()> {
                write_at(&self.fd, &self.path, off, data)
            }

            fn write_vectored_at(&self, off: u64, bufs: &[&[u8]]) -> Result<()> {
                write_vectored_at(&self.fd, &self.path, off, bufs)
            }

            fn read_at(&self, off: u64, buf: &mut [u8]) -> Result<()> {
                read_at(&self.fd, &self.path, off, buf)
            }

            fn data_end(&self) -> u64 {
                self.data_end
            }
        }
    };
}

positional!(WriterFile);
positional!(RawIo);

impl RawIo {
    /// Asks the kernel to start reading `[off, off + len)` into the page cache now, so that
    /// reads that follow find it there instead of waiting for the device one at a time.
    pub fn will_need(&self, off: u64, len: u64) -> Result<()> {
        // SAFETY: a valid descriptor for the call; posix_fadvise only advises the kernel.
        let rc = unsafe {
            libc::posix_fadvise(
                self.fd.as_raw_fd(),
                off as libc::off_t,
                len as libc::off_t,
                libc::POSIX_FADV_WILLNEED,
            )
        };
        match rc {
            0 => Ok(()),
            e => Err(Error::io(
                "posix_fadvise",
                &self.path,
                io::Error::from_raw_os_error(e),
            )),
        }
    }
}

fn write_at(fd: &File, path: &Path, off: u64, data: &[u8]) -> Result<()> {
    trace::write(off, &[data], || fd.write_all_at(data, off).map(|()| data.len()))
        .map(drop)
        .map_err(|e| Error::io("pwrite", path, e))
}

/// Buffers one `pwritev` takes (Linux's `IOV_MAX`).
const IOV_MAX: usize = 1024;

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
        let written = trace::write(off, &left[first..], || {
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

impl Drop for WriterFile {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

impl std::fmt::Debug for WriterFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterFile")
            .field("path", &self.path)
            .field("root_offset", &self.root_offset)
            .finish_non_exhaustive()
    }
}

fn open_rw(path: &Path) -> io::Result<File> {
    // std opens with O_CLOEXEC.
    OpenOptions::new().read(true).write(true).open(path)
}

/// Opens for SWMR write; if a crashed writer left its status flags set, clears them the way
/// h5clear does and tries again. Only called while we hold the writer lock, so the flags can
/// only be a dead writer's.
fn open_swmr_writer(path: &Path, fd: &File) -> Result<Hid> {
    let first = match h5::open_file(path, Mode::Write) {
        Ok(file) => return Ok(file),
        Err(e) => e,
    };
    match recover(path, fd).and_then(|()| h5::open_file(path, Mode::Write)) {
        Ok(file) => Ok(file),
        Err(second) => Err(Error::Hdf5 {
            op: "H5Fopen(SWMR write)",
            detail: format!("{first}; after clearing status flags: {second}"),
        }),
    }
}

/// Clears a dead writer's status flags and repairs what its interrupted growth left
/// (see `h5::repair_after_crash`).
fn recover(path: &Path, fd: &File) -> Result<()> {
    let end = locked(|| {
        let file = h5::open_file(path, Mode::Inspect)?;
        let end = h5::allocated_end(&file)?;
        file.close()?;
        Ok::<_, Error>(end)
    })?;
    // What HDF5's own flush would have done next: make the file cover what it allocated.
    let len = fd
        .metadata()
        .map_err(|e| Error::io("fstat", path, e))?
        .len();
    if len < end {
        trace::set_len(end, || fd.set_len(end)).map_err(|e| Error::io("ftruncate", path, e))?;
    }
    let file = h5::open_file(path, Mode::ClearFlags)?;
    h5::repair_after_crash(&file)?;
    file.close()
}

fn data_end(chunks: &[Vec<u64>]) -> u64 {
    Ds::all()
        .zip(chunks)
        .flat_map(|(ds, addrs)| addrs.iter().map(move |a| a + WriterFile::chunk_bytes(ds)))
        .max()
        .unwrap_or(0)
}

/// Unfiltered chunks never move; if one did, every address the engine stored is suspect.
fn check_unmoved(ds: Ds, old: &[u64], new: &[u64]) -> Result<()> {
    match old.iter().zip(new).position(|(a, b)| a != b) {
        None => Ok(()),
        Some(i) => Err(Error::corrupt(
            "chunk index",
            old[i],
            format!("/{} chunk {i} moved to {}", ds.name(), new[i]),
        )),
    }
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

/// A reader's handle: the root offset and a descriptor to map. No HDF5 state after open.
pub struct ReadFile {
    path: PathBuf,
    root_offset: u64,
    fd: File,
    /// The newest mapping; replaced when the file has grown past it.
    map: Mutex<Option<Arc<Mmap>>>,
}

impl ReadFile {
    /// Opens a reader. Inside the writer's process the root offset comes from the writer;
    /// elsewhere the file is opened in HDF5 (SWMR read) just long enough to validate it and
    /// learn that offset. Errors: `NotFound`, `NotHashdir`, `Corrupt`, `Io`/`Hdf5`.
    pub fn open(path: &Path) -> Result<ReadFile> {
        let fd = File::open(path).map_err(|e| not_found_or_io("open", path, e))?;
        let id = FileId::of(&fd, path)?;
        // Under the HDF5 lock so a writer of this process cannot open the file in between.
        let root_offset = locked(|| match registered_root(id) {
            Some(root) => Ok(root),
            None => inspect(path, &fd, id),
        })?;
        Ok(ReadFile {
            path: path.to_path_buf(),
            root_offset,
            fd,
            map: Mutex::new(None),
        })
    }

    pub fn root_offset(&self) -> u64 {
        self.root_offset
    }

    /// A read-only shared mapping of the whole file as it is now. The same mapping is
    /// returned until the file grows; older mappings stay valid for whoever holds them.
    pub fn map(&self) -> Result<Arc<Mmap>> {
        let len = self
            .fd
            .metadata()
            .map_err(|e| Error::io("fstat", &self.path, e))?
            .len();
        let mut cached = self.map.lock();
        if let Some(m) = cached.as_ref().filter(|m| m.len() as u64 >= len) {
            return Ok(Arc::clone(m));
        }
        let m = Arc::new(Mmap::map(&self.fd, len, &self.path)?);
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
            .field("root_offset", &self.root_offset)
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
