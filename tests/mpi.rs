//! libhashdir_mpi as MPI programs use it: `scripts/install.sh` builds and installs it (with
//! the mpicc on PATH) beside libhashdir in a scratch prefix; the examples (examples/mpi,
//! C and Fortran) and the contract test (c_tests/test_mpi.c) are compiled with mpicc/mpifort
//! and the flags of the installed `hashdir_mpi.pc`, and run with `mpirun --oversubscribe`
//! on 1 to 4 ranks. The stores they leave are then read without MPI: `hashdir verify` and a
//! plain reader scanning every pair.
//!
//! Open MPI is required, not optional (CI installs it through `scripts/dev.sh`): a missing
//! mpicc, mpifort or mpirun fails these tests naming the packages.

mod common_c;

use common_c::{check, install_prefix, pkg_config, root};
use hashdir::{shard_of, Key, Options, StoreReader, StoreWriter, Value};
use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard, OnceLock};

const CLI: &str = env!("CARGO_BIN_EXE_hashdir");
const PACKAGES: &str = "Debian packages openmpi-bin libopenmpi-dev; `bash scripts/dev.sh setup`";

/// The installed prefix and the programs built against it.
struct Built {
    _dir: tempfile::TempDir,
    lib: PathBuf,
    load_c: PathBuf,
    load_f: PathBuf,
    test_mpi: PathBuf,
}

fn run_tool(cmd: &mut Command) -> Output {
    let program = cmd.get_program().to_string_lossy().into_owned();
    match cmd.output() {
        Ok(out) => out,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            panic!("`{program}` is not installed: these tests need Open MPI ({PACKAGES})")
        }
        Err(e) => panic!("could not run `{program}`: {e}"),
    }
}

fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let lib = install_prefix(dir.path());
        assert!(
            lib.join("libhashdir_mpi.so.0").exists(),
            "scripts/install.sh did not build libhashdir_mpi: no mpicc on PATH? ({PACKAGES})"
        );
        let flags = pkg_config(
            &lib.join("pkgconfig"),
            None,
            &["--cflags", "--libs", "hashdir_mpi"],
        );
        let libs = pkg_config(&lib.join("pkgconfig"), None, &["--libs", "hashdir_mpi"]);
        assert!(
            libs.contains(&"-lhashdir_mpi".to_owned()) && libs.contains(&"-lhashdir".to_owned()),
            "{libs:?}"
        );
        let cc = |source: PathBuf, exe: &Path, extra: &[&str]| {
            let out = run_tool(
                Command::new("mpicc")
                    .args(["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror"])
                    .args(extra)
                    .arg(&source)
                    .arg("-o")
                    .arg(exe)
                    .args(&flags),
            );
            check(&format!("mpicc {}", source.display()), &out);
        };
        let load_c = dir.path().join("load_c");
        cc(root().join("examples/mpi/load.c"), &load_c, &[]);
        let test_mpi = dir.path().join("test_mpi");
        let tap = format!("-I{}", root().join("c_tests").display());
        cc(
            root().join("c_tests/test_mpi.c"),
            &test_mpi,
            &[&tap, "-pthread"],
        );

        let load_f = dir.path().join("load_f");
        let sources = [
            pkg_config(
                &lib.join("pkgconfig"),
                None,
                &["--variable=fortran_source", "hashdir"],
            ),
            pkg_config(
                &lib.join("pkgconfig"),
                None,
                &["--variable=fortran_source", "hashdir_mpi"],
            ),
        ];
        let out = run_tool(
            Command::new("mpifort")
                .args(["-Wall", "-Wextra", "-Werror", "-fcheck=all", "-O1", "-J"])
                .arg(dir.path())
                .args(sources.iter().flatten())
                .arg(root().join("examples/mpi/load.f90"))
                .arg("-o")
                .arg(&load_f)
                .args(&libs),
        );
        check(
            "mpifort hashdir.f90 hashdir_mpi.f90 examples/mpi/load.f90",
            &out,
        );
        Built {
            _dir: dir,
            lib,
            load_c,
            load_f,
            test_mpi,
        }
    })
}

