//! Crash tests: a writer child process dies by SIGKILL at every named failpoint (and at
//! random moments elsewhere); the parent reopens the file and checks it against the model of
//! the acknowledged batches: every acknowledged batch whole, the next one whole or absent,
//! deleted data still deleted, and `verify` clean. Needs the `failpoints` feature, which the
//! crate's dev-dependency on itself turns on for tests. The same workload runs on sharded
//! stores (a path ending in `.d`, 3 shards): a batch touches every shard, so a set commit cut
//! in some shards only matches no model state.

mod common;

use common::{child_role, k, open_writer, retry_locked, spawn_child, Rng, TempDir};
use hashdir::testing::failpoint;
use hashdir::{Key, Options, StoreReader, StoreWriter, Value};
use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::path::Path;

type Model = HashMap<Key, BTreeSet<Value>>;

/// Batches a child runs before it stops on its own (a failpoint that was never reached).
const BATCHES: u64 = 120;
/// From this batch on the workload only deletes (3 batches' keys per batch).
const SHRINK: u64 = 90;
/// The key whose set grows, shrinks, is deleted and grows again (promotion, append, copy,
/// demotion).
const BIG: u64 = 1 << 40;

/// A log sealed after about every batch, so that delta tables pile up between checkpoints and
/// are merged into one another as well as into the base.
fn opts() -> Options {
    Options {
        checkpoint_bytes: 2 << 10,
        ..Options::default()
    }
}

/// `opts`, creating a store of 3 shards at a path ending in `.d`.
fn opts_for(path: &Path) -> Options {
    let shards = if path.extension().is_some_and(|e| e == "d") {
        3
    } else {
        0
    };
    Options { shards, ..opts() }
}

/// `StoreWriter::open` through `retry_locked`.
fn open_store(path: &Path) -> hashdir::Result<StoreWriter> {
    retry_locked(|| StoreWriter::open(path, &opts_for(path)))
}

/// Holds the number of the last batch applied (written by every batch, atomically with it).
const PROGRESS: u64 = 1 << 41;

/// The ops of batch `b`, applied to a writer and to the model alike.
fn batch(b: u64, mut op: impl FnMut(Op)) {
    op(Op::DeleteKey(k(PROGRESS)));
    op(Op::Insert(k(PROGRESS), k(b)));
    if b >= SHRINK {
        // The last batches empty the table: buckets merge and the directory halves.
        for j in 0..120 {
            op(Op::DeleteKey(k((b - SHRINK) * 120 + j)));
        }
        return;
    }
    for j in 0..40 {
        op(Op::Insert(k(b * 40 + j), k(b)));
    }
    for j in 0..6 {
        op(Op::Insert(k(BIG), k(b * 6 + j)));
    }
    if b % 3 == 2 {
        for j in 0..40 {
            op(Op::DeleteKey(k((b - 2) * 40 + j)));
        }
    }
    if b % 10 == 9 {
        for j in 0..20 {
            op(Op::DeletePair(k(BIG), k(b * 6 - j)));
        }
    }
    if b % 17 == 16 {
        op(Op::DeleteKey(k(BIG)));
        op(Op::Insert(k(BIG), k(7)));
    }
}

#[derive(Clone, Copy)]
enum Op {
    Insert(Key, Value),
    DeleteKey(Key),
    DeletePair(Key, Value),
}

fn model_after(batches: u64) -> Model {
    let mut m = Model::new();
    for b in 0..batches {
        batch(b, |op| match op {
            Op::Insert(key, v) => {
                m.entry(key).or_default().insert(v);
            }
            Op::DeleteKey(key) => {
                m.remove(&key);
            }
            Op::DeletePair(key, v) => {
                if let Some(s) = m.get_mut(&key) {
                    s.remove(&v);
                    if s.is_empty() {
                        m.remove(&key);
                    }
                }
            }
        });
    }
    m
}

/// Runs batches from where the file is, acknowledging each on stdout; checkpoints and GC
/// passes on a fixed schedule.
fn workload(path: &Path) {
    let mut w = open_store(path).unwrap();
    let start = StoreReader::open(path, &Options::default()).unwrap();
    let done = batches_in(&start);
    drop(start);
    for b in done..BATCHES {
        batch(b, |op| match op {
            Op::Insert(key, v) => w.insert(&[key], &[v]).unwrap(),
            Op::DeleteKey(key) => w.delete_keys(&[key]).unwrap(),
            Op::DeletePair(key, v) => w.delete_pairs(&[key], &[v]).unwrap(),
        });
        w.commit().unwrap();
        println!("@acked {b}");
        if b % 8 == 7 {
            w.checkpoint().unwrap();
        }
        if b % 13 == 12 {
            w.gc().unwrap();
        }
    }
    w.close().unwrap();
    println!("@finished");
}

