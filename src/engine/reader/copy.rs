//! A compacted copy of a reader's snapshot in a new file, taken while the writer goes on (as
//! LMDB's `mdb_copy -c`): the snapshot's keys with their whole sets, in hash order, inserted
//! through a writer of the new file and merged into one base table there.

use super::super::options::Options;
use super::super::source::Fault;
use super::super::writer::Writer;
use super::snap::Snap;
use super::{stale_to_corrupt, Reader, RETRIES};
use crate::error::Result;
use crate::format::hash::key_hash;
use crate::store::Staged;
use std::path::Path;

/// Values inserted per commit of the copy's writer.
const BATCH: usize = 1 << 16;

/// How far a copy has come; the last one is what [`Reader::copy_to`] returns.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CopyProgress {
    /// Epoch of the root of the snapshot being copied.
    pub epoch: u64,
    /// Keys copied so far.
    pub keys: u64,
    /// Values copied so far.
    pub values: u64,
    /// Share of the snapshot copied, from 0.0 to 1.0: keys go in hash order and hashes spread
    /// evenly, so this tracks the keys copied.
    pub fraction: f64,
}

/// Why one attempt stopped.
enum Stop {
    /// The snapshot's pages failed to read (an unpinned snapshot the writer overtook).
    Read(Fault),
    /// Writing the copy failed.
    Write(crate::Error),
}

impl Reader {
    /// Writes the state this reader sees (its current snapshot: base table, delta tables and
    /// the log frames it has read) to a new file at `dest`, compacted into one base table,
    /// while the writer goes on committing. The file is built under a temporary name beside
    /// `dest` and linked there once complete and durable, so `dest` never holds a partial
    /// copy; it has the capacity of this file. `progress` is called after every batch.
    ///
    /// A pinned snapshot keeps its space from reuse for the whole copy. An unpinned one (the
    /// reader table full or unwritable) that the writer overtakes is started over from a
    /// refreshed snapshot, which is then this reader's: the copy always holds exactly one
    /// snapshot's state.
    ///
    /// Errors: `Io` with `EEXIST` when something is at `dest` (it is never replaced),
    /// `InvalidArgument` for an empty path, `Io`/`Hdf5`/`NoSpace` writing the copy, `Corrupt`
    /// reading this file.
    pub fn copy_to(
        &self,
        dest: &Path,
        mut progress: impl FnMut(&CopyProgress),
    ) -> Result<CopyProgress> {
        let staged = Staged::new(dest)?;
        let mut tries = 0;
        loop {
            match copy_snap(&self.snapshot(), staged.path(), &mut progress) {
                Ok(done) => {
                    staged.publish()?;
                    return Ok(done);
                }
                Err(Stop::Read(f)) if f.retryable() && tries < RETRIES => {
                    tries += 1;
                    staged.discard();
                    self.refresh()?;
                }
                Err(Stop::Read(f)) => return Err(stale_to_corrupt(f, "page or extent")),
                Err(Stop::Write(e)) => return Err(e),
            }
        }
    }
}

/// One attempt: `snap` into a new file at `path`, closed and durable.
fn copy_snap(
    snap: &Snap,
    path: &Path,
    progress: &mut impl FnMut(&CopyProgress),
) -> std::result::Result<CopyProgress, Stop> {
    let opts = Options {
        capacity: snap.root.capacity,
        ..Options::default()
    };
    let mut w = Writer::open(path, &opts).map_err(Stop::Write)?;
    let mut at = CopyProgress {
        epoch: snap.root.epoch,
        ..CopyProgress::default()
    };
    let mut pending = 0;
    let mut failed = None;
    let scanned = snap.scan(&mut None, &mut |key, values| {
        let mut step = || -> Result<()> {
            w.insert_values(key, values)?;
            at.keys += 1;
            at.values += values.len() as u64;
            pending += values.len();
            if pending >= BATCH {
                w.commit()?;
                pending = 0;
                at.fraction = key_hash(key) as f64 / u64::MAX as f64;
                progress(&at);
            }
            Ok(())
        };
        match step() {
            Ok(()) => true,
            Err(e) => {
                failed = Some(e);
                false
            }
        }
    });
    if let Some(e) = failed {
        return Err(Stop::Write(e));
    }
    scanned.map_err(Stop::Read)?;
    // `checkpoint` merges everything into one base table and makes that root durable.
    w.commit()
        .and_then(|()| w.checkpoint())
        .and_then(|()| w.close())
        .map_err(Stop::Write)?;
    at.fraction = 1.0;
    progress(&at);
    Ok(at)
}
