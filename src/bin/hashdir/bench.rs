//! `hashdir bench`: a quick in-process check of insert and lookup speed on this machine.
//! The full benchmark (separate writer and reader processes, several reader threads,
//! concurrent commits, JSON output) is `cargo bench --bench hashdir`; both load the pairs of
//! `hashdir::workload`, so for the same options they load the same keys and values, and
//! the lookups here are those of the benchmark's first reader thread.

use crate::{engine_error, Failure};
use hashdir::workload::{key, Pairs, Picks, Shape};
use hashdir::{Options, StoreReader, StoreWriter};
use std::path::{Path, PathBuf};
use std::time::Instant;

pub struct Bench {
    pub dir: PathBuf,
    pub keys: u64,
    pub values_per_key: u64,
    pub shape: Shape,
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
    let pairs = Pairs::new(a.shape, a.keys, a.values_per_key).len();
    let insert_secs = insert(&path, a)?;
    println!(
        "insert: {pairs} pairs in {insert_secs:.2} s ({:.0} pairs/s, batches of {}, closing checkpoint included)",
        pairs as f64 / insert_secs.max(1e-9),
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
    let mut pairs = Pairs::new(a.shape, a.keys, a.values_per_key);
    let (mut keys, mut values) = (Vec::new(), Vec::new());
    let mut p = 0;
    while p < pairs.len() {
        let end = (p + batch).min(pairs.len());
        keys.clear();
        values.clear();
        pairs.fill(p, end, &mut keys, &mut values);
        w.insert(&keys, &values)
            .and_then(|()| w.commit())
            .map_err(|e| engine_error(path, e))?;
        p = end;
    }
    w.close().map_err(|e| engine_error(path, e))?;
    Ok(started.elapsed().as_secs_f64())
}

/// Mean time of one-key lookups of keys spread over the whole file, checking each finds one of
/// its key's values (under a Zipf law a key of the far tail may have drawn none).
fn lookup(path: &Path, a: &Bench) -> Result<f64, Failure> {
    let opts = Options {
        create: false,
        ..Options::default()
    };
    let r = StoreReader::open(path, &opts).map_err(|e| engine_error(path, e))?;
    let (mut first, mut found) = ([[0u8; 16]], [0u8]);
    let absent_ok = matches!(a.shape, Shape::Zipf(_));
    let mut picks = Picks::new(0);
    let started = Instant::now();
    for _ in 0..a.lookups {
        let i = picks.below(a.keys);
        r.lookup(&[key(i)], &mut first, &mut found)
            .map_err(|e| engine_error(path, e))?;
        let ok = if found[0] == 1 {
            first[0][..8] == i.to_le_bytes()
        } else {
            absent_ok
        };
        if !ok {
            return Err(Failure::run(format!(
                "{}: key {i} was not read back as inserted",
                path.display()
            )));
        }
    }
    Ok(started.elapsed().as_secs_f64() * 1e6 / a.lookups as f64)
}
