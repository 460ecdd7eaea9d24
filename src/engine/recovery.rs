//! Recovery, also the normal open path: the newest valid root, its free space, then a replay
//! of its logs — the sealed log (if a flush was under way) and the log commits append to —
//! into op logs. It writes nothing, unless the sealed log turns out shorter than the root says
//! (a power cut lost its last frames): then the frames of the log after it follow a gap and
//! must not count, and the open publishes a root that starts a new log generation where the
//! replay ended.

use super::array;
use super::oplog::OpLog;
use super::source::settled;
use super::space::Space;
use super::wal::{self, Cursor};
use crate::error::{Error, Result};
use crate::format::layout::{ROOT_SLOT, SEGMENT};
use crate::format::root::{self, LogRef, Root};
use crate::format::wal::frame_ops;
use crate::store::{Positional, WriterFile};
use std::sync::mpsc;

/// What an open found and what it left behind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Epoch of the root the writer started from.
    pub root_epoch: u64,
    /// Committed batches replayed from the logs, and their bytes.
    pub frames: u64,
    /// Bytes of those batches.
    pub log_bytes: u64,
    /// Time spent loading the root and replaying the logs, in microseconds.
    pub micros: u64,
    /// What was dropped or ignored: a damaged root slot, an incomplete last batch, batches
    /// after a gap.
    pub notes: Vec<String>,
}

pub struct Recovered {
    pub root: Root,
    pub space: Space,
    /// Ops of the log commits append to.
    pub mem: OpLog,
    /// Ops of the sealed log, for the worker to flush.
    pub sealed: Option<OpLog>,
    pub wal: Cursor,
    pub report: RecoveryReport,
    /// A root to publish before any commit (the sealed log was cut short).
    pub fix: Option<Root>,
    /// Whole frames past the kept ones, to be overwritten with zeros before any commit so that
    /// no later scan takes them up again: (file offset, bytes).
    pub discard: Option<(u64, u64)>,
}

/// The LSNs of a file's batches that are still in its logs: the first one that is not in a
/// table yet, and the one after the last whole frame (all that `recover` would replay).
pub fn log_lsns(file: &WriterFile) -> Result<(u64, u64)> {
    let root = read_root(file)?;
    let scan = |log: &LogRef| {
        wal::scan_frames(
            file,
            &wal::chunks(log),
            Cursor::start(log),
            u64::MAX,
            |_, f| f,
        )
        .map(|c| c.lsn)
    };
    if let Some(s) = &root.sealed {
        let end = scan(&s.log)?;
        if end != s.end {
            return Ok((s.log.lsn, end));
        }
        return Ok((s.log.lsn, scan(&root.log)?));
    }
    Ok((root.log.lsn, scan(&root.log)?))
}

/// The newest valid root of a writer's file, checked against the file's layout.
pub fn read_root(file: &WriterFile) -> Result<Root> {
    let mut slots = vec![0u8; 2 * ROOT_SLOT];
    file.read_at(file.root_offset(), &mut slots)?;
    let root = root::newest(&slots[..ROOT_SLOT], &slots[ROOT_SLOT..])
        .map_err(|why| Error::corrupt("root", file.root_offset(), why))?;
    if root.data_offset != file.data_offset() || root.capacity != file.capacity() {
        return Err(Error::corrupt(
            "root",
            file.root_offset(),
            format!(
                "data area {}+{} but the file's is {}+{}",
                root.data_offset,
                root.capacity,
                file.data_offset(),
                file.capacity()
            ),
        ));
    }
    Ok(root)
}

