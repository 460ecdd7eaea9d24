//! `hashdir bench`: a quick in-process check of insert and lookup speed on this machine.
//! The full benchmark (separate writer and reader processes, several reader threads,
//! concurrent commits, JSON output) is `cargo bench --bench hashdir`.

use crate::{engine_error, Failure};
use hashdir::{Key, Options, StoreReader, StoreWriter, Value};
use std::path::{Path, PathBuf};
use std::time::Instant;

pub struct Bench {
    pub dir: PathBuf,
    pub keys: u64,
    pub batch: u64,
    pub lookups: u64,
    pub keep: bool,
    pub shards: u32,
}

/// Removes the benchmark file when dropped, unless kept.
struct Scratch {
    path: PathBuf,
    keep: bool,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
            let _ = std::fs::remove_file(&self.path);
            let _ = std::fs::remove_file(hashdir::reader_table_path(&self.path));
        }
    }
}

/// A fixed pseudo-random permutation of u64 (splitmix64's finaliser).
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn key_of(i: u64) -> Key {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&mix(i).to_le_bytes());
    k[8..].copy_from_slice(&i.to_le_bytes());
    k
}

fn value_of(i: u64) -> Value {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&i.to_le_bytes());
    v
}

pub fn run(a: &Bench) -> Result<(), Failure> {
    let path = a
        .dir
        .join(format!("hashdir-bench-{}.h5", std::process::id()));
    if path.exists() {
        return Err(Failure::run(format!("{} already exists", path.display())));
    }
    let scratch = Scratch {
        path: path.clone(),
        keep: a.keep,
    };
    let insert_secs = insert(&path, a)?;
    println!(
        "insert: {} pairs in {insert_secs:.2} s ({:.0} pairs/s, batches of {}, closing checkpoint included)",
        a.keys,
        a.keys as f64 / insert_secs.max(1e-9),
        a.batch
    );
    if a.lookups > 0 && a.keys > 0 {
        let micros = lookup(&path, a)?;
        println!(
            "lookup: {} single-key lookups, {micros:.2} µs each (one thread)",
            a.lookups
        );
    }
    if scratch.keep {
        println!("file: {}", path.display());
    }
    println!("full benchmark (reader processes, threads, JSON): cargo bench --bench hashdir");
    Ok(())
}

fn insert(path: &Path, a: &Bench) -> Result<f64, Failure> {
    let started = Instant::now();
    let opts = Options {
        shards: a.shards,
        ..Options::default()
    };
    let mut w = StoreWriter::open(path, &opts).map_err(|e| engine_error(path, e))?;
    let batch = a.batch.max(1);
    let (mut keys, mut values) = (Vec::new(), Vec::new());
    let mut i = 0;
    while i < a.keys {
        let end = (i + batch).min(a.keys);
        keys.clear();
        values.clear();
        keys.extend((i..end).map(key_of));
        values.extend((i..end).map(value_of));
        w.insert(&keys, &values)
            .and_then(|()| w.commit())
            .map_err(|e| engine_error(path, e))?;
        i = end;
    }
    w.close().map_err(|e| engine_error(path, e))?;
    Ok(started.elapsed().as_secs_f64())
}

/// Mean time of one-key lookups of keys spread over the whole file, checking each is found.
fn lookup(path: &Path, a: &Bench) -> Result<f64, Failure> {
    let opts = Options {
        create: false,
        ..Options::default()
    };
    let r = StoreReader::open(path, &opts).map_err(|e| engine_error(path, e))?;
    let (mut first, mut found) = ([[0u8; 16]], [0u8]);
    let started = Instant::now();
    for n in 0..a.lookups {
        let i = mix(n ^ 0x5555) % a.keys;
        r.lookup(&[key_of(i)], &mut first, &mut found)
            .map_err(|e| engine_error(path, e))?;
        if found[0] == 0 || first[0] != value_of(i) {
            return Err(Failure::run(format!(
                "{}: key {i} was not read back as inserted",
                path.display()
            )));
        }
    }
    Ok(started.elapsed().as_secs_f64() * 1e6 / a.lookups as f64)
}
