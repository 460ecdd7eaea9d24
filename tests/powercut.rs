//! Power-cut tests: no acknowledged-and-synced batch is ever lost, and no file is ever lost,
//! whatever a power cut keeps of what was not synced. See docs/POWERCUT.md.
//!
//! A writer child runs a deterministic workload (several writer sessions: commits, explicit
//! and automatic checkpoints, GC passes, table growth and shrinkage, a close, an abandoned
//! writer whose log the next open replays) with `HASHDIR_IO_TRACE` on, over a file the parent
//! created, closed and fsynced beforehand (the base image). The trace holds every write, hole
//! punch, length change and completed sync of the data file, and a marker after each
//! acknowledged commit. From it the test builds crash images (tests/powercut/image.rs): the
//! base, everything up to the last completed sync before a random crash point applied exactly,
//! and each later operation kept, lost, or (writes, per 4 KiB piece) torn at 512 B sectors.
//! Each image must open for writing (recovery), hold exactly the first `k` whole batches with
//! `k` at least the batches acknowledged before that sync (and at most those begun), verify
//! clean, and take a new batch through checkpoint, close and reopen
//! (tests/powercut/oracle.rs). Every failure is counted; the test fails at the end with a
//! summary. Both durability modes run: default and `sync_commit`.
//!
//! The same runs on a sharded store (3 shards: a directory of shard files, a set log and a
//! manifest): the trace names the file of each operation and records the set log's appends,
//! syncs and atomic replaces (creation, rename, directory sync); each file of an image is built
//! from its own operations (tests/powercut/files.rs), and every shard must hold the same `k`
//! whole set commits (`HASHDIR_POWERCUT_SHARDED_IMAGES=n`, default 300).
//!
//! Environment:
//! - `HASHDIR_POWERCUT_IMAGES=n`: images per mode (default 1000); the long run is
//!   `HASHDIR_POWERCUT_IMAGES=100000 cargo test --release --test powercut`.
//! - `HASHDIR_POWERCUT_THREADS=n`: threads checking images (default 2).
//! - `HASHDIR_SEED=s`: the seed (printed by every run); `HASHDIR_POWERCUT_ONLY=i`: check
//!   image `i` only (with the seed and the saved trace of a failed run, it rebuilds the same
//!   image).
//!
//! The trace must be complete: replayed over the base it must give the file the writer left.
//! Every byte the writer changes goes through `store::trace`, and HDF5 writes nothing after
//! the file is created; a byte that changed outside the trace fails the test.
//! - `HASHDIR_POWERCUT_KEEP=dir`: save the base, the trace, the file the writer left and the
//!   first failing images under `dir/<mode>/`; `HASHDIR_POWERCUT_REPLAY=dir`: take the base
//!   and the trace from there instead of running the writer.

mod common;
#[path = "powercut/mod.rs"]
mod pc;
#[path = "powercut/selftest.rs"]
mod selftest;

use common::{child_role, Rng};
use hashdir::Options;
use pc::image::{self, FailedSync};
use pc::trace::{self, Rec};
use pc::workload::{self, End, Models, Plan, Session};
use pc::{Counts, Profile, RandomChooser, Scratch, Timeline};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
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

    fn parse(s: &str) -> Mode {
        match s {
            "sync" => Mode::Sync,
            _ => Mode::Default,
        }
    }
}

/// Small logs, so that checkpoints also start on their own (a batch's frame is about 2 KiB).
fn opts(mode: Mode) -> Options {
    Options {
        sync_commit: mode == Mode::Sync,
        checkpoint_bytes: 16 << 10,
        capacity: 64 << 20,
        ..Options::default()
    }
}