/// Recovers the newest root and its logs; with `below`, keeps only the batches below that LSN
/// (those of a set commit that did not reach every shard go), which must all be in the log
/// commits append to.
pub fn recover(file: &WriterFile, below: Option<u64>) -> Result<Recovered> {
    let began = std::time::Instant::now();
    let root = read_root(file)?;
    let runs = settled(array::load(file, root.free_segments, root.epoch))?.0;
    let pages = settled(array::load(file, root.free_pages, root.epoch))?.0;
    if runs.len() % 2 != 0 {
        return Err(Error::corrupt(
            "free segment list",
            root.free_segments.top,
            "odd length",
        ));
    }
    let runs: Vec<(u64, u64)> = runs.chunks_exact(2).map(|c| (c[0], c[1])).collect();
    let mut space = Space::new(
        root.data_offset,
        root.capacity,
        root.segments_used,
        &runs,
        &pages,
        root.epoch,
    )?;
    let mut report = RecoveryReport {
        root_epoch: root.epoch,
        notes: slot_notes(file, &root)?,
        ..RecoveryReport::default()
    };
    let mut fix = None;
    let mut sealed = None;
    if let Some(s) = &root.sealed {
        let mut ops = OpLog::default();
        let end = replay_log(file, &s.log, u64::MAX, &mut ops, &mut report)?;
        if end.lsn != s.end {
            report.notes.push(format!(
                "the sealed log ends at LSN {} where the root expects {}: its last batches were not durable; the batches after them are dropped",
                end.lsn, s.end
            ));
            let mut next = root.clone();
            next.sealed.as_mut().expect("checked").end = end.lsn;
            // The new log goes to fresh space, so that a reader still following the old one
            // never reads its bytes rewritten; in place only when the data area is full.
            let offset = space
                .alloc(root.log.bytes / SEGMENT)
                .unwrap_or(root.log.offset);
            next.log = LogRef {
                gen: wal::new_gen(),
                lsn: end.lsn,
                offset,
                ..root.log
            };
            fix = Some(next);
        }
        sealed = Some(ops);
    }
    let mut mem = OpLog::default();
    let first = fix.as_ref().map_or(root.log.lsn, |next| next.log.lsn);
    if let Some(b) = below.filter(|b| *b < first) {
        return Err(Error::corrupt(
            "WAL",
            root.log.offset,
            format!(
                "the set log keeps the batches below LSN {b}, but those from LSN {first} on are \
                 already in tables"
            ),
        ));
    }
    let below = below.unwrap_or(u64::MAX);
    let mut discard = None;
    let wal = match &fix {
        Some(next) => Cursor::start(&next.log),
        None => {
            let end = replay_log(file, &root.log, below, &mut mem, &mut report)?;
            let past = wal::scan_frames(file, &wal::chunks(&root.log), end, u64::MAX, |_, f| f)?;
            if past.pos > end.pos {
                report.notes.push(format!(
                    "dropped {} batches (LSN {} to {}) of a set commit that did not reach every shard",
                    past.lsn - end.lsn,
                    end.lsn,
                    past.lsn - 1
                ));
                discard = Some((root.log.offset + end.pos, past.pos - end.pos));
            }
            end
        }
    };
    super::failpoint::hit("recovery.replayed");
    report.micros = began.elapsed().as_micros() as u64;
    Ok(Recovered {
        root,
        space,
        mem,
        sealed,
        wal,
        report,
        fix,
        discard,
    })
}

/// Replays one log into `mem`, up to the frame of LSN `below`; returns the cursor after its
/// last frame replayed.
fn replay_log(
    file: &WriterFile,
    log: &LogRef,
    below: u64,
    mem: &mut OpLog,
    report: &mut RecoveryReport,
) -> Result<Cursor> {
    let chunks = wal::chunks(log);
    let start = Cursor::start(log);
    let end = replay(file, &chunks, start, below, mem)?;
    report.frames += end.lsn - start.lsn;
    report.log_bytes += end.pos;
    if end.lsn == below {
        return Ok(end);
    }
    if let Some(len) = wal::torn_tail(file, &chunks, end)? {
        report.notes.push(format!(
            "dropped an incomplete batch (LSN {}, {len} bytes) at log offset {}: it was never acknowledged",
            end.lsn, end.pos
        ));
    }
    Ok(end)
}

/// Frames read ahead of the replay.
const AHEAD: usize = 4;

/// Replays the log from `start` into `mem`: a second thread reads and checks the frames while
/// this one applies them. Without a second thread, does both here.
fn replay(
    file: &WriterFile,
    chunks: &[u64],
    start: Cursor,
    below: u64,
    mem: &mut OpLog,
) -> Result<Cursor> {
    let apply = |mem: &mut OpLog, frame: &[u8]| {
        super::failpoint::hit("recovery.replaying");
        frame_ops(frame).for_each(|op| mem.apply(&op));
    };
    let (full_tx, full_rx) = mpsc::sync_channel::<Vec<u8>>(AHEAD);
    let (free_tx, free_rx) = mpsc::channel::<Vec<u8>>();
    let scanned = std::thread::scope(|s| {
        let reader = std::thread::Builder::new()
            .name("hashdir-replay".to_owned())
            .spawn_scoped(s, move || {
                wal::scan_frames_below(file, chunks, start, u64::MAX, below, |_, frame| {
                    let _ = full_tx.send(frame);
                    free_rx.try_recv().unwrap_or_default()
                })
            });
        let Ok(reader) = reader else {
            return None; // no thread to be had
        };
        for frame in full_rx {
            apply(mem, &frame);
            let _ = free_tx.send(frame);
        }
        Some(reader.join().unwrap_or_else(|_| {
            Err(Error::io(
                "replay thread",
                file.path(),
                std::io::Error::other("panicked"),
            ))
        }))
    });
    match scanned {
        Some(end) => end,
        None => wal::scan_frames_below(file, chunks, start, u64::MAX, below, |_, frame| {
            apply(mem, &frame);
            frame
        }),
    }
}

/// A root slot that holds something but not a valid root (a torn or damaged publish).
fn slot_notes(file: &WriterFile, used: &Root) -> Result<Vec<String>> {
    let mut slots = vec![0u8; 2 * ROOT_SLOT];
    file.read_at(file.root_offset(), &mut slots)?;
    let mut notes = Vec::new();
    for (i, slot) in slots.chunks(ROOT_SLOT).enumerate() {
        if let (Err(why), false) = (Root::decode(slot), slot.iter().all(|b| *b == 0)) {
            notes.push(format!(
                "root slot {i} ignored ({why}); using the root of epoch {} in the other slot",
                used.epoch
            ));
        }
    }
    Ok(notes)
}
