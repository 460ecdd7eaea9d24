//! The deterministic workload the power-cut and I/O-fault children run, its model, and the
//! markers it leaves in the trace.
//!
//! Batch `b`'s ops are a pure function of `b`: inserts of fresh keys (the table grows: bucket
//! splits, directory doublings), deletions of keys two batches old, a growing set under one
//! key (`BIG`: promotion to an extent, appends, copies), pair deletions from it, its deletion
//! and rebirth, and from `shrink` on only deletions (merges, directory halving). Key
//! `PROGRESS` holds `b` after batch `b`.

use crate::common::k;
use hashdir::{Key, Options, Reader, StoreWriter, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::Path;

/// The key whose set grows, shrinks, is deleted and grows again.
pub const BIG: u64 = 1 << 40;
/// Holds the number of the last batch applied, atomically with it.
pub const PROGRESS: u64 = 1 << 41;
/// Keys written by the oracle after recovery (never by the workload).
pub const PROBE: u64 = 1 << 42;

/// Fresh keys per batch.
const PER_BATCH: u64 = 40;

#[derive(Clone, Copy, Debug)]
pub enum Op {
    Insert(Key, Value),
    DeleteKey(Key),
    DeletePair(Key, Value),
}

/// The ops of batch `b` of a workload that only deletes from batch `shrink` on.
pub fn batch(b: u64, shrink: u64, mut op: impl FnMut(Op)) {
    op(Op::DeleteKey(k(PROGRESS)));
    op(Op::Insert(k(PROGRESS), k(b)));
    if b >= shrink {
        // Three batches' worth of keys per batch: buckets merge, the directory halves.
        for j in 0..3 * PER_BATCH {
            op(Op::DeleteKey(k((b - shrink) * 3 * PER_BATCH + j)));
        }
        op(Op::DeletePair(k(BIG), k(b * 7)));
        return;
    }
    for j in 0..PER_BATCH {
        op(Op::Insert(k(b * PER_BATCH + j), k(b ^ j)));
    }
    for j in 0..6 {
        op(Op::Insert(k(BIG), k(b * 6 + j)));
    }
    if b % 3 == 2 {
        for j in 0..PER_BATCH / 2 {
            op(Op::DeleteKey(k((b - 2) * PER_BATCH + 2 * j)));
        }
    }
    if b % 10 == 9 {
        for j in 0..20 {
            op(Op::DeletePair(k(BIG), k(b * 6 - j)));
        }
    }
    if b % 23 == 22 {
        op(Op::DeleteKey(k(BIG)));
        op(Op::Insert(k(BIG), k(7)));
    }
}

/// A file's contents: every key with values, and its set.
pub type State = BTreeMap<Key, BTreeSet<Value>>;

pub fn apply(m: &mut State, op: Op) {
    match op {
        Op::Insert(key, v) => {
            m.entry(key).or_default().insert(v);
        }
        Op::DeleteKey(key) => {
            m.remove(&key);
        }
        Op::DeletePair(key, v) => {
            if let Some(s) = m.get_mut(&key) {
                s.remove(&v);
                if s.is_empty() {
                    m.remove(&key);
                }
            }
        }
    }
}

/// The model after 0, 1, …, `batches` whole batches.
pub struct Models(pub Vec<State>);

impl Models {
    pub fn new(batches: u64, shrink: u64) -> Models {
        let mut all = vec![State::new()];
        for b in 0..batches {
            let mut m = all.last().unwrap().clone();
            batch(b, shrink, |op| apply(&mut m, op));
            all.push(m);
        }
        Models(all)
    }

    pub fn after(&self, k: u64) -> &State {
        &self.0[k as usize]
    }

    pub fn batches(&self) -> u64 {
        self.0.len() as u64 - 1
    }
}

/// How a writer session ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// `Writer::close`: commit, checkpoint, trim, release.
    Close,
    /// The writer is dropped without closing: the next open replays its log (recovery).
    Abandon,
}

/// One writer session: open, the batches, explicit checkpoints and GC passes, the end.
#[derive(Clone, Debug)]
pub struct Session {
    pub batches: Range<u64>,
    /// An explicit checkpoint after batch `b` when `b % n == n - 1`.
    pub checkpoint_every: Option<u64>,
    /// A GC pass after these batches.
    pub gc_after: &'static [u64],
    /// `Writer::sync` after these batches (every batch acknowledged before must then survive).
    pub sync_after: &'static [u64],
    pub end: End,
}

#[derive(Clone, Debug)]
pub struct Plan {
    pub sessions: Vec<Session>,
    pub shrink: u64,
}

impl Plan {
    pub fn batches(&self) -> u64 {
        self.sessions.last().map_or(0, |s| s.batches.end)
    }
}

// ---------------------------------------------------------------------------------------------
// Markers

/// Markers below this are acknowledgements: `n` = batches `0..n` acknowledged (written right
/// after `commit` of batch `n - 1` returned Ok).
pub const ACK_LIMIT: u64 = 1 << 32;
const EVENT: u64 = 1 << 63;

/// Calls the workload makes, marked before (`Begin`) and after (`Done`) each one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    Open = 1,
    Commit,
    Checkpoint,
    Gc,
    Close,
    Abandon,
    Sync,
}

