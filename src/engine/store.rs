//! A store: one file, or a sharded store's directory. What the C API and the CLI open, so
//! either works with every call.

use super::options::{Options, Stats};
use super::recovery::RecoveryReport;
use super::sharded::{self, ShardedReader, ShardedWriter};
use super::verify::VerifyReport;
use super::{CopyProgress, GcReport, Reader, Writer};
use crate::error::{Error, Result};
use crate::{Key, Value};
use std::path::Path;

/// The writer of a store.
pub enum StoreWriter {
    /// A writer of one file.
    File(Writer),
    /// A writer of every shard of a sharded store.
    Sharded(ShardedWriter),
}

/// A reader of a store.
pub enum StoreReader {
    /// A reader of one file.
    File(Reader),
    /// A reader of every shard of a sharded store.
    Sharded(ShardedReader),
}

/// Calls the same method on whichever kind `$s` is.
macro_rules! both {
    ($s:expr, $t:ident, $x:ident => $e:expr) => {
        match $s {
            $t::File($x) => $e,
            $t::Sharded($x) => $e,
        }
    };
}

/// Whether `path` is to be a sharded store: an existing directory, or `shards` > 1 asked for
/// a path that does not exist yet.
fn sharded(path: &Path, opts: &Options) -> Result<bool> {
    if sharded::is_store(path) {
        return Ok(true);
    }
    if opts.shards > 1 && path.exists() {
        return Err(Error::InvalidArgument(format!(
            "{} is a single file, not a sharded store of {} shards",
            path.display(),
            opts.shards
        )));
    }
    Ok(opts.shards > 1)
}

impl StoreWriter {
    /// Opens (or, with `create`, creates) a file, or with `shards` > 1 a sharded store.
    pub fn open(path: &Path, opts: &Options) -> Result<StoreWriter> {
        Ok(if sharded(path, opts)? {
            StoreWriter::Sharded(ShardedWriter::open(path, opts)?)
        } else {
            StoreWriter::File(Writer::open(path, opts)?)
        })
    }

    /// [`Writer::insert`]; in a sharded store each pair goes to its key's shard.
    pub fn insert(&mut self, keys: &[Key], values: &[Value]) -> Result<()> {
        both!(self, StoreWriter, w => w.insert(keys, values))
    }

    /// [`Writer::insert_values`], routed to the key's shard.
    pub fn insert_values(&mut self, key: &Key, values: &[Value]) -> Result<()> {
        both!(self, StoreWriter, w => w.insert_values(key, values))
    }

    /// [`Writer::delete_keys`], routed to each key's shard.
    pub fn delete_keys(&mut self, keys: &[Key]) -> Result<()> {
        both!(self, StoreWriter, w => w.delete_keys(keys))
    }

    /// [`Writer::delete_pairs`], routed to each key's shard.
    pub fn delete_pairs(&mut self, keys: &[Key], values: &[Value]) -> Result<()> {
        both!(self, StoreWriter, w => w.delete_pairs(keys, values))
    }

    /// [`Writer::commit`]; a sharded store commits every shard (in parallel) as one set commit.
    pub fn commit(&mut self) -> Result<()> {
        both!(self, StoreWriter, w => w.commit())
    }

    /// [`Writer::checkpoint`] of the file, or of every shard.
    pub fn checkpoint(&mut self) -> Result<()> {
        both!(self, StoreWriter, w => w.checkpoint())
    }

    /// [`Writer::sync`] of the file, or of every shard and the set log.
    pub fn sync(&mut self) -> Result<()> {
        both!(self, StoreWriter, w => w.sync())
    }

    /// [`Writer::gc`] of the file, or of every shard (reports summed).
    pub fn gc(&mut self) -> Result<GcReport> {
        both!(self, StoreWriter, w => w.gc())
    }

    /// The file's [`Stats`], or the shards' summed.
    pub fn stats(&self) -> Result<Stats> {
        both!(self, StoreWriter, w => w.stats())
    }

    /// What opening recovered (for a sharded store, the shards' reports merged).
    pub fn recovery(&self) -> &RecoveryReport {
        both!(self, StoreWriter, w => w.recovery())
    }

    /// [`Writer::close`] of the file, or of every shard.
    pub fn close(self) -> Result<()> {
        both!(self, StoreWriter, w => w.close())
    }
}

impl StoreReader {
    /// Opens a reader of a file, or of every shard of a sharded store's directory.
    pub fn open(path: &Path, opts: &Options) -> Result<StoreReader> {
        Ok(if sharded::is_store(path) {
            StoreReader::Sharded(ShardedReader::open(path, opts)?)
        } else {
            StoreReader::File(Reader::open(path, opts)?)
        })
    }

    /// [`Reader::refresh`] of the file, or of every shard.
    pub fn refresh(&self) -> Result<()> {
        both!(self, StoreReader, r => r.refresh())
    }

    /// [`Reader::lookup`]; keys are looked up in their shards, results in the caller's order.
    pub fn lookup(&self, keys: &[Key], first: &mut [Value], found: &mut [u8]) -> Result<()> {
        both!(self, StoreReader, r => r.lookup(keys, first, found))
    }

    /// [`Reader::get`]; keys are looked up in their shards, values in the caller's key order.
    pub fn get(&self, keys: &[Key], values: &mut [Value], counts: &mut [u64]) -> Result<usize> {
        both!(self, StoreReader, r => r.get(keys, values, counts))
    }

    /// Every key with its values (each shard in turn); `f` returns false to stop.
    pub fn scan(&self, f: impl FnMut(&Key, &[Value]) -> bool) -> Result<()> {
        both!(self, StoreReader, r => r.scan(f))
    }

    /// Drops the reader's pages from memory and the file (or every shard) from the page cache.
    pub fn evict(&self) -> Result<()> {
        both!(self, StoreReader, r => r.evict())
    }

    /// Whether the reader reads its log tail in place (every shard's, for a store).
    pub fn reads_log_in_place(&self) -> bool {
        both!(self, StoreReader, r => r.reads_log_in_place())
    }

    /// The file's [`Stats`], or the shards' summed.
    pub fn stats(&self) -> Result<Stats> {
        both!(self, StoreReader, r => r.stats())
    }

    /// [`Reader::copy_to`] of a file. A sharded store's readers see each shard at its own
    /// commit, so there is no one snapshot to copy: copy its shard files one by one.
    pub fn copy_to(
        &self,
        dest: &Path,
        progress: impl FnMut(&CopyProgress),
    ) -> Result<CopyProgress> {
        match self {
            StoreReader::File(r) => r.copy_to(dest, progress),
            StoreReader::Sharded(_) => Err(Error::InvalidArgument(
                "a sharded store is copied shard by shard (a reader on each shard file)".into(),
            )),
        }
    }
}

/// `verify` of a file, or of every shard of a sharded store.
pub fn verify_store(path: &Path) -> Result<VerifyReport> {
    if sharded::is_store(path) {
        sharded::verify_store(path)
    } else {
        super::verify(path)
    }
}
