//! Engine semantics through the Rust API against a model: sets and both deletes, growth and
//! shrinkage, big sets, key spread, open errors, reader threads, random operations, scans, and
//! batched lookups against single keys.

mod common;

use common::engine::*;
use common::{k, Rng, TempDir};
use hashdir::{Error, Key, Options, Reader, Value, Writer};
use std::collections::BTreeSet;

#[test]
fn set_semantics_and_both_deletes() {
    let d = TempDir::new("sets");
    let path = d.file("t.h5");
    let mut w = Writer::open(&path, &opts()).unwrap();
    let (a, b, c) = (k(1), k(2), k(3));
    w.insert(&[a, a, a, b], &[k(10), k(10), k(11), k(20)])
        .unwrap();
    w.commit().unwrap();
    let r = Reader::open(&path, &opts()).unwrap();
    assert_eq!(get_all(&r, &a), BTreeSet::from([k(10), k(11)]));
    assert_eq!(get_all(&r, &c), BTreeSet::new());
    w.delete_pairs(&[a, c], &[k(10), k(99)]).unwrap();
    w.delete_keys(&[b]).unwrap();
    w.insert(&[b], &[k(21)]).unwrap();
    // Uncommitted: invisible even after a refresh.
    r.refresh().unwrap();
    assert_eq!(get_all(&r, &a), BTreeSet::from([k(10), k(11)]));
    w.commit().unwrap();
    r.refresh().unwrap();
    assert_eq!(get_all(&r, &a), BTreeSet::from([k(11)]));
    assert_eq!(get_all(&r, &b), BTreeSet::from([k(21)]));
    w.checkpoint().unwrap();
    r.refresh().unwrap();
    assert_eq!(get_all(&r, &a), BTreeSet::from([k(11)]));
    assert_eq!(get_all(&r, &b), BTreeSet::from([k(21)]));
    let s = w.stats().unwrap();
    assert_eq!((s.keys, s.values), (2, 2));
    w.close().unwrap();
}

#[test]
fn growth_splits_and_shrink_merges() {
    let d = TempDir::new("split");
    let path = d.file("t.h5");
    let mut w = Writer::open(&path, &small_log()).unwrap();
    let n = 60_000u64;
    let keys: Vec<Key> = (0..n).map(k).collect();
    let vals: Vec<Value> = (0..n).map(|i| k(i * 7)).collect();
    for (ks, vs) in keys.chunks(5000).zip(vals.chunks(5000)) {
        w.insert(ks, vs).unwrap();
        w.commit().unwrap();
    }
    w.checkpoint().unwrap();
    let grown = w.stats().unwrap();
    assert_eq!((grown.keys, grown.values), (n, n));
    assert!(grown.buckets > 300, "{grown:?}");
    assert!(grown.global_depth >= 9, "{grown:?}");
    // Sequential keys spread like random ones: a directory slot holds about ten keys (it
    // splits past a quarter page), and a page about a hundred.
    assert!((1u64 << grown.global_depth) * 4 <= n, "{grown:?}");
    assert!(grown.buckets * 100 <= n, "pages this full: {grown:?}");
    let r = Reader::open(&path, &opts()).unwrap();
    let mut first = vec![[0u8; 16]; n as usize];
    let mut found = vec![0u8; n as usize];
    r.lookup(&keys, &mut first, &mut found).unwrap();
    assert!(found.iter().all(|f| *f == 1));
    assert_eq!(first, vals);
    w.delete_keys(&keys[100..]).unwrap();
    w.commit().unwrap();
    w.checkpoint().unwrap();
    let shrunk = w.stats().unwrap();
    assert_eq!((shrunk.keys, shrunk.values), (100, 100));
    assert!(shrunk.buckets < 10, "{shrunk:?}");
    // The merge sized the new table for what it read; the next one for what is left.
    w.insert(&[k(1)], &[k(2)]).unwrap();
    w.commit().unwrap();
    w.checkpoint().unwrap();
    let again = w.stats().unwrap();
    assert!(again.global_depth < grown.global_depth, "{again:?}");
    r.refresh().unwrap();
    r.lookup(&keys, &mut first, &mut found).unwrap();
    assert!(found[..100].iter().all(|f| *f == 1) && found[100..].iter().all(|f| *f == 0));
    w.close().unwrap();
}

