//! Space accounting: gc of orphans, the file size under churn and many small checkpoints,
//! space given back on close, and full pages after a checkpoint that grows every page.

mod common;

use common::engine::*;
use common::{k, TempDir};
use hashdir::{Key, Reader, Value, Writer};
use std::path::Path;

#[test]
fn gc_reclaims_orphans_once_and_keeps_data() {
    let d = TempDir::new("gc");
    let path = d.file("t.h5");
    let mut w = Writer::open(&path, &opts()).unwrap();
    let keys: Vec<Key> = (0..20_000).map(k).collect();
    for round in 0..3u64 {
        let vals: Vec<Value> = (0..20_000).map(|i| k(i + round)).collect();
        w.insert(&keys, &vals).unwrap();
        w.commit().unwrap();
        w.checkpoint().unwrap();
    }
    w.close().unwrap();
    let before = hashdir::verify(&path).unwrap();
    assert!(before.is_ok(), "{:?}", before.problems);
    // Forget the free-page list: those pages become orphans nothing references.
    edit_root(&path, |r| r.free_pages = Default::default());
    assert!(hashdir::verify(&path).unwrap().is_ok());
    let mut w = Writer::open(&path, &opts()).unwrap();
    let first = w.gc().unwrap();
    assert!(first.pages_reclaimed > 100, "{first:?}");
    assert_eq!(w.gc().unwrap(), hashdir::GcReport::default(), "idempotent");
    w.close().unwrap();
    let after = hashdir::verify(&path).unwrap();
    assert!(after.is_ok(), "{:?}", after.problems);
    assert_eq!((after.keys, after.values), (20_000, 60_000));
}

/// Rewrites the newest root slot with `edit` applied (a test's way to make orphans).
fn edit_root(path: &Path, edit: impl Fn(&mut hashdir::testing::root::Root)) {
    use hashdir::testing::layout::ROOT_SLOT;
    let bytes = head(path);
    let magic = hashdir::testing::root::MAGIC;
    let at = bytes
        .windows(8)
        .position(|w| w == magic)
        .expect("a root slot");
    let slot0 = &bytes[at..at + ROOT_SLOT];
    let slot1 = &bytes[at + ROOT_SLOT..at + 2 * ROOT_SLOT];
    let mut root = hashdir::testing::root::newest(slot0, slot1).unwrap();
    let slot = at as u64 + (root.epoch % 2) * ROOT_SLOT as u64;
    edit(&mut root);
    patch(path, slot, &root.encode());
}

#[test]
fn churn_at_a_steady_size_plateaus_the_file() {
    let d = TempDir::new("churn");
    let path = d.file("t.h5");
    let mut w = Writer::open(&path, &small_log()).unwrap();
    let live = 20_000u64;
    let step = 4_000u64;
    let ins = |w: &mut Writer, from: u64| {
        let keys: Vec<Key> = (from..from + step).map(k).collect();
        // Every fourth key has a set big enough for an extent, so extents churn too.
        let mut ks = Vec::new();
        let mut vs = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            let n = if i % 4 == 0 { 12 } else { 1 };
            for j in 0..n {
                ks.push(*key);
                vs.push(k(j));
            }
        }
        w.insert(&ks, &vs).unwrap();
    };
    for from in (0..live).step_by(step as usize) {
        ins(&mut w, from);
    }
    w.commit().unwrap();
    w.checkpoint().unwrap();
    let mut sizes = Vec::new();
    for round in 0..60u64 {
        let oldest = round * step;
        let keys: Vec<Key> = (oldest..oldest + step).map(k).collect();
        w.delete_keys(&keys).unwrap();
        ins(&mut w, live + oldest);
        w.commit().unwrap();
        w.checkpoint().unwrap();
        sizes.push(w.stats().unwrap().file_bytes);
    }
    let s = w.stats().unwrap();
    assert_eq!(s.keys, live);
    println!(
        "churn file bytes every 10 rounds: {:?}",
        sizes.iter().step_by(10).collect::<Vec<_>>()
    );
    let first_half = *sizes[..30].iter().max().unwrap();
    let second_half = *sizes[30..].iter().max().unwrap();
    assert!(
        second_half <= first_half + first_half / 10,
        "file keeps growing under churn: {first_half} then {second_half}"
    );
    w.close().unwrap();
    assert!(hashdir::verify(&path).unwrap().is_ok());
}