impl Call {
    const ALL: [Call; 7] = [
        Call::Open,
        Call::Commit,
        Call::Checkpoint,
        Call::Gc,
        Call::Close,
        Call::Abandon,
        Call::Sync,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Call::Open => "open",
            Call::Commit => "commit",
            Call::Checkpoint => "checkpoint",
            Call::Gc => "gc",
            Call::Close => "close",
            Call::Abandon => "abandon",
            Call::Sync => "sync",
        }
    }
}

/// The last marker of a complete run: without it the trace was cut short.
pub const END: u64 = EVENT | (0xff << 40);
/// The last marker of a run that stopped at a failed call.
pub const STOPPED: u64 = EVENT | (0xfe << 40);

/// A call's marker: `done` false before it, true after it returned (Ok or not).
pub fn call_mark(call: Call, done: bool, batch: u64) -> u64 {
    EVENT | (call as u64) << 40 | (done as u64) << 39 | batch
}

/// What a marker says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Marker {
    Ack(u64),
    Call { call: Call, done: bool, batch: u64 },
    End,
    Stopped,
    Unknown(u64),
}

pub fn decode_mark(v: u64) -> Marker {
    if v < ACK_LIMIT {
        return Marker::Ack(v);
    }
    if v == END {
        return Marker::End;
    }
    if v == STOPPED {
        return Marker::Stopped;
    }
    let c = (v >> 40) & 0x7f;
    match Call::ALL.iter().find(|x| **x as u64 == c) {
        Some(&call) if v & EVENT != 0 => Marker::Call {
            call,
            done: v >> 39 & 1 == 1,
            batch: v & ((1 << 39) - 1),
        },
        _ => Marker::Unknown(v),
    }
}

pub fn mark(v: u64) {
    hashdir::testing::trace::mark(v);
}

// ---------------------------------------------------------------------------------------------
// The child's side

/// A call that failed, and how.
pub struct Failure {
    pub call: Call,
    pub batch: u64,
    pub error: hashdir::Error,
}

/// How many batches a file holds (from `PROGRESS`).
pub fn batches_in(path: &Path) -> hashdir::Result<u64> {
    let r = Reader::open(path, &Options::default())?;
    let (mut last, mut found) = ([[0u8; 16]; 1], [0u8; 1]);
    r.lookup(&[k(PROGRESS)], &mut last, &mut found)?;
    Ok(match found[0] {
        0 => 0,
        _ => u64::from_be_bytes(last[0][8..].try_into().unwrap()) + 1,
    })
}

/// Runs `plan` on `path` (a file, or a sharded store's directory), marking every call and acknowledgement in the trace and calling
/// `acked(b)` after each commit of batch `b` returned Ok. Stops at the first call that fails
/// (the writer is then dropped, not closed) and returns it.
pub fn run(
    path: &Path,
    opts: &Options,
    plan: &Plan,
    mut acked: impl FnMut(u64),
) -> Result<(), Failure> {
    let fail = |call, batch| move |error| Failure { call, batch, error };
    for s in &plan.sessions {
        let first = s.batches.start;
        mark(call_mark(Call::Open, false, first));
        let opened = StoreWriter::open(path, opts);
        mark(call_mark(Call::Open, true, first));
        let mut w = opened.map_err(fail(Call::Open, first))?;
        for b in s.batches.clone() {
            let mut queued = Ok(());
            batch(b, plan.shrink, |op| {
                if queued.is_ok() {
                    queued = match op {
                        Op::Insert(key, v) => w.insert(&[key], &[v]),
                        Op::DeleteKey(key) => w.delete_keys(&[key]),
                        Op::DeletePair(key, v) => w.delete_pairs(&[key], &[v]),
                    };
                }
            });
            queued.map_err(fail(Call::Commit, b))?;
            mark(call_mark(Call::Commit, false, b));
            let committed = w.commit();
            mark(call_mark(Call::Commit, true, b));
            committed.map_err(fail(Call::Commit, b))?;
            mark(b + 1);
            acked(b);
            if s.checkpoint_every.is_some_and(|n| b % n == n - 1) {
                mark(call_mark(Call::Checkpoint, false, b));
                let r = w.checkpoint();
                mark(call_mark(Call::Checkpoint, true, b));
                r.map_err(fail(Call::Checkpoint, b))?;
            }
            if s.gc_after.contains(&b) {
                mark(call_mark(Call::Gc, false, b));
                let r = w.gc();
                mark(call_mark(Call::Gc, true, b));
                r.map_err(fail(Call::Gc, b))?;
            }
            if s.sync_after.contains(&b) {
                mark(call_mark(Call::Sync, false, b));
                let r = w.sync();
                mark(call_mark(Call::Sync, true, b));
                r.map_err(fail(Call::Sync, b))?;
            }
        }
        let last = s.batches.end;
        match s.end {
            End::Close => {
                mark(call_mark(Call::Close, false, last));
                let r = w.close();
                mark(call_mark(Call::Close, true, last));
                r.map_err(fail(Call::Close, last))?;
            }
            End::Abandon => {
                mark(call_mark(Call::Abandon, false, last));
                drop(w);
                mark(call_mark(Call::Abandon, true, last));
            }
        }
    }
    mark(END);
    Ok(())
}