#[test]
fn promotion_demotion_and_a_big_set() {
    let d = TempDir::new("promote");
    let path = d.file("t.h5");
    let mut w = Writer::open(&path, &opts()).unwrap();
    let key = k(42);
    let small: Vec<Value> = (0..3).map(k).collect();
    w.insert(&[key; 3], &small).unwrap();
    w.commit().unwrap();
    w.checkpoint().unwrap();
    assert_eq!(w.stats().unwrap().extents, 0);
    let more: Vec<Value> = (3..100).map(k).collect();
    w.insert(&vec![key; more.len()], &more).unwrap();
    w.commit().unwrap();
    w.checkpoint().unwrap();
    assert_eq!(w.stats().unwrap().extents, 1, "promoted");
    let r = Reader::open(&path, &opts()).unwrap();
    assert_eq!(get_all(&r, &key).len(), 100);
    // Appends in place and copies to a larger extent, across several checkpoints.
    let big = 1_100_000u64; // a 17.6 MB set: its extent spans many chunks
    for chunk in (100..big).collect::<Vec<_>>().chunks(200_000) {
        let vs: Vec<Value> = chunk.iter().map(|i| k(*i)).collect();
        w.insert(&vec![key; vs.len()], &vs).unwrap();
        w.commit().unwrap();
        w.checkpoint().unwrap();
    }
    r.refresh().unwrap();
    let all = get_all(&r, &key);
    assert_eq!(all.len() as u64, big);
    assert!(all.contains(&k(big - 1)) && all.contains(&k(0)));
    // Shrink to two values: demoted back inline.
    let gone: Vec<Value> = (2..big).map(k).collect();
    w.delete_pairs(&vec![key; gone.len()], &gone).unwrap();
    w.commit().unwrap();
    w.checkpoint().unwrap();
    let s = w.stats().unwrap();
    assert_eq!((s.extents, s.values), (0, 2), "demoted");
    r.refresh().unwrap();
    assert_eq!(get_all(&r, &key), BTreeSet::from([k(0), k(1)]));
    w.close().unwrap();
}

#[test]
fn structured_keys_spread_like_random_ones() {
    let d = TempDir::new("structured");
    let path = d.file("t.h5");
    let mut w = Writer::open(&path, &opts()).unwrap();
    let n = 40_000u64;
    let mut keys: Vec<Key> = Vec::new();
    for i in 0..n {
        let mut shared = [0xAB; 16]; // 12 shared bytes
        shared[12..].copy_from_slice(&(i as u32).to_le_bytes());
        keys.push(shared);
    }
    keys.push([0; 16]);
    let vals: Vec<Value> = (0..keys.len() as u64).map(k).collect();
    w.insert(&keys, &vals).unwrap();
    w.commit().unwrap();
    w.checkpoint().unwrap();
    let s = w.stats().unwrap();
    assert_eq!(s.keys, n + 1);
    assert!((1u64 << s.global_depth) * 4 <= s.keys, "{s:?}");
    let r = Reader::open(&path, &opts()).unwrap();
    let mut first = vec![[0u8; 16]; keys.len()];
    let mut found = vec![0u8; keys.len()];
    r.lookup(&keys, &mut first, &mut found).unwrap();
    assert_eq!(first, vals);
    w.close().unwrap();
}

