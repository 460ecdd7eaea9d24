//! Engine semantics through the Rust API, against a model, with real files and processes.

mod common;

use common::{child_role, k, spawn_child, Rng, TempDir};
use hashdir::{Error, Key, Options, Reader, Value, Writer};
use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::path::Path;

type Model = HashMap<Key, BTreeSet<Value>>;

/// Data areas of 1 GiB: room for every test (a pinned reader holds back the space of its
/// root, so a writer that rewrites the table many times under it needs room for every copy).
const CAPACITY: u64 = 1 << 30;

/// The first bytes of a file: the HDF5 metadata, the root slots and the first segments.
fn head(path: &Path) -> Vec<u8> {
    use std::io::Read;
    let mut b = Vec::new();
    let f = std::fs::File::open(path).unwrap();
    f.take(64 << 20).read_to_end(&mut b).unwrap();
    b
}

/// Overwrites bytes of a file in place.
fn patch(path: &Path, at: u64, bytes: &[u8]) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, bytes, at).unwrap();
}

fn opts() -> Options {
    Options {
        capacity: CAPACITY,
        ..Options::default()
    }
}

fn small_log() -> Options {
    log_of(64 << 10)
}

/// Default options with a log of `bytes`.
fn log_of(bytes: u64) -> Options {
    Options {
        checkpoint_bytes: bytes,
        ..opts()
    }
}

fn get_all(r: &Reader, key: &Key) -> BTreeSet<Value> {
    get_one(r, key).into_iter().collect()
}

/// The key's values as one get returns them.
fn get_one(r: &Reader, key: &Key) -> Vec<Value> {
    let mut counts = [0u64; 1];
    let mut buf = vec![[0u8; 16]; 8];
    loop {
        match r.get(std::slice::from_ref(key), &mut buf, &mut counts) {
            Ok(n) => return buf[..n].to_vec(),
            Err(Error::BufferTooSmall { needed, .. }) => buf.resize(needed, [0; 16]),
            Err(e) => panic!("get failed: {e}"),
        }
    }
}

fn check_model(r: &Reader, model: &Model, probes: &[Key]) {
    for key in model.keys().chain(probes) {
        let want = model.get(key).cloned().unwrap_or_default();
        assert_eq!(get_all(r, key), want, "values of key {key:?}");
        let (mut first, mut found) = ([[0u8; 16]; 1], [9u8; 1]);
        r.lookup(std::slice::from_ref(key), &mut first, &mut found)
            .unwrap();
        assert_eq!(found[0] == 1, !want.is_empty(), "found flag of {key:?}");
        if found[0] == 1 {
            assert!(
                want.contains(&first[0]),
                "first value of {key:?} is in the set"
            );
        }
    }
}

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

/// Child roles: a reader process, a second writer, a writer killed mid-run.
#[test]
fn child_process_roles() {
    let Some((role, arg)) = child_role() else {
        return;
    };
    let path = Path::new(&arg);
    match role.as_str() {
        "reader" => {
            let r = Reader::open(
                path,
                &Options {
                    refresh_interval_ms: 1,
                    ..opts()
                },
            )
            .unwrap();
            println!("@ready");
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            loop {
                let (mut first, mut found) = ([[0u8; 16]; 1], [0u8; 1]);
                r.lookup(&[k(77)], &mut first, &mut found).unwrap();
                if found[0] == 1 {
                    assert_eq!(first[0], k(78));
                    println!("@seen");
                    return;
                }
                assert!(std::time::Instant::now() < deadline, "commit never seen");
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        "writer" => match Writer::open(path, &opts()) {
            Err(Error::Locked { .. }) => println!("@locked"),
            Err(e) => println!("@error {e}"),
            Ok(_) => println!("@opened"),
        },
        "crasher" => {
            // Commits batches of 1000 pairs (batch b: keys b*1000.., value b) and reports each
            // acknowledged batch; the parent kills it at a random moment.
            let mut w = Writer::open(path, &small_log()).unwrap();
            for b in 0u64.. {
                let keys: Vec<Key> = (b * 1000..b * 1000 + 1000).map(k).collect();
                w.insert(&keys, &vec![k(b); 1000]).unwrap();
                w.commit().unwrap();
                println!("@acked {b}");
            }
        }
        _ => panic!("unknown role {role}"),
    }
}

/// The next message a child role printed (after an '@'; the test harness prints other lines).
fn next_msg(out: &mut impl BufRead) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        if out.read_line(&mut line).unwrap() == 0 {
            return String::new();
        }
        // libtest may print "test name ... " on the same line first.
        if let Some(at) = line.find('@') {
            return line[at + 1..].trim().to_string();
        }
    }
}

