//! Concurrency under load: the writer commits, checkpoints and collects garbage at full speed
//! while reader processes and reader threads look up continuously. Every answer must match a
//! committed state, and no reader may ever go back to an older one.

mod common;

use common::{child_role, k, TempDir};
use hashdir::{Key, Options, Reader, Writer};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Batch b writes COUNTER = b and the keys of batch b, and deletes those of batch b - LIVE.
const COUNTER: u64 = u64::MAX;
const KEYS: u64 = 30;
const LIVE: u64 = 10;
const BATCHES: u64 = 1_000_000;

fn key(b: u64, j: u64) -> Key {
    k(b * KEYS + j)
}

/// Reads the counter, a window of batches, the counter again; checks the window against
/// every state between the two counters and returns the second counter.
fn check_once(r: &Reader, floor: u64) -> u64 {
    let counter = |r: &Reader| {
        let (mut v, mut found) = ([[0u8; 16]; 1], [0u8; 1]);
        r.lookup(&[k(COUNTER)], &mut v, &mut found).unwrap();
        (found[0] == 1).then(|| u64::from_be_bytes(v[0][8..].try_into().unwrap()))
    };
    let Some(c1) = counter(r) else {
        assert_eq!(floor, 0, "the counter vanished after it was seen");
        return 0;
    };
    assert!(c1 >= floor, "reader went back from batch {floor} to {c1}");
    let lo = c1.saturating_sub(LIVE + 2);
    let keys: Vec<Key> = (lo..c1 + 3)
        .flat_map(|b| (0..KEYS).map(move |j| key(b, j)))
        .collect();
    let mut vals = vec![[0u8; 16]; keys.len()];
    let mut found = vec![0u8; keys.len()];
    r.lookup(&keys, &mut vals, &mut found).unwrap();
    let c2 = counter(r).expect("counter present");
    assert!(c2 >= c1, "reader went back from batch {c1} to {c2}");
    for (i, key) in keys.iter().enumerate() {
        let b = lo + i as u64 / KEYS;
        let present = found[i] == 1;
        if present {
            assert_eq!(vals[i], k(b), "key {key:?} has a value no batch wrote");
        }
        // Present in every state c in [c1, c2] when inserted by c1 and not deleted by c2.
        if b <= c1 && b + LIVE > c2 {
            assert!(
                present,
                "batch {b}'s key missing between states {c1} and {c2}"
            );
        }
        // Absent in every such state when deleted by c1 or not yet written by c2.
        if b + LIVE <= c1 || b > c2 {
            assert!(
                !present,
                "batch {b}'s key present between states {c1} and {c2}"
            );
        }
    }
    c2
}

fn reader_loop(path: &Path, deadline: Instant, auto_refresh: bool) -> u64 {
    let opts = Options {
        refresh_interval_ms: u32::from(auto_refresh),
        ..Options::default()
    };
    let r = Reader::open(path, &opts).unwrap();
    let (mut floor, mut checks) = (0, 0u64);
    while Instant::now() < deadline {
        if !auto_refresh {
            r.refresh().unwrap();
        }
        floor = check_once(&r, floor);
        checks += 1;
    }
    checks
}

#[test]
fn child_roles() {
    let Some((role, arg)) = child_role() else {
        return;
    };
    assert_eq!(role, "reader");
    let (path, secs) = arg.split_once('|').unwrap();
    let deadline = Instant::now() + Duration::from_millis(secs.parse().unwrap());
    let checks = reader_loop(Path::new(path), deadline, true);
    println!("@checks {checks}");
}

#[test]
fn readers_see_only_committed_states_moving_forward() {
    let d = TempDir::new("stress");
    let path = d.file("t.h5");
    let opts = Options {
        checkpoint_bytes: 256 << 10,
        ..Options::default()
    };
    let mut w = Writer::open(&path, &opts).unwrap();
    let first: Vec<Key> = (0..KEYS).map(|j| key(0, j)).collect();
    w.insert(&first, &vec![k(0); first.len()]).unwrap();
    w.insert(&[k(COUNTER)], &[k(0)]).unwrap();
    w.commit().unwrap();
    // HASHDIR_STRESS_SECONDS sets the length of a longer run (4 s in CI).
    let millis = std::env::var("HASHDIR_STRESS_SECONDS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(4000, |s| s * 1000);
    let deadline = Instant::now() + Duration::from_millis(millis);
    let arg = format!("{}|{millis}", path.display());
    let children: Vec<_> = (0..4)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .args(["child_roles", "--exact", "--nocapture", "--test-threads=1"])
                .env("HASHDIR_CHILD", "reader")
                .env("HASHDIR_ARG", &arg)
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let thread_checks: Vec<u64> = std::thread::scope(|s| {
        let readers: Vec<_> = (0..4)
            .map(|t| {
                let path = &path;
                s.spawn(move || reader_loop(path, deadline, t % 2 == 0))
            })
            .collect();
        let mut b = 1;
        while Instant::now() < deadline && b < BATCHES {
            let keys: Vec<Key> = (0..KEYS).map(|j| key(b, j)).collect();
            w.insert(&keys, &vec![k(b); keys.len()]).unwrap();
            if b >= LIVE {
                let old: Vec<Key> = (0..KEYS).map(|j| key(b - LIVE, j)).collect();
                w.delete_keys(&old).unwrap();
            }
            w.delete_keys(&[k(COUNTER)]).unwrap();
            w.insert(&[k(COUNTER)], &[k(b)]).unwrap();
            w.commit().unwrap();
            if b % 50 == 0 {
                w.checkpoint().unwrap();
            }
            if b % 300 == 0 {
                w.gc().unwrap();
            }
            b += 1;
        }
        println!("writer: {b} batches");
        readers.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut process_checks = Vec::new();
    for mut c in children {
        let out = BufReader::new(c.stdout.take().unwrap());
        // Read to the end, so the child never writes into a closed pipe.
        let lines: Vec<String> = out.lines().map_while(|l| l.ok()).collect();
        let n = lines.iter().find_map(|l| {
            l.find("@checks ")
                .map(|at| l[at + 8..].trim().parse::<u64>().unwrap())
        });
        assert!(
            c.wait().unwrap().success(),
            "a reader process failed its checks"
        );
        process_checks.push(n.expect("reader process reported"));
    }
    println!("checks: threads {thread_checks:?}, processes {process_checks:?}");
    assert!(thread_checks.iter().chain(&process_checks).all(|n| *n > 10));
    w.close().unwrap();
    assert!(hashdir::verify(&path).unwrap().is_ok());
}
