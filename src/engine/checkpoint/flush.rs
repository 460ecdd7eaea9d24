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
use super::policy;
use crate::error::Result;
use crate::format::filter::{holds, FilterBuilder};
use crate::format::layout::SEGMENT;
use crate::format::table::Kind;
use std::time::{Duration, Instant};

/// How a flush's time divides between its phases — sorting the ops, sizing the table,
/// writing the entries, finishing the table and publishing it — as the last flushes went. A
/// flush reports its progress in proportion, so that the commits it paces
/// (`checkpoint::may_fill`) move about evenly with its time: a phase slower than its share
/// would stop them at its start, and the last phase (its syncs take what they take) has that
/// much of the log left to fill meanwhile.
pub struct Phases {
    /// Where each phase but the last ends, of `ALL_DONE`: sorting, sizing, writing.
    ends: [u32; 3],
}

impl Default for Phases {
    fn default() -> Phases {
        Phases {
            ends: [ALL_DONE / 2, ALL_DONE / 10 * 6, ALL_DONE / 5 * 4],
        }
    }
}

impl Phases {
    /// Learns from a flush whose phases ended at `ends` after its start and that took
    /// `total`: half the last shares, half this flush's.
    fn learn(&mut self, ends: [Duration; 3], total: Duration) {
        let total = total.as_secs_f64().max(1e-6);
        // Every phase keeps a part: a phase that took nothing this time may take longer next.
        // The last keeps more: its syncs take what the device gives them, and what it keeps
        // is log the commits go on filling meanwhile.
        let least = ALL_DONE / 20;
        let last = ALL_DONE / 20 * 3;
        let mut floor = 0;
        for (i, end) in ends.iter().enumerate() {
            let share = (end.as_secs_f64() / total * ALL_DONE as f64) as u32;
            let left = last + (ends.len() - 1 - i) as u32 * least;
            let at = share.clamp(floor + least, ALL_DONE - left);
            self.ends[i] = ((self.ends[i] + at) / 2).clamp(floor + least, ALL_DONE - left);
            floor = self.ends[i];
        }
    }

    /// Progress at `done` of phase `i` (of `ALL_DONE`).
    fn at(&self, i: usize, done: u64) -> u32 {
        let from = if i == 0 { 0 } else { self.ends[i - 1] };
        let span = u64::from(self.ends[i] - from);
        from + (done.min(u64::from(ALL_DONE)) * span / u64::from(ALL_DONE)) as u32
    }
}

/// What the flush thread carries from one flush to the next.
#[derive(Default)]
pub struct Flusher {
    pub phases: Phases,
    /// The keys of the last log flushed, as a filter.
    last: Option<FilterBuilder>,
}

/// Keys of a log tested against the last log's: every this many.
const SAMPLE_EVERY: u64 = 61;

impl Flusher {
    /// Whether the table of a log whose sampled key hashes are `sample` gets a key filter:
    /// when most of them were not in the last log (each log brings mostly keys of its own,
    /// so a search for another key can skip its table). When every log touches the same keys
    /// (values arriving in rounds) the tables all hold them, and a filter would only slow
    /// searches down. With no last log, by the tables' sizes (`policy::wants_filter`).
    fn wants_filter(&self, core: &Core, keys: u64, sample: &[u64]) -> bool {
        match &self.last {
            Some(last) => {
                let recur = sample.iter().filter(|&&h| holds(last.words(), h)).count();
                keys > 0 && recur * 2 < sample.len().max(1)
            }
            None => policy::wants_filter(&core.st.lock().root, keys),
        }
    }
}

/// Turns the sealed log's ops into a delta table and publishes it (the sealed log is freed).
pub fn flush(core: &Core, mut ops: OpLog, flusher: &mut Flusher) -> Result<()> {
    let phases = &mut flusher.phases;
    let start = Instant::now();
    let progress = &core.flush_progress;
    let id = core.st.lock().new_table_id();
    let mut ends = [Duration::ZERO; 3];
    ops.sort(&|done| progress.set(phases.at(0, done.into())));
    ends[0] = start.elapsed();
    let total = ops.len().max(1) as u64;
    let (mut bytes, mut seen, mut keys) = (0u64, 0u64, 0u64);
    let mut sample = Vec::new();
    for (h, n) in ops.key_sizes() {
        if keys % SAMPLE_EVERY == 0 {
            sample.push(h);
        }
        keys += 1;
        bytes += entry_bytes(n) as u64;
        seen += n as u64;
        if seen % 65536 < n as u64 {
            progress.set(phases.at(1, seen * u64::from(ALL_DONE) / total));
        }
    }
    ends[1] = start.elapsed();
    let filter = flusher.wants_filter(core, keys, &sample);
    if !filter {
        // The next flush's sample is tested against these keys; a table with a filter keeps
        // them in its own (taken when it is written).
        let mut these = FilterBuilder::new(keys);
        ops.key_sizes().for_each(|(h, _)| these.add(h));
        flusher.last = Some(these);
    }
    let phases = &mut flusher.phases;
    let mut w = TableWriter::new(Kind::Delta, id, depth_for(bytes), filter.then_some(keys));
    let mut alloc = CoreAlloc(core, Work::Flush);
    let mut any = false;
    // By ops written, not by hash: a key of many values takes its share of the time.
    let mut done = 0u64;
    for (h, k, d) in ops.deltas() {
        progress.set(phases.at(2, done * u64::from(ALL_DONE) / total));
        done += (d.adds.len() + d.dels.len()).max(1) as u64;
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
    ends[2] = start.elapsed();
    let table = w.finish(&core.file, &mut alloc)?;
    if filter {
        flusher.last = w.take_filter();
    }
    failpoint::hit("flush.written");
    let mut st = core.publisher_synced()?;
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
    // Commits stop pacing by this flush as its root is published, before its space is
    // punched: a switch may seal the next log meanwhile, and pacing starts over for it.
    core.publish_then(&mut st, next, frees, Mode::Durable, |st| {
        st.sealed_ops = None;
        core.sealed
            .store(false, std::sync::atomic::Ordering::Release);
        progress.set(ALL_DONE);
        core.flush_clock.finish();
    })?;
    phases.learn(ends, start.elapsed());
    failpoint::hit("flush.published");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_follow_the_time_each_took_and_stay_ordered() {
        let mut p = Phases::default();
        let ms = Duration::from_millis;
        for _ in 0..20 {
            p.learn([ms(100), ms(700), ms(800)], ms(1000));
        }
        let share = |x: u32| x as f64 / ALL_DONE as f64;
        assert!((share(p.ends[0]) - 0.1).abs() < 0.01, "{:?}", p.ends);
        assert!((share(p.ends[1]) - 0.7).abs() < 0.01, "{:?}", p.ends);
        assert!((share(p.ends[2]) - 0.8).abs() < 0.01, "{:?}", p.ends);
        // A phase that took nothing keeps a part; a sudden swing keeps the order.
        for total in [ms(1), ms(1000), ms(0)] {
            p.learn([ms(0), ms(0), ms(1000)], total);
            assert!(p.ends[0] < p.ends[1] && p.ends[1] < p.ends[2] && p.ends[2] < ALL_DONE);
        }
        assert_eq!(p.at(0, 0), 0);
        assert_eq!(p.at(1, 0), p.ends[0]);
        assert_eq!(p.at(2, u64::from(ALL_DONE)), p.ends[2]);
    }
}
