//! A consistent copy of a reader's snapshot, taken while the writer keeps committing.

mod common;

use common::engine::*;
use common::{k, Rng, TempDir};
use hashdir::{Error, Reader, Writer};
use std::collections::BTreeSet;
use std::path::Path;

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
