//! Recovery, also the normal open path: newest valid root, then replay of the WAL's valid
//! prefix into the memtable. Idempotent: it writes nothing, so a crash during it changes nothing.

use super::oplog::OpLog;
use super::state::State;
use super::wal::{self, Cursor};
use crate::error::Result;
use crate::store::WriterFile;

pub fn recover(file: &WriterFile) -> Result<(State, OpLog, Cursor)> {
    let st = State::load(file)?;
    let start = Cursor {
        gen: st.root.wal_gen,
        lsn: st.root.wal_lsn,
        pos: 0,
    };
    let mut mem = OpLog::default();
    let end = wal::scan(file, &st.wal_chunks, start, |ops| {
        super::failpoint::hit("recovery.replaying");
        for op in ops {
            mem.apply(&op);
        }
    })?;
    super::failpoint::hit("recovery.replayed");
    Ok((st, mem, end))
}