/// Three writer sessions over 120 batches: the first closes, the second syncs now and then and
/// is abandoned (the third's open replays its log), the third shrinks the table and closes.
fn plan() -> Plan {
    Plan {
        shrink: 96,
        sessions: vec![
            Session {
                batches: 0..40,
                checkpoint_every: Some(8),
                gc_after: &[23],
                sync_after: &[],
                end: End::Close,
            },
            Session {
                batches: 40..75,
                checkpoint_every: None,
                gc_after: &[60],
                sync_after: &[44, 52, 66],
                end: End::Abandon,
            },
            Session {
                batches: 75..120,
                checkpoint_every: Some(10),
                gc_after: &[99, 113],
                sync_after: &[104],
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
    let path = Path::new(&arg);
    match role.as_str() {
        "powercut" => {
            let mode = Mode::parse(&std::env::var("HASHDIR_PC_MODE").unwrap_or_default());
            let r = workload::run(path, &opts(mode), &plan(), |b| println!("@acked {b}"));
            if let Err(f) = r {
                pc::report_failure(&f);
                panic!(
                    "the traced workload failed: {} of batch {}: {}",
                    f.call.name(),
                    f.batch,
                    f.error
                );
            }
            println!("@finished");
        }
        "sharded" => {
            let mode = Mode::parse(&std::env::var("HASHDIR_PC_MODE").unwrap_or_default());
            let r = workload::run(path, &sharded_opts(mode), &sharded_plan(), |b| {
                println!("@acked {b}")
            });
            if let Err(f) = r {
                pc::report_failure(&f);
                panic!(
                    "the traced sharded workload failed: {} of batch {}: {}",
                    f.call.name(),
                    f.batch,
                    f.error
                );
            }
            println!("@finished");
        }
        "tiny" => {
            // selftest: a short traced run in sync mode.
            let r = workload::run(path, &opts(Mode::Sync), &selftest::tiny_plan(), |b| {
                println!("@acked {b}")
            });
            if let Err(f) = r {
                pc::report_failure(&f);
                panic!("the tiny workload failed: {}", f.error);
            }
            println!("@finished");
        }
        _ => panic!("unknown role {role}"),
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn power_cuts_in_default_mode() {
    run_mode(Mode::Default, "power_cuts_in_default_mode");
}

#[test]
fn power_cuts_in_sync_mode() {
    run_mode(Mode::Sync, "power_cuts_in_sync_mode");
}

/// The run's inputs: the base image, the trace, the file the writer left.
struct Run {
    base: Vec<u8>,
    recs: Vec<Rec>,
    left: Vec<u8>,
    /// What the child acknowledged on stdout (None when replayed from a saved run).
    child_acks: Option<Vec<u64>>,
}

fn record_run(mode: Mode, dir: &Scratch) -> Run {
    if let Some(saved) = std::env::var_os("HASHDIR_POWERCUT_REPLAY") {
        let d = PathBuf::from(saved).join(mode.name());
        eprintln!("replaying the saved run in {}", d.display());
        let read = |n: &str| {
            std::fs::read(d.join(n)).unwrap_or_else(|e| panic!("{}: {e}", d.join(n).display()))
        };
        let recs = trace::parse(&read("trace")).unwrap_or_else(|e| panic!("saved trace: {e}"));
        return Run {
            base: read("base.h5"),
            recs,
            left: read("left.h5"),
            child_acks: None,
        };
    }
    let path = dir.file("run.h5");
    let trace_path = dir.file("run.trace");
    let base = pc::make_base(&path, &opts(mode));
    let rep = pc::run_child(
        "child_roles",
        "powercut",
        &path,
        &[
            ("HASHDIR_IO_TRACE", trace_path.to_str().unwrap().to_string()),
            ("HASHDIR_PC_MODE", mode.name().to_string()),
            // Merges of a few steps, each published: crashes land between the steps of a
            // merge into the base and in the open that resumes one.
            ("HASHDIR_MERGE_STEP", "40".to_string()),
        ],
    );
    assert!(
        rep.finished && rep.status.is_some_and(|s| s.success()),
        "the traced writer did not finish: {:?} (failed call: {:?})",
        rep.status,
        rep.failed
    );
    let bytes = std::fs::read(&trace_path).unwrap();
    let recs = trace::parse(&bytes).unwrap_or_else(|e| panic!("the writer's trace: {e}"));
    let left = pc::read_prefix(&path);
    if let Some(keep) = std::env::var_os("HASHDIR_POWERCUT_KEEP") {
        let d = PathBuf::from(keep).join(mode.name());
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("base.h5"), &base).unwrap();
        std::fs::write(d.join("trace"), &bytes).unwrap();
        std::fs::write(d.join("left.h5"), &left).unwrap();
        eprintln!(
            "saved the base, the trace and the file left in {}",
            d.display()
        );
    }
    Run {
        base,
        recs,
        left,
        child_acks: Some(rep.acked),
    }
}

/// One image's outcome.
struct Outcome {
    image: u64,
    crash: usize,
    profile: Profile,
    built: image::Built,
    /// The crash point follows the first write past the base file's end.
    grown: bool,
    lo: u64,
    hi: u64,
    result: Result<u64, String>,
}

fn run_mode(mode: Mode, test: &str) {
    let began = Instant::now();
    let seed = Rng::seeded(test).0;
    let images = env_u64("HASHDIR_POWERCUT_IMAGES", 1000);
    let threads = env_u64("HASHDIR_POWERCUT_THREADS", 2).max(1);
    let only = std::env::var("HASHDIR_POWERCUT_ONLY")
        .ok()
        .and_then(|v| v.parse::<u64>().ok());
    let dir = Scratch::new("powercut");
    let run = record_run(mode, &dir);
    let plan = plan();
    let batches = plan.batches();

    // The harness checks itself on the trace before judging the engine by it.
    let tl = Timeline::of(&run.recs, run.base.len() as u64);
    let counts = Counts::of(&run.recs);
    assert!(
        tl.ends_complete,
        "the trace does not end with the run's END marker: it was cut short"
    );
    assert!(
        tl.unknown.is_empty(),
        "unknown markers in the trace: {:?}",
        tl.unknown
    );
    assert_eq!(
        counts.faults, 0,
        "a fault was injected into a run that asked for none"
    );
    assert_eq!(
        tl.acks,
        (1..=batches).collect::<Vec<_>>(),
        "the trace's acknowledgements are not batches 1..={batches} in order"
    );
    if let Some(acks) = &run.child_acks {
        assert_eq!(
            acks,
            &(0..batches).collect::<Vec<_>>(),
            "the child's acknowledgements"
        );
    }
    eprintln!(
        "{} mode: trace of {} records: {} writes ({} KiB), {} punches, {} length changes, {} syncs, {} markers; base {} KiB; first write past the base's end at record {:?}",
        mode.name(),
        run.recs.len(),
        counts.writes,
        counts.write_bytes >> 10,
        counts.punches,
        counts.lengths,
        counts.syncs,
        counts.marks,
        run.base.len() >> 10,
        tl.first_growth,
    );
    // Completeness: the base with every operation applied must be the file the writer left.
    let (replayed, _) = image::build(
        &run.base,
        &run.recs,
        run.recs.len(),
        FailedSync::KeepsDirty,
        &mut image::KeepAll,
    );
    let incomplete = pc::replay_differences(&replayed, &run.left);
    if let Some(why) = &incomplete {
        eprintln!(
            "{} mode: the trace is INCOMPLETE: {why}. The file holds bytes the trace lacks (written outside store::trace: by HDF5 after creation, or a path that bypasses the recorder).",
            mode.name()
        );
    }
    let models = Models::new(batches, plan.shrink);
    let n = run.recs.len();
    // Crash points: before the first record, and right after each operation. A point after
    // a marker gives the image of the operation before it with looser bounds, so those add
    // nothing.
    let points: Vec<usize> = std::iter::once(0)
        .chain(
            run.recs
                .iter()
                .enumerate()
                .filter(|(_, r)| !matches!(r, Rec::Mark(_) | Rec::Fault { .. }))
                .map(|(i, _)| i + 1),
        )
        .collect();
    let next = AtomicUsize::new(0);
    let outcomes = Mutex::new(Vec::new());
    let todo: Vec<u64> = match only {
        Some(i) => vec![i],
        None => (0..images).collect(),
    };
    std::thread::scope(|s| {
        for t in 0..threads {
            let (run, tl, models, todo, next, outcomes, dir, points) =
                (&run, &tl, &models, &todo, &next, &outcomes, &dir, &points);
            s.spawn(move || {
                let path = dir.file(&format!("image-{t}.h5"));
                loop {
                    let j = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&i) = todo.get(j) else { break };
                    let mut rng = Rng(pc::image_seed(seed, i));
                    let crash = points[rng.below(points.len() as u64) as usize];
                    let profile = Profile::pick(&mut rng);
                    let (img, built) = image::build(
                        &run.base,
                        &run.recs,
                        crash,
                        FailedSync::KeepsDirty,
                        &mut RandomChooser {
                            rng: &mut rng,
                            profile,
                        },
                    );
                    // Durable: what the last completed fdatasync covered, and at least what
                    // a returned `Writer::sync` promised.
                    let lo = built
                        .last_sync
                        .map_or(0, |s| tl.acked[s])
                        .max(tl.synced[crash]);
                    let hi = (tl.acked[crash] + 1).min(batches);
                    pc::write_image(&path, &img);
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        pc::oracle::check(&path, &opts(mode), models, lo, hi, i)
                    }))
                    .unwrap_or_else(|p| Err(format!("panicked: {}", panic_message(&p))));
                    if result.is_err() {
                        keep_failed_image(mode, i, &img);
                    }
                    pc::remove_image(&path);
                    outcomes.lock().unwrap().push(Outcome {
                        image: i,
                        crash,
                        profile,
                        built,
                        grown: tl.first_growth.is_some_and(|g| g < crash),
                        lo,
                        hi,
                        result,
                    });
                }
            });
        }
    });
    let mut outcomes = outcomes.into_inner().unwrap();
    outcomes.sort_by_key(|o| o.image);
    let summary = summarize(mode.name(), seed, &outcomes, &tl, n, incomplete.as_deref());
    eprintln!("{summary}");
    eprintln!(
        "{} mode: {} images in {:.1} s",
        mode.name(),
        outcomes.len(),
        began.elapsed().as_secs_f64()
    );
    let failed = outcomes.iter().filter(|o| o.result.is_err()).count();
    assert!(failed == 0 && incomplete.is_none(), "{summary}");
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "?".into())
}