/// Closing gives the space of old table versions and of the logs back to the filesystem: the
/// file then takes on disk about what its tables take, and reads, reopens and grows as
/// before.
#[test]
fn close_gives_free_space_back() {
    let d = TempDir::new("trim");
    let path = d.file("t.h5");
    let keys: Vec<Key> = (0..100_000).map(k).collect();
    let mut w = Writer::open(&path, &opts()).unwrap();
    for v in 1..4 {
        rewrite_all(&mut w, &keys, v);
    }
    let open = w.stats().unwrap();
    w.close().unwrap();
    let r = Reader::open(&path, &manual()).unwrap();
    let closed = r.stats().unwrap();
    let live = closed.buckets * 4096 + closed.delta_bytes;
    println!(
        "disk bytes while open {}, after close {}, live table pages {live}, file length {}",
        open.disk_bytes, closed.disk_bytes, closed.file_bytes
    );
    assert_eq!(closed.file_bytes, open.file_bytes, "the length stays");
    // Tables are written in whole segments, and the free lists have their own.
    assert!(
        closed.disk_bytes < live + live / 4 + (4 << 20),
        "after close the file takes {} bytes on disk for {live} bytes of tables",
        closed.disk_bytes
    );
    assert_eq!(count_with(&r, &keys, k(3)), keys.len());
    drop(r);
    assert!(hashdir::verify(&path).unwrap().is_ok());
    // The punched log and pages are written again.
    let mut w = Writer::open(&path, &opts()).unwrap();
    assert_eq!(w.recovery().frames, 0);
    let more: Vec<Key> = (100_000..150_000).map(k).collect();
    w.insert(&more, &more).unwrap();
    w.commit().unwrap();
    drop(w);
    let mut w = Writer::open(&path, &opts()).unwrap();
    assert_eq!(w.recovery().frames, 1, "the log in a punched chunk");
    rewrite_all(&mut w, &keys, 4);
    w.close().unwrap();
    assert!(hashdir::verify(&path).unwrap().is_ok());
    let r = Reader::open(&path, &manual()).unwrap();
    assert_eq!(count_with(&r, &keys, k(4)), keys.len());
    assert_eq!(count_with(&r, &more[..10], more[0]), 1);
}

/// Many small checkpoints over a big free list: the free list's own pages must come from the
/// free list. (They came from the end of the file, so each checkpoint grew the file by the
/// free list's size: doubling about every 350 checkpoints, found by a 10-minute stress run.)
#[test]
fn many_small_checkpoints_keep_the_file_size() {
    let d = TempDir::new("smallckpt");
    let path = d.file("t.h5");
    let mut w = Writer::open(&path, &small_log()).unwrap();
    // A big table, then almost all of it deleted: thousands of free pages.
    let keys: Vec<Key> = (0..200_000).map(k).collect();
    w.insert(&keys, &keys).unwrap();
    w.commit().unwrap();
    w.checkpoint().unwrap();
    w.delete_keys(&keys[100..]).unwrap();
    w.commit().unwrap();
    w.checkpoint().unwrap();
    let start = w.stats().unwrap().file_bytes;
    for round in 0..1500u64 {
        w.delete_keys(&[k(round % 100)]).unwrap();
        w.insert(&[k(round % 100)], &[k(round)]).unwrap();
        w.commit().unwrap();
        w.checkpoint().unwrap();
    }
    let end = w.stats().unwrap().file_bytes;
    assert!(
        end <= start + start / 20,
        "file grew from {start} to {end} bytes"
    );
    w.close().unwrap();
    assert!(hashdir::verify(&path).unwrap().is_ok());
}

/// Pages cut from one window stay full when a checkpoint grows every page of a table by half
/// or more (34-byte one-value entries in 4,064-byte page bodies: docs/FORMAT.md 3.1).
#[test]
fn a_checkpoint_that_grows_every_page_keeps_them_full() {
    let d = TempDir::new("regrow");
    let path = d.file("t.h5");
    let mut w = Writer::open(&path, &log_of(64 << 20)).unwrap();
    let fill = |s: &hashdir::Stats| (s.keys * 34) as f64 / (s.buckets * 4064) as f64;
    for round in 0..3u64 {
        let (from, to) = (round * 100_000, (round + 1) * 100_000);
        let keys: Vec<Key> = (from..to).map(k).collect();
        w.insert(&keys, &keys).unwrap();
        w.commit().unwrap();
        w.checkpoint().unwrap();
        let s = w.stats().unwrap();
        assert_eq!(s.keys, to);
        assert!(
            fill(&s) > 0.85,
            "round {round}: fill {:.3}, {s:?}",
            fill(&s)
        );
    }
    w.close().unwrap();
}
