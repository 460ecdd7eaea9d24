//! Flush: a sealed log's ops become a delta table. The ops are sorted by (hash, key) and each
//! key's ops folded into one change, written as one table in hash order: the cost follows the
//! log, whatever the size of the tables before it.

use super::super::core::{Core, CoreAlloc, Frees, Mode};
use super::super::failpoint;
use super::super::memtable::ValSet;
use super::super::oplog::OpLog;
use super::super::sets::Change;
use super::super::table::write::{depth_for, entry_bytes, TableWriter, Values};
use crate::error::Result;
use crate::format::layout::SEGMENT;
use crate::format::table::Kind;

/// Turns the sealed log's ops into a delta table and publishes it (the sealed log is freed).
pub fn flush(core: &Core, mut ops: OpLog) -> Result<()> {
    let id = core.st.lock().root.next_table_id;
    ops.sort();
    let bytes: u64 = ops.key_sizes().map(|n| entry_bytes(n) as u64).sum();
    let mut w = TableWriter::new(Kind::Delta, id, depth_for(bytes));
    let mut alloc = CoreAlloc(core);
    let mut any = false;
    for (h, k, d) in ops.deltas() {
        if let (false, ValSet::One(v), ValSet::Empty) = (d.cleared, &d.adds, &d.dels) {
            // One value added: most keys of most logs.
            w.add(&core.file, &mut alloc, h, &k, Values::Set(std::slice::from_ref(v)))?;
            any = true;
            continue;
        }
        let c = Change::of(&d);
        if !c.cleared && c.adds.is_empty() && c.dels.is_empty() {
            continue; // ops that cancel out
        }
        w.add(&core.file, &mut alloc, h, &k, Values::Change(&c))?;
        any = true;
        failpoint::hit("flush.entry");
    }
    drop(ops);
    let table = w.finish(&core.file, &mut alloc)?;
    failpoint::hit("flush.written");
    let mut st = core.st.lock();
    let mut next = st.root.clone();
    let sealed = next.sealed.take().expect("a sealed log to flush");
    let mut frees = Frees::default();
    frees
        .runs
        .push((sealed.log.offset, sealed.log.bytes / SEGMENT));
    if any {
        next.deltas.push(table);
        next.next_table_id = id + 1;
    } else {
        // Nothing to keep: the table's space goes back at once.
        free_unused(&mut frees, &table, &mut w);
    }
    frees.pages.extend(w.take_retired());
    if next.next_log.bytes == 0 {
        let bytes = super::log_bytes(&st);
        next.next_log = crate::format::root::Span {
            offset: st.space.alloc(bytes / SEGMENT)?,
            bytes,
        };
    }
    core.publish(&mut st, next, frees, Mode::Durable)?;
    st.sealed_ops = None;
    core.sealed
        .store(false, std::sync::atomic::Ordering::Release);
    failpoint::hit("flush.published");
    Ok(())
}

/// The space of a table written but not kept: its segments and array pages.
fn free_unused(frees: &mut Frees, t: &crate::format::table::TableRef, w: &mut TableWriter) {
    let _ = t;
    let (segs, pages) = w.written_space();
    frees.runs.extend(segs.into_iter().map(|s| (s, 1)));
    frees.pages.extend(pages);
}