#[test]
fn reader_process_sees_a_commit() {
    let d = TempDir::new("xproc");
    let path = d.file("t.h5");
    let mut w = Writer::open(&path, &opts()).unwrap();
    w.commit().unwrap();
    let mut child = spawn_child("child_process_roles", "reader", path.to_str().unwrap());
    let mut out = BufReader::new(child.stdout.take().unwrap());
    assert_eq!(next_msg(&mut out), "ready");
    w.insert(&[k(77)], &[k(78)]).unwrap();
    w.commit().unwrap();
    assert_eq!(next_msg(&mut out), "seen");
    assert!(child.wait().unwrap().success());
    w.close().unwrap();
}

#[test]
fn second_writer_process_is_refused() {
    let d = TempDir::new("locked");
    let path = d.file("t.h5");
    let w = Writer::open(&path, &opts()).unwrap();
    let before = head(&path);
    let mut child = spawn_child("child_process_roles", "writer", path.to_str().unwrap());
    let mut out = BufReader::new(child.stdout.take().unwrap());
    assert_eq!(next_msg(&mut out), "locked");
    assert!(child.wait().unwrap().success());
    assert!(head(&path) == before, "refused writer left the file alone");
    w.close().unwrap();
}

#[test]
fn sigkill_keeps_every_acknowledged_batch() {
    let mut rng = Rng::seeded("sigkill_keeps_every_acknowledged_batch");
    let d = TempDir::new("kill");
    let path = d.file("t.h5");
    Writer::open(&path, &opts()).unwrap().close().unwrap();
    for round in 0..3 {
        let mut child = spawn_child("child_process_roles", "crasher", path.to_str().unwrap());
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let want = 20 + rng.below(150);
        let mut acked = None;
        while acked.is_none_or(|a| a < want) {
            let msg = next_msg(&mut out);
            let Some(b) = msg.strip_prefix("acked ") else {
                break;
            };
            acked = Some(b.parse::<u64>().unwrap());
        }
        unsafe_free_kill(child.id());
        child.wait().unwrap();
        let acked = acked.expect("child acknowledged nothing");
        let w = Writer::open(&path, &small_log()).unwrap();
        let report = hashdir::verify(&path).unwrap();
        assert!(report.is_ok(), "round {round}: {:?}", report.problems);
        let r = Reader::open(&path, &opts()).unwrap();
        // Every acknowledged batch is whole; the batch after it is whole or absent.
        for b in 0..=acked + 1 {
            let keys: Vec<Key> = (b * 1000..b * 1000 + 1000).map(k).collect();
            let mut first = vec![[0u8; 16]; 1000];
            let mut found = vec![0u8; 1000];
            r.lookup(&keys, &mut first, &mut found).unwrap();
            let present = found.iter().filter(|f| **f == 1).count();
            if b <= acked {
                assert_eq!(present, 1000, "round {round}: acknowledged batch {b} lost");
                assert!(
                    first.iter().all(|v| *v == k(b)),
                    "round {round}: batch {b} values"
                );
            } else {
                assert!(
                    present == 0 || present == 1000,
                    "round {round}: batch {b} partial"
                );
            }
        }
        w.close().unwrap();
    }
}