/// `mpirun --oversubscribe -np <ranks> <exe> <args>`, one run at a time (the machine may
/// have fewer cores than ranks), allowed to run as root as CI does.
fn mpirun(ranks: usize, exe: &Path, args: &[&str]) -> Output {
    let _turn = one_at_a_time();
    run_tool(&mut mpirun_command(ranks, exe, args))
}

fn one_at_a_time() -> MutexGuard<'static, ()> {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn mpirun_command(ranks: usize, exe: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("mpirun");
    cmd.args(["--oversubscribe", "-np", &ranks.to_string()])
        .arg(exe)
        .args(args)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        // Containers often forbid the cross-memory attach of the shared-memory transport.
        .env("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
        .env("LD_LIBRARY_PATH", &built().lib);
    cmd
}

/// The JSON line rank 0 prints.
fn figures(what: &str, out: &Output) -> serde_json::Value {
    check(what, out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("{what}: no JSON line in\n{stdout}"));
    println!("{what}: {line}");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{what}: {e}: {line}"))
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn pair(a: u64, b: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&a.to_le_bytes());
    k[8..].copy_from_slice(&b.to_le_bytes());
    k
}

/// Every pair of the store at `dir`, read by a plain (non-MPI) reader of the directory.
fn scan(dir: &Path) -> BTreeMap<Key, Vec<Value>> {
    let r = StoreReader::open(dir, &Options::default()).unwrap();
    let mut all = BTreeMap::new();
    r.scan(|k, vs| {
        let mut vs = vs.to_vec();
        vs.sort();
        all.insert(*k, vs);
        true
    })
    .unwrap();
    all
}