#[test]
fn open_errors_leave_files_alone() {
    let d = TempDir::new("errors");
    let missing = d.file("missing.h5");
    let no_create = Options {
        create: false,
        ..opts()
    };
    assert!(matches!(
        Writer::open(&missing, &no_create),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        Reader::open(&missing, &opts()),
        Err(Error::NotFound { .. })
    ));
    assert!(!missing.exists());
    let foreign = d.file("foreign.h5");
    let bytes: Vec<u8> = (0..10_000u32).map(|i| (i * 31) as u8).collect();
    std::fs::write(&foreign, &bytes).unwrap();
    assert!(matches!(
        Writer::open(&foreign, &opts()),
        Err(Error::NotHashdir { .. })
    ));
    assert!(matches!(
        Reader::open(&foreign, &opts()),
        Err(Error::NotHashdir { .. })
    ));
    assert_eq!(std::fs::read(&foreign).unwrap(), bytes);
    let path = d.file("t.h5");
    let w = Writer::open(&path, &opts()).unwrap();
    assert!(matches!(
        Writer::open(&path, &opts()),
        Err(Error::Locked { .. })
    ));
    w.close().unwrap();
    Writer::open(&path, &opts()).unwrap().close().unwrap();
}

#[test]
fn reader_threads_share_one_handle() {
    let d = TempDir::new("threads");
    let path = d.file("t.h5");
    let mut w = Writer::open(&path, &small_log()).unwrap();
    let keys: Vec<Key> = (0..20_000).map(k).collect();
    w.insert(&keys, &keys).unwrap();
    w.commit().unwrap();
    let r = Reader::open(&path, &opts()).unwrap();
    std::thread::scope(|s| {
        for t in 0..4 {
            let (r, keys) = (&r, &keys);
            s.spawn(move || {
                for round in 0..20 {
                    if t == 0 {
                        r.refresh().unwrap();
                    }
                    let mut first = vec![[0u8; 16]; keys.len()];
                    let mut found = vec![0u8; keys.len()];
                    r.lookup(keys, &mut first, &mut found).unwrap();
                    assert!(found.iter().all(|f| *f == 1), "round {round}");
                    assert_eq!(&first, keys);
                }
            });
        }
        // Meanwhile the writer keeps checkpointing and reusing pages.
        for i in 0..10u64 {
            w.insert(&[k(1_000_000 + i)], &[k(i)]).unwrap();
            w.commit().unwrap();
            w.checkpoint().unwrap();
        }
    });
    w.close().unwrap();
}

#[test]
fn random_ops_match_the_model() {
    let mut rng = Rng::seeded("random_ops_match_the_model");
    let d = TempDir::new("model");
    let path = d.file("t.h5");
    let mut w = Writer::open(&path, &small_log()).unwrap();
    let r = Reader::open(&path, &opts()).unwrap();
    let mut model = Model::new();
    let key_space = 3000;
    for step in 0..300 {
        let n = rng.below(200) as usize + 1;
        let mut pending = model.clone();
        for _ in 0..n {
            let key = k(rng.below(key_space));
            match rng.below(10) {
                0 => {
                    w.delete_keys(&[key]).unwrap();
                    pending.remove(&key);
                }
                1 | 2 => {
                    let v = k(rng.below(8));
                    w.delete_pairs(&[key], &[v]).unwrap();
                    if let Some(s) = pending.get_mut(&key) {
                        s.remove(&v);
                        if s.is_empty() {
                            pending.remove(&key);
                        }
                    }
                }
                _ => {
                    // Skewed: a few keys get many values.
                    let v = if key == k(7) {
                        k(rng.below(5000))
                    } else {
                        k(rng.below(8))
                    };
                    w.insert(&[key], &[v]).unwrap();
                    pending.entry(key).or_default().insert(v);
                }
            }
        }
        w.commit().unwrap();
        model = pending;
        match rng.below(20) {
            0 => w.checkpoint().unwrap(),
            1 => {
                w.close().unwrap();
                w = Writer::open(&path, &small_log()).unwrap();
            }
            _ => {}
        }
        if step % 25 == 0 {
            r.refresh().unwrap();
            check_model(&r, &model, &[k(key_space + 1)]);
        }
    }
    w.checkpoint().unwrap();
    let s = w.stats().unwrap();
    assert_eq!(s.keys, model.len() as u64);
    assert_eq!(
        s.values,
        model.values().map(|v| v.len() as u64).sum::<u64>()
    );
    r.refresh().unwrap();
    check_model(&r, &model, &[]);
    w.close().unwrap();
    let report = hashdir::verify(&path).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
}

