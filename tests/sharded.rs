//! Sharded stores: keys routed to their shard, answers in the caller's order, stats summed,
//! one writer per store and per shard, bad manifests refused, and unrecorded set commits cut.

mod common;

use common::engine::*;
use common::{k, Rng, TempDir};
use hashdir::{shard_of, ShardedWriter, StoreReader, StoreWriter};
use hashdir::{Error, Key, Options, Reader, Value, Writer};
use std::collections::BTreeSet;
use std::path::Path;

fn store_opts(shards: u32) -> Options {
    Options { shards, ..opts() }
}

fn shard_file(dir: &Path, i: u32) -> std::path::PathBuf {
    dir.join(format!("shard_{i:03}.h5"))
}

fn values_of(r: &StoreReader, keys: &[Key]) -> (Vec<u64>, Vec<Value>) {
    let mut counts = vec![0u64; keys.len()];
    let mut buf = vec![[0u8; 16]; 1];
    loop {
        match r.get(keys, &mut buf, &mut counts) {
            Ok(n) => {
                buf.truncate(n);
                return (counts, buf);
            }
            Err(Error::BufferTooSmall { needed, .. }) => buf.resize(needed, [0; 16]),
            Err(e) => panic!("get failed: {e}"),
        }
    }
}

/// Keys 0..n, key i holding the values 0..i % 4 + 1 (so counts differ from key to key).
fn fill(w: &mut StoreWriter, n: u64) -> Model {
    let mut m = Model::new();
    for i in 0..n {
        let vs: Vec<Value> = (0..i % 4 + 1).map(|j| k(1000 + j)).collect();
        w.insert_values(&k(i), &vs).unwrap();
        m.insert(k(i), vs.into_iter().collect());
    }
    w.commit().unwrap();
    m
}

#[test]
fn keys_live_in_their_shard_and_answers_keep_the_callers_order() {
    let seed = Rng::seeded("sharded_order").0;
    let d = TempDir::new("shord");
    let dir = d.file("s");
    let mut w = StoreWriter::open(&dir, &store_opts(3)).unwrap();
    let model = fill(&mut w, 600);
    w.close().unwrap();
    for i in 0..3 {
        // Each shard is an ordinary file holding exactly the keys routed to it.
        let r = Reader::open(&shard_file(&dir, i), &opts()).unwrap();
        let mut keys = BTreeSet::new();
        r.scan(|key, _| keys.insert(*key)).unwrap();
        let want: BTreeSet<Key> = model
            .keys()
            .filter(|key| shard_of(key, 3) == i)
            .copied()
            .collect();
        assert!(!want.is_empty());
        assert_eq!(keys, want, "shard {i}");
    }
    let r = StoreReader::open(&dir, &opts()).unwrap();
    // Shuffled keys, absent ones among them.
    let mut rng = Rng(seed);
    let mut keys: Vec<Key> = (0..800).map(|i| k(i)).collect();
    for i in (1..keys.len()).rev() {
        keys.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let mut first = vec![[0u8; 16]; keys.len()];
    let mut found = vec![0u8; keys.len()];
    r.lookup(&keys, &mut first, &mut found).unwrap();
    let (counts, values) = values_of(&r, &keys);
    let mut at = 0;
    for (i, key) in keys.iter().enumerate() {
        let want = model.get(key);
        assert_eq!(found[i] == 1, want.is_some(), "seed {seed}: key {i}");
        assert_eq!(counts[i], want.map_or(0, |s| s.len() as u64));
        if let Some(s) = want {
            assert!(s.contains(&first[i]));
            let got: BTreeSet<Value> = values[at..at + s.len()].iter().copied().collect();
            assert_eq!(&got, s, "seed {seed}: values of key {i} in place");
            at += s.len();
        }
    }
    assert_eq!(at, values.len());
    // Too small a buffer: the counts and the total come back all the same.
    let mut small = vec![[0u8; 16]; 3];
    let mut c = vec![0u64; keys.len()];
    match r.get(&keys, &mut small, &mut c) {
        Err(Error::BufferTooSmall { needed, capacity }) => {
            assert_eq!((needed, capacity), (values.len(), 3));
            assert_eq!(c, counts);
        }
        other => panic!("expected BufferTooSmall, got {other:?}"),
    }
}

#[test]
fn stats_sum_the_shards_and_the_store_reopens() {
    let d = TempDir::new("shstats");
    let dir = d.file("s");
    let mut w = StoreWriter::open(&dir, &store_opts(2)).unwrap();
    let model = fill(&mut w, 500);
    let values: usize = model.values().map(BTreeSet::len).sum();
    w.checkpoint().unwrap();
    let s = w.stats().unwrap();
    assert_eq!((s.keys, s.values), (500, values as u64));
    let per: Vec<u64> = (0..2)
        .map(|i| {
            let r = Reader::open(&shard_file(&dir, i), &opts()).unwrap();
            r.stats().unwrap().keys
        })
        .collect();
    assert_eq!(per.iter().sum::<u64>(), 500);
    assert!(per.iter().all(|&n| n > 150), "{per:?}");
    // Deletes are routed too.
    w.delete_keys(&[k(0), k(1), k(2)]).unwrap();
    w.delete_pairs(&[k(7)], &[k(1000)]).unwrap();
    w.close().unwrap();
    // Reopened without saying it is sharded: the directory says so.
    let mut w = StoreWriter::open(&dir, &opts()).unwrap();
    w.insert(&[k(9000), k(9001)], &[k(1), k(2)]).unwrap();
    w.commit().unwrap();
    w.checkpoint().unwrap();
    assert_eq!(w.stats().unwrap().keys, 499);
    w.close().unwrap();
    let r = StoreReader::open(&dir, &opts()).unwrap();
    let (counts, _) = values_of(&r, &[k(0), k(7), k(9000), k(9001)]);
    assert_eq!(counts, vec![0, 3, 1, 1]);
    assert_eq!(r.stats().unwrap().keys, 499);
    let report = hashdir::verify_store(&dir).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.keys, 499);
}

