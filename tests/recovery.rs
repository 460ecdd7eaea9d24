//! Reopening and recovery: the log replayed after a drop, a lost frame that must never count
//! again, and a damaged page reported by verify, readers and the merge.

mod common;

use common::engine::*;
use common::{k, TempDir};
use hashdir::{Error, Key, Options, Reader, Value, Writer};
use std::collections::BTreeSet;

#[test]
fn reopen_keeps_everything_and_replays_the_log() {
    let d = TempDir::new("reopen");
    let path = d.file("t.h5");
    let mut w = Writer::open(&path, &opts()).unwrap();
    w.insert(&[k(1)], &[k(2)]).unwrap();
    w.commit().unwrap();
    w.checkpoint().unwrap();
    w.insert(&[k(3)], &[k(4)]).unwrap();
    w.commit().unwrap();
    drop(w); // no close: the second batch lives only in the WAL
    let w = Writer::open(&path, &opts()).unwrap();
    let r = Reader::open(&path, &opts()).unwrap();
    assert_eq!(get_all(&r, &k(1)), BTreeSet::from([k(2)]));
    assert_eq!(get_all(&r, &k(3)), BTreeSet::from([k(4)]));
    w.close().unwrap();
    let mut w = Writer::open(
        &path,
        &Options {
            create: false,
            ..opts()
        },
    )
    .unwrap();
    // Closing moved the log into a delta table; a checkpoint merges it into the base.
    w.checkpoint().unwrap();
    assert_eq!(w.stats().unwrap().keys, 2);
    w.close().unwrap();
}

/// A power cut that lost a frame but kept the one after it: recovery ends the log before the
/// lost frame, and the old frame after it never counts again, even when the new commits write
/// a frame of the same size, generation and LSN where the lost one was (frame CRCs are
/// chained).
#[test]
fn a_frame_after_a_lost_frame_never_comes_back() {
    let d = TempDir::new("lost-frame");
    let path = d.file("t.h5");
    let image = d.file("image.h5");
    let mut w = Writer::open(&path, &opts()).unwrap();
    for i in 1..=3 {
        w.insert(&[k(i)], &[k(100 + i)]).unwrap();
        w.commit().unwrap();
    }
    std::fs::copy(&path, &image).unwrap();
    drop(w);
    // The image's three frames (one pair each, 72 bytes): lose the second one's header.
    let bytes = head(&image);
    let frames: Vec<usize> = (0..bytes.len() - 32)
        .step_by(8)
        .filter(|at| &bytes[*at..*at + 4] == b"HDWL")
        .collect();
    assert_eq!(frames.len(), 3, "frames of the image: {frames:?}");
    assert_eq!(frames[1] - frames[0], frames[2] - frames[1]);
    patch(&image, frames[1] as u64, &[0u8; 32]);
    let mut w = Writer::open(&image, &opts()).unwrap();
    w.insert(&[k(4)], &[k(104)]).unwrap();
    w.commit().unwrap();
    let expect = |r: &Reader| {
        assert_eq!(get_all(r, &k(1)), BTreeSet::from([k(101)]));
        assert_eq!(get_all(r, &k(2)), BTreeSet::new(), "the lost batch");
        assert_eq!(
            get_all(r, &k(3)),
            BTreeSet::new(),
            "the batch after the lost one"
        );
        assert_eq!(get_all(r, &k(4)), BTreeSet::from([k(104)]));
    };
    expect(&Reader::open(&image, &opts()).unwrap());
    drop(w);
    let w = Writer::open(&image, &opts()).unwrap();
    expect(&Reader::open(&image, &opts()).unwrap());
    w.close().unwrap();
    expect(&Reader::open(&image, &opts()).unwrap());
}

#[test]
fn verify_and_readers_report_a_damaged_page() {
    let d = TempDir::new("damage");
    let path = d.file("t.h5");
    let mut w = Writer::open(&path, &opts()).unwrap();
    let keys: Vec<Key> = (0..5_000).map(k).collect();
    w.insert(&keys, &keys).unwrap();
    w.commit().unwrap();
    w.checkpoint().unwrap(); // one base table, nothing left to merge
    w.close().unwrap();
    let bytes = head(&path);
    let page = (0..bytes.len() / 4096)
        .map(|i| i * 4096)
        .find(|at| &bytes[*at..*at + 4] == b"HDBK")
        .expect("a table page");
    patch(&path, page as u64 + 200, &[bytes[page + 200] ^ 0x40]);
    let report = hashdir::verify(&path).unwrap();
    assert!(!report.is_ok());
    assert!(
        report.problems.iter().any(|p| p.contains("table page")),
        "{:?}",
        report.problems
    );
    let r = Reader::open(&path, &opts()).unwrap();
    let mut corrupt = 0;
    for key in &keys {
        let (mut first, mut found) = ([[0u8; 16]; 1], [0u8; 1]);
        match r.lookup(std::slice::from_ref(key), &mut first, &mut found) {
            Ok(()) => assert!(
                found[0] == 1 && first[0] == *key,
                "wrong answer, not an error"
            ),
            Err(Error::Corrupt { .. }) => corrupt += 1,
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert!(
        corrupt > 0 && corrupt < keys.len(),
        "{corrupt} keys reported corrupt"
    );
    // The checkpoint's merge meets the damaged page: it stops with that error and publishes
    // nothing of the merge, and the committed batch stays readable (from its delta table).
    let reopen = Options {
        create: false,
        ..opts()
    };
    let mut w = Writer::open(&path, &reopen).unwrap();
    let vals: Vec<Value> = (0..5_000).map(|i| k(i + 1_000_000)).collect();
    w.insert(&keys, &vals).unwrap();
    w.commit().unwrap();
    match w.checkpoint() {
        Err(Error::Corrupt {
            what: "table page", ..
        }) => {}
        other => panic!("checkpoint over a damaged page gave {other:?}"),
    }
    drop(w);
    let r = Reader::open(&path, &opts()).unwrap();
    let (mut first, mut found) = (vec![[0u8; 16]; keys.len()], vec![0u8; keys.len()]);
    r.lookup(&keys, &mut first, &mut found).unwrap();
    assert!(
        found.iter().all(|f| *f == 1) && first == vals,
        "newest values"
    );
}