/// SIGKILL through the kill(1) command, keeping this test file free of `unsafe`.
fn unsafe_free_kill(pid: u32) {
    let st = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

fn scan_all(r: &Reader) -> Model {
    let mut out = Model::new();
    r.scan(|k, vs| {
        let fresh = out.insert(*k, vs.iter().copied().collect()).is_none();
        assert!(fresh, "scan visited {k:?} twice");
        assert_eq!(out[k].len(), vs.len(), "scan gave duplicate values");
        true
    })
    .unwrap();
    out
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

/// Looks up `keys` and returns how many have `want` as their first value.
fn count_with(r: &Reader, keys: &[Key], want: Value) -> usize {
    let mut first = vec![[0u8; 16]; keys.len()];
    let mut found = vec![0u8; keys.len()];
    r.lookup(keys, &mut first, &mut found).unwrap();
    (0..keys.len())
        .filter(|&i| found[i] == 1 && first[i] == want)
        .count()
}

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

/// Replaces every key's value by `k(v)` and checkpoints: every bucket page is rewritten.
fn rewrite_all(w: &mut Writer, keys: &[Key], v: u64) {
    w.delete_keys(keys).unwrap();
    w.insert(keys, &vec![k(v); keys.len()]).unwrap();
    w.commit().unwrap();
    w.checkpoint().unwrap();
}

fn manual() -> Options {
    Options {
        refresh_interval_ms: 0,
        ..opts()
    }
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

/// The key whose one value says how many batches of `churn` a state holds.
const MARK: u64 = u64::MAX;

/// Batch `i` of a churning writer: inserts, pair deletes and key deletes over a pool of keys
/// (so sets grow, shrink and vanish), then `MARK` set to {i + 1}. Applied to `model` too.
fn churn(seed: u64, i: u64, w: Option<&mut Writer>, model: &mut Model) {
    let mut rng = Rng(seed ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut w = w;
    for _ in 0..4000 {
        let key = k(rng.below(40_000));
        let v = k(rng.below(6));
        match rng.below(10) {
            0 => {
                model.remove(&key);
                w.as_mut().map(|w| w.delete_keys(&[key]).unwrap());
            }
            1 | 2 => {
                if let Some(set) = model.get_mut(&key) {
                    set.remove(&v);
                    if set.is_empty() {
                        model.remove(&key);
                    }
                }
                w.as_mut().map(|w| w.delete_pairs(&[key], &[v]).unwrap());
            }
            _ => {
                model.entry(key).or_default().insert(v);
                w.as_mut().map(|w| w.insert(&[key], &[v]).unwrap());
            }
        }
    }
    model.insert(k(MARK), BTreeSet::from([k(i + 1)]));
    if let Some(w) = w {
        w.delete_keys(&[k(MARK)]).unwrap();
        w.insert(&[k(MARK)], &[k(i + 1)]).unwrap();
        w.commit().unwrap();
    }
}

#[test]
fn copy_holds_the_readers_snapshot_while_the_writer_commits() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::{Duration, Instant};
    let seed = Rng::seeded("copy_holds_the_readers_snapshot_while_the_writer_commits").next();
    let d = TempDir::new("copy");
    let path = d.file("src.h5");
    let dest = d.file("copy.h5");
    let mut w = Writer::open(&path, &log_of(1 << 20)).unwrap();
    let committed = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut scratch = Model::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) && i < 2000 {
                churn(seed, i, Some(&mut w), &mut scratch);
                i += 1;
                committed.store(i, Ordering::Release);
            }
        });
        let wait_for = |n: u64| {
            let t = Instant::now();
            while committed.load(Ordering::Acquire) < n {
                assert!(t.elapsed() < Duration::from_secs(120), "writer stalled");
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        wait_for(40);
        let r = Reader::open(&path, &opts()).unwrap();
        let mark = get_all(&r, &k(MARK));
        assert_eq!(mark.len(), 1);
        let seen = u64::from_be_bytes(mark.first().unwrap()[8..].try_into().unwrap());
        let mut calls = Vec::new();
        let done = r
            .copy_to(&dest, |p| {
                if calls.is_empty() {
                    // The writer commits, flushes and merges while the copy reads.
                    wait_for(seen + 20);
                }
                calls.push(*p);
            })
            .unwrap();
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();
        assert!(committed.load(Ordering::Acquire) >= seen + 20);

        let mut model = Model::new();
        (0..seen).for_each(|i| churn(seed, i, None, &mut model));
        let values: u64 = model.values().map(|s| s.len() as u64).sum();
        assert!(values > 65536, "the copy takes several batches");
        assert!(calls.len() >= 2, "progress after each batch: {calls:?}");
        assert!(calls.windows(2).all(|c| c[0].fraction <= c[1].fraction));
        assert_eq!(calls.last(), Some(&done));
        assert_eq!(done.fraction, 1.0);
        assert_eq!(done.epoch, r.stats().unwrap().epoch);
        assert_eq!((done.keys, done.values), (model.len() as u64, values));

        let report = hashdir::verify(&dest).unwrap();
        assert!(report.is_ok(), "{:?}", report.problems);
        assert_eq!((report.keys, report.values), (done.keys, done.values));
        let c = Reader::open(&dest, &opts()).unwrap();
        assert_eq!(
            scan_all(&c),
            model,
            "the copy holds the snapshot, seed {seed}"
        );
        let st = c.stats().unwrap();
        assert_eq!(
            (st.keys, st.delta_tables, st.merging),
            (done.keys, 0, false)
        );
        drop(c);

        // The copy is a hashdir file like any other.
        let mut cw = Writer::open(&dest, &opts()).unwrap();
        cw.insert(&[k(7)], &[k(99)]).unwrap();
        cw.commit().unwrap();
        cw.close().unwrap();
        model.entry(k(7)).or_default().insert(k(99));
        assert_eq!(scan_all(&Reader::open(&dest, &opts()).unwrap()), model);
        assert!(hashdir::verify(&dest).unwrap().is_ok());
    });
    let mut names: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["copy.h5", "copy.h5.readers", "src.h5", "src.h5.readers"]
    );
    w.close().unwrap();
}