/// How many batches a file holds.
fn batches_in(r: &StoreReader) -> u64 {
    let (mut last, mut found) = ([[0u8; 16]; 1], [0u8; 1]);
    r.lookup(&[k(PROGRESS)], &mut last, &mut found).unwrap();
    if found[0] == 0 {
        return 0;
    }
    u64::from_be_bytes(last[0][8..].try_into().unwrap()) + 1
}

#[test]
fn child_roles() {
    let Some((role, arg)) = child_role() else {
        return;
    };
    let path = Path::new(&arg);
    match role.as_str() {
        "workload" => workload(path),
        "open" => {
            // Open (recovery), then finish what the file has under way (a merge).
            let mut w = open_store(path).unwrap();
            w.checkpoint().unwrap();
            w.close().unwrap();
            println!("@finished");
        }
        _ => panic!("unknown role {role}"),
    }
}

fn scan(path: &Path) -> Model {
    let r = StoreReader::open(path, &Options::default()).unwrap();
    let mut m = Model::new();
    r.scan(|key, vs| {
        m.insert(*key, vs.iter().copied().collect());
        true
    })
    .unwrap();
    m
}

/// Runs a child with a failpoint armed; returns (last acknowledged batch, finished).
fn run_child(role: &str, path: &Path, failpoint: Option<&str>) -> (Option<u64>, bool) {
    let mut cmd_env = Vec::new();
    if let Some(fp) = failpoint {
        cmd_env.push(("HASHDIR_FAILPOINT", fp.to_string()));
    }
    let mut child = spawn_child_env("child_roles", role, path.to_str().unwrap(), &cmd_env);
    let out = BufReader::new(child.stdout.take().unwrap());
    let (mut acked, mut finished) = (None, false);
    for line in out.lines() {
        let line = line.unwrap();
        let Some(at) = line.find('@') else { continue };
        let msg = &line[at + 1..];
        if let Some(b) = msg.strip_prefix("acked ") {
            acked = Some(b.trim().parse().unwrap());
        }
        finished |= msg.starts_with("finished");
    }
    let status = child.wait().unwrap();
    if !finished {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.signal(),
            Some(9),
            "child died otherwise than by SIGKILL: {status}"
        );
    }
    (acked, finished)
}