fn keep_failed_image(mode: Mode, i: u64, img: &[u8]) {
    static KEPT: AtomicUsize = AtomicUsize::new(0);
    let Some(keep) = std::env::var_os("HASHDIR_POWERCUT_KEEP") else {
        return;
    };
    if KEPT.fetch_add(1, Ordering::Relaxed) < 10 {
        let d = PathBuf::from(keep).join(mode.name());
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(format!("image-{i}.h5")), img).unwrap();
    }
}

/// The kind of a failure, from its message: what the oracle's step found.
fn kind(msg: &str) -> &'static str {
    if msg.starts_with("writer open") {
        "does not open"
    } else if msg.starts_with("lost durable") {
        "lost durable batches"
    } else if msg.starts_with("contents are no whole-batch prefix") {
        "not a whole-batch prefix"
    } else if msg.starts_with("holds") {
        "more batches than begun"
    } else if msg.starts_with("verify") {
        "verify"
    } else if msg.starts_with("reader") {
        "unreadable"
    } else if msg.starts_with("panicked") {
        "panic"
    } else {
        "takes no new work"
    }
}

fn summarize(
    label: &str,
    seed: u64,
    outcomes: &[Outcome],
    tl: &Timeline,
    records: usize,
    incomplete: Option<&str>,
) -> String {
    use std::collections::BTreeMap;
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| o.result.is_err()).collect();
    let mut s = format!(
        "{label} mode: {} of {} images failed (seed {seed}, trace of {records} records)",
        failed.len(),
        outcomes.len()
    );
    if let Some(why) = incomplete {
        s += &format!("\n  trace incomplete: {why}");
    }
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for o in &failed {
        *kinds
            .entry(kind(o.result.as_ref().unwrap_err()))
            .or_default() += 1;
    }
    s += &format!("\n  by kind: {kinds:?}");
    let class = |f: &dyn Fn(&Outcome) -> bool| {
        let all = outcomes.iter().filter(|o| f(o)).count();
        let bad = failed.iter().filter(|o| f(o)).count();
        format!("{bad} of {all}")
    };
    if tl.first_growth.is_some() {
        s += &format!(
            "\n  crash point before the first write past the base's end: {}; after it: {}",
            class(&|o| !o.grown),
            class(&|o| o.grown)
        );
    }
    s += &format!(
        "\n  no operation after the last sync: {}; some, all kept whole (the page cache's view): {}; some lost or torn: {}",
        class(&|o| o.built.unsynced == 0),
        class(&|o| o.built.unsynced > 0 && o.built.nothing_lost()),
        class(&|o| !o.built.nothing_lost())
    );
    let held: Vec<u64> = outcomes
        .iter()
        .filter_map(|o| o.result.as_ref().ok())
        .copied()
        .collect();
    if !held.is_empty() {
        let recovered_less = outcomes
            .iter()
            .filter(|o| o.result.as_ref().is_ok_and(|k| *k + 1 < o.hi))
            .count();
        s += &format!(
            "\n  passing images held {}..={} batches; {recovered_less} of them lost acknowledged but unsynced batches (allowed)",
            held.iter().min().unwrap(),
            held.iter().max().unwrap()
        );
    }
    // The first failure of each kind, then the next ones, up to 8.
    let mut shown: Vec<&Outcome> = Vec::new();
    for kind_name in kinds.keys() {
        if let Some(o) = failed
            .iter()
            .find(|o| kind(o.result.as_ref().unwrap_err()) == *kind_name)
        {
            shown.push(o);
        }
    }
    for o in &failed {
        if shown.len() >= 8 {
            break;
        }
        if !shown.iter().any(|x| x.image == o.image) {
            shown.push(o);
        }
    }
    shown.sort_by_key(|o| o.image);
    for o in shown {
        s += &format!(
            "\n  image {} (replay: HASHDIR_SEED={seed} HASHDIR_POWERCUT_ONLY={}, image seed {}): crash point {}/{records} ({}), last sync {:?}, must hold {}..={} batches, {:?}, kept {} lost {} torn {} pieces, meta {}+{} skipped: {}",
            o.image,
            o.image,
            pc::image_seed(seed, o.image),
            o.crash,
            tl.place(o.crash),
            o.built.last_sync,
            o.lo,
            o.hi,
            o.profile,
            o.built.kept,
            o.built.lost,
            o.built.torn,
            o.built.meta_applied,
            o.built.meta_skipped,
            o.result.as_ref().unwrap_err()
        );
    }
    s
}