#[test]
fn scan_verify_and_gc_agree_with_the_model() {
    let mut rng = Rng::seeded("scan_verify_and_gc_agree_with_the_model");
    let d = TempDir::new("scan");
    let path = d.file("t.h5");
    let mut w = Writer::open(&path, &small_log()).unwrap();
    let mut model = Model::new();
    for _ in 0..40 {
        for _ in 0..300 {
            let key = k(rng.below(2000));
            if rng.below(8) == 0 {
                w.delete_keys(&[key]).unwrap();
                model.remove(&key);
            } else {
                let v = k(rng.below(if key == k(3) { 3000 } else { 12 }));
                w.insert(&[key], &[v]).unwrap();
                model.entry(key).or_default().insert(v);
            }
        }
        w.commit().unwrap();
    }
    // Part of the state is only in the WAL: the scan merges it with the pages.
    let r = Reader::open(&path, &opts()).unwrap();
    assert_eq!(scan_all(&r), model);
    let mut seen = 0;
    r.scan(|_, _| {
        seen += 1;
        seen < 5
    })
    .unwrap();
    assert_eq!(seen, 5, "scan stops when asked");
    w.checkpoint().unwrap();
    let report = hashdir::verify(&path).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.keys, model.len() as u64);
    assert_eq!(
        report.values,
        model.values().map(|s| s.len() as u64).sum::<u64>()
    );
    assert_eq!(
        w.gc().unwrap(),
        hashdir::GcReport::default(),
        "nothing is orphaned"
    );
    r.refresh().unwrap();
    assert_eq!(scan_all(&r), model);
    w.close().unwrap();
}

