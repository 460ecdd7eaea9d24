//! Writers and readers in separate processes: a reader process sees a commit, a second writer
//! process is refused, and a writer killed by SIGKILL keeps every acknowledged batch.

mod common;

use common::engine::*;
use common::{child_role, k, spawn_child, Rng, TempDir};
use hashdir::{Error, Key, Options, Reader, Writer};
use std::io::{BufRead, BufReader};
use std::path::Path;

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
