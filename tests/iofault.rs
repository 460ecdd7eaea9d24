//! I/O fault injection: every write, sync and hole punch of a small workload fails in turn.
//!
//! A clean traced run of the workload counts the data file's writes (length changes count as
//! writes), syncs and punches. Then, for every `n` from 1 to that count, a writer child runs
//! the workload with `HASHDIR_IO_FAULT` set to `write:n:EIO`, `write:n+:ENOSPC` (that write and
//! every later one), `sync:n:EIO` and `punch:n:EIO`, and with `HASHDIR_IO_TRACE` on. The child
//! reports each acknowledged batch and the first call that failed, with its error, and then
//! stops (the writer is dropped, not closed, as an application that gives up would). Checks:
//! - the child neither panics nor dies; whether the fault fired is read from the trace (its
//!   `F` record); one never reached is counted (the workload is deterministic: none should be);
//! - a call that fails reports the injected errno; a fault that no call reported (an
//!   automatic checkpoint inside `commit` absorbs its failure and retries later) is counted;
//! - reopened in the parent without faults, the file holds every acknowledged batch as a
//!   whole-batch prefix (at most the one batch in flight more), verifies clean and takes a new
//!   batch (the oracle of tests/powercut.rs);
//! - a power cut at the end of the run that keeps only what was synced leaves every batch
//!   acknowledged before the last completed sync (the image builder of tests/powercut.rs);
//! - after a failed sync, a later completed sync does not make the writes before the failed
//!   one durable (Linux marks the pages clean after a writeback error): the images are built
//!   dropping every write between the previous completed sync and the failed one, at the end
//!   of the run and at every acknowledgement after the failed sync, and each must hold every
//!   batch acknowledged before its last completed sync. In `sync_commit` mode that is every
//!   acknowledged batch: none may be acknowledged after a failed sync unless it is durable.
//!
//! `HASHDIR_POWERCUT_KEEP=dir` saves each failed run's base and trace under
//! `dir/iofault-<mode>/<spec>/`.
//!
//! Both durability modes run. `HASHDIR_IOFAULT_STEP=k` tries every k-th `n` only (default 1:
//! all of them).

mod common;
#[path = "powercut/mod.rs"]
mod pc;

use common::child_role;
use hashdir::Options;
use pc::image::{self, FailedSync, LoseAll};
use pc::trace::{self, Rec, FAULT_SYNC};
use pc::workload::{self, End, Models, Plan, Session, STOPPED};
use pc::{Counts, Scratch, Timeline};
use std::path::Path;
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Default,
    Sync,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Default => "default",
            Mode::Sync => "sync",
        }
    }
}

fn opts(mode: Mode) -> Options {
    Options {
        sync_commit: mode == Mode::Sync,
        checkpoint_bytes: 8 << 10,
        capacity: 64 << 20,
        ..Options::default()
    }
}

/// Three short sessions: explicit and automatic checkpoints, a GC pass, a sync, a close, an abandoned
/// writer whose log the next open replays.
fn plan() -> Plan {
    Plan {
        shrink: 100,
        sessions: vec![
            Session {
                batches: 0..6,
                checkpoint_every: Some(3),
                gc_after: &[4],
                sync_after: &[],
                end: End::Close,
            },
            Session {
                batches: 6..10,
                checkpoint_every: None,
                gc_after: &[],
                sync_after: &[7],
                end: End::Abandon,
            },
            Session {
                batches: 10..14,
                checkpoint_every: None,
                gc_after: &[12],
                sync_after: &[],
                end: End::Close,
            },
        ],
    }
}

#[test]
fn child_roles() {
    let Some((role, arg)) = child_role() else {
        return;
    };
    assert_eq!(role, "iofault", "unknown role {role}");
    let mode = match std::env::var("HASHDIR_PC_MODE").as_deref() {
        Ok("sync") => Mode::Sync,
        _ => Mode::Default,
    };
    let r = workload::run(Path::new(&arg), &opts(mode), &plan(), |b| {
        println!("@acked {b}")
    });
    if let Err(f) = r {
        pc::report_failure(&f);
        workload::mark(STOPPED);
    }
    println!("@finished");
}

#[test]
fn io_faults_in_default_mode() {
    sweep(Mode::Default);
}

#[test]
fn io_faults_in_sync_mode() {
    sweep(Mode::Sync);
}

/// One traced child run with an optional fault: its report, its trace and the file it left.
fn run(
    mode: Mode,
    dir: &Scratch,
    base: &[u8],
    fault: Option<&str>,
) -> (pc::ChildReport, Vec<Rec>, Vec<u8>) {
    let path = dir.file("t.h5");
    let trace_path = dir.file("t.trace");
    pc::write_image(&path, base);
    let _ = std::fs::remove_file(&trace_path);
    let mut env = vec![
        ("HASHDIR_IO_TRACE", trace_path.to_str().unwrap().to_string()),
        ("HASHDIR_PC_MODE", mode.name().to_string()),
    ];
    if let Some(f) = fault {
        env.push(("HASHDIR_IO_FAULT", f.to_string()));
    }
    let rep = pc::run_child("child_roles", "iofault", &path, &env);
    let bytes = std::fs::read(&trace_path).unwrap_or_default();
    let recs = trace::parse(&bytes).unwrap_or_else(|e| panic!("{fault:?}: the trace: {e}"));
    (rep, recs, pc::read_prefix(&path))
}