#[test]
fn copy_never_replaces_a_file() {
    let d = TempDir::new("copy_exists");
    let path = d.file("src.h5");
    let mut w = Writer::open(&path, &opts()).unwrap();
    w.insert(&[k(1)], &[k(2)]).unwrap();
    w.close().unwrap();
    let r = Reader::open(&path, &opts()).unwrap();
    let dest = d.file("there");
    std::fs::write(&dest, b"keep me").unwrap();
    match r.copy_to(&dest, |_| {}) {
        Err(e) => assert!(exists_error(&e), "{e}"),
        Ok(p) => panic!("copied over a file: {p:?}"),
    }
    assert_eq!(std::fs::read(&dest).unwrap(), b"keep me");
    assert!(matches!(
        r.copy_to(Path::new(""), |_| {}),
        Err(Error::InvalidArgument(_))
    ));
    // A copy onto its own source is refused the same way.
    assert!(exists_error(&r.copy_to(&path, |_| {}).unwrap_err()));
    assert!(r.copy_to(&d.file("no/such/dir.h5"), |_| {}).is_err());
    assert_eq!(get_all(&r, &k(1)), BTreeSet::from([k(2)]));
}

/// An I/O error whose errno is EEXIST.
fn exists_error(e: &Error) -> bool {
    matches!(e, Error::Io { .. })
        && e.errno()
            .map(std::io::Error::from_raw_os_error)
            .map(|e| e.kind())
            == Some(std::io::ErrorKind::AlreadyExists)
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

// ---------------------------------------------------------------------------------------------
// Sharded stores

mod sharded {
    use super::*;
    use hashdir::{shard_of, ShardedWriter, StoreReader, StoreWriter};

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
}
