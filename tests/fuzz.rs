//! Fuzzing in the test suite: the committed libFuzzer corpus replayed, seeds cut from real files
//! (which must verify clean) mutated at random, and a bounded coverage-guided libFuzzer run of
//! both targets (`fuzz/run.sh`; a crash there fails the test with the input kept).

mod common;

use common::{k, Rng, TempDir};
use hashdir::testing::fuzz;
use hashdir::{Options, Writer};
use std::path::{Path, PathBuf};
use std::process::Command;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = fuzz_dir().join("corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect()
}

#[test]
fn committed_corpus_replays() {
    for (target, run) in [
        ("image", (|b: &[u8]| _ = fuzz::image(b)) as fn(&[u8])),
        ("wal", |b: &[u8]| _ = fuzz::wal(b)),
    ] {
        let inputs = corpus(target);
        assert!(
            inputs.len() >= 3,
            "{target} corpus has {} inputs",
            inputs.len()
        );
        for (path, bytes) in &inputs {
            eprintln!("replay {}", path.display());
            run(bytes);
        }
        println!("{target}: replayed {} corpus inputs", inputs.len());
    }
}

/// Real files at three stages: checkpointed with inline sets and extents; with committed
/// frames in the log after that; after deletes and another checkpoint.
fn real_files(dir: &TempDir) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let path = dir.file("seed.h5");
    let opts = Options {
        capacity: 64 << 20,
        ..Options::default()
    };
    let mut w = Writer::open(&path, &opts).unwrap();
    for i in 0..600u64 {
        let n = if i % 40 == 0 { 30 } else { 1 + i % 3 };
        let vals: Vec<_> = (0..n).map(k).collect();
        w.insert(&vec![k(i); vals.len()], &vals).unwrap();
    }
    w.commit().unwrap();
    w.checkpoint().unwrap();
    let snap = |name: &str, out: &mut Vec<(PathBuf, u64)>, ops: u64| {
        let p = dir.file(name);
        std::fs::copy(&path, &p).unwrap();
        out.push((p, ops));
    };
    snap("checkpointed.h5", &mut out, 0);
    let mut ops = 0;
    for b in 0..4u64 {
        w.insert(&[k(1000 + b), k(b)], &[k(7), k(9)]).unwrap();
        w.delete_keys(&[k(100 + b)]).unwrap();
        w.delete_pairs(&[k(40)], &[k(b)]).unwrap();
        w.commit().unwrap();
        ops += 4;
    }
    snap("logged.h5", &mut out, ops);
    w.delete_keys(&(0..300).map(k).collect::<Vec<_>>()).unwrap();
    w.commit().unwrap();
    w.checkpoint().unwrap();
    w.close().unwrap();
    snap("shrunk.h5", &mut out, 0);
    out
}

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut b = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        if b.len() <= 16 {
            break;
        }
        let at = 16 + rng.below(b.len() as u64 - 16) as usize;
        match rng.below(5) {
            0 => b[at] ^= 1 << rng.below(8),
            1 => b[at] = rng.next() as u8,
            2 => {
                let end = (at + 8).min(b.len());
                b[at..end].fill(0xff);
            }
            3 => b.truncate(at),
            _ => {
                let v = rng.below(1 << 20).to_le_bytes();
                let end = (at + 8).min(b.len());
                b[at..end].copy_from_slice(&v[..end - at]);
            }
        }
    }
    b
}

#[test]
fn seeds_from_real_files_verify_and_survive_mutation() {
    let dir = TempDir::new("fuzz-seeds");
    let mut rng = Rng::seeded("seeds_from_real_files_verify_and_survive_mutation");
    let rounds: u64 = std::env::var("HASHDIR_FUZZ_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let save = std::env::var_os("HASHDIR_FUZZ_WRITE_SEEDS").map(PathBuf::from);
    for (path, ops) in real_files(&dir) {
        let image = fuzz::image_of(&path).unwrap();
        let log = fuzz::wal_of(&path).unwrap();
        // A real file's image verifies clean (twice: as is, and re-sealed), and the log
        // target reads every committed op of it (twice too).
        assert_eq!(fuzz::image(&image), 0, "{}", path.display());
        assert_eq!(fuzz::wal(&log), 2 * ops, "{}", path.display());
        if let Some(to) = &save {
            let name = path.file_stem().unwrap().to_str().unwrap();
            for (t, b) in [("image", &image), ("wal", &log)] {
                std::fs::create_dir_all(to.join(t)).unwrap();
                std::fs::write(to.join(t).join(format!("seed-{name}")), b).unwrap();
            }
        }
        let mut damaged = 0;
        for _ in 0..rounds {
            let m = mutate(&mut rng, &image);
            damaged += (fuzz::image(&m) > 0) as u64;
            fuzz::wal(&mutate(&mut rng, &log));
        }
        println!(
            "{}: {rounds} mutations of a {} byte image ({damaged} reported damage) and a {} byte log",
            path.display(),
            image.len(),
            log.len()
        );
        assert!(damaged > 0, "no mutation of {} was noticed", path.display());
    }
}

/// A bounded coverage-guided run of each target from the committed corpus (new inputs go to a
/// scratch directory, so the test leaves the tree as it was).
#[test]
fn libfuzzer_smoke_run() {
    let secs = std::env::var("HASHDIR_FUZZ_SECONDS").unwrap_or_else(|_| "20".into());
    let script = fuzz_dir().join("run.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg("build")
        .status()
        .unwrap();
    assert!(out.success(), "building the fuzz targets failed");
    for target in ["image", "wal"] {
        let scratch = TempDir::new(&format!("fuzz-{target}"));
        let artifacts = scratch.file("artifacts");
        let status = Command::new("bash")
            .arg(&script)
            .arg(target)
            .arg(&secs)
            .arg(format!("-seed={}", Rng::seeded(target).0 as u32))
            .env("FUZZ_NEW", scratch.file("new"))
            .env("FUZZ_ARTIFACTS", &artifacts)
            .status()
            .unwrap();
        let found: Vec<_> = std::fs::read_dir(&artifacts)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert!(
            status.success() && found.is_empty(),
            "libFuzzer found a failing {target} input: {found:?} (status {status})"
        );
    }
}
