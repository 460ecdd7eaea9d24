//! Helpers of the engine tests: options, a model of the store, whole-file reads and patches,
//! and lookups that collect a key's values.

use super::k;
use hashdir::{Error, Key, Options, Reader, Value, Writer};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

/// What a store should hold: each key's set of values.
pub type Model = HashMap<Key, BTreeSet<Value>>;

/// Data areas of 1 GiB: room for every test (a pinned reader holds back the space of its
/// root, so a writer that rewrites the table many times under it needs room for every copy).
pub const CAPACITY: u64 = 1 << 30;

/// The first bytes of a file: the HDF5 metadata, the root slots and the first segments.
pub fn head(path: &Path) -> Vec<u8> {
    use std::io::Read;
    let mut b = Vec::new();
    let f = std::fs::File::open(path).unwrap();
    f.take(64 << 20).read_to_end(&mut b).unwrap();
    b
}

/// Overwrites bytes of a file in place.
pub fn patch(path: &Path, at: u64, bytes: &[u8]) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, bytes, at).unwrap();
}

/// Default options with data areas of `CAPACITY`.
pub fn opts() -> Options {
    Options {
        capacity: CAPACITY,
        ..Options::default()
    }
}

/// A log of 64 KiB: frequent checkpoints.
pub fn small_log() -> Options {
    log_of(64 << 10)
}

/// Default options with a log of `bytes`.
pub fn log_of(bytes: u64) -> Options {
    Options {
        checkpoint_bytes: bytes,
        ..opts()
    }
}

/// Readers that refresh only when asked.
pub fn manual() -> Options {
    Options {
        refresh_interval_ms: 0,
        ..opts()
    }
}

/// The key's values as a set.
pub fn get_all(r: &Reader, key: &Key) -> BTreeSet<Value> {
    get_one(r, key).into_iter().collect()
}

/// The key's values as one get returns them.
pub fn get_one(r: &Reader, key: &Key) -> Vec<Value> {
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

/// Every key of `model` and every probe has the model's values, and a lookup finds it when
/// it has any, with one of them first.
pub fn check_model(r: &Reader, model: &Model, probes: &[Key]) {
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

/// The whole state, from a scan that must visit each key once with distinct values.
pub fn scan_all(r: &Reader) -> Model {
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

/// Looks up `keys` and returns how many have `want` as their first value.
pub fn count_with(r: &Reader, keys: &[Key], want: Value) -> usize {
    let mut first = vec![[0u8; 16]; keys.len()];
    let mut found = vec![0u8; keys.len()];
    r.lookup(keys, &mut first, &mut found).unwrap();
    (0..keys.len())
        .filter(|&i| found[i] == 1 && first[i] == want)
        .count()
}

/// Replaces every key's value by `k(v)` and checkpoints: every bucket page is rewritten.
pub fn rewrite_all(w: &mut Writer, keys: &[Key], v: u64) {
    w.delete_keys(keys).unwrap();
    w.insert(keys, &vec![k(v); keys.len()]).unwrap();
    w.commit().unwrap();
    w.checkpoint().unwrap();
}
