//! Flush: a sealed log's ops become a delta table. The ops are sorted by (hash, key) and each
//! key's ops folded into one change, written as one table in hash order: the cost follows the
//! log, whatever the size of the tables before it.

use super::super::core::{Core, CoreAlloc, Frees, Mode, ALL_DONE};
use super::super::delta::ValSet;
use super::super::failpoint;
use super::super::oplog::OpLog;
use super::super::sets::Change;
use super::super::space::Work;
use super::super::table::write::{depth_for, entry_bytes, TableWriter, Values};
use crate::error::Result;
use crate::format::layout::SEGMENT;
use crate::format::table::Kind;

/// Turns the sealed log's ops into a delta table and publishes it (the sealed log is freed).
pub fn flush(core: &Core, mut ops: OpLog) -> Result<()> {
    let progress = &core.flush_progress;
    let id = core.st.lock().new_table_id();
    ops.sort(progress);
    let bytes: u64 = ops.key_sizes().map(|n| entry_bytes(n) as u64).sum();
    let mut w = TableWriter::new(Kind::Delta, id, depth_for(bytes));
    let mut alloc = CoreAlloc(core, Work::Flush);
    let mut any = false;
    for (h, k, d) in ops.deltas() {
        // Writing takes the flush from half done to 95 %: the rest is finishing and publishing.
        progress.set(ALL_DONE / 2 + ((h >> 48) * 9 / 20) as u32);
        if let (false, ValSet::One(v), ValSet::Empty) = (d.cleared, &d.adds, &d.dels) {
            // One value added: most keys of most logs.
            w.add(
                &core.file,
                &mut alloc,
                h,
                &k,
                Values::Set(std::slice::from_ref(v)),
            )?;
            any = true;
            continue;
        }
        let c = Change::of(&d);
        if !c.cleared && c.adds.is_empty() && c.dels.is_empty() {
            continue; // ops that cancel out
        }
        w.add(&core.file, &mut alloc, h, &k, Values::Change(c.as_ref()))?;
        any = true;
        failpoint::hit("flush.entry");
    }
    drop(ops);
    let table = w.finish(&core.file, &mut alloc)?;
    failpoint::hit("flush.written");
    let mut st = core.st.lock();
    let mut next = st.root.clone();
    let sealed = next.sealed.take().expect("a sealed log to flush");
    let mut frees = Frees {
        settles: Some(Work::Flush),
        ..Frees::default()
    };
    frees
        .runs
        .push((sealed.log.offset, sealed.log.bytes / SEGMENT));
    if any {
        next.deltas.push(table);
    } else {
        // Nothing to keep: the table's space goes back at once.
        let (segs, pages) = w.written_space();
        frees.runs.extend(segs.into_iter().map(|s| (s, 1)));
        frees.pages.extend(pages);
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
    progress.set(ALL_DONE);
    failpoint::hit("flush.published");
    Ok(())
}
