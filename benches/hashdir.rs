//! The hashdir benchmark and demo: a writer process loads N keys in batches, then reader
//! processes look keys up while the writer keeps committing. Prints one JSON object per line
//! (`{"metric": ..., "value": ..., ...}`) so runs can be compared by machine.
//!
//!   cargo bench --bench hashdir -- [--keys N] [--values-per-key K] [--rounds | --zipf S]
//!       [--batch B] [--lookups L] [--threads T] [--sync] [--cold] [--checkpoint-mb M]
//!       [--dir DIR] [--keep] [--lookup-batch B1,B2,...]
//!
//! Workloads (N keys, K values a key on average, N × K pairs):
//! - default: each key's K values together, keys one after another;
//! - `--rounds`: K rounds, each giving every key one new value (the specification's shape,
//!   U100 with `--keys 10M --values-per-key 100 --rounds`);
//! - `--zipf S`: each pair's key drawn from a Zipf law of exponent S over the N keys, so a few
//!   keys get millions of values and most get a few, in random order over time (Z100 with
//!   `--keys 10M --values-per-key 100 --zipf 1`).

use hashdir::workload::{key, value, Pairs, Picks, Shape};
use hashdir::{Key, Options, Reader, Value, Writer};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
struct Args {
    keys: u64,
    values_per_key: u64,
    shape: Shape,
    batch: u64,
    lookups: u64,
    threads: u64,
    sync: bool,
    cold: bool,
    checkpoint_mb: u64,
    dir: PathBuf,
    keep: bool,
    /// Keys per lookup/get call to time, each against single-key calls in the same run.
    lookup_batch: Vec<u64>,
    role: Option<String>,
    file: Option<PathBuf>,
    /// The load ends with the writer's close alone, not a checkpoint first.
    no_checkpoint: bool,
}

fn parse() -> Args {
    let mut a = Args {
        keys: 10_000_000,
        values_per_key: 1,
        shape: Shape::KeyMajor,
        batch: 100_000,
        lookups: 1_000_000,
        threads: 1,
        sync: false,
        cold: false,
        checkpoint_mb: 0,
        dir: std::env::temp_dir(),
        keep: false,
        lookup_batch: Vec::new(),
        role: None,
        file: None,
        no_checkpoint: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut num = |name: &str| -> u64 {
            let v = it
                .next()
                .unwrap_or_else(|| die(&format!("{name} needs a value")));
            parse_num(&v).unwrap_or_else(|| die(&format!("{name}: not a number: {v}")))
        };
        match flag.as_str() {
            "--keys" => a.keys = num("--keys"),
            "--values-per-key" => a.values_per_key = num("--values-per-key").max(1),
            "--batch" => a.batch = num("--batch").max(1),
            "--lookups" => a.lookups = num("--lookups"),
            "--threads" => a.threads = num("--threads").max(1),
            "--checkpoint-mb" => a.checkpoint_mb = num("--checkpoint-mb"),
            "--rounds" => a.shape = Shape::Rounds,
            "--zipf" => {
                let v = it.next().unwrap_or_else(|| die("--zipf needs an exponent"));
                let e: f64 = v
                    .parse()
                    .unwrap_or_else(|_| die(&format!("--zipf: not a number: {v}")));
                if !(e > 0.0 && e < 10.0) {
                    die("--zipf: the exponent must lie in (0, 10)");
                }
                a.shape = Shape::Zipf(e);
            }
            "--sync" => a.sync = true,
            "--no-checkpoint" => a.no_checkpoint = true,
            "--cold" => a.cold = true,
            "--keep" => a.keep = true,
            "--dir" => {
                a.dir = it
                    .next()
                    .map(PathBuf::from)
                    .unwrap_or_else(|| die("--dir needs a path"))
            }
            "--lookup-batch" => {
                let v = it
                    .next()
                    .unwrap_or_else(|| die("--lookup-batch needs sizes"));
                a.lookup_batch = v
                    .split(',')
                    .map(|b| parse_num(b).filter(|&b| b > 0))
                    .collect::<Option<_>>()
                    .unwrap_or_else(|| die(&format!("--lookup-batch: not sizes: {v}")));
            }
            "--role" => a.role = it.next(),
            "--file" => a.file = it.next().map(PathBuf::from),
            "--bench" => {} // cargo bench passes it
            "--help" | "-h" => {
                println!("usage: cargo bench --bench hashdir -- [--keys N] [--values-per-key K] [--rounds | --zipf S] [--batch B] [--lookups L] [--threads T] [--sync] [--cold] [--checkpoint-mb M] [--dir DIR] [--keep] [--lookup-batch B1,B2,...] [--role R --file F [--no-checkpoint]]\n  N, B, L accept suffixes k, M, G (e.g. --keys 10M)\n  --rounds: K rounds, each giving every key one new value; --zipf S: each pair's key drawn from a Zipf law of exponent S\n  --cold adds lookups with the file dropped from the page cache every 1000 lookups, counting device reads, and a checkpoint of new keys over a table dropped from the page cache\n  --lookup-batch 1,16,128,1024: the reader also times lookups and gets of L random keys in calls of each size (hot; cold too with --cold), per key and, when 1 is among the sizes, against calls of one key (batch_*; cpu_us_per_key counts only the time the thread ran, for shared machines)\n  --role build --file F loads F and keeps it (with --no-checkpoint: ends with close alone, so the delta tables a user's program leaves stay, instead of a checkpoint merging all into the base); --role batches --file F times only the batched calls on it (with --threads T: the largest size also from T threads sharing the handle)\n  --role recover --file F times the writer's recovery of F alone (profile it on a copy of a crashed writer's file: recovery keeps the log)");
                std::process::exit(0);
            }
            other => die(&format!("unknown argument {other} (try --help)")),
        }
    }
    a
}

