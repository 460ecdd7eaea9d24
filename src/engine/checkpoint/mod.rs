//! The writer's background work, on two threads that each publish a root after each step:
//! one turns each sealed log into a delta table (`flush`), the other merges tables (`merge`,
//! chosen by `policy`); a third gives free space back to the filesystem (`trim`). The
//! committing thread does none of it. A commit waits only as `pace` says: a little at a time
//! while its log would otherwise fill before the previous log's flush is done, or, when
//! merges fall behind, before the running merge frees the delta table its log will need; so
//! a commit waits about as long as the background work takes for a batch's worth of ops, not
//! for a whole flush or merge.

pub mod flush;
pub mod merge;
pub mod policy;

use super::core::{Core, State};
use super::space::Work;
use crate::error::{Error, Result};
use crate::format::layout::{MAX_RUNS, SEGMENT};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

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

/// Starts the background threads.
pub fn spawn(core: Arc<Core>) -> Result<Vec<std::thread::JoinHandle<()>>> {
    let threads: [(&str, fn(&Core)); 3] = [
        ("hashdir-flush", flush_thread),
        ("hashdir-merge", merge_thread),
        ("hashdir-trim", super::trim::trim_thread),
    ];
    let mut out = Vec::new();
    for (name, run) in threads {
        let mine = core.clone();
        let path = core.file.path().to_path_buf();
        let h = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || run(&mine))
            .map_err(|e| Error::io("spawn the writer's background threads", path, e));
        match h {
            Ok(h) => out.push(h),
            Err(e) => {
                core.st.lock().stop = true;
                core.wake();
                out.into_iter().for_each(|h| drop(h.join()));
                return Err(e);
            }
        }
    }
    Ok(out)
}

/// Waits until `next` gives work (or the writer breaks or stops: None), marking the thread
/// idle while it waits.
fn wait_for<T>(
    core: &Core,
    work: Work,
    mut next: impl FnMut(&mut State) -> Option<T>,
) -> Option<T> {
    let mut st = core.st.lock();
    loop {
        if st.broken.is_none() {
            if let Some(t) = next(&mut st) {
                st.idle[work as usize] = false;
                return Some(t);
            }
        }
        if st.broken.is_some() || st.stop {
            // Whatever the work allocated and did not publish no root references.
            st.space.abandon(work);
            st.idle[work as usize] = true;
            core.wake();
            return None;
        }
        // Wakes those waiting for idle threads only as this one becomes idle: waking at every
        // pass would have two idle threads wake each other without end.
        if !st.idle[work as usize] {
            st.idle[work as usize] = true;
            core.wake();
        }
        core.cv.wait(&mut st);
    }
}

fn flush_thread(core: &Core) {
    // A sealed log is flushed before the thread stops: the sealed log is what `close` waits
    // for, and a writer dropped without `close` leaves less to replay.
    let mut flusher = flush::Flusher::default();
    while let Some(ops) = wait_for(core, Work::Flush, take_sealed) {
        if let Err(e) = flush::flush(core, ops, &mut flusher) {
            let mut st = core.st.lock();
            core.fail_with(&mut st, "flushing a log failed", &e);
        }
    }
}

fn merge_thread(core: &Core) {
    // A stopping writer starts no merge step: `run_merge` would return at once, and the same
    // plan would come back forever.
    let next = |st: &mut State| match st.stop {
        true => None,
        false => policy::plan(&st.root, st.compact),
    };
    while let Some(plan) = wait_for(core, Work::Merge, next) {
        if let Err(e) = run_merge(core, plan) {
            let mut st = core.st.lock();
            core.fail_with(&mut st, "merging tables failed", &e);
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

/// Runs a merge to its end, or until the writer stops (a merge into the base goes on from
/// its last step at the next open; another starts over).
fn run_merge(core: &Core, plan: policy::Plan) -> Result<()> {
    if plan == policy::Plan::Adopt {
        return merge::adopt(core);
    }
    let root = core.st.lock().root.clone();
    let hint = |off: u64, len: u64| crate::store::Positional::will_need(&core.file, off, len);
    let mut m = merge::Merge::open(core, &root, plan, &hint)?;
    loop {
        if core.st.lock().stop {
            return Ok(());
        }
        if m.step()? {
            return Ok(());
        }
    }
}

/// Of its log, the fraction a commit may fill now: all of it, unless
/// - the previous log is still being flushed: then as much as the flush has done (or, where
///   its progress stands still, as much of its usual time as has gone by, up to `CLOCK_LEAD`
///   ahead), plus `FLUSH_LEAD` (its sort starts while commits go on);
/// - the log's own flush would find no room for its delta table (merges fell behind): then as
///   much as the running merge has done, none if none runs.
pub fn may_fill(core: &Core) -> f64 {
    let sealed = core.sealed_waiting();
    let mut fill: f64 = 1.0;
    if sealed {
        // Time carries the commits over a stretch where progress stands still, up to
        // `CLOCK_LEAD` ahead of it: a flush slow all through still paces them.
        let done = core.flush_progress.get();
        let done = done.max(core.flush_clock.fraction().min(done + CLOCK_LEAD));
        fill = FLUSH_LEAD + done * (1.0 - FLUSH_LEAD);
    }
    let tables = core.runs.load(Ordering::Relaxed) as usize + usize::from(sealed) + 1;
    if tables + SPARE_RUNS > MAX_RUNS {
        let merging = core.merge_frees.load(Ordering::Relaxed) > 0;
        fill = fill.min(if merging {
            core.merge_progress.get()
        } else {
            0.0
        });
    }
    fill
}

/// How far ahead of a flush's progress the time it usually takes may carry commits.
const CLOCK_LEAD: f64 = 0.1;

/// The part of a log commits fill while the previous one's flush has not yet started.
const FLUSH_LEAD: f64 = 0.125;
/// Delta tables kept free of a full root, for flushes while a merge is published.
const SPARE_RUNS: usize = 2;

/// How long a paced commit sleeps before it looks again.
pub const PACE_TICK: Duration = Duration::from_millis(1);
