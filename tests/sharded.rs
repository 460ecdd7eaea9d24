//! Sharded stores: keys routed to their shard, answers in the caller's order, stats summed,
//! one writer per store and per shard, bad manifests refused, and unrecorded set commits cut.

mod common;

use common::engine::*;
use common::{k, Rng, TempDir};
use hashdir::{shard_of, Collective, ShardedWriter, StoreReader, StoreWriter};
use hashdir::{Error, Key, Options, Reader, Value, Writer};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};

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

/// An in-process group: members are threads; `max` is a barrier that reduces. A round whose
/// values have `die_at` entries fails on every member (as if the job died there).
struct Hub {
    members: u32,
    die_at: Mutex<Option<usize>>,
    st: Mutex<(Vec<u64>, u32, u64, Vec<u64>)>,
    cv: Condvar,
}

struct Member {
    hub: Arc<Hub>,
    me: u32,
}

impl Collective for Member {
    fn member(&self) -> u32 {
        self.me
    }
    fn members(&self) -> u32 {
        self.hub.members
    }
    fn max(&mut self, v: &mut [u64]) -> hashdir::Result<()> {
        let hub = &self.hub;
        let mut st = hub.st.lock().unwrap();
        let (acc, arrived, gen, _) = &mut *st;
        if *arrived == 0 {
            *acc = v.to_vec();
        } else {
            assert_eq!(acc.len(), v.len(), "members at different steps");
            acc.iter_mut()
                .zip(v.iter())
                .for_each(|(a, b)| *a = (*a).max(*b));
        }
        *arrived += 1;
        let mine = *gen;
        if *arrived == hub.members {
            st.3 = std::mem::take(&mut st.0);
            st.1 = 0;
            st.2 += 1;
            hub.cv.notify_all();
        } else {
            while st.2 == mine {
                st = hub.cv.wait(st).unwrap();
            }
        }
        v.copy_from_slice(&st.3);
        if *hub.die_at.lock().unwrap() == Some(v.len()) {
            return Err(Error::Unusable {
                why: "the job died".into(),
                errno: None,
            });
        }
        Ok(())
    }
}

fn hub(members: u32) -> Arc<Hub> {
    Arc::new(Hub {
        members,
        die_at: Mutex::new(None),
        st: Mutex::new((Vec::new(), 0, 0, Vec::new())),
        cv: Condvar::new(),
    })
}

/// Runs `f(member, opened)` on one thread per member of a group opening `split` of the store
/// at `dir`; the results in member order.
fn each_member<R: Send>(
    dir: &Path,
    split: &[Vec<u32>],
    hub: &Arc<Hub>,
    opts: &Options,
    f: impl Fn(u32, hashdir::Result<ShardedWriter>) -> R + Sync,
) -> Vec<R> {
    std::thread::scope(|s| {
        let jobs: Vec<_> = split
            .iter()
            .enumerate()
            .map(|(me, ids)| {
                let (hub, f) = (hub.clone(), &f);
                s.spawn(move || {
                    let me = me as u32;
                    let group = Box::new(Member { hub, me });
                    f(me, ShardedWriter::open_group(dir, ids, opts, group))
                })
            })
            .collect();
        jobs.into_iter().map(|j| j.join().unwrap()).collect()
    })
}

/// [`each_member`] with every open expected to succeed: `f(member, writer)`.
fn in_group<R: Send>(
    dir: &Path,
    split: &[Vec<u32>],
    hub: &Arc<Hub>,
    opts: &Options,
    f: impl Fn(u32, &mut ShardedWriter) -> R + Sync,
) -> Vec<R> {
    each_member(dir, split, hub, opts, |me, w| f(me, &mut w.unwrap()))
}

/// Key `i` of the keys whose shard (of 5) `split[member]` holds.
fn member_key(split: &[Vec<u32>], member: u32, i: u64) -> Key {
    (0..)
        .map(|j| k(j * 7919 + i))
        .find(|key| split[member as usize].contains(&shard_of(key, 5)))
        .unwrap()
}