fn parse_num(s: &str) -> Option<u64> {
    let (digits, mul) = match s.chars().last()? {
        'k' | 'K' => (&s[..s.len() - 1], 1_000),
        'M' => (&s[..s.len() - 1], 1_000_000),
        'G' => (&s[..s.len() - 1], 1_000_000_000),
        _ => (s, 1),
    };
    digits.parse::<u64>().ok().map(|n| n * mul)
}

fn die(msg: &str) -> ! {
    eprintln!("hashdir bench: {msg}");
    std::process::exit(2)
}

fn emit(metric: &str, value: f64, a: &Args, extra: &str) {
    let shape = match a.shape {
        Shape::KeyMajor => "\"by_key\"".to_string(),
        Shape::Rounds => "\"rounds\"".to_string(),
        Shape::Zipf(e) => format!("\"zipf {e}\""),
    };
    println!(
        "{{\"metric\":\"{metric}\",\"value\":{value:.3},\"keys\":{},\"values_per_key\":{},\"shape\":{shape},\"batch\":{},\"sync\":{}{extra}}}",
        a.keys, a.values_per_key, a.batch, a.sync
    );
}

fn opts(a: &Args) -> Options {
    Options {
        create: true,
        sync_commit: a.sync,
        checkpoint_bytes: a.checkpoint_mb << 20,
        ..Options::default()
    }
}

