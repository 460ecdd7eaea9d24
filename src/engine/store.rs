//! A store: one file, or a sharded store's directory. What the C API and the CLI open, so
//! either works with every call.

use super::options::{Options, Stats};
use super::recovery::RecoveryReport;
use super::sharded::{self, ShardedReader, ShardedWriter};
use super::verify::VerifyReport;
use super::{GcReport, Reader, Writer};
use crate::error::{Error, Result};
use crate::{Key, Value};
use std::path::Path;

/// The writer of a store.
pub enum StoreWriter {
    File(Writer),
    Sharded(ShardedWriter),
}

/// A reader of a store.
pub enum StoreReader {
    File(Reader),
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

    pub fn insert(&mut self, keys: &[Key], values: &[Value]) -> Result<()> {
        both!(self, StoreWriter, w => w.insert(keys, values))
    }

    pub fn insert_values(&mut self, key: &Key, values: &[Value]) -> Result<()> {
        both!(self, StoreWriter, w => w.insert_values(key, values))
    }

    pub fn delete_keys(&mut self, keys: &[Key]) -> Result<()> {
        both!(self, StoreWriter, w => w.delete_keys(keys))
    }

    pub fn delete_pairs(&mut self, keys: &[Key], values: &[Value]) -> Result<()> {
        both!(self, StoreWriter, w => w.delete_pairs(keys, values))
    }

    pub fn commit(&mut self) -> Result<()> {
        both!(self, StoreWriter, w => w.commit())
    }

    pub fn checkpoint(&mut self) -> Result<()> {
        both!(self, StoreWriter, w => w.checkpoint())
    }

    pub fn sync(&mut self) -> Result<()> {
        both!(self, StoreWriter, w => w.sync())
    }

    pub fn gc(&mut self) -> Result<GcReport> {
        both!(self, StoreWriter, w => w.gc())
    }

    pub fn stats(&self) -> Result<Stats> {
        both!(self, StoreWriter, w => w.stats())
    }

    pub fn recovery(&self) -> &RecoveryReport {
        both!(self, StoreWriter, w => w.recovery())
    }

    pub fn close(self) -> Result<()> {
        both!(self, StoreWriter, w => w.close())
    }
}

impl StoreReader {
    pub fn open(path: &Path, opts: &Options) -> Result<StoreReader> {
        Ok(if sharded::is_store(path) {
            StoreReader::Sharded(ShardedReader::open(path, opts)?)
        } else {
            StoreReader::File(Reader::open(path, opts)?)
        })
    }

    pub fn refresh(&self) -> Result<()> {
        both!(self, StoreReader, r => r.refresh())
    }

    pub fn lookup(&self, keys: &[Key], first: &mut [Value], found: &mut [u8]) -> Result<()> {
        both!(self, StoreReader, r => r.lookup(keys, first, found))
    }

    pub fn get(&self, keys: &[Key], values: &mut [Value], counts: &mut [u64]) -> Result<usize> {
        both!(self, StoreReader, r => r.get(keys, values, counts))
    }

    pub fn scan(&self, f: impl FnMut(&Key, &[Value]) -> bool) -> Result<()> {
        both!(self, StoreReader, r => r.scan(f))
    }

    pub fn evict(&self) -> Result<()> {
        both!(self, StoreReader, r => r.evict())
    }

    pub fn reads_log_in_place(&self) -> bool {
        both!(self, StoreReader, r => r.reads_log_in_place())
    }

    pub fn stats(&self) -> Result<Stats> {
        both!(self, StoreReader, r => r.stats())
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
