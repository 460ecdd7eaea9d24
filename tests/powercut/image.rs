//! Crash images: what a file can hold after a power cut at a given point of a trace.
//!
//! The fault model (docs/POWERCUT.md):
//! - a completed sync (`S`) makes every operation recorded before it durable, exactly;
//! - an operation after the last completed sync may or may not have reached the disk, each
//!   independently of the others and in no particular order, except that an operation that
//!   reached it did so whole or, for a write, in pieces: a write is cut at 4 KiB file
//!   boundaries (the page cache's unit) and each piece reaches the disk whole, not at all, or
//!   torn at 512 B sectors (any subset of its sectors); a sector is written atomically;
//! - a write past the end of the file extends it (with zeros in between) as far as the
//!   sectors of it that reached the disk; a punch zeroes its range inside the file; a length
//!   change cuts or extends the file;
//! - what reached the disk did so as the trace says: later operations on the same bytes are
//!   applied after earlier ones, so a block holds its newest surviving version.
//!
//! A failed sync (`F` record of a sync) is read one of two ways (`FailedSync`).

use super::trace::{Rec, FAULT_SYNC};

/// The page cache's unit: writes are cut into pieces at multiples of it.
pub const BLOCK: u64 = 4096;
/// The disk's atomic unit: a torn piece keeps a subset of its sectors.
pub const SECTOR: u64 = 512;

/// What became of one piece of an unsynced write (at most one 4 KiB block).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    Kept,
    Lost,
    /// Bit `i` set: the piece's `i`-th sector (counted from the piece's first) reached the disk.
    Torn(u8),
}

/// Decides the fate of each operation after the last completed sync.
pub trait Chooser {
    /// The piece `[off, off + len)` of unsynced record `rec`, which touches `sectors` sectors
    /// (1 to 8).
    fn piece(&mut self, rec: usize, off: u64, len: u64, sectors: u32) -> Fate;
    /// Whether the unsynced punch or length change `rec` reached the disk.
    fn meta(&mut self, rec: usize) -> bool;
}

/// Every unsynced operation reached the disk whole: the page cache's view, what a process
/// crash (SIGKILL) leaves.
pub struct KeepAll;

impl Chooser for KeepAll {
    fn piece(&mut self, _: usize, _: u64, _: u64, _: u32) -> Fate {
        Fate::Kept
    }
    fn meta(&mut self, _: usize) -> bool {
        true
    }
}

/// No unsynced operation reached the disk: only what was synced.
pub struct LoseAll;

impl Chooser for LoseAll {
    fn piece(&mut self, _: usize, _: u64, _: u64, _: u32) -> Fate {
        Fate::Lost
    }
    fn meta(&mut self, _: usize) -> bool {
        false
    }
}

/// What a failed sync means for the operations recorded since the last completed one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailedSync {
    /// They are still pending, as for an injected fault (the sync was never issued, the
    /// pages are still dirty): a later completed sync makes them durable.
    KeepsDirty,
    /// Linux after a writeback error: the pages are marked clean, so those operations may
    /// never reach the disk, not even after a later sync succeeds. Taken at its worst: none
    /// of them does (a later operation on the same bytes is a new one and counts as usual).
    LosesDirty,
}

/// What went into an image.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Built {
    /// Index of the last completed sync before the crash point.
    pub last_sync: Option<usize>,
    /// Operations between that sync and the crash point (the ones whose fate was chosen).
    pub unsynced: u32,
    /// Unsynced write pieces kept whole, lost and torn.
    pub kept: u32,
    pub lost: u32,
    pub torn: u32,
    /// Unsynced punches and length changes applied and not.
    pub meta_applied: u32,
    pub meta_skipped: u32,
    /// Operations dropped for good by a failed sync (`FailedSync::LosesDirty`).
    pub dropped_by_failed_sync: u32,
}

impl Built {
    /// Whether every unsynced operation reached the disk whole (the image is then the page
    /// cache's view at the crash point).
    pub fn nothing_lost(&self) -> bool {
        self.lost == 0
            && self.torn == 0
            && self.meta_skipped == 0
            && self.dropped_by_failed_sync == 0
    }
}

/// Index of the last completed sync among the first `crash` records.
pub fn last_sync_before(recs: &[Rec], crash: usize) -> Option<usize> {
    recs[..crash].iter().rposition(|r| *r == Rec::Sync)
}