// ---------------------------------------------------------------------------------------------
// Sharded stores

/// Shards of the traced store.
const SHARDS: u32 = 3;

/// A store of 3 shards with 4 KiB logs: a batch puts about 700 bytes in each shard's log, so
/// every shard seals (after a sync point) and flushes into tables every few batches.
fn sharded_opts(mode: Mode) -> Options {
    Options {
        shards: SHARDS,
        sync_commit: mode == Mode::Sync,
        checkpoint_bytes: 4 << 10,
        capacity: 64 << 20,
        ..Options::default()
    }
}

/// Three writer sessions over 60 batches, of the same kinds as `plan`'s.
fn sharded_plan() -> Plan {
    Plan {
        shrink: 48,
        sessions: vec![
            Session {
                batches: 0..20,
                checkpoint_every: Some(8),
                gc_after: &[11],
                sync_after: &[],
                end: End::Close,
            },
            Session {
                batches: 20..40,
                checkpoint_every: None,
                gc_after: &[30],
                sync_after: &[24, 33],
                end: End::Abandon,
            },
            Session {
                batches: 40..60,
                checkpoint_every: Some(10),
                gc_after: &[50],
                sync_after: &[52],
                end: End::Close,
            },
        ],
    }
}

#[test]
fn power_cuts_of_a_sharded_store_in_default_mode() {
    run_sharded(
        Mode::Default,
        "power_cuts_of_a_sharded_store_in_default_mode",
    );
}

