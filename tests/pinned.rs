//! Pinned readers: a reader's root and the log it reads in place stay whole while the writer
//! reuses and gives back space; without a pin a reader refreshes or copies its log tail.

mod common;

use common::engine::*;
use common::{k, TempDir};
use hashdir::{Key, Reader, Writer};

/// A reader pins the root of every view it holds in the reader table, so the writer reuses
/// none of that root's pages: a reader that never refreshes on its own still reads the old
/// state, whole, after the writer rewrote every bucket many times. The pin moves on when the
/// reader refreshes and its threads have moved to the new view, and goes when it closes, even
/// while another thread's cache still holds the old view.
#[test]
fn pinned_readers_hold_their_pages_back() {
    let d = TempDir::new("pins");
    let path = d.file("t.h5");
    let keys: Vec<Key> = (0..20_000).map(k).collect();
    let mut w = Writer::open(&path, &opts()).unwrap();
    let rewrite = |w: &mut Writer, v: u64| rewrite_all(w, &keys, v);
    rewrite(&mut w, 1);
    let r = Reader::open(&path, &manual()).unwrap();
    let epoch = r.stats().unwrap().epoch;
    // What the writer sees, through its own descriptor (a descriptor's own slot locks do not
    // count as held by someone else).
    let writer_view = hashdir::testing::ReaderTable::open(&path).unwrap().unwrap();
    assert_eq!(
        writer_view.oldest(),
        Some(epoch),
        "an idle reader pins its root"
    );
    for v in 2..8 {
        rewrite(&mut w, v);
        assert_eq!(
            count_with(&r, &keys, k(1)),
            keys.len(),
            "the pinned state is whole"
        );
    }
    // Giving free space back to the filesystem leaves the pinned root's pages alone.
    w.gc().unwrap();
    assert_eq!(count_with(&r, &keys, k(1)), keys.len(), "after gc's trim");
    assert_eq!(r.stats().unwrap().epoch, epoch, "no refresh was needed");
    r.refresh().unwrap();
    assert_eq!(
        count_with(&r, &keys, k(7)),
        keys.len(),
        "refreshed to the newest state"
    );
    let newest = r.stats().unwrap().epoch;
    assert!(newest > epoch);
    assert_eq!(
        writer_view.oldest(),
        Some(newest),
        "the old root's pin went with its views"
    );

    // Another thread caches the current view and stays alive past the close.
    let (looked, closed) = (std::sync::Barrier::new(2), std::sync::Barrier::new(2));
    let r = std::sync::Arc::new(r);
    std::thread::scope(|s| {
        let (r2, keys) = (r.clone(), &keys);
        let (looked, closed) = (&looked, &closed);
        s.spawn(move || {
            assert_eq!(count_with(&r2, keys, k(7)), keys.len());
            drop(r2);
            looked.wait();
            closed.wait();
        });
        looked.wait();
        rewrite(&mut w, 8);
        r.refresh().unwrap();
        assert_eq!(
            writer_view.oldest(),
            Some(newest),
            "the other thread still reads it"
        );
        drop(r);
        assert_eq!(writer_view.oldest(), None, "closing released every pin");
        closed.wait();
    });
    w.close().unwrap();
    assert!(hashdir::verify(&path).unwrap().is_ok());
}

/// With every reader-table slot taken a reader runs unpinned: the writer reuses its root's
/// pages, its reads fail validation, and it refreshes to the new state instead of returning
/// the old one's values or garbage.
#[test]
fn unpinned_readers_refresh_when_pages_are_reused() {
    let d = TempDir::new("unpinned");
    let path = d.file("t.h5");
    let keys: Vec<Key> = (0..20_000).map(k).collect();
    let mut w = Writer::open(&path, &opts()).unwrap();
    let rewrite = |w: &mut Writer, v: u64| rewrite_all(w, &keys, v);
    rewrite(&mut w, 1);
    let table = hashdir::testing::ReaderTable::open(&path).unwrap().unwrap();
    let all: Vec<_> = std::iter::from_fn(|| table.claim()).collect();
    assert_eq!(all.len(), hashdir::testing::SLOTS);
    let r = Reader::open(&path, &manual()).unwrap();
    let epoch = r.stats().unwrap().epoch;
    assert_eq!(count_with(&r, &keys, k(1)), keys.len());
    for v in 2..6 {
        rewrite(&mut w, v);
    }
    // Keys read before the first reused page still come from the old state: look twice.
    count_with(&r, &keys, k(5));
    assert!(
        r.stats().unwrap().epoch > epoch,
        "reused pages made it refresh"
    );
    assert_eq!(
        count_with(&r, &keys, k(5)),
        keys.len(),
        "refreshed to the newest state"
    );
    drop(all);
    w.close().unwrap();
}