/// The image after a power cut when the first `crash` records had completed (`crash` in
/// `0..=recs.len()`): `base`, then every operation up to the last completed sync exactly,
/// then each later one as `choose` decides.
pub fn build(
    base: &[u8],
    recs: &[Rec],
    crash: usize,
    failed: FailedSync,
    choose: &mut dyn Chooser,
) -> (Vec<u8>, Built) {
    assert!(
        crash <= recs.len(),
        "crash point {crash} past the trace's {} records",
        recs.len()
    );
    let mut img = base.to_vec();
    let mut built = Built::default();
    let mut pending: Vec<usize> = Vec::new();
    for (i, r) in recs[..crash].iter().enumerate() {
        match r {
            Rec::Sync => {
                for j in pending.drain(..) {
                    apply(&mut img, &recs[j]);
                }
                built.last_sync = Some(i);
            }
            Rec::Fault { op, .. } if *op == FAULT_SYNC && failed == FailedSync::LosesDirty => {
                built.dropped_by_failed_sync += pending.len() as u32;
                pending.clear();
            }
            Rec::Mark(_) | Rec::Fault { .. } => {}
            Rec::Write { .. } | Rec::Punch { .. } | Rec::SetLen { .. } => pending.push(i),
            Rec::Create | Rec::Rename { .. } | Rec::SyncDir => {
                panic!("record {i}: {r:?} is no operation on a file's bytes (see files.rs)")
            }
        }
    }
    built.unsynced = pending.len() as u32;
    for j in pending {
        apply_chosen(&mut img, j, &recs[j], choose, &mut built);
    }
    (img, built)
}

/// Applies one operation exactly.
pub fn apply(img: &mut Vec<u8>, r: &Rec) {
    match r {
        Rec::Write { off, data } => put(img, *off, data),
        Rec::Punch { off, len } => punch(img, *off, *len),
        Rec::SetLen { len } => img.resize(*len as usize, 0),
        Rec::Sync | Rec::Mark(_) | Rec::Fault { .. } => {}
        Rec::Create | Rec::Rename { .. } | Rec::SyncDir => {
            panic!("{r:?} is no operation on a file's bytes (see files.rs)")
        }
    }
}

fn apply_chosen(img: &mut Vec<u8>, i: usize, r: &Rec, choose: &mut dyn Chooser, b: &mut Built) {
    let Rec::Write { off, data } = r else {
        if choose.meta(i) {
            apply(img, r);
            b.meta_applied += 1;
        } else {
            b.meta_skipped += 1;
        }
        return;
    };
    let end = off + data.len() as u64;
    let mut at = *off;
    while at < end {
        let piece_end = end.min((at / BLOCK + 1) * BLOCK);
        let first_sector = at / SECTOR;
        let sectors = ((piece_end - 1) / SECTOR - first_sector + 1) as u32;
        let bytes = |from: u64, to: u64| &data[(from - off) as usize..(to - off) as usize];
        match choose.piece(i, at, piece_end - at, sectors) {
            Fate::Kept => {
                put(img, at, bytes(at, piece_end));
                b.kept += 1;
            }
            Fate::Lost => b.lost += 1,
            Fate::Torn(mask) => {
                for s in 0..sectors {
                    if mask & (1 << s) != 0 {
                        let from = at.max((first_sector + s as u64) * SECTOR);
                        let to = piece_end.min((first_sector + s as u64 + 1) * SECTOR);
                        put(img, from, bytes(from, to));
                    }
                }
                b.torn += 1;
            }
        }
        at = piece_end;
    }
}

/// Writes `data` at `off`, extending the image with zeros as needed.
fn put(img: &mut Vec<u8>, off: u64, data: &[u8]) {
    let (off, end) = (off as usize, off as usize + data.len());
    if img.len() < end {
        img.resize(end, 0);
    }
    img[off..end].copy_from_slice(data);
}

/// Zeroes `[off, off + len)` inside the image; the length stays (FALLOC_FL_KEEP_SIZE).
fn punch(img: &mut [u8], off: u64, len: u64) {
    let n = img.len() as u64;
    let (from, to) = (off.min(n) as usize, off.saturating_add(len).min(n) as usize);
    img[from..to].fill(0);
}
