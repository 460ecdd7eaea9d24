//! Giving free space back to the filesystem. While the writer runs, the trim thread punches
//! free segments a piece at a time, once the free segments not yet punched exceed an eighth of
//! those in use (most freed space is written again soon: a new log, a merge's output), and
//! sleeps between pieces: a punch holds the file's inode lock, which every write waits for,
//! and with online discard (`-o discard`) it issues the discards while holding it. `trim`,
//! run by `close` and `gc`, punches every free page and segment. Only space that is free
//! *and* released (the root that freed it is durable and no pinned reader's root reaches it)
//! is punched: what is punched reads as zeros, which no root still readable references. A
//! reader without a pin that reads a punched page sees a bad magic number, exactly as when
//! the page is reused, and refreshes.

use super::core::{Core, Guard};
use crate::error::Result;
use crate::format::layout::{PAGE, SEGMENT};
use crate::store::Positional;
use std::time::{Duration, Instant};

/// Segments punched at once by the trim thread.
const PIECE: u64 = 8;
/// Free segments left unpunched whatever the store's size.
const FLOOR: u64 = 256;
/// The trim thread sleeps this many times as long as its last piece took: it holds the
/// inode lock at most a quarter of the time.
const REST: u32 = 3;

/// The trim thread's loop, until the writer stops or breaks.
pub fn trim_thread(core: &Core) {
    loop {
        let piece = {
            let mut st = core.st.lock();
            loop {
                if st.stop || st.broken.is_some() {
                    return;
                }
                if st.space.unpunched_over(FLOOR) {
                    if let Some(p) = st.space.take_punch(PIECE) {
                        break p;
                    }
                }
                core.cv.wait(&mut st);
            }
        };
        let t = Instant::now();
        // A filesystem without hole punching keeps the bytes; nothing depends on it.
        let _ = core.file.punch(piece.0, piece.1 * SEGMENT);
        let took = t.elapsed();
        core.st.lock().space.reuse(&[piece]);
        std::thread::sleep((took * REST).max(Duration::from_millis(1)));
    }
}

/// Punches the free pages and the free segments of `st`, and the room of its logs past the
/// first `log_used` bytes of the log commits append to; returns the bytes of free space
/// punched (0 on a filesystem that cannot punch holes).
pub fn trim(core: &Core, st: &mut Guard, log_used: u64) -> Result<u64> {
    core.release(st)?;
    // The logs' room past what commits wrote: a log's range is taken whole, and space taken
    // before the trim thread punched it keeps its old blocks.
    let (log, next) = (st.root.log, st.root.next_log);
    let used = log_used.min(log.bytes);
    core.file.unused(log.offset + used, log.bytes - used);
    core.file.unused(next.offset, next.bytes);
    let mut ranges: Vec<(u64, u64)> = st
        .space
        .free_page_list()
        .iter()
        .map(|p| (*p, PAGE as u64))
        .collect();
    ranges.extend(
        st.space
            .free_runs()
            .iter()
            .map(|(o, n)| (*o, n * crate::format::layout::SEGMENT)),
    );
    ranges.sort_unstable();
    let mut punched = 0;
    let mut i = 0;
    while i < ranges.len() {
        let (start, mut end) = (ranges[i].0, ranges[i].0 + ranges[i].1);
        i += 1;
        while i < ranges.len() && ranges[i].0 == end {
            end += ranges[i].1;
            i += 1;
        }
        if !core.file.punch(start, end - start)? {
            return Ok(0);
        }
        punched += end - start;
    }
    st.space.all_punched();
    Ok(punched)
}