/// Lookups and gets of random batches (duplicates, missing keys, keys only in the log or in
/// delta tables, sets of 1, 8 and 300 values) give what calls of one key give, in order, with
/// the pages cached or dropped from the page cache, pinned or not; a get whose buffer is one
/// value short says how many values there are.
#[test]
fn batches_agree_with_single_keys() {
    let mut rng = Rng::seeded("batches_agree_with_single_keys");
    let d = TempDir::new("batches");
    let path = d.file("t.h5");
    let mut w = Writer::open(&path, &small_log()).unwrap();
    let mut model = Model::new();
    let insert = |w: &mut Writer, model: &mut Model, key: u64, vals: std::ops::Range<u64>| {
        let n = vals.end - vals.start;
        w.insert(
            &vec![k(key); n as usize],
            &vals.clone().map(k).collect::<Vec<_>>(),
        )
        .unwrap();
        model.entry(k(key)).or_default().extend(vals.map(k));
    };
    for key in 0..20_000 {
        let n = match key {
            0..100 => 300,
            100..2000 => 8,
            _ => 1,
        };
        insert(&mut w, &mut model, key, key..key + n);
        if key % 2000 == 1999 {
            w.commit().unwrap();
        }
    }
    w.checkpoint().unwrap();
    // Changes over the base, in commits small enough that some reach delta tables and the
    // last stay in the log: values added and removed, keys deleted, new keys.
    for round in 0..40u64 {
        for _ in 0..100 {
            let key = rng.below(20_000);
            match rng.below(4) {
                0 => {
                    w.delete_keys(&[k(key)]).unwrap();
                    model.remove(&k(key));
                }
                1 => {
                    w.delete_pairs(&[k(key)], &[k(key)]).unwrap();
                    if let Some(s) = model.get_mut(&k(key)) {
                        s.remove(&k(key));
                    }
                }
                _ => insert(
                    &mut w,
                    &mut model,
                    key,
                    1_000_000 + round..1_000_001 + round,
                ),
            }
            insert(
                &mut w,
                &mut model,
                30_000 + rng.below(2000),
                round..round + 1,
            );
        }
        w.commit().unwrap();
    }
    // The background merges run on their own time: commit one-pair batches until a reader
    // sees delta tables beside the base and a log tail (a small delta merges into a large base
    // only when the deltas reach its size, so this ends after at most a log's worth).
    let mut extra = 0;
    let r = loop {
        let r = Reader::open(&path, &manual()).unwrap();
        let s = r.stats().unwrap();
        if s.delta_tables > 0 && s.wal_bytes > 0 {
            break r;
        }
        assert!(
            extra < 10_000,
            "no deltas and log tail after {extra} batches: {s:?}"
        );
        insert(&mut w, &mut model, 40_000 + extra, 0..1);
        w.commit().unwrap();
        extra += 1;
    };
    model.retain(|_, s| !s.is_empty());
    let table = hashdir::testing::ReaderTable::open(&path).unwrap().unwrap();
    let slots: Vec<_> = std::iter::from_fn(|| table.claim()).collect();
    let unpinned = Reader::open(&path, &manual()).unwrap();
    drop(slots);
    for (name, r) in [("pinned", &r), ("unpinned", &unpinned)] {
        for round in 0..30 {
            if round % 10 == 9 {
                r.evict().unwrap();
            }
            let n = [2, 3, 15, 16, 17, 64, 100, 1000][rng.below(8) as usize];
            let mut keys: Vec<Key> = Vec::with_capacity(n);
            for _ in 0..n {
                let key = match rng.below(8) {
                    0 if !keys.is_empty() => keys[rng.below(keys.len() as u64) as usize],
                    1 => k(50_000 + rng.below(1000)),
                    2 => k(30_000 + rng.below(2000)),
                    3 => k(rng.below(100)),
                    _ => k(rng.below(20_000)),
                };
                keys.push(key);
            }
            let what = format!("{name} round {round}, batch of {n}");
            check_batch(r, &model, &keys, &what);
        }
    }
    w.close().unwrap();
}

/// A batch's lookup and get against one call per key and the model.
fn check_batch(r: &Reader, model: &Model, keys: &[Key], what: &str) {
    let n = keys.len();
    let (mut first, mut found) = (vec![[0u8; 16]; n], vec![9u8; n]);
    r.lookup(keys, &mut first, &mut found).unwrap();
    let mut want_vals = Vec::new();
    let mut want_counts = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let (mut f1, mut found1) = ([[0u8; 16]; 1], [9u8; 1]);
        r.lookup(std::slice::from_ref(key), &mut f1, &mut found1)
            .unwrap();
        assert_eq!(
            (found[i], first[i]),
            (found1[0], f1[0]),
            "{what}: lookup of key {i}"
        );
        let got = get_one(r, key);
        let set: BTreeSet<Value> = got.iter().copied().collect();
        assert_eq!(
            set,
            model.get(key).cloned().unwrap_or_default(),
            "{what}: key {i}"
        );
        assert_eq!(
            found1[0] == 1,
            !set.is_empty(),
            "{what}: found flag of key {i}"
        );
        want_counts.push(got.len() as u64);
        want_vals.extend(got);
    }
    let total = want_vals.len();
    let mut values = vec![[0u8; 16]; total];
    let mut counts = vec![0u64; n];
    assert_eq!(
        r.get(keys, &mut values, &mut counts).unwrap(),
        total,
        "{what}"
    );
    assert_eq!(counts, want_counts, "{what}: counts");
    assert_eq!(values, want_vals, "{what}: values");
    if total > 0 {
        match r.get(keys, &mut values[..total - 1], &mut counts) {
            Err(Error::BufferTooSmall { needed, capacity }) => {
                assert_eq!((needed, capacity), (total, total - 1), "{what}")
            }
            other => panic!("{what}: a buffer one value short gave {other:?}"),
        }
    }
}