/// Whether a replay of the whole trace over `base` gives the file the writer left (None) or
/// how it differs.
fn completeness(base: &[u8], recs: &[Rec], left: &[u8]) -> Option<String> {
    let (replayed, _) = image::build(
        base,
        recs,
        recs.len(),
        FailedSync::KeepsDirty,
        &mut image::KeepAll,
    );
    pc::replay_differences(&replayed, left)
}

/// `HASHDIR_POWERCUT_KEEP=dir`: saves a failed run's base and trace under
/// `dir/iofault-<mode>/<spec>/` (the trace of the run is still in the scratch directory).
fn keep(mode: Mode, spec: &str, dir: &Scratch, base: &[u8]) {
    let Some(to) = std::env::var_os("HASHDIR_POWERCUT_KEEP") else {
        return;
    };
    let d = std::path::PathBuf::from(to)
        .join(format!("iofault-{}", mode.name()))
        .join(spec.replace(':', "_"));
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("base.h5"), base).unwrap();
    std::fs::copy(dir.file("t.trace"), d.join("trace")).unwrap();
    eprintln!("{spec}: saved its base and trace in {}", d.display());
}

/// What one faulted run came to.
#[derive(Default)]
struct Tally {
    runs: u64,
    surfaced: u64,
    absorbed: u64,
    not_reached: u64,
    images: u64,
    failures: Vec<String>,
}

fn sweep(mode: Mode) {
    let began = Instant::now();
    let dir = Scratch::new("iofault");
    let base = pc::make_base(&dir.file("t.h5"), &opts(mode));
    let plan = plan();
    let batches = plan.batches();
    let models = Models::new(batches, plan.shrink);
    let step = std::env::var("HASHDIR_IOFAULT_STEP")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1u64)
        .max(1);

    // The clean run: what there is to fail.
    let (rep, recs, left) = run(mode, &dir, &base, None);
    assert!(rep.finished && rep.failed.is_none(), "clean run: {rep:?}");
    assert_eq!(
        rep.acked,
        (0..batches).collect::<Vec<_>>(),
        "clean run's acknowledgements"
    );
    let clean = Counts::of(&recs);
    assert!(
        Timeline::of(&recs, base.len() as u64).ends_complete,
        "clean trace cut short"
    );
    let incomplete = completeness(&base, &recs, &left);
    if let Some(why) = &incomplete {
        eprintln!(
            "{} mode: the trace is INCOMPLETE: {why} (bytes written outside store::trace).",
            mode.name()
        );
    }
    // Length changes go through the write fault counter too.
    let writes = clean.writes + clean.lengths;
    eprintln!(
        "{} mode: a clean run makes {writes} writes ({} KiB), {} syncs, {} punches",
        mode.name(),
        clean.write_bytes >> 10,
        clean.syncs,
        clean.punches
    );

    let mut specs = Vec::new();
    for n in (1..=writes).step_by(step as usize) {
        specs.push((format!("write:{n}:EIO"), libc::EIO));
        specs.push((format!("write:{n}+:ENOSPC"), libc::ENOSPC));
    }
    for n in (1..=clean.syncs).step_by(step as usize) {
        specs.push((format!("sync:{n}:EIO"), libc::EIO));
    }
    for n in (1..=clean.punches).step_by(step as usize) {
        specs.push((format!("punch:{n}:EIO"), libc::EIO));
    }

    let mut t = Tally::default();
    for (spec, errno) in &specs {
        t.runs += 1;
        if let Err(why) = one(mode, &dir, &base, &models, spec, *errno, &mut t) {
            t.failures.push(format!("{spec}: {why}"));
            keep(mode, spec, &dir, &base);
        }
    }
    if let Some(why) = &incomplete {
        t.failures
            .insert(0, format!("the clean run's trace is incomplete: {why}"));
    }
    let summary = format!(
        "{} mode: {} faulted runs ({} writes, {} syncs, {} punches in a clean run{}): {} failed; the fault surfaced as an error in the call it hit in {}, was absorbed (no call failed, or a later one) in {}, was never reached in {}; {} crash images checked (the synced state at the end of each run and at each acknowledgement after a failed sync); {:.1} s",
        mode.name(),
        t.runs,
        writes,
        clean.syncs,
        clean.punches,
        if step > 1 { format!(", every {step}th n") } else { String::new() },
        t.failures.len(),
        t.surfaced,
        t.absorbed,
        t.not_reached,
        t.images,
        began.elapsed().as_secs_f64()
    );
    eprintln!("{summary}");
    for f in t.failures.iter().take(12) {
        eprintln!("  {f}");
    }
    assert!(
        t.failures.is_empty(),
        "{summary}\n  {}",
        t.failures
            .iter()
            .take(12)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n  ")
    );
}