/// Bytes this process wrote to storage so far (/proc/self/io `wchar`: what it handed the OS).
fn written_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("wchar: ")
                    .and_then(|v| v.trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

/// Commits the workload's pairs in batches; returns the seconds the engine spent (making the
/// pairs is not its time), the commit latencies in ms (sorted) and the peak disk bytes seen.
fn commit_all(a: &Args, w: &mut Writer) -> (f64, Vec<f64>, u64) {
    let pairs = a.keys * a.values_per_key;
    let t = Instant::now();
    let (mut keys, mut vals) = (
        Vec::with_capacity(a.batch as usize),
        Vec::with_capacity(a.batch as usize),
    );
    let mut gen = Pairs::new(a.shape, a.keys, a.values_per_key);
    let (mut done, mut made) = (0u64, Duration::ZERO);
    let mut last_report = Instant::now();
    let mut commits = Vec::new();
    let mut peak_disk = 0u64;
    while done < pairs {
        keys.clear();
        vals.clear();
        let m = Instant::now();
        gen.fill(done, (done + a.batch).min(pairs), &mut keys, &mut vals);
        made += m.elapsed();
        w.insert(&keys, &vals)
            .unwrap_or_else(|e| die(&e.to_string()));
        let c = Instant::now();
        w.commit().unwrap_or_else(|e| die(&e.to_string()));
        commits.push(c.elapsed().as_secs_f64() * 1e3);
        done += keys.len() as u64;
        if last_report.elapsed() > Duration::from_secs(5) {
            let s = w.stats().unwrap();
            peak_disk = peak_disk.max(s.disk_bytes);
            eprintln!(
                "  loaded {done}/{pairs} pairs, {:.2} M pairs/s; {} delta tables{}, {:.1} GB on disk",
                done as f64 / (t.elapsed() - made).as_secs_f64() / 1e6,
                s.delta_tables,
                if s.merging { ", merging" } else { "" },
                s.disk_bytes as f64 / 1e9
            );
            last_report = Instant::now();
        }
    }
    commits.sort_by(|x, y| x.total_cmp(y));
    ((t.elapsed() - made).as_secs_f64(), commits, peak_disk)
}

fn load(a: &Args, path: &Path) -> Writer {
    let mut w = Writer::open(path, &opts(a)).unwrap_or_else(|e| die(&e.to_string()));
    let pairs = a.keys * a.values_per_key;
    let wrote0 = written_bytes();
    let (committed, commits, mut peak_disk) = commit_all(a, &mut w);
    let t = Instant::now();
    if !a.no_checkpoint {
        w.checkpoint().unwrap_or_else(|e| die(&e.to_string()));
    }
    let secs = committed + t.elapsed().as_secs_f64();
    let s = w.stats().unwrap();
    peak_disk = peak_disk.max(s.disk_bytes);
    emit(
        "insert_pairs_per_s",
        pairs as f64 / secs,
        a,
        &format!(",\"seconds\":{secs:.3},\"committed_pairs_per_s\":{:.0},\"final_checkpoint_seconds\":{:.3}", pairs as f64 / committed, secs - committed),
    );
    let extra = format!(",\"commits\":{}", commits.len());
    emit("commit_p99_ms", percentile(&commits, 0.99), a, &extra);
    emit(
        "commit_max_ms",
        commits.last().copied().unwrap_or(0.0),
        a,
        &extra,
    );
    emit(
        "write_bytes_per_pair",
        (written_bytes() - wrote0) as f64 / pairs as f64,
        a,
        "",
    );
    let open = s.disk_bytes;
    emit("writer_load_peak_rss_mb", status_mb("VmHWM:"), a, "");
    w.close().unwrap_or_else(|e| die(&e.to_string()));
    let w = Writer::open(path, &opts(a)).unwrap_or_else(|e| die(&e.to_string()));
    let s = w.stats().unwrap();
    // At rest (closed, then reopened): what the filesystem holds, as `du` counts it.
    emit(
        "disk_bytes_per_pair",
        s.disk_bytes as f64 / pairs as f64,
        a,
        &format!(
            ",\"disk_bytes\":{},\"disk_bytes_open\":{open},\"peak_disk_bytes\":{peak_disk},\"peak_over_rest\":{:.3},\"file_bytes\":{},\"buckets\":{},\"global_depth\":{},\"epoch\":{}",
            s.disk_bytes, peak_disk as f64 / s.disk_bytes.max(1) as f64, s.file_bytes, s.buckets, s.global_depth, s.epoch
        ),
    );
    w
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

/// Reader role: single-key lookups and gets at random keys; latency in µs.
fn reader_role(a: &Args) {
    let path = a.file.clone().unwrap_or_else(|| die("--file missing"));
    let r = Reader::open(&path, &Options::default()).unwrap_or_else(|e| die(&e.to_string()));
    let per_thread = a.lookups / a.threads;
    if per_thread == 0 {
        return;
    }
    let t = Instant::now();
    let lat: Vec<Vec<f64>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..a.threads)
            .map(|th| {
                let r = &r;
                s.spawn(move || lookups(r, a, per_thread, th, &mut || {}))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let wall = t.elapsed().as_secs_f64();
    let mut all: Vec<f64> = lat.into_iter().flatten().collect();
    report_latency("lookup", &mut all, a, wall);
    if a.values_per_key > 1 {
        hot_gets(&r, a, per_thread.min(200_000));
    }
    if a.cold {
        cold_lookups(&r, a);
    }
    if !a.lookup_batch.is_empty() {
        batches(&r, a);
    }
    // The reader's own memory (not the file pages it maps): mostly the directory and the WAL
    // tail it holds as an overlay.
    emit("reader_anon_rss_mb", status_mb("RssAnon:"), a, "");
}

/// A figure of /proc/self/status, in MB.
fn status_mb(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

/// Lookups that each find the file out of the page cache (dropped every 1000 lookups, which
/// on this many keys leaves nearly every lookup's page uncached): their latency, and device
/// reads per lookup from /proc/self/io (`read_bytes`, in 4 KiB pages) and major page faults.
fn cold_lookups(r: &Reader, a: &Args) {
    let n = a.lookups.min(50_000);
    cold(r, a, "lookup", &mut |every| lookups(r, a, n, 99, every));
    if a.values_per_key > 1 {
        cold(r, a, "get", &mut |every| {
            gets(r, a, n.min(20_000), false, every)
        });
    }
}

/// Runs `ops` with the file dropped from the page cache before every 1000 of them, and
/// reports their latency as `cold_<what>` with the device reads and major faults per op.
fn cold(r: &Reader, a: &Args, what: &str, ops: &mut dyn FnMut(&mut dyn FnMut()) -> Vec<f64>) {
    let (mut lat, bytes, faults) = cold_run(r, ops);
    let n = lat.len();
    report_latency(&format!("cold_{what}"), &mut lat, a, 0.0);
    let extra = format!(",\"ops\":{n}");
    emit(
        &format!("device_reads_per_{what}"),
        bytes as f64 / 4096.0 / n as f64,
        a,
        &extra,
    );
    emit(
        &format!("major_faults_per_{what}"),
        faults as f64 / n as f64,
        a,
        &extra,
    );
}

/// Runs `ops`, dropping the file from the page cache first and whenever it calls its
/// argument; returns their latencies and the bytes read from the device and major faults
/// summed over the op windows only (not over the cache drops between them).
fn cold_run(r: &Reader, ops: &mut dyn FnMut(&mut dyn FnMut()) -> Vec<f64>) -> (Vec<f64>, u64, u64) {
    use std::cell::Cell;
    let (total, start) = (Cell::new((0u64, 0u64)), Cell::new((0u64, 0u64)));
    let close = || {
        let ((b, f), (sb, sf), (tb, tf)) = (device_counters(), start.get(), total.get());
        total.set((tb + b - sb, tf + f - sf));
    };
    let reopen = || {
        r.evict().unwrap_or_else(|e| die(&e.to_string()));
        start.set(device_counters());
    };
    reopen();
    let lat = ops(&mut || {
        close();
        reopen();
    });
    close();
    let (bytes, faults) = total.get();
    (lat, bytes, faults)
}

/// Nanoseconds this thread has run on a CPU (/proc/thread-self/schedstat): unlike the wall
/// clock, not counting the time other processes of a shared machine took the CPU from it.
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Keys the batched calls look up: `n` random ones, the same for every call size.
fn batch_ids(a: &Args, n: u64) -> Vec<u64> {
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    (0..n)
        .map(|_| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % a.keys
        })
        .collect()
}

/// Lookups (gets when `get`) of `ids` in calls of `b` keys, checked; the latency of each call
/// in µs. `every_1000` runs (untimed) before a call once 1000 keys went by since it last ran.
fn batch_calls(
    r: &Reader,
    a: &Args,
    ids: &[u64],
    b: u64,
    get: bool,
    every_1000: &mut dyn FnMut(),
) -> Vec<f64> {
    let b = b as usize;
    let exact = !matches!(a.shape, Shape::Zipf(_));
    let mut keys = Vec::with_capacity(b);
    let (mut first, mut found, mut counts) = (vec![[0u8; 16]; b], vec![0u8; b], vec![0u64; b]);
    let mut values = vec![[0u8; 16]; b * a.values_per_key as usize];
    let mut out = Vec::with_capacity(ids.len() / b + 1);
    let mut since = 0;
    for chunk in ids.chunks(b) {
        if since >= 1000 {
            every_1000();
            since = 0;
        }
        since += chunk.len();
        let n = chunk.len();
        keys.clear();
        keys.extend(chunk.iter().map(|&i| key(i)));
        let t = Instant::now();
        if !get {
            r.lookup(&keys, &mut first[..n], &mut found[..n])
                .unwrap_or_else(|e| die(&e.to_string()));
            out.push(t.elapsed().as_nanos() as f64 / 1000.0);
            for (j, &i) in chunk.iter().enumerate() {
                let absent_ok = !exact && found[j] == 0;
                if !absent_ok && (found[j] != 1 || first[j][..8] != i.to_le_bytes()) {
                    die(&format!(
                        "key {i} not found or wrong value in a batch of {n}"
                    ));
                }
            }
            continue;
        }
        let got = match r.get(&keys, &mut values, &mut counts[..n]) {
            Err(hashdir::Error::BufferTooSmall { needed, .. }) => {
                values.resize(needed, [0u8; 16]);
                let t = Instant::now();
                let got = r.get(&keys, &mut values, &mut counts[..n]);
                out.push(t.elapsed().as_nanos() as f64 / 1000.0);
                got
            }
            other => {
                out.push(t.elapsed().as_nanos() as f64 / 1000.0);
                other
            }
        }
        .unwrap_or_else(|e| die(&e.to_string()));
        let mut at = 0;
        for (j, &i) in chunk.iter().enumerate() {
            let c = counts[j] as usize;
            if exact && c as u64 != a.values_per_key
                || values[at..at + c].iter().any(|v| v[..8] != i.to_le_bytes())
            {
                die(&format!("key {i}: {c} values in a batch of {n}"));
            }
            at += c;
        }
        if at != got {
            die(&format!("get returned {got} values, counts sum to {at}"));
        }
    }
    out
}

/// Lookups and gets of L random keys in calls of each `--lookup-batch` size, hot (after one
/// pass has mapped their pages) and, with `--cold`, with the file dropped from the page cache
/// before every 1000 keys: µs per key, and the speedup over calls of one key in this run.
fn batches(r: &Reader, a: &Args) {
    let sizes = &a.lookup_batch;
    let ids = batch_ids(a, a.lookups.max(1));
    for get in [false, true] {
        batch_calls(r, a, &ids, 1024, get, &mut || {});
    }
    let what = |get: bool| if get { "get" } else { "lookup" };
    // Against calls of one key, when they were timed.
    let ratio = |single: f64, x: f64| match single > 0.0 {
        true => format!("{:.3}", single / x),
        false => "null".to_string(),
    };
    for get in [false, true] {
        let (mut single, mut single_cpu, mut one_thread) = (0.0, 0.0, 0.0);
        for &b in sizes {
            let cpu0 = cpu_ns();
            let lat = batch_calls(r, a, &ids, b, get, &mut || {});
            let cpu = (cpu_ns() - cpu0) as f64 / 1000.0 / ids.len() as f64;
            let us = lat.iter().sum::<f64>() / ids.len() as f64;
            if b == 1 {
                (single, single_cpu) = (us, cpu);
            }
            let extra = format!(
                ",\"lookup_batch\":{b},\"ops\":{},\"keys_per_s\":{:.0},\"speedup\":{},\"cpu_us_per_key\":{cpu:.3},\"cpu_speedup\":{}",
                ids.len(),
                1e6 / us,
                ratio(single, us),
                ratio(single_cpu, cpu)
            );
            emit(&format!("batch_{}_us_per_key", what(get)), us, a, &extra);
            one_thread = 1e6 / us;
        }
        if a.threads > 1 {
            // The largest size again, from `--threads` threads sharing the one handle.
            let b = *sizes.last().expect("sizes given");
            let t = Instant::now();
            std::thread::scope(|s| {
                for part in ids.chunks(ids.len().div_ceil(a.threads as usize)) {
                    s.spawn(move || batch_calls(r, a, part, b, get, &mut || {}));
                }
            });
            let rate = ids.len() as f64 / t.elapsed().as_secs_f64();
            let extra = format!(
                ",\"lookup_batch\":{b},\"threads\":{},\"speedup_over_one_thread\":{:.3}",
                a.threads,
                rate / one_thread
            );
            emit(
                &format!("batch_threads_{}_keys_per_s", what(get)),
                rate,
                a,
                &extra,
            );
        }
    }
    if !a.cold {
        return;
    }
    let ids = &ids[..ids.len().min(20_000)];
    for get in [false, true] {
        let mut single = 0.0;
        for &b in sizes {
            let (lat, bytes, faults) =
                cold_run(r, &mut |every| batch_calls(r, a, ids, b, get, every));
            let us = lat.iter().sum::<f64>() / ids.len() as f64;
            if b == 1 {
                single = us;
            }
            let n = ids.len() as f64;
            let extra = format!(
                ",\"lookup_batch\":{b},\"ops\":{n},\"keys_per_s\":{:.0},\"speedup\":{},\"device_reads_per_key\":{:.3},\"major_faults_per_key\":{:.3}",
                1e6 / us,
                ratio(single, us),
                bytes as f64 / 4096.0 / n,
                faults as f64 / n
            );
            emit(
                &format!("batch_cold_{}_us_per_key", what(get)),
                us,
                a,
                &extra,
            );
        }
    }
}

/// (bytes this process read from storage, major page faults) so far.
fn device_counters() -> (u64, u64) {
    let io = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    let bytes = io
        .lines()
        .find_map(|l| l.strip_prefix("read_bytes: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; majflt is field 12, the 10th after it.
    let faults = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(9))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (bytes, faults)
}

/// `n` single-key lookups of random keys, checked; `every_1000` runs (untimed) between each
/// 1000 of them.
fn lookups(r: &Reader, a: &Args, n: u64, seed: u64, every_1000: &mut dyn FnMut()) -> Vec<f64> {
    let mut picks = Picks::new(seed);
    let mut out = Vec::with_capacity(n as usize);
    let (mut first, mut found) = ([[0u8; 16]; 1], [0u8; 1]);
    for x in 0..n {
        if x > 0 && x % 1000 == 0 {
            every_1000();
        }
        let i = picks.below(a.keys);
        let k = key(i);
        let t = Instant::now();
        r.lookup(&[k], &mut first, &mut found)
            .unwrap_or_else(|e| die(&e.to_string()));
        out.push(t.elapsed().as_nanos() as f64 / 1000.0);
        // Under a Zipf law a key of the far tail may have drawn no value at all.
        let absent_ok = matches!(a.shape, Shape::Zipf(_)) && found[0] == 0;
        if !absent_ok && (found[0] != 1 || first[0][..8] != i.to_le_bytes()) {
            die(&format!("key {i} not found or wrong value"));
        }
    }
    out
}

/// Gets of whole sets of `n` random keys (drawn by `seed`, in reverse when `reverse`): latency
/// in µs (of the call that fits, for a set that outgrew the buffer), checked (every value
/// belongs to the key; the count is K unless the workload draws keys from a Zipf law).
fn gets(r: &Reader, a: &Args, n: u64, reverse: bool, every_1000: &mut dyn FnMut()) -> Vec<f64> {
    let mut out = Vec::with_capacity(n as usize);
    let mut buf = vec![[0u8; 16]; a.values_per_key as usize];
    let mut counts = [0u64; 1];
    let mut values = 0u64;
    for x in 0..n {
        if x > 0 && x % 1000 == 0 {
            every_1000();
        }
        let y = if reverse { n - 1 - x } else { x };
        let i = y.wrapping_mul(0x9e37_79b9_7f4a_7c15) % a.keys;
        let t = Instant::now();
        let got = match r.get(&[key(i)], &mut buf, &mut counts) {
            Err(hashdir::Error::BufferTooSmall { needed, .. }) => {
                buf.resize(needed, [0u8; 16]);
                let t = Instant::now();
                let got = r.get(&[key(i)], &mut buf, &mut counts);
                out.push(t.elapsed().as_nanos() as f64 / 1000.0);
                got.unwrap_or_else(|e| die(&e.to_string()))
            }
            other => {
                out.push(t.elapsed().as_nanos() as f64 / 1000.0);
                other.unwrap_or_else(|e| die(&e.to_string()))
            }
        };
        values += got as u64;
        let exact = !matches!(a.shape, Shape::Zipf(_));
        if exact && got as u64 != a.values_per_key
            || buf[..got].iter().any(|v| v[..8] != i.to_le_bytes())
        {
            die(&format!(
                "key {i}: {got} values, expected {}",
                a.values_per_key
            ));
        }
    }
    emit(
        "get_values_per_key",
        values as f64 / n as f64,
        a,
        &format!(",\"ops\":{n}"),
    );
    out
}

/// Gets of a sample of keys twice: the first get of each key maps its pages into the reader
/// (`get_first_touch`, from the page cache), the second finds them mapped (`get`: hot).
fn hot_gets(r: &Reader, a: &Args, n: u64) {
    let mut first = gets(r, a, n, false, &mut || {});
    report_latency("get_first_touch", &mut first, a, 0.0);
    let mut hot = gets(r, a, n, true, &mut || {});
    report_latency("get", &mut hot, a, 0.0);
}

fn report_latency(what: &str, lat: &mut [f64], a: &Args, wall: f64) {
    lat.sort_by(|x, y| x.total_cmp(y));
    let avg = lat.iter().sum::<f64>() / lat.len() as f64;
    let extra = format!(",\"threads\":{},\"ops\":{}", a.threads, lat.len());
    emit(&format!("{what}_avg_us"), avg, a, &extra);
    emit(&format!("{what}_p50_us"), percentile(lat, 0.5), a, &extra);
    emit(&format!("{what}_p99_us"), percentile(lat, 0.99), a, &extra);
    emit(
        &format!("{what}_p999_us"),
        percentile(lat, 0.999),
        a,
        &extra,
    );
    if wall > 0.0 {
        emit(
            &format!("{what}s_per_s"),
            lat.len() as f64 / wall,
            a,
            &extra,
        );
    }
}

/// Runs the reader role in a separate process, forwarding its lines.
/// This benchmark run as a child process in `role`, with the same settings.
fn child(role: &str, a: &Args, path: &Path) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--role", role, "--file"]).arg(path);
    match a.shape {
        Shape::KeyMajor => {}
        Shape::Rounds => {
            cmd.arg("--rounds");
        }
        Shape::Zipf(e) => {
            cmd.args(["--zipf", &e.to_string()]);
        }
    }
    for (flag, v) in [
        ("--keys", a.keys),
        ("--values-per-key", a.values_per_key),
        ("--batch", a.batch),
        ("--lookups", a.lookups),
        ("--threads", a.threads),
        ("--checkpoint-mb", a.checkpoint_mb),
    ] {
        cmd.args([flag, &v.to_string()]);
    }
    if a.sync {
        cmd.arg("--sync");
    }
    if a.cold {
        cmd.arg("--cold");
    }
    if !a.lookup_batch.is_empty() {
        let sizes: Vec<String> = a.lookup_batch.iter().map(u64::to_string).collect();
        cmd.args(["--lookup-batch", &sizes.join(",")]);
    }
    cmd
}

fn reader_process(a: &Args, path: &Path) {
    let st = child("reader", a, path)
        .stdout(Stdio::inherit())
        .status()
        .unwrap();
    if !st.success() {
        die("reader process failed");
    }
}

/// Writer role: loads, then commits more pairs (keys past the loaded ones) until the log
/// holds 90 % of a checkpoint's worth, says so and waits to be killed, so the parent
/// measures recovery from the longest log a crash can leave.
/// Inserts keys `ids` with one value each, in one commit.
fn commit_new_keys(w: &mut Writer, ids: std::ops::Range<u64>) {
    let keys: Vec<Key> = ids.clone().map(key).collect();
    let vals: Vec<Value> = ids.map(|i| value(i, 0)).collect();
    w.insert(&keys, &vals)
        .unwrap_or_else(|e| die(&e.to_string()));
    w.commit().unwrap_or_else(|e| die(&e.to_string()));
}

fn writer_role(a: &Args) {
    let path = a.file.clone().unwrap_or_else(|| die("--file missing"));
    let mut w = load(a, &path);
    let mut next = a.keys;
    // The limit as loaded: the new keys grow the table, and with it an automatic limit.
    let full = w.log_limit();
    while w.stats().unwrap().wal_bytes + a.batch * 33 < full / 10 * 9 {
        commit_new_keys(&mut w, next..next + a.batch);
        next += a.batch;
    }
    let wal = w.stats().unwrap().wal_bytes;
    // The writer's peak memory over the load and the fill (its op log and a checkpoint's sort
    // copy of it, with file pages it mapped or read not counted apart: VmHWM is all resident).
    emit("writer_peak_rss_mb", status_mb("VmHWM:"), a, "");
    println!("@loaded {wal}");
    // Waits for the parent's SIGKILL; exits if the parent died first instead of lingering.
    let parent = std::os::unix::process::parent_id();
    while std::os::unix::process::parent_id() == parent {
        std::thread::sleep(Duration::from_millis(200));
    }
    std::process::exit(1);
}

/// Loads in a writer process, measures readers while it runs, kills it with SIGKILL and
/// times the recovery of the next writer open.
fn load_then_crash(a: &Args, path: &Path) -> Writer {
    let mut writer = child("writer", a, path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = std::io::BufReader::new(writer.stdout.take().unwrap());
    let mut wal = 0u64;
    for line in std::io::BufRead::lines(out) {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("@loaded ") {
            wal = n.parse().unwrap();
            break;
        }
        println!("{line}");
    }
    if wal == 0 {
        die("writer process failed");
    }
    reader_process(a, path);
    writer.kill().unwrap(); // SIGKILL
    writer.wait().unwrap();
    recover(a, path)
}

/// Opens the writer, timing its recovery of the log a crash left.
fn recover(a: &Args, path: &Path) -> Writer {
    let t = Instant::now();
    let w = Writer::open(path, &opts(a)).unwrap_or_else(|e| die(&e.to_string()));
    let secs = t.elapsed().as_secs_f64();
    let r = w.recovery();
    let extra = format!(",\"wal_bytes\":{},\"frames\":{}", r.log_bytes, r.frames);
    emit("recovery_seconds", secs, a, &extra);
    w
}

/// A checkpoint of a tenth of the table's size in new keys (at most what fits 80 % of the
/// log) with the file dropped from the page cache first: the case of a table larger than RAM,
/// where every page the checkpoint rewrites has to come from the device.
fn cold_checkpoint(a: &Args, path: &Path, w: &mut Writer) {
    w.checkpoint().unwrap_or_else(|e| die(&e.to_string()));
    let n = (a.keys / 10).min(w.log_limit() / 10 * 8 / 34).max(1);
    let first = 1u64 << 40; // beyond every key inserted so far
    hashdir::testing::drop_cache(path).unwrap_or_else(|e| die(&e.to_string()));
    for from in (first..first + n).step_by(a.batch as usize) {
        let to = (from + a.batch).min(first + n);
        commit_new_keys(w, from..to);
    }
    let (read0, _) = device_counters();
    let before = w.stats().unwrap().buckets;
    let t = Instant::now();
    if !a.no_checkpoint {
        w.checkpoint().unwrap_or_else(|e| die(&e.to_string()));
    }
    let secs = t.elapsed().as_secs_f64();
    let pages = (device_counters().0 - read0) / 4096;
    let extra = format!(",\"ops\":{n},\"device_reads\":{pages},\"buckets_before\":{before}");
    emit("cold_checkpoint_seconds", secs, a, &extra);
    emit("cold_checkpoint_ops_per_s", n as f64 / secs, a, &extra);
}

/// Times a full merge (`checkpoint`) of the file a `load` role left.
fn merge_role(a: &Args) {
    let path = a.file.clone().unwrap_or_else(|| die("--file missing"));
    let mut w = Writer::open(&path, &opts(a)).unwrap_or_else(|e| die(&e.to_string()));
    let before = w.stats().unwrap();
    let t = Instant::now();
    if !a.no_checkpoint {
        w.checkpoint().unwrap_or_else(|e| die(&e.to_string()));
    }
    let secs = t.elapsed().as_secs_f64();
    let after = w.stats().unwrap();
    let extra = format!(
        ",\"delta_tables\":{},\"disk_bytes\":{}",
        before.delta_tables, after.disk_bytes
    );
    emit("merge_seconds", secs, a, &extra);
    emit(
        "merge_mb_per_s",
        after.disk_bytes as f64 / secs / 1e6,
        a,
        &extra,
    );
}

/// Nanoseconds on the wall clock: comparable between the writer and reader processes.
fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

const MARKER: Key = [0xEE; 16];
const STALENESS_COMMITS: u64 = 2000;

/// Staleness role: polls (refresh + lookup) for the marker key; each value carries the commit
/// number and the wall-clock time its commit started, so now − that is commit → visible.
fn staleness_role(a: &Args) {
    let path = a.file.clone().unwrap_or_else(|| die("--file missing"));
    let r = Reader::open(&path, &Options::default()).unwrap_or_else(|e| die(&e.to_string()));
    println!("ready");
    let (mut first, mut found) = ([[0u8; 16]; 1], [0u8; 1]);
    let mut seen = u64::MAX;
    let mut lat = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        r.refresh().unwrap_or_else(|e| die(&e.to_string()));
        r.lookup(&[MARKER], &mut first, &mut found)
            .unwrap_or_else(|e| die(&e.to_string()));
        if found[0] == 0 {
            continue;
        }
        let n = u64::from_le_bytes(first[0][..8].try_into().unwrap());
        if n != seen {
            let t = u64::from_le_bytes(first[0][8..].try_into().unwrap());
            lat.push(now_ns().saturating_sub(t) as f64 / 1000.0);
            seen = n;
        }
        if n + 1 == STALENESS_COMMITS {
            break;
        }
    }
    if lat.is_empty() {
        die("reader never saw a commit");
    }
    lat.sort_by(|x, y| x.total_cmp(y));
    let extra = format!(",\"samples\":{}", lat.len());
    emit("staleness_p50_us", percentile(&lat, 0.5), a, &extra);
    emit("staleness_p99_us", percentile(&lat, 0.99), a, &extra);
}

/// Commits the marker key every ~0.5 ms while a reader process polls for it.
fn staleness(a: &Args, path: &Path, w: &mut Writer) {
    let mut child = child("staleness", a, path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    for n in 0..STALENESS_COMMITS {
        let mut v = [0u8; 16];
        v[..8].copy_from_slice(&n.to_le_bytes());
        v[8..].copy_from_slice(&now_ns().to_le_bytes());
        w.delete_keys(&[MARKER]).unwrap();
        w.insert(&[MARKER], &[v]).unwrap();
        w.commit().unwrap_or_else(|e| die(&e.to_string()));
        std::thread::sleep(Duration::from_micros(500));
    }
    std::io::copy(&mut out, &mut std::io::stdout()).unwrap();
    if !child.wait().unwrap().success() {
        die("staleness reader failed");
    }
}

fn main() {
    let a = parse();
    match a.role.as_deref() {
        Some("reader") => return reader_role(&a),
        Some("staleness") => return staleness_role(&a),
        Some("writer") => return writer_role(&a),
        // A load left with its delta tables (no final checkpoint), and a merge of such a file
        // alone: to profile the background merge on a copy.
        Some("load") => {
            let path = a.file.clone().unwrap_or_else(|| die("--file missing"));
            let mut w = Writer::open(&path, &opts(&a)).unwrap_or_else(|e| die(&e.to_string()));
            let (secs, _, _) = commit_all(&a, &mut w);
            let pairs = a.keys * a.values_per_key;
            emit("committed_pairs_per_s", pairs as f64 / secs, &a, "");
            return drop(w);
        }
        Some("merge") => return merge_role(&a),
        // A loaded file kept for later roles, and the batched calls alone on it.
        Some("build") => {
            let path = a.file.clone().unwrap_or_else(|| die("--file missing"));
            return load(&a, &path)
                .close()
                .unwrap_or_else(|e| die(&e.to_string()));
        }
        Some("batches") => {
            let path = a.file.clone().unwrap_or_else(|| die("--file missing"));
            let r =
                Reader::open(&path, &Options::default()).unwrap_or_else(|e| die(&e.to_string()));
            return batches(&r, &a);
        }
        // Hot gets alone, for profiling: one pass maps the sample's pages, ten more are timed.
        Some("gets") => {
            let path = a.file.clone().unwrap_or_else(|| die("--file missing"));
            let r =
                Reader::open(&path, &Options::default()).unwrap_or_else(|e| die(&e.to_string()));
            let n = a.lookups.max(1);
            gets(&r, &a, n, false, &mut || {});
            let mut hot: Vec<f64> = (0..10)
                .flat_map(|_| gets(&r, &a, n, true, &mut || {}))
                .collect();
            return report_latency("get", &mut hot, &a, 0.0);
        }
        // Recovery alone, for profiling: a copy of a crashed writer's file is left as it was.
        Some("recover") => {
            let path = a.file.clone().unwrap_or_else(|| die("--file missing"));
            return drop(recover(&a, &path));
        }
        _ => {}
    }
    std::fs::create_dir_all(&a.dir).unwrap_or_else(|e| die(&format!("{}: {e}", a.dir.display())));
    let path = a
        .dir
        .join(format!("hashdir-bench-{}.h5", std::process::id()));
    eprintln!(
        "hashdir bench: {} keys x {} values, batches of {}, file {}",
        a.keys,
        a.values_per_key,
        a.batch,
        path.display()
    );
    let mut w = load_then_crash(&a, &path);
    staleness(&a, &path, &mut w);
    if a.cold {
        cold_checkpoint(&a, &path, &mut w);
    }
    w.close().unwrap_or_else(|e| die(&e.to_string()));
    if !a.keep {
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(hashdir::reader_table_path(&path));
    }
}
