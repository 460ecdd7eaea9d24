//! Deterministic corruption: random truncations, bit flips and zeroed blocks of a real file.
//! Every open, lookup, get and verify must return an error or correct data — never crash,
//! hang, or return values that no committed state had.

mod common;

use common::{k, Rng, TempDir};
use hashdir::{Error, Key, Options, Reader, Value, Writer};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

type Model = HashMap<Key, BTreeSet<Value>>;

/// Data areas of 64 MiB, of which the first part holds everything written.
fn opts() -> Options {
    Options {
        capacity: 64 << 20,
        ..Options::default()
    }
}

/// Bytes of a test file that hold everything it has written (the rest is a hole).
const USED: u64 = 32 << 20;

/// A file whose last two roots hold the same state (so falling back to the older root is
/// still correct data), with inline sets, extents, several pages and an empty log.
fn build(path: &Path) -> Model {
    let mut w = Writer::open(path, &opts()).unwrap();
    let mut model = Model::new();
    for i in 0..3000u64 {
        let n = if i % 50 == 0 { 40 } else { 1 + i % 3 };
        for j in 0..n {
            w.insert(&[k(i)], &[k(j)]).unwrap();
            model.entry(k(i)).or_default().insert(k(j));
        }
    }
    w.commit().unwrap();
    w.checkpoint().unwrap();
    w.insert(&[k(0)], &[k(0)]).unwrap(); // already there: a new root, the same state
    w.commit().unwrap();
    w.checkpoint().unwrap();
    w.close().unwrap();
    model
}

enum Damage {
    Truncate(usize),
    Flip(usize, u8),
    Zero(usize),
}