fn verify(dir: &Path) -> String {
    let out = Command::new(CLI).arg("verify").arg(dir).output().unwrap();
    check(&format!("hashdir verify {}", dir.display()), &out);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The C example on 1, 2 and 4 ranks (2 with 3 shards a rank): it checks every key through
/// routed gets and lookups itself; afterwards the store verifies and a plain reader sees
/// exactly the pairs of load.c's rule (key i: (mix(i), i) -> (i, 0..V)).
#[test]
fn c_example_loads_and_a_plain_reader_sees_every_pair() {
    let b = built();
    let (keys, per_key) = (3000u64, 7u64);
    for (ranks, per_rank) in [(1usize, 1u32), (2, 3), (4, 1)] {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path().join("store");
        let d = dir.to_str().unwrap();
        let pairs = (keys * per_key).to_string();
        let args = [
            d,
            "--pairs",
            &pairs,
            "--values-per-key",
            "7",
            "--batch",
            "2100",
            "--shards-per-rank",
            &per_rank.to_string(),
        ];
        let f = figures(
            &format!("load.c on {ranks} ranks"),
            &mpirun(ranks, &b.load_c, &args),
        );
        assert_eq!(f["ranks"], ranks);
        assert_eq!(f["shards"], ranks as u32 * per_rank);
        assert_eq!(f["keys_checked"], keys);
        assert_eq!(f["pairs"], keys * per_key);
        assert_eq!(dir.is_dir(), ranks as u32 * per_rank > 1);
        let report = verify(&dir);
        assert!(
            report.contains(&format!("values: {}", keys * per_key)),
            "{report}"
        );

        let all = scan(&dir);
        assert_eq!(all.len() as u64, keys);
        for i in 0..keys {
            let mut want: Vec<Value> = (0..per_key).map(|j| pair(i, j)).collect();
            want.sort();
            assert_eq!(all.get(&pair(splitmix(i), i)), Some(&want), "key {i}");
        }

        // Reopened by the same layout, the example finds everything without loading.
        let mut again = args.to_vec();
        again.push("--check-only");
        let f = figures(
            &format!("load.c --check-only on {ranks} ranks"),
            &mpirun(ranks, &b.load_c, &again),
        );
        assert_eq!(f["loaded"], false);
        assert_eq!(f["keys_checked"], keys);
    }
}

/// The Fortran example on 4 and 3 ranks (3: ranks hold different numbers of keys).
#[test]
fn fortran_example_loads_and_checks() {
    let b = built();
    for ranks in [4usize, 3] {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path().join("store");
        let f = figures(
            &format!("load.f90 on {ranks} ranks"),
            &mpirun(
                ranks,
                &b.load_f,
                &[dir.to_str().unwrap(), "20000", "10", "3000"],
            ),
        );
        assert_eq!(f["ranks"], ranks);
        assert_eq!(f["keys_checked"], 2000);
        assert!(verify(&dir).contains("values: 20000"));
        let all = scan(&dir);
        assert_eq!(all.len(), 2000);
        for i in 0..2000u64 {
            // hd_key(i): i in bytes 0..8; hd_value(n): n in bytes 0..8.
            let mut want: Vec<Value> = (0..10).map(|j| pair(i * 10 + j, 0)).collect();
            want.sort();
            assert_eq!(all.get(&pair(i, 0)), Some(&want), "key {i}");
        }
    }
}

/// c_tests/test_mpi.c on 1, 2 and 3 ranks: refusals (on one rank only, too), NULL handles,
/// the get retry, stats against a plain reader, a reopen with the wrong shard count.
#[test]
fn contract_holds_on_1_2_and_3_ranks() {
    let b = built();
    for ranks in [1usize, 2, 3] {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path().join("store");
        let out = mpirun(ranks, &b.test_mpi, &[dir.to_str().unwrap()]);
        check(&format!("test_mpi on {ranks} ranks"), &out);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let summaries = stdout
            .lines()
            .filter(|l| l.ends_with(" passed, 0 failed"))
            .count();
        assert_eq!(summaries, ranks, "{stdout}");
        assert!(!stdout.contains("not ok"), "{stdout}");
    }
}

/// A store of 4 shards opened by 2 ranks with 1 shard each: every rank fails with the
/// shard counts in the message, and the store is unchanged.
#[test]
fn a_shard_count_that_does_not_match_is_refused() {
    let b = built();
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("store");
    let d = dir.to_str().unwrap();
    let load = ["--pairs", "4000", "--batch", "1000"];
    figures(
        "load.c on 4 ranks",
        &mpirun(4, &b.load_c, &[&[d][..], &load].concat()),
    );
    let out = mpirun(2, &b.load_c, &[&[d][..], &load, &["--check-only"]].concat());
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for rank in 0..2 {
        assert!(
            stderr.contains(&format!(
                "rank {rank}: hashdir_mpi_open(dir, MPI_COMM_WORLD, per_rank, &opts, &h) failed \
                 (HASHDIR_ERR_INVALID_ARGUMENT): hashdir_mpi_open: rank 0: the store must have \
                 2 shards (2 ranks x 1 per rank)"
            )),
            "{stderr}"
        );
    }
    assert!(
        stderr.contains("has 4 shards, not the 2 asked for"),
        "{stderr}"
    );
    assert_eq!(scan(&dir).len(), 4000);
}

/// Every rank killed (SIGKILL) in mid-load, as when the job or its nodes die: once a writer
/// has opened the store (which settles the set commit under way) it verifies; every batch
/// acknowledged on all ranks is there whole; each shard holds a prefix of the batches, each
/// whole (a key has all its values or is absent), and every shard the same prefix: a
/// collective commit is one set commit. Rerunning the load on the same directory completes it.
#[test]
fn a_job_killed_in_mid_load_keeps_whole_batches_and_a_rerun_completes_it() {
    let b = built();
    let (ranks, per_rank, per_key, batch) = (2u64, 2u32, 4u64, 8000u64);
    let (pairs, nkeys, keys_per_batch) = (2_000_000u64, 500_000u64, batch / per_key);
    let shards = ranks as u32 * per_rank;
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("store");
    let args = [
        dir.to_str().unwrap().to_owned(),
        "--pairs".into(),
        pairs.to_string(),
        "--values-per-key".into(),
        per_key.to_string(),
        "--batch".into(),
        batch.to_string(),
        "--shards-per-rank".into(),
        per_rank.to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    let acked = {
        let _turn = one_at_a_time();
        let mut child = mpirun_command(
            ranks as usize,
            &b.load_c,
            &[&args[..], &["--progress"]].concat(),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run mpirun");
        let (mut pids, mut acked) = (Vec::new(), None);
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            let line = line.unwrap();
            if let Some(p) = line.strip_prefix("pid ") {
                pids.push(p.split_whitespace().nth(1).unwrap().to_owned());
            } else if let Some(n) = line.strip_prefix("committed batch ") {
                acked = Some(n.parse::<u64>().unwrap());
            }
            if pids.len() == ranks as usize && acked >= Some(5) {
                // Somewhere in the next commits (about 40 ms each): in an exchange, a
                // shard's append, the set record or a sync point.
                let delay = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .subsec_nanos()
                    % 60;
                println!("killing the ranks {delay} ms after batch 5 was acknowledged");
                std::thread::sleep(std::time::Duration::from_millis(delay.into()));
                let out = Command::new("kill").arg("-9").args(&pids).output().unwrap();
                check("kill -9 the ranks", &out);
                break;
            }
            assert!(
                !line.starts_with('{'),
                "the load finished before it was killed: {line}"
            );
        }
        assert!(
            !child.wait().unwrap().success(),
            "mpirun succeeded though its ranks were killed"
        );
        acked.expect("no batch was acknowledged")
    };

    let settled = StoreWriter::open(&dir, &Options::default()).unwrap();
    println!("recovery: {:?}", settled.recovery().notes);
    settled.close().unwrap();
    verify(&dir);
    let all = scan(&dir);
    // (shard, batch) -> (keys present, keys in all).
    let mut cells: BTreeMap<(u32, u64), (u64, u64)> = BTreeMap::new();
    let mut present = 0;
    for i in 0..nkeys {
        let key = pair(splitmix(i), i);
        let batch_of = i / ranks / keys_per_batch;
        let cell = cells.entry((shard_of(&key, shards), batch_of)).or_default();
        cell.1 += 1;
        if let Some(vs) = all.get(&key) {
            let mut want: Vec<Value> = (0..per_key).map(|j| pair(i, j)).collect();
            want.sort();
            assert_eq!(vs, &want, "key {i} holds part of its values");
            cell.0 += 1;
            present += 1;
        }
    }
    assert_eq!(all.len() as u64, present, "keys the load never inserted");
    let mut reached = Vec::new(); // per shard: the batches it holds, 0..c
    for s in 0..shards {
        let mut c = 0;
        for (&(_, batch_of), &(have, of)) in cells.range((s, 0)..(s, u64::MAX)) {
            assert!(
                have == 0 || have == of,
                "shard {s} holds {have} of {of} keys of batch {batch_of}"
            );
            if have == of {
                assert_eq!(
                    batch_of, c,
                    "shard {s} holds batch {batch_of} but not batch {c}"
                );
                c += 1;
            }
        }
        reached.push(c);
    }
    let (lo, hi) = (
        *reached.iter().min().unwrap(),
        *reached.iter().max().unwrap(),
    );
    println!("acknowledged batches 0..={acked}; shards hold batches below {reached:?}");
    assert!(
        lo > acked,
        "an acknowledged batch is missing: {reached:?}, acked {acked}"
    );
    assert_eq!(lo, hi, "a set commit is in some shards only: {reached:?}");
    assert!(
        present < nkeys,
        "the whole load was there: not killed in mid-load"
    );

    let f = figures(
        "the load rerun after the kill",
        &mpirun(ranks as usize, &b.load_c, &args),
    );
    assert_eq!(f["keys_checked"], nkeys);
    verify(&dir);
    assert_eq!(scan(&dir).len() as u64, nkeys);
}
