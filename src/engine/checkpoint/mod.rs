//! The writer's background worker: it turns each sealed log into a delta table (`flush`) and
//! merges delta tables into the base table (`merge`), publishing a root after each step.
//! The committing thread never does either: a commit waits only when the log it fills is full
//! while the previous one is still being flushed (a flush costs about what the log holds, so
//! a commit waits at most one flush), or when `MAX_RUNS` delta tables wait for a merge.
//!
//! Between merge steps the worker flushes a sealed log first, so flushes never wait behind a
//! merge for more than one step (`merge::STEP` bytes written).

pub mod flush;
pub mod merge;

use super::core::{Core, State};
use crate::error::{Error, Result};
use crate::format::layout::{MAX_RUNS, SEGMENT};
use std::sync::Arc;

/// The smallest log (a new file's); logs grow with the tables (`log_bytes`).
pub const MIN_LOG: u64 = 4 << 20;
/// The largest automatic log. A reader holds an index of the log it follows (about half the
/// log's bytes at one value per op) and, while it is flushed, of the sealed one as well;
/// recovery replays both (about 0.5 s per GiB).
pub const AUTO_LOG_MAX: u64 = 512 << 20;

/// The size of the next log's range: as set, or a quarter of the tables' bytes within
/// [`MIN_LOG`, `AUTO_LOG_MAX`]; whole segments (a log set smaller is sealed before its range
/// is full).
pub fn log_bytes(st: &State) -> u64 {
    let r = &st.root;
    let want = match st.log_bytes {
        0 => {
            let tables: u64 = [r.base, r.merging]
                .iter()
                .chain(&r.deltas)
                .map(|t| t.bytes)
                .sum();
            // A small file's logs stay small against its data area too.
            (tables / 4)
                .clamp(MIN_LOG, AUTO_LOG_MAX)
                .min(r.capacity / 16)
        }
        n => n,
    };
    want.max(1).next_multiple_of(SEGMENT)
}

enum Task {
    Flush(super::oplog::OpLog),
    Merge,
}

/// Starts the worker thread.
pub fn spawn(core: Arc<Core>) -> Result<std::thread::JoinHandle<()>> {
    let path = core.file.path().to_path_buf();
    std::thread::Builder::new()
        .name("hashdir-worker".to_owned())
        .spawn(move || run(&core))
        .map_err(|e| Error::io("spawn the writer's worker thread", path, e))
}

fn run(core: &Core) {
    loop {
        let task = {
            let mut st = core.st.lock();
            loop {
                if st.broken.is_some() {
                    st.idle = true;
                    core.wake();
                    return;
                }
                if let Some(ops) = take_sealed(&mut st) {
                    break Task::Flush(ops);
                }
                if st.stop {
                    st.idle = true;
                    core.wake();
                    return;
                }
                if merge::wanted(&st.root, st.compact) {
                    break Task::Merge;
                }
                st.idle = true;
                core.wake();
                core.cv.wait(&mut st);
            }
        };
        core.st.lock().idle = false;
        let done = match task {
            Task::Flush(ops) => flush::flush(core, ops),
            Task::Merge => merge_pass(core),
        };
        if let Err(e) = done {
            let mut st = core.st.lock();
            core.fail_with(&mut st, "background work failed", &e);
        }
    }
}

/// The sealed log's ops, when there is room for another delta table.
fn take_sealed(st: &mut State) -> Option<super::oplog::OpLog> {
    if st.root.deltas.len() >= MAX_RUNS {
        return None;
    }
    st.sealed_ops.take()
}

/// Runs a merge pass to its end (or until the writer stops), flushing sealed logs between its
/// steps.
fn merge_pass(core: &Core) -> Result<()> {
    if merge::adopt(core)? {
        return Ok(());
    }
    let root = core.st.lock().root.clone();
    let hint = |off: u64, len: u64| core.file.will_need(off, len);
    let mut m = merge::Merge::open(core, &root, &hint)?;
    loop {
        if core.sealed_waiting() {
            let ops = take_sealed(&mut core.st.lock());
            if let Some(ops) = ops {
                flush::flush(core, ops)?;
            }
        }
        if core.st.lock().stop {
            return Ok(());
        }
        if m.step()? {
            return Ok(());
        }
    }
}