/// Runs the workload with fault `spec` and checks what it left; Err says what was wrong.
fn one(
    mode: Mode,
    dir: &Scratch,
    base: &[u8],
    models: &Models,
    spec: &str,
    errno: i32,
    t: &mut Tally,
) -> Result<(), String> {
    let (rep, recs, _left) = run(mode, dir, base, Some(spec));
    let batches = models.batches();
    if !rep.finished || !rep.status.is_some_and(|s| s.success()) {
        return Err(format!(
            "the child did not finish normally: {:?} (failed call {:?})",
            rep.status, rep.failed
        ));
    }
    let tl = Timeline::of(&recs, base.len() as u64);
    if !(tl.ends_complete || tl.ends_stopped) {
        return Err("the trace does not end with the run's last marker".into());
    }
    let acked = rep.acked.len() as u64;
    if rep.acked != (0..acked).collect::<Vec<_>>() || tl.acks != (1..=acked).collect::<Vec<_>>() {
        return Err(format!(
            "acknowledgements out of order: child {:?}, trace {:?}",
            rep.acked, tl.acks
        ));
    }
    let Some(first) = recs.iter().position(|r| matches!(r, Rec::Fault { .. })) else {
        t.not_reached += 1;
        return if rep.failed.is_some() || acked != batches {
            Err(format!(
                "the fault never fired, yet the run stopped: {:?}",
                rep.failed
            ))
        } else {
            Ok(())
        };
    };
    // Which call the fault hit, and whether that call said so.
    let hit = tl.during[first];
    match (&rep.failed, hit) {
        (Some((call, batch, got, msg)), Some((c, b))) if call == c.name() && *batch == b => {
            t.surfaced += 1;
            if *got != Some(errno) {
                return Err(format!(
                    "{call} of batch {batch} failed without the injected errno {errno}: {msg}"
                ));
            }
        }
        (Some((call, batch, _, msg)), _) if tl.ends_stopped => {
            t.absorbed += 1;
            let at = hit.map_or("between calls".to_string(), |(c, b)| {
                format!("{} of batch {b}", c.name())
            });
            eprintln!("{spec}: the fault hit {at}, which returned Ok; {call} of batch {batch} failed later: {msg}");
        }
        (None, _) => {
            t.absorbed += 1;
            if acked != batches {
                return Err(format!("the run stopped early without a failed call: {acked} of {batches} acknowledged"));
            }
        }
        (Some(f), _) => {
            return Err(format!(
                "a failed call {f:?} but the trace does not end where the run stopped"
            ))
        }
    }

    // Reopened without faults: every acknowledged batch, at most the one in flight more.
    let path = dir.file("t.h5");
    let hi = (acked + 1).min(batches);
    oracle_check(&path, mode, models, acked, hi, 1)
        .map_err(|e| format!("reopened without faults ({acked} batches acknowledged): {e}"))?;

    // Power cuts keeping only what was synced, losing for good what a failed sync may have
    // cost: at the end of the run, and at every acknowledgement after a failed sync.
    let failed_sync = recs
        .iter()
        .position(|r| matches!(r, Rec::Fault { op, .. } if *op == FAULT_SYNC));
    let mut points: Vec<usize> = match failed_sync {
        None => Vec::new(),
        Some(f) => (f..recs.len())
            .filter(|&i| matches!(recs[i], Rec::Mark(v) if (1..workload::ACK_LIMIT).contains(&v)))
            .map(|i| i + 1)
            .collect(),
    };
    points.push(recs.len());
    let img_path = dir.file("image.h5");
    let img_base = base;
    for crash in points {
        let (img, built) =
            image::build(img_base, &recs, crash, FailedSync::LosesDirty, &mut LoseAll);
        let lo = built.last_sync.map_or(0, |s| tl.acked[s]);
        let hi = (tl.acked[crash] + 1).min(batches);
        pc::write_image(&img_path, &img);
        t.images += 1;
        let r = oracle_check(&img_path, mode, models, lo, hi, 2);
        pc::remove_image(&img_path);
        r.map_err(|e| {
            format!(
                "power cut at record {crash} ({}), keeping only what was synced{}: {e}",
                tl.place(crash),
                match failed_sync {
                    Some(f) => format!(
                        ", after the sync that failed at record {f}, losing the {} operations before it",
                        built.dropped_by_failed_sync
                    ),
                    None => String::new(),
                }
            )
        })?;
    }
    Ok(())
}

fn oracle_check(
    path: &Path,
    mode: Mode,
    models: &Models,
    lo: u64,
    hi: u64,
    probe: u64,
) -> Result<u64, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pc::oracle::check(path, &opts(mode), models, lo, hi, probe)
    }))
    .unwrap_or_else(|_| Err("the check panicked".into()))
}
