//! Giving free space back to the filesystem. Segments are punched out of the file as soon as
//! they become reusable (`Core::release`); free array pages — scattered single pages — are
//! punched when the writer closes or collects garbage. Only space that is free *and* released
//! (the root that freed it is durable and no pinned reader's root reaches it) is punched: what
//! is punched reads as zeros, which no root still readable references. A reader without a pin
//! that reads a punched page sees a bad magic number, exactly as when the page is reused, and
//! refreshes.

use super::core::{Core, Guard};
use crate::error::Result;
use crate::format::layout::PAGE;

/// Punches the free pages and the free segments of `st`; returns the bytes punched (0 on a
/// filesystem that cannot punch holes).
pub fn trim(core: &Core, st: &mut Guard) -> Result<u64> {
    core.release(st)?;
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
    Ok(punched)
}