fn spawn_child_env(
    test: &str,
    role: &str,
    arg: &str,
    env: &[(&str, String)],
) -> std::process::Child {
    let _ = spawn_child; // the plain helper is used by other test files
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env("HASHDIR_CHILD", role)
        .env("HASHDIR_ARG", arg)
        .env_remove("HASHDIR_FAILPOINT")
        // Small merge steps, so that the small tables here are merged in many of them.
        .env("HASHDIR_MERGE_STEP", "40")
        .stdout(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

/// After a crash: the file opens (recovery), holds every acknowledged batch and at most one
/// more, whole, and verifies clean. `before` is how many batches the file held before the
/// child ran. Returns how many it holds now.
fn check_recovered(path: &Path, before: u64, acked: Option<u64>, what: &str) -> u64 {
    let mut w = open_store(path).unwrap_or_else(|e| panic!("{what}: reopen failed: {e}"));
    // Space the dead writer had taken for work it never published is free in the root it
    // left: a crash leaks nothing for garbage collection to find.
    let gc = w.gc().unwrap_or_else(|e| panic!("{what}: gc failed: {e}"));
    assert_eq!(gc, Default::default(), "{what}: the crash leaked space");
    w.close().unwrap();
    let report = hashdir::verify_store(path).unwrap();
    assert!(report.is_ok(), "{what}: verify: {:?}", report.problems);
    let got = scan(path);
    let n = acked.map_or(before, |a| a + 1);
    if got == model_after(n) {
        n
    } else {
        assert!(
            got == model_after(n + 1),
            "{what}: state is neither the {n} acknowledged batches nor one more"
        );
        n + 1
    }
}

#[test]
fn every_failpoint_is_survived() {
    let all: Vec<&str> = failpoint::ALL
        .iter()
        .copied()
        .filter(|f| !f.starts_with("recovery."))
        .collect();
    survive_failpoints(&all, &[1, 2], "t.h5");
}

/// On a sharded store a failpoint fires in whichever shard's thread passes it first, while
/// the other shards' threads are anywhere in the same set commit.
#[test]
fn sharded_stores_survive_failpoints() {
    let fps = [
        "commit.half_frame",
        "commit.frame_written",
        "commit.durable",
        "log.switched",
        "flush.published",
        "merge.step_published",
        "publish.root_torn",
        "gc.reclaimed",
    ];
    survive_failpoints(&fps, &[1, 5], "t.d");
}

fn survive_failpoints(fps: &[&str], hits: &[u64], name: &str) {
    let mut failed = Vec::new();
    for fp in fps {
        for &hit in hits {
            let d = TempDir::new("fp");
            let path = d.file(name);
            let spec = format!("{fp}:{hit}");
            let (acked, finished) = run_child("workload", &path, Some(&spec));
            if finished {
                failed.push(format!("{spec} was never reached by the workload"));
                continue;
            }
            check_recovered(&path, 0, acked, &spec);
            // The file keeps working: the rest of the workload runs to the end.
            let (_, finished) = run_child("workload", &path, None);
            assert!(
                finished,
                "{spec}: the workload could not continue after recovery"
            );
            assert_eq!(scan(&path), model_after(BATCHES), "{spec}: final state");
        }
    }
    assert!(failed.is_empty(), "{failed:?}");
}

#[test]
fn a_crash_during_recovery_is_recovered_again() {
    for fp in failpoint::ALL.iter().filter(|f| f.starts_with("recovery.")) {
        let d = TempDir::new("fprec");
        let path = d.file("t.h5");
        // First crash: mid-commit, so recovery has a log to replay; or mid-merge, so the open
        // has a merge to go on with.
        let first = match *fp {
            "recovery.merge_resumed" => "merge.step_published:2",
            _ => "commit.frame_written:30",
        };
        let (acked, finished) = run_child("workload", &path, Some(first));
        assert!(!finished);
        // Second crash: inside recovery itself.
        let (_, finished) = run_child("open", &path, Some(&format!("{fp}:1")));
        assert!(!finished, "{fp} was never reached during recovery");
        let n = acked.map_or(0, |a| a + 1);
        check_recovered(&path, n, None, fp);
    }
}

#[test]
fn random_kills_lose_nothing_acknowledged() {
    random_kills(
        "random_kills_lose_nothing_acknowledged",
        "HASHDIR_KILLS",
        2000,
        "h5",
        12_000,
    );
}

#[test]
fn random_kills_keep_set_commits_whole() {
    random_kills(
        "random_kills_keep_set_commits_whole",
        "HASHDIR_SHARDED_KILLS",
        150,
        "d",
        20_000,
    );
}

/// Kills writers of files (or stores) named `t<i>.<ext>` at random points or after up to
/// `delay_us`, `target` times (or as many as the variable `var` says).
fn random_kills(test: &str, var: &str, target: u64, ext: &str, delay_us: u64) {
    let mut rng = Rng::seeded(test);
    let target: u64 = std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(target);
    let d = TempDir::new("randkill");
    let (mut kills, mut files, mut lost) = (0u64, 1u64, 0u64);
    let mut path = d.file(&format!("t0.{ext}"));
    let mut have = 0;
    while kills < target {
        // Half the kills at a random pass of a random failpoint, half after a random delay.
        let (acked, finished) = if rng.below(2) == 0 {
            let fp = failpoint::ALL[rng.below(failpoint::ALL.len() as u64) as usize];
            let spec = format!("{fp}:{}", 1 + rng.below(4));
            run_child("workload", &path, Some(&spec))
        } else {
            run_child_killed_after(&path, std::time::Duration::from_micros(rng.below(delay_us)))
        };
        if finished {
            // The workload ran to its end: go on with a new file.
            path = d.file(&format!("t{files}.{ext}"));
            files += 1;
            have = 0;
            continue;
        }
        kills += 1;
        let n = check_recovered(&path, have, acked, &format!("kill {kills}"));
        lost += u64::from(n < have);
        have = n;
    }
    // Partial batches and reopen failures fail check_recovered itself.
    println!("random kills: {kills} kills over {files} files, reopen failures 0, lost batches {lost}, partial batches 0");
    assert_eq!(lost, 0);
}

/// Runs the workload and kills it with SIGKILL after `delay`; (last acknowledged, finished).
fn run_child_killed_after(path: &Path, delay: std::time::Duration) -> (Option<u64>, bool) {
    let mut child = spawn_child_env("child_roles", "workload", path.to_str().unwrap(), &[]);
    let out = BufReader::new(child.stdout.take().unwrap());
    let reader = std::thread::spawn(move || {
        let (mut acked, mut finished) = (None, false);
        for line in out.lines().map_while(|l| l.ok()) {
            let Some(at) = line.find('@') else { continue };
            let msg = &line[at + 1..];
            if let Some(b) = msg.strip_prefix("acked ") {
                acked = Some(b.trim().parse::<u64>().unwrap());
            }
            finished |= msg.starts_with("finished");
        }
        (acked, finished)
    });
    std::thread::sleep(delay);
    let _ = child.kill();
    child.wait().unwrap();
    reader.join().unwrap()
}

#[test]
fn recovery_reports_what_it_dropped() {
    let cases = [
        ("commit.half_frame:5", "dropped an incomplete batch"),
        ("publish.root_torn:3", "root slot"),
    ];
    for (fp, expect) in cases {
        let d = TempDir::new("report");
        let path = d.file("t.h5");
        let (acked, finished) = run_child("workload", &path, Some(fp));
        assert!(!finished, "{fp} not reached");
        let w = open_writer(&path, &opts()).unwrap();
        let report = w.recovery().clone();
        assert!(
            report.notes.iter().any(|n| n.contains(expect)),
            "{fp}: {report:?}"
        );
        w.close().unwrap();
        check_recovered(&path, 0, acked, fp);
    }
}