#[test]
fn power_cuts_of_a_sharded_store_in_sync_mode() {
    run_sharded(Mode::Sync, "power_cuts_of_a_sharded_store_in_sync_mode");
}

/// A sharded run's inputs: the store's files before the run and after it, and the trace.
struct ShardedRun {
    base: pc::files::Files,
    trace: trace::Trace,
    left: pc::files::Files,
    /// The length of every shard file (fixed when it is created).
    shard_len: u64,
    child_acks: Option<Vec<u64>>,
}

fn is_shard(name: &str) -> bool {
    name.starts_with("shard_") && name.ends_with(".h5")
}

/// The store's files (not the shards' reader tables): a shard up to its last data, the
/// others whole.
fn read_store(dir: &Path) -> pc::files::Files {
    let mut files = pc::files::Files::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".readers") {
            continue;
        }
        let bytes = match is_shard(&name) {
            true => pc::read_prefix(&e.path()),
            false => std::fs::read(e.path()).unwrap(),
        };
        files.insert(name, bytes);
    }
    files
}

fn write_store(dir: &Path, files: &pc::files::Files, shard_len: u64) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    for (name, bytes) in files {
        match is_shard(name) {
            true => pc::write_image_len(&dir.join(name), bytes, shard_len),
            false => std::fs::write(dir.join(name), bytes).unwrap(),
        }
    }
}

