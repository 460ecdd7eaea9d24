//! Recovery, also the normal open path: newest valid root, then replay of the WAL's valid
//! prefix into the memtable. Idempotent: it writes nothing, so a crash during it changes nothing.

use super::oplog::OpLog;
use super::state::State;
use super::wal::{self, Cursor};
use crate::error::Result;
use crate::format::layout::ROOT_SLOT;
use crate::format::root::Root;
use crate::store::{Positional, WriterFile};

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
    let end = wal::scan(file, &st.wal_chunks, start, |_, ops| {
        super::failpoint::hit("recovery.replaying");
        for op in ops {
            mem.apply(&op);
        }
    })?;
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