/// Three members writing a store of 5 shards, with logs small enough that shards seal and
/// turn logs into tables between set commits: every batch of every member is in the store,
/// and a member's insert of another member's key is refused and fails the next commit on
/// every member.
#[test]
fn a_group_commits_every_members_shards_together() {
    let d = TempDir::new("shgroup");
    let dir = d.file("s");
    let split = vec![vec![0, 1], vec![2], vec![3, 4]];
    let h = hub(3);
    let o = Options {
        shards: 5,
        ..log_of(16 << 10)
    };
    let batches = 40u64;
    in_group(&dir, &split, &h, &o, |me, w| {
        for b in 0..batches {
            let keys: Vec<Key> = (0..50)
                .map(|i| member_key(&split, me, b * 50 + i))
                .collect();
            w.insert(&keys, &vec![k(b); keys.len()]).unwrap();
            w.commit().unwrap();
        }
        // The logs were small enough that the shards sealed some and flushed them to tables.
        let s = w.stats().unwrap();
        assert!(s.delta_tables > 0 || s.keys > 0, "member {me}: {s:?}");
    });
    // A key of another member's shard: refused; the next commit fails on every member.
    let errs = in_group(&dir, &split, &h, &opts(), |me, w| {
        if me == 1 {
            let e = w.insert(&[member_key(&split, 0, 0)], &[k(9)]).unwrap_err();
            assert!(e.to_string().contains("another member"), "{e}");
        }
        let e = w.commit().unwrap_err().to_string();
        assert!(
            w.sync().is_err(),
            "member {me} works on after a failed commit"
        );
        e
    });
    assert!(errs[0].contains("member 1 of the group"), "{errs:?}");
    assert!(errs[2].contains("member 1 of the group"), "{errs:?}");
    let r = StoreReader::open(&dir, &opts()).unwrap();
    for me in 0..3 {
        let keys: Vec<Key> = (0..batches * 50)
            .map(|i| member_key(&split, me, i))
            .collect();
        let (counts, vals) = values_of(&r, &keys);
        assert!(counts.iter().all(|&c| c == 1), "member {me}: {counts:?}");
        for (i, v) in vals.iter().enumerate() {
            assert_eq!(*v, k(i as u64 / 50), "member {me}, key {i}");
        }
    }
    assert!(hashdir::verify_store(&dir).unwrap().problems.is_empty());
}

/// The job dies after every member appended its batch to its shards' logs but before the
/// set record: opening the store cuts that batch from every shard; the set commits before it
/// stay whole.
#[test]
fn a_group_commit_cut_short_is_in_no_shard() {
    let d = TempDir::new("shgroupcut");
    let dir = d.file("s");
    let split = vec![vec![0, 3], vec![1, 2, 4]];
    let h = hub(2);
    let o = Options {
        shards: 5,
        ..opts()
    };
    in_group(&dir, &split, &h, &o, |me, w| {
        for b in 0..3 {
            let keys: Vec<Key> = (0..20)
                .map(|i| member_key(&split, me, b * 20 + i))
                .collect();
            w.insert(&keys, &vec![k(b); keys.len()]).unwrap();
            w.commit().unwrap();
        }
        // The marks round of a commit: members + shards + 1 values.
        *h.die_at.lock().unwrap() = Some(2 + 5 + 1);
        let keys: Vec<Key> = (0..20).map(|i| member_key(&split, me, 60 + i)).collect();
        w.insert(&keys, &vec![k(3); keys.len()]).unwrap();
        assert!(w.commit().is_err());
    });
    // Each shard's log holds the last batch's frame; no set record names it.
    let w = StoreWriter::open(&dir, &opts()).unwrap();
    let dropped = w
        .recovery()
        .notes
        .iter()
        .filter(|n| n.contains("dropped 1 batches"));
    assert_eq!(dropped.count(), 5, "{:?}", w.recovery().notes);
    w.close().unwrap();
    let r = StoreReader::open(&dir, &opts()).unwrap();
    for me in 0..2 {
        let keys: Vec<Key> = (0..80).map(|i| member_key(&split, me, i)).collect();
        let (counts, _) = values_of(&r, &keys);
        assert!(
            counts[..60].iter().all(|&c| c == 1),
            "member {me}: {counts:?}"
        );
        assert!(
            counts[60..].iter().all(|&c| c == 0),
            "member {me}: {counts:?}"
        );
    }
}

/// Shards named by no member, or by two, are refused on every member.
#[test]
fn a_group_must_name_every_shard_once() {
    let d = TempDir::new("shgroupids");
    let dir = d.file("s");
    StoreWriter::open(&dir, &store_opts(3))
        .unwrap()
        .close()
        .unwrap();
    for (split, want) in [
        (
            vec![vec![0], vec![1]],
            "no member of the group writes shard 2",
        ),
        (
            vec![vec![0, 1], vec![1, 2]],
            "shard 1 is named by members 0 and 1",
        ),
    ] {
        let errs = each_member(&dir, &split, &hub(2), &opts(), |me, w| match w {
            Err(e) => e.to_string(),
            Ok(_) => panic!("member {me} opened"),
        });
        assert!(errs.iter().all(|e| e.contains(want)), "{errs:?}");
    }
}