fn record_sharded_run(mode: Mode, dir: &Scratch) -> ShardedRun {
    let name = format!("sharded-{}", mode.name());
    if let Some(saved) = std::env::var_os("HASHDIR_POWERCUT_REPLAY") {
        let d = PathBuf::from(saved).join(&name);
        eprintln!("replaying the saved run in {}", d.display());
        let bytes = std::fs::read(d.join("trace")).unwrap();
        let trace = trace::parse_files(&bytes).unwrap_or_else(|e| panic!("saved trace: {e}"));
        let len = std::fs::read_to_string(d.join("shard_len")).unwrap();
        return ShardedRun {
            base: read_store(&d.join("base")),
            trace,
            left: read_store(&d.join("left")),
            shard_len: len.trim().parse().unwrap(),
            child_acks: None,
        };
    }
    let store = dir.file("store");
    let trace_path = dir.file("store.trace");
    let opts = sharded_opts(mode);
    hashdir::StoreWriter::open(&store, &opts)
        .unwrap()
        .close()
        .unwrap();
    for e in std::fs::read_dir(&store).unwrap() {
        std::fs::File::open(e.unwrap().path())
            .unwrap()
            .sync_all()
            .unwrap();
    }
    std::fs::File::open(&store).unwrap().sync_all().unwrap();
    let shard_len = std::fs::metadata(store.join("shard_000.h5")).unwrap().len();
    let base = read_store(&store);
    let rep = pc::run_child(
        "child_roles",
        "sharded",
        &store,
        &[
            ("HASHDIR_IO_TRACE", trace_path.to_str().unwrap().to_string()),
            ("HASHDIR_IO_TRACE_ROOT", store.to_str().unwrap().to_string()),
            ("HASHDIR_PC_MODE", mode.name().to_string()),
            ("HASHDIR_MERGE_STEP", "40".to_string()),
        ],
    );
    assert!(
        rep.finished && rep.status.is_some_and(|s| s.success()),
        "the traced sharded writer did not finish: {:?} (failed call: {:?})",
        rep.status,
        rep.failed
    );
    let bytes = std::fs::read(&trace_path).unwrap();
    let trace = trace::parse_files(&bytes).unwrap_or_else(|e| panic!("the writer's trace: {e}"));
    let left = read_store(&store);
    if let Some(keep) = std::env::var_os("HASHDIR_POWERCUT_KEEP") {
        let d = PathBuf::from(keep).join(&name);
        std::fs::create_dir_all(&d).unwrap();
        write_store(&d.join("base"), &base, shard_len);
        write_store(&d.join("left"), &left, shard_len);
        std::fs::write(d.join("trace"), &bytes).unwrap();
        std::fs::write(d.join("shard_len"), shard_len.to_string()).unwrap();
        eprintln!(
            "saved the base, the trace and the store left in {}",
            d.display()
        );
    }
    ShardedRun {
        base,
        trace,
        left,
        shard_len,
        child_acks: Some(rep.acked),
    }
}

/// `models.after(k)` restricted to each shard's keys.
fn shard_models(models: &Models) -> Vec<Vec<workload::State>> {
    (0..=models.batches())
        .map(|k| {
            let mut by = vec![workload::State::new(); SHARDS as usize];
            for (key, set) in models.after(k) {
                by[hashdir::shard_of(key, SHARDS) as usize].insert(*key, set.clone());
            }
            by
        })
        .collect()
}

/// Which whole-batch prefixes each shard of a failed image holds (for the report).
fn shards_at(store: &Path, by_shard: &[Vec<workload::State>]) -> String {
    let mut out = Vec::new();
    for s in 0..SHARDS as usize {
        let path = store.join(format!("shard_{s:03}.h5"));
        let got = match pc::oracle::scan(&path) {
            Ok(g) => g,
            Err(e) => {
                out.push(format!("shard {s}: {e}"));
                continue;
            }
        };
        let ks: Vec<usize> = (0..by_shard.len())
            .filter(|&k| by_shard[k][s] == got)
            .collect();
        out.push(format!("shard {s} matches prefixes {ks:?}"));
    }
    out.join("; ")
}

