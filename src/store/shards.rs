//! The files of a sharded store beside its shards: the manifest and the set log.

use super::trace;
use crate::error::{Error, Result};
use crate::format::shard::{self, Manifest, SetRecord};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

pub const MANIFEST: &str = "hashdir.shards";
const SET_LOG: &str = "sets.log";

/// The file of shard `i`.
pub fn shard_path(dir: &Path, i: u32) -> PathBuf {
    dir.join(format!("shard_{i:03}.h5"))
}

/// Whether `dir` holds nothing but files a store's creation makes: a creation cut short, which
/// may be finished.
pub fn unfinished_store(dir: &Path) -> Result<bool> {
    let entries = fs::read_dir(dir).map_err(|e| Error::io("read directory", dir, e))?;
    for e in entries {
        let e = e.map_err(|e| Error::io("read directory", dir, e))?;
        let name = e.file_name();
        let name = name.to_string_lossy();
        let ours = name.starts_with("shard_")
            || [SET_LOG, ".sets.log.tmp", ".hashdir.shards.tmp"].contains(&&*name);
        if !ours {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Reads and checks the manifest of the store at `dir`.
pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join(MANIFEST);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Error::NotHashdir {
                path: dir.to_owned(),
                reason: format!("a directory without a shard manifest ({MANIFEST})"),
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
            return Err(Error::NotHashdir {
                path: dir.to_owned(),
                reason: "a file, not a sharded store's directory".into(),
            })
        }
        Err(e) => return Err(Error::io("read", path, e)),
    };
    Manifest::decode(&bytes).map_err(|why| Error::corrupt("shard manifest", 0, why))
}

/// Writes the manifest (whole or not at all: a temporary file renamed) and makes it durable.
pub fn write_manifest(dir: &Path, m: &Manifest) -> Result<()> {
    replace(dir, MANIFEST, &m.encode())
}

/// Writes `bytes` to `dir/name` through a temporary file and a rename, durably.
fn replace(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f =
        trace::create(&tmp, || File::create(&tmp)).map_err(|e| Error::io("create", &tmp, e))?;
    trace::write(&tmp, 0, &[bytes], || {
        f.write_all(bytes).map(|()| bytes.len())
    })
    .map_err(|e| Error::io("write", &tmp, e))?;
    trace::sync(&tmp, || f.sync_all()).map_err(|e| Error::io("fsync", &tmp, e))?;
    let path = dir.join(name);
    trace::rename(&tmp, &path, || fs::rename(&tmp, &path))
        .map_err(|e| Error::io("rename", &path, e))?;
    let d = File::open(dir).map_err(|e| Error::io("open", dir, e))?;
    trace::sync_dir(dir, || d.sync_all()).map_err(|e| Error::io("fsync", dir, e))
}

/// The set log: records appended one `write` each (appends of several single-shard writers
/// interleave whole), read back up to the first record that is not whole. Reading (and
/// cutting a torn record) and appending hold an exclusive `flock` on the log: a record another
/// process is appending is never read half written and cut.
pub struct SetLog {
    file: File,
    path: PathBuf,
    dir: PathBuf,
    shards: u32,
}

impl SetLog {
    /// Opens the set log of the store at `dir` and returns its whole records; a torn last
    /// record is cut off.
    pub fn open(dir: &Path, shards: u32) -> Result<(SetLog, Vec<SetRecord>)> {
        let path = dir.join(SET_LOG);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| Error::io("open", &path, e))?;
        let _lock = Flock::exclusive(&file).map_err(|e| Error::io("lock", &path, e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| Error::io("read", &path, e))?;
        let (recs, whole) = shard::records(&bytes, shards);
        if whole < bytes.len() {
            trace::set_len(&path, whole as u64, || file.set_len(whole as u64))
                .map_err(|e| Error::io("truncate", &path, e))?;
        }
        let log = SetLog {
            file,
            path,
            dir: dir.to_owned(),
            shards,
        };
        Ok((log, recs))
    }

    pub fn append(&mut self, rec: &SetRecord) -> Result<()> {
        let _lock = Flock::exclusive(&self.file).map_err(|e| Error::io("lock", &self.path, e))?;
        let bytes = rec.encode(self.shards);
        // Where the record lands (the file is opened to append), for the trace only.
        let at = if trace::enabled() { self.len()? } else { 0 };
        trace::write(&self.path, at, &[&bytes], || {
            self.file.write_all(&bytes).map(|()| bytes.len())
        })
        .map(drop)
        .map_err(|e| Error::io("write", &self.path, e))
    }

    pub fn sync(&self) -> Result<()> {
        let synced = trace::sync(&self.path, || self.file.sync_data());
        synced.map_err(|e| Error::io("fdatasync", &self.path, e))
    }

    /// Bytes of the log.
    pub fn len(&self) -> Result<u64> {
        let meta = self.file.metadata();
        meta.map(|m| m.len())
            .map_err(|e| Error::io("stat", &self.path, e))
    }

    /// Replaces the log by one record, durably (the old log stays until the rename).
    pub fn rewrite(&mut self, rec: &SetRecord) -> Result<()> {
        replace(&self.dir, SET_LOG, &rec.encode(self.shards))?;
        self.file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|e| Error::io("open", &self.path, e))?;
        Ok(())
    }
}

/// An exclusive `flock` on an open file, released when dropped (the file stays open longer).
struct Flock(std::os::fd::RawFd);

impl Flock {
    fn exclusive(file: &File) -> io::Result<Flock> {
        use std::os::fd::AsRawFd;
        loop {
            // SAFETY: a valid descriptor for the call; flock reads no memory of ours.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(Flock(file.as_raw_fd()));
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

impl Drop for Flock {
    fn drop(&mut self) {
        // SAFETY: the descriptor of a file that outlives the lock; unlocking cannot fail in a
        // way that matters (closing the file releases the lock too).
        unsafe { libc::flock(self.0, libc::LOCK_UN) };
    }
}