/// Writes the damaged copy: the used bytes with `d` applied, at the original length (a hole
/// after the used bytes, as in the original) unless `d` cuts it shorter.
fn write_damaged(path: &Path, head: &[u8], len: u64, d: &Damage) {
    let mut b = head.to_vec();
    let mut len = len;
    match *d {
        Damage::Truncate(at) => {
            b.truncate(at);
            len = at as u64;
        }
        Damage::Flip(at, bit) => b[at] ^= 1 << bit,
        Damage::Zero(at) => b[at..(at + 4096).min(head.len())].fill(0),
    }
    std::fs::write(path, &b).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

/// Every answer is an error or exactly the model.
fn check_reads(path: &Path, model: &Model, keys: &[Key]) -> (usize, usize) {
    let r = match Reader::open(path, &opts()) {
        Ok(r) => r,
        Err(_) => return (0, 1),
    };
    let (mut ok, mut errors) = (0, 0);
    for key in keys {
        let want = model.get(key).cloned().unwrap_or_default();
        let (mut first, mut found) = ([[0u8; 16]; 1], [0u8; 1]);
        match r.lookup(std::slice::from_ref(key), &mut first, &mut found) {
            Ok(()) => {
                assert_eq!(
                    found[0] == 1,
                    !want.is_empty(),
                    "lookup of {key:?} answered wrongly"
                );
                assert!(
                    found[0] == 0 || want.contains(&first[0]),
                    "lookup of {key:?}: a value no state had"
                );
                ok += 1;
            }
            Err(_) => errors += 1,
        }
        let mut buf = vec![[0u8; 16]; 64];
        let mut counts = [0u64; 1];
        match r.get(std::slice::from_ref(key), &mut buf, &mut counts) {
            Ok(n) => assert_eq!(
                buf[..n].iter().copied().collect::<BTreeSet<_>>(),
                want,
                "get of {key:?}"
            ),
            Err(Error::BufferTooSmall { .. }) => {
                panic!("get of {key:?}: more values than any state had")
            }
            Err(_) => errors += 1,
        }
    }
    (ok, errors)
}

/// The newest root of the file at `path`, read from its two root slots.
fn newest(path: &Path) -> hashdir::testing::root::Root {
    use hashdir::testing::{layout::ROOT_SLOT, root};
    let b = common::engine::head(path);
    let at = b
        .windows(8)
        .position(|w| w == root::MAGIC)
        .expect("a root slot");
    root::newest(
        &b[at..at + ROOT_SLOT],
        &b[at + ROOT_SLOT..at + 2 * ROOT_SLOT],
    )
    .unwrap()
}

#[test]
fn damaged_files_give_errors_or_correct_data() {
    let mut rng = Rng::seeded("damaged_files_give_errors_or_correct_data");
    let d = TempDir::new("corrupt");
    let good = d.file("good.h5");
    let model = build(&good);
    let len = std::fs::metadata(&good).unwrap().len();
    let bytes = {
        use std::io::Read;
        let mut b = Vec::new();
        std::fs::File::open(&good)
            .unwrap()
            .take(USED)
            .read_to_end(&mut b)
            .unwrap();
        b
    };
    let keys: Vec<Key> = (0..3000u64).step_by(7).map(k).chain([k(99_999)]).collect();
    let rounds = std::env::var("HASHDIR_CORRUPTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150);
    let (mut opened, mut refused, mut verify_flagged) = (0, 0, 0);
    for round in 0..rounds {
        let damage = match rng.below(3) {
            0 => Damage::Truncate(rng.below(bytes.len() as u64) as usize),
            1 => Damage::Flip(rng.below(bytes.len() as u64) as usize, rng.below(8) as u8),
            _ => Damage::Zero(rng.below(bytes.len() as u64) as usize / 4096 * 4096),
        };
        let path = d.file(&format!("bad{round}.h5"));
        write_damaged(&path, &bytes, len, &damage);
        let (ok, errors) = check_reads(&path, &model, &keys);
        if ok > 0 {
            opened += 1;
        } else if errors > 0 {
            refused += 1;
        }
        if let Ok(report) = hashdir::verify(&path) {
            verify_flagged += usize::from(!report.is_ok());
        }
        // A writer either refuses the file or recovers it into one that reads correctly.
        if let Ok(w) = Writer::open(
            &path,
            &Options {
                create: false,
                ..opts()
            },
        ) {
            let _ = w.close();
            check_reads(&path, &model, &keys);
        }
        std::fs::remove_file(&path).unwrap();
    }
    println!("corruption rounds {rounds}: readable {opened}, refused {refused}, verify flagged {verify_flagged}");
}

/// Delta tables carry key filters (docs/FORMAT.md §5.6): readers skip the tables a key is not
/// in and still read every set right; a filter that rules out a key its table holds is damage
/// `verify` names.
#[test]
fn key_filters_skip_tables_and_their_damage_is_caught() {
    use common::engine::{head, patch, small_log};
    let d = TempDir::new("filters");
    let path = d.file("t.h5");
    let mut w = Writer::open(&path, &small_log()).unwrap();
    let mut model = Model::new();
    let mut add = |w: &mut Writer, keys: std::ops::Range<u64>| {
        let ks: Vec<Key> = keys.clone().map(k).collect();
        let vs: Vec<Value> = keys.map(|i| k(i + 7)).collect();
        w.insert(&ks, &vs).unwrap();
        w.commit().unwrap();
        for (key, v) in ks.iter().zip(&vs) {
            model.entry(*key).or_default().insert(*v);
        }
    };
    add(&mut w, 0..20_000);
    w.checkpoint().unwrap();
    // New keys in small commits until delta tables with filters hold some of them.
    let mut next = 20_000;
    let table = loop {
        add(&mut w, next..next + 500);
        next += 500;
        let r = newest(&path);
        let filtered = r
            .deltas
            .iter()
            .find(|t| t.filter_words() > 0 && t.dir.levels == 1);
        if let Some(t) = filtered {
            break *t;
        }
        assert!(next < 200_000, "no delta table with a filter: {r:?}");
    };
    drop(w); // no close: the delta tables stay
    let keys: Vec<Key> = (0..next + 100).map(k).collect();
    let reads = |what: &str| {
        let (ok, errors) = check_reads(&path, &model, &keys);
        assert_eq!((ok, errors), (keys.len(), 0), "{what}");
    };
    // Readers copy small filters into memory; larger ones they read in place, leaf by leaf:
    // both ways, the same answers and the same damage caught.
    for in_place in [false, true] {
        hashdir::testing::FILTERS_IN_PLACE.store(in_place, std::sync::atomic::Ordering::Relaxed);
        reads("filters as written");
        assert!(hashdir::verify(&path).unwrap().is_ok());

        // The directory array is one leaf page: the filter is its items past the slots.
        let leaf = table.dir.top;
        let words = table.filter_words() as usize;
        let at = 32 + 8 * table.slots() as usize;
        let mut page = head(&path)[leaf as usize..leaf as usize + 4096].to_vec();
        let good = page.clone();

        // A checksum that fails (the leaf also holds the directory items): errors or right data.
        page[at] ^= 0xff;
        patch(&path, leaf, &page);
        check_reads(&path, &model, &keys);
        assert!(!hashdir::verify(&path).unwrap().is_ok());

        // A filter of zeros, checksummed: it rules out every key of the table.
        page[at..at + 8 * words].fill(0);
        let crc = crc32c::crc32c(&page[8..]);
        page[4..8].copy_from_slice(&crc.to_le_bytes());
        patch(&path, leaf, &page);
        let report = hashdir::verify(&path).unwrap();
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.contains("key filter rules out")),
            "{:?}",
            report.problems
        );
        // Readers trust a checksummed filter: the keys only that table holds are not searched
        // for there (what shows that reads consult the filter at all).
        let r = Reader::open(&path, &opts()).unwrap();
        let mut found = vec![0u8; keys.len()];
        r.lookup(&keys, &mut vec![[0u8; 16]; keys.len()], &mut found)
            .unwrap();
        let missed = (0..keys.len()).filter(|&i| found[i] == 0 && model.contains_key(&keys[i]));
        assert!(missed.count() > 0, "a zeroed filter changed nothing");
        drop(r);
        patch(&path, leaf, &good);
        reads("the filter restored");

        // A reader copies the filter when it opens: zeros written under it afterwards change
        // its answers only when it reads the filter in place.
        let r = Reader::open(&path, &opts()).unwrap();
        patch(&path, leaf, &page);
        r.lookup(&keys, &mut vec![[0u8; 16]; keys.len()], &mut found)
            .unwrap();
        let missed = (0..keys.len()).filter(|&i| found[i] == 0 && model.contains_key(&keys[i]));
        assert_eq!(
            missed.count() > 0,
            in_place,
            "filter read in place: {in_place}"
        );
        drop(r);
        patch(&path, leaf, &good);
    }
    hashdir::testing::FILTERS_IN_PLACE.store(false, std::sync::atomic::Ordering::Relaxed);
}