fn run_sharded(mode: Mode, test: &str) {
    let began = Instant::now();
    let seed = Rng::seeded(test).0;
    let images = env_u64("HASHDIR_POWERCUT_SHARDED_IMAGES", 300);
    let threads = env_u64("HASHDIR_POWERCUT_THREADS", 2).max(1);
    let only = std::env::var("HASHDIR_POWERCUT_ONLY")
        .ok()
        .and_then(|v| v.parse::<u64>().ok());
    let label = format!("sharded {}", mode.name());
    let dir = Scratch::new("powercut-sharded");
    let run = record_sharded_run(mode, &dir);
    let plan = sharded_plan();
    let batches = plan.batches();
    let models = Models::new(batches, plan.shrink);
    let by_shard = shard_models(&models);
    // Every batch changes every shard, so a set commit in some shards only is no model state.
    for (b, pair) in by_shard.windows(2).enumerate() {
        for (s, (before, after)) in pair[0].iter().zip(&pair[1]).enumerate() {
            assert_ne!(before, after, "batch {b} leaves shard {s} as it was");
        }
    }
    let recs = &run.trace.recs;
    let tl = Timeline::of(recs, u64::MAX);
    let counts = Counts::of(recs);
    assert!(tl.ends_complete, "the trace was cut short (no END marker)");
    assert!(tl.unknown.is_empty(), "unknown markers: {:?}", tl.unknown);
    assert_eq!(counts.faults, 0, "a fault in a run that asked for none");
    assert_eq!(
        tl.acks,
        (1..=batches).collect::<Vec<_>>(),
        "the trace's acknowledgements are not batches 1..={batches} in order"
    );
    if let Some(acks) = &run.child_acks {
        assert_eq!(acks, &(0..batches).collect::<Vec<_>>(), "the child's acks");
    }
    eprintln!(
        "{label} mode: trace of {} records over files {:?}: {} writes ({} KiB), {} punches, {} length changes, {} syncs, {} creations, {} renames, {} directory syncs, {} markers",
        recs.len(),
        run.trace.paths,
        counts.writes,
        counts.write_bytes >> 10,
        counts.punches,
        counts.lengths,
        counts.syncs,
        counts.creates,
        counts.renames,
        counts.dir_syncs,
        counts.marks,
    );
    for (f, path) in run.trace.paths.iter().enumerate() {
        let mine = |want: fn(&Rec) -> bool| {
            (0..recs.len())
                .filter(|&i| run.trace.file[i] == f as u32 && want(&recs[i]))
                .count()
        };
        eprintln!(
            "  {path:?}: {} writes, {} punches, {} syncs, {} directory syncs",
            mine(|r| matches!(r, Rec::Write { .. })),
            mine(|r| matches!(r, Rec::Punch { .. })),
            mine(|r| *r == Rec::Sync),
            mine(|r| *r == Rec::SyncDir),
        );
    }
    let d = pc::files::Dir::of(&run.base, &run.trace).unwrap_or_else(|e| panic!("{e}"));
    // Completeness: every operation applied gives the files the writer left.
    let (replayed, _) = d.build(recs.len(), &mut image::KeepAll, &mut |n| n);
    let mut incomplete = Vec::new();
    let names = |f: &pc::files::Files| f.keys().cloned().collect::<Vec<_>>();
    if names(&replayed) != names(&run.left) {
        incomplete.push(format!(
            "the replay gives files {:?}, the writer left {:?}",
            names(&replayed),
            names(&run.left)
        ));
    }
    for (name, bytes) in &replayed {
        if let Some(why) = run
            .left
            .get(name)
            .and_then(|left| pc::replay_differences(bytes, left))
        {
            incomplete.push(format!("{name}: {why}"));
        }
    }
    let incomplete = (!incomplete.is_empty()).then(|| incomplete.join("; "));
    if let Some(why) = &incomplete {
        eprintln!("{label} mode: the trace is INCOMPLETE: {why}");
    }
    // The durable points: a completed sync of the set log (in sync mode after every set
    // commit; in default mode at a sync point, after every shard's). `log_synced[i]`: set
    // commits durable at the last one among the first `i` records: those acknowledged, and
    // the one in progress if its done record was appended to the set log before the sync.
    let log = run.trace.paths.iter().position(|p| p == "sets.log");
    let on_log = |i: usize| log.is_some_and(|l| run.trace.file[i] == l as u32);
    let mut log_synced = vec![0u64];
    let mut done_appended = false;
    for (i, r) in recs.iter().enumerate() {
        let mut now = *log_synced.last().unwrap();
        match r {
            Rec::Mark(v) => {
                if let workload::Marker::Call {
                    call: workload::Call::Commit,
                    done: false,
                    ..
                } = workload::decode_mark(*v)
                {
                    done_appended = false;
                }
            }
            Rec::Write { .. } if on_log(i) => {
                let committing = matches!(tl.during[i], Some((workload::Call::Commit, _)));
                done_appended |= committing;
            }
            Rec::Sync if on_log(i) => {
                let committing = matches!(tl.during[i], Some((workload::Call::Commit, _)));
                now = tl.acked[i] + (committing && done_appended) as u64;
            }
            _ => {}
        }
        log_synced.push(now);
    }
    if mode == Mode::Sync {
        // Every acknowledgement follows a sync of the set log after its done record.
        for (i, r) in recs.iter().enumerate() {
            if let Rec::Mark(v) = r {
                if (1..workload::ACK_LIMIT).contains(v) {
                    assert_eq!(log_synced[i], *v, "set commit {v} acknowledged unsynced");
                }
            }
        }
    }
    let points: Vec<usize> = std::iter::once(0)
        .chain(
            recs.iter()
                .enumerate()
                .filter(|(_, r)| !matches!(r, Rec::Mark(_) | Rec::Fault { .. }))
                .map(|(i, _)| i + 1),
        )
        .collect();
    // Besides the random images, pinned ones: the synced-only image right after each
    // directory sync (the end of an atomic replace of the set log), numbered from `images` on.
    let pinned: Vec<usize> = (0..recs.len())
        .filter(|&i| recs[i] == Rec::SyncDir)
        .map(|i| i + 1)
        .collect();
    let next = AtomicUsize::new(0);
    let outcomes = Mutex::new(Vec::new());
    let todo: Vec<u64> = match only {
        Some(i) => vec![i],
        None => (0..images + pinned.len() as u64).collect(),
    };
    std::thread::scope(|s| {
        for t in 0..threads {
            let pinned = &pinned;
            let (run, tl, models, todo, next, outcomes, dir, points, d, log_synced, by_shard) = (
                &run,
                &tl,
                &models,
                &todo,
                &next,
                &outcomes,
                &dir,
                &points,
                &d,
                &log_synced,
                &by_shard,
            );
            s.spawn(move || {
                let store = dir.file(&format!("image-{t}.d"));
                loop {
                    let j = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&i) = todo.get(j) else { break };
                    let mut rng = Rng(pc::image_seed(seed, i));
                    let (crash, profile) = match i.checked_sub(images) {
                        Some(p) => (pinned[p as usize], Profile::SyncedOnly),
                        None => {
                            let crash = points[rng.below(points.len() as u64) as usize];
                            (crash, Profile::pick(&mut rng))
                        }
                    };
                    let draw = rng.next();
                    let mut keep = |n: u32| match profile {
                        Profile::PageCache => n,
                        Profile::SyncedOnly => 0,
                        Profile::Random { .. } => (draw % (n as u64 + 1)) as u32,
                    };
                    let (files, built) = d.build(
                        crash,
                        &mut RandomChooser {
                            rng: &mut rng,
                            profile,
                        },
                        &mut keep,
                    );
                    let lo = log_synced[crash].max(tl.synced[crash]);
                    let hi = (tl.acked[crash] + 1).min(batches);
                    write_store(&store, &files, run.shard_len);
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        pc::oracle::check(&store, &sharded_opts(mode), models, lo, hi, i)
                    }))
                    .unwrap_or_else(|p| Err(format!("panicked: {}", panic_message(&p))))
                    .map_err(|e| {
                        // Where each shard stands, on the image as built.
                        write_store(&store, &files, run.shard_len);
                        format!("{e} [{}]", shards_at(&store, by_shard))
                    });
                    if result.is_err() {
                        keep_failed_store(mode, i, &files, run.shard_len);
                    }
                    let _ = std::fs::remove_dir_all(&store);
                    // Entries (creations, renames) count as length changes and punches do:
                    // applied or not.
                    let mut b = built.files.clone();
                    b.meta_applied += built.entries_applied;
                    b.meta_skipped += built.entries_unsynced - built.entries_applied;
                    outcomes.lock().unwrap().push(Outcome {
                        image: i,
                        crash,
                        profile,
                        built: b,
                        grown: false,
                        lo,
                        hi,
                        result,
                    });
                }
            });
        }
    });
    let mut outcomes = outcomes.into_inner().unwrap();
    outcomes.sort_by_key(|o| o.image);
    let summary = summarize(
        &label,
        seed,
        &outcomes,
        &tl,
        recs.len(),
        incomplete.as_deref(),
    );
    eprintln!("{summary}");
    eprintln!(
        "{label} mode: {} images in {:.1} s",
        outcomes.len(),
        began.elapsed().as_secs_f64()
    );
    let failed = outcomes.iter().filter(|o| o.result.is_err()).count();
    assert!(failed == 0 && incomplete.is_none(), "{summary}");
}

fn keep_failed_store(mode: Mode, i: u64, files: &pc::files::Files, shard_len: u64) {
    static KEPT: AtomicUsize = AtomicUsize::new(0);
    let Some(keep) = std::env::var_os("HASHDIR_POWERCUT_KEEP") else {
        return;
    };
    if KEPT.fetch_add(1, Ordering::Relaxed) < 10 {
        let d = PathBuf::from(keep).join(format!("sharded-{}", mode.name()));
        write_store(&d.join(format!("image-{i}")), files, shard_len);
    }
}
