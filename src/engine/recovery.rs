//! Recovery, also the normal open path: newest valid root, then replay of the WAL's valid
//! prefix into the memtable. Idempotent: it writes nothing, so a crash during it changes nothing.

use super::oplog::OpLog;
use super::state::State;
use super::wal::{self, Cursor};
use crate::error::{Error, Result};
use crate::format::layout::ROOT_SLOT;
use crate::format::root::Root;
use crate::format::wal::frame_ops;
use crate::store::{Positional, WriterFile};
use std::sync::mpsc;

/// What an open found and what it left behind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Epoch of the root the writer started from.
    pub root_epoch: u64,
    /// Committed batches replayed from the log, and their bytes.
    pub frames: u64,
    pub log_bytes: u64,
    /// Time spent loading the root and replaying the log, in microseconds.
    pub micros: u64,
    /// What was dropped or ignored: a damaged root slot, an incomplete last batch.
    pub notes: Vec<String>,
}

pub fn recover(file: &WriterFile) -> Result<(State, OpLog, Cursor, RecoveryReport)> {
    let began = std::time::Instant::now();
    let st = State::load(file)?;
    let start = Cursor {
        gen: st.root.wal_gen,
        lsn: st.root.wal_lsn,
        pos: 0,
    };
    let mut mem = OpLog::default();
    let end = replay(file, &st.wal_chunks, start, &mut mem)?;
    super::failpoint::hit("recovery.replayed");
    let mut report = RecoveryReport {
        root_epoch: st.root.epoch,
        frames: end.lsn - start.lsn,
        log_bytes: end.pos,
        micros: 0,
        notes: slot_notes(file, &st.root)?,
    };
    if let Some(len) = wal::torn_tail(file, &st.wal_chunks, end)? {
        report.notes.push(format!(
            "dropped an incomplete batch (LSN {}, {len} bytes) at log offset {}: it was never acknowledged",
            end.lsn, end.pos
        ));
    }
    report.micros = began.elapsed().as_micros() as u64;
    Ok((st, mem, end, report))
}

/// Frames read ahead of the replay.
const AHEAD: usize = 4;

/// Replays the log from `start` into `mem`: a second thread reads and checks the frames while
/// this one applies them (a full 1 GiB log has about 30 M ops to apply). Without a second
/// thread, does both here.
fn replay(file: &WriterFile, chunks: &[u64], start: Cursor, mem: &mut OpLog) -> Result<Cursor> {
    let apply = |mem: &mut OpLog, frame: &[u8]| {
        super::failpoint::hit("recovery.replaying");
        frame_ops(frame).for_each(|op| mem.apply(&op));
    };
    let io = file.raw_io()?;
    let (full_tx, full_rx) = mpsc::sync_channel::<Vec<u8>>(AHEAD);
    let (free_tx, free_rx) = mpsc::channel::<Vec<u8>>();
    let scanned = std::thread::scope(|s| {
        let reader = std::thread::Builder::new()
            .name("hashdir-replay".to_owned())
            .spawn_scoped(s, move || {
                wal::scan_frames(&io, chunks, start, u64::MAX, |_, frame| {
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
        None => wal::scan_frames(file, chunks, start, u64::MAX, |_, frame| {
            apply(mem, &frame);
            frame
        }),
    }
}

/// A root slot that holds something but not a valid root (a torn or damaged checkpoint).
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