/// A directory item carries the epoch its page was written at (docs/FORMAT.md): a reader
/// checks each page against it the first time it reads the page, so an item that names a
/// page of another epoch (checksums intact) gives errors for the keys of that page, never
/// their data, and leaves every other key readable.
#[test]
fn an_item_naming_another_epoch_of_its_page_is_caught() {
    use common::engine::{head, patch};
    let d = TempDir::new("stamp");
    let path = d.file("t.h5");
    let model = build(&path);
    let b = head(&path);
    let r = newest(&path);
    let t = r.base;
    assert!(t.is_some() && t.dir.levels == 1, "one leaf page: {r:?}");
    let leaf = t.dir.top as usize;
    let mut page = b[leaf..leaf + 4096].to_vec();
    let item =
        |p: &[u8], s: usize| u64::from_le_bytes(p[32 + 8 * s..40 + 8 * s].try_into().unwrap());
    let slots = 0..t.slots() as usize;
    let named = slots
        .clone()
        .map(|s| item(&page, s) as u32)
        .find(|&p| p != 0)
        .expect("a slot with a page");
    // Every item naming that page (slots share a page) says one epoch more than it has;
    // the leaf is checksummed again.
    let naming: Vec<usize> = slots.filter(|&s| item(&page, s) as u32 == named).collect();
    for s in naming {
        page[32 + 8 * s + 4] ^= 1;
    }
    let crc = crc32c::crc32c(&page[8..]);
    page[4..8].copy_from_slice(&crc.to_le_bytes());
    patch(&path, leaf as u64, &page);
    let keys: Vec<Key> = (0..3100).map(k).collect();
    let (ok, errors) = check_reads(&path, &model, &keys);
    assert!(errors > 0, "a page of another epoch was read as the slot's");
    assert!(
        ok > keys.len() / 2,
        "{ok} of {} lookups answered",
        keys.len()
    );
}