#[test]
fn one_writer_per_store_and_per_shard() {
    let d = TempDir::new("shlock");
    let dir = d.file("s");
    let w = StoreWriter::open(&dir, &store_opts(2)).unwrap();
    assert!(matches!(
        StoreWriter::open(&dir, &opts()),
        Err(Error::Locked { .. })
    ));
    assert!(matches!(
        ShardedWriter::open_shard(&dir, 1, &opts()),
        Err(Error::Locked { .. })
    ));
    w.close().unwrap();
    let s1 = ShardedWriter::open_shard(&dir, 1, &opts()).unwrap();
    // Another process's shard is free; the whole store is not.
    let s0 = ShardedWriter::open_shard(&dir, 0, &opts()).unwrap();
    assert!(matches!(
        StoreWriter::open(&dir, &opts()),
        Err(Error::Locked { .. })
    ));
    match ShardedWriter::open_shard(&dir, 2, &opts()) {
        Err(Error::InvalidArgument(m)) => assert!(m.contains("has 2 shards"), "{m}"),
        other => panic!("expected InvalidArgument, got {:?}", other.err()),
    }
    drop((s0, s1));
}

#[test]
fn bad_manifests_and_counts_are_refused() {
    let d = TempDir::new("shbad");
    let dir = d.file("s");
    StoreWriter::open(&dir, &store_opts(2))
        .unwrap()
        .close()
        .unwrap();
    match StoreWriter::open(&dir, &store_opts(3)) {
        Err(Error::InvalidArgument(m)) => assert!(m.contains("has 2 shards"), "{m}"),
        other => panic!("expected InvalidArgument, got {:?}", other.err()),
    }
    let file = d.file("one.h5");
    Writer::open(&file, &opts()).unwrap().close().unwrap();
    assert!(matches!(
        StoreWriter::open(&file, &store_opts(2)),
        Err(Error::InvalidArgument(_))
    ));
    // A shard of a plain file: not a store.
    match ShardedWriter::open_shard(&file, 0, &opts()) {
        Err(Error::NotHashdir { reason, .. }) => assert!(reason.contains("a file"), "{reason}"),
        other => panic!("expected NotHashdir, got {:?}", other.err()),
    }
    let manifest = dir.join("hashdir.shards");
    patch(&manifest, 12, &[7]);
    for e in [
        StoreWriter::open(&dir, &opts()).err().unwrap(),
        StoreReader::open(&dir, &opts()).err().unwrap(),
    ] {
        let text = e.to_string();
        assert!(matches!(e, Error::Corrupt { .. }), "{text}");
        assert!(
            text.contains("shard manifest") && text.contains("checksum"),
            "{text}"
        );
    }
    std::fs::remove_file(&manifest).unwrap();
    for e in [
        StoreWriter::open(&dir, &opts()).err().unwrap(),
        StoreReader::open(&dir, &opts()).err().unwrap(),
        hashdir::verify_store(&dir).err().unwrap(),
    ] {
        assert!(
            matches!(&e, Error::NotHashdir { reason, .. } if reason.contains("hashdir.shards")),
            "{e}"
        );
    }
    assert!(matches!(
        StoreReader::open(&d.file("missing"), &opts()),
        Err(Error::NotFound { .. })
    ));
}

/// A batch in one shard that the set log does not record as a whole set commit is cut when
/// the store opens; a single-shard writer's batches are kept.
#[test]
fn batches_of_an_unrecorded_set_commit_are_cut() {
    let d = TempDir::new("shcut");
    let dir = d.file("s");
    let mut w = StoreWriter::open(&dir, &store_opts(2)).unwrap();
    let model = fill(&mut w, 50);
    w.close().unwrap();
    // What a crash between the shards' frames and the set record leaves: a frame in one
    // shard only (written by a plain writer of the file, dropped without closing).
    let a = (100..).map(k).find(|key| shard_of(key, 2) == 0).unwrap();
    let mut plain = Writer::open(&shard_file(&dir, 0), &opts()).unwrap();
    plain.insert(&[a], &[k(5)]).unwrap();
    plain.commit().unwrap();
    drop(plain);
    let mut w = StoreWriter::open(&dir, &opts()).unwrap();
    let notes = w.recovery().notes.clone();
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("shard_000.h5: dropped 1 batches")),
        "{notes:?}"
    );
    // The cut frame never comes back, even under frames of the same length and LSN.
    w.insert(&[k(0)], &[k(6)]).unwrap();
    w.commit().unwrap();
    drop(w);
    let w = StoreWriter::open(&dir, &opts()).unwrap();
    w.close().unwrap();
    let r = StoreReader::open(&dir, &opts()).unwrap();
    let (counts, _) = values_of(&r, &[a, k(0), k(49)]);
    assert_eq!(counts, vec![0, 2, model[&k(49)].len() as u64]);
    drop(r);
    // A shard writer's own batches belong to no set commit and stay.
    let mut s0 = ShardedWriter::open_shard(&dir, 0, &opts()).unwrap();
    s0.insert(&[a], &[k(5)]).unwrap();
    s0.commit().unwrap();
    drop(s0);
    let w = StoreWriter::open(&dir, &opts()).unwrap();
    assert!(w.recovery().notes.is_empty(), "{:?}", w.recovery().notes);
    w.close().unwrap();
    let r = StoreReader::open(&dir, &opts()).unwrap();
    assert_eq!(values_of(&r, &[a]).0, vec![1]);
}