/// A pinned reader reads a long log tail in place, not from a copy. The writer moves the log
/// at every checkpoint and reuses a replaced log's chunks only once no reader reads under its
/// root: a reader that never refreshes still sees exactly the tail it read after the writer has
/// filled and replaced its log many times; and a reader without a pin copies its tail.
#[test]
fn pinned_readers_read_their_log_in_place() {
    let d = TempDir::new("inplace");
    let path = d.file("t.h5");
    let opts = log_of(16 << 20);
    let mut w = Writer::open(&path, &opts).unwrap();
    let keys: Vec<Key> = (0..1500).map(k).collect();
    let mut model = Model::new();
    let insert = |w: &mut Writer, model: &mut Model, ks: &[Key], v: u64| {
        w.insert(ks, &vec![k(v); ks.len()]).unwrap();
        ks.iter().for_each(|key| {
            model.entry(*key).or_default().insert(k(v));
        });
    };
    insert(&mut w, &mut model, &keys[..1000], 1);
    w.commit().unwrap();
    w.checkpoint().unwrap();
    // A tail of inserts, pair deletes and key deletes, some of them on the same keys, long
    // enough to be indexed rather than copied.
    insert(&mut w, &mut model, &keys[1000..], 2);
    insert(&mut w, &mut model, &keys[..100], 3);
    w.delete_pairs(&keys[50..150], &vec![k(1); 100]).unwrap();
    w.delete_keys(&keys[900..1000]).unwrap();
    for key in &keys[50..150] {
        model.get_mut(key).unwrap().remove(&k(1));
    }
    for key in &keys[900..1000] {
        model.remove(key);
    }
    insert(&mut w, &mut model, &keys[950..960], 4);
    let bulk: Vec<Key> = (100_000..170_000).map(k).collect();
    insert(&mut w, &mut model, &bulk, 5);
    w.commit().unwrap();
    model.retain(|_, s| !s.is_empty());
    let r = Reader::open(&path, &manual()).unwrap();
    assert!(
        r.reads_log_in_place(),
        "a pinned reader indexes a long tail"
    );
    let probes: Vec<Key> = (5000..5100).map(k).collect();
    check_model(&r, &model, &probes);
    // More of the same log: the refresh's copied layer merges into the index.
    let more: Vec<Key> = (200_000..236_000).map(k).collect();
    insert(&mut w, &mut model, &more, 6);
    w.commit().unwrap();
    r.refresh().unwrap();
    assert!(r.reads_log_in_place());
    check_model(&r, &model, &probes);
    // Many logs' worth of other batches: every key gets value 9, and new keys arrive.
    let mut newest = model.clone();
    for round in 0..40u64 {
        let fresh: Vec<Key> = (10_000 + round * 100..10_100 + round * 100)
            .map(k)
            .collect();
        insert(&mut w, &mut newest, &keys, 9);
        insert(&mut w, &mut newest, &fresh, 9);
        w.commit().unwrap();
        w.checkpoint().unwrap();
    }
    assert!(w.stats().unwrap().epoch > r.stats().unwrap().epoch + 5);
    // Giving free space back to the filesystem leaves what the pinned root reads alone.
    w.gc().unwrap();
    check_model(&r, &model, &probes);
    r.refresh().unwrap();
    check_model(&r, &newest, &probes);

    // Without a free slot the reader copies its tail, and sees the same.
    w.insert(&keys[..10], &[k(8); 10]).unwrap();
    w.commit().unwrap();
    let table = hashdir::testing::ReaderTable::open(&path).unwrap().unwrap();
    let all: Vec<_> = std::iter::from_fn(|| table.claim()).collect();
    let unpinned = Reader::open(&path, &manual()).unwrap();
    assert!(!unpinned.reads_log_in_place());
    let mut want = newest[&keys[5]].clone();
    want.insert(k(8));
    assert_eq!(get_all(&unpinned, &keys[5]), want);
    drop(all);
    w.close().unwrap();
    assert!(hashdir::verify(&path).unwrap().is_ok());
}

/// Closing punches the free log chunks, but not a log a pinned reader reads in place, nor the
/// pages of its root.
#[test]
fn closing_keeps_what_pinned_readers_read() {
    let d = TempDir::new("trimpin");
    let path = d.file("t.h5");
    let keys: Vec<Key> = (0..1000).map(k).collect();
    let tail: Vec<Key> = (100_000..170_000).map(k).collect();
    let mut w = Writer::open(&path, &opts()).unwrap();
    rewrite_all(&mut w, &keys, 1);
    w.insert(&tail, &vec![k(2); tail.len()]).unwrap();
    w.commit().unwrap();
    let r = Reader::open(&path, &manual()).unwrap();
    assert!(
        r.reads_log_in_place(),
        "a pinned reader indexes a long tail"
    );
    let epoch = r.stats().unwrap().epoch;
    for v in 3..6 {
        rewrite_all(&mut w, &keys, v);
    }
    w.close().unwrap();
    assert_eq!(count_with(&r, &tail, k(2)), tail.len(), "its log tail");
    assert_eq!(count_with(&r, &keys, k(1)), keys.len(), "its pages");
    assert_eq!(r.stats().unwrap().epoch, epoch, "no refresh was needed");
    r.refresh().unwrap();
    assert_eq!(count_with(&r, &keys, k(5)), keys.len());
    assert!(hashdir::verify(&path).unwrap().is_ok());
}
