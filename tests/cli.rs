//! The `hashdir` command-line tool, run as a user runs it: the built binary on real files in
//! a scratch directory, input from stdin and from files, output and exit status checked.

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const EXE: &str = env!("CARGO_BIN_EXE_hashdir");

fn hashdir(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(EXE)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run hashdir");
    if let Some(bytes) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(bytes).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn describe(args: &[&str], out: &Output) -> String {
    format!(
        "hashdir {args:?}: {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    )
}

/// Runs a command that must succeed; returns its stdout.
fn ok(args: &[&str], stdin: Option<&[u8]>) -> String {
    let out = hashdir(args, stdin);
    assert!(out.status.success(), "{}", describe(args, &out));
    text(&out.stdout)
}

/// Runs a command that must fail with `code` and exactly one `hashdir: ...` line on stderr;
/// returns that line.
fn fails(code: i32, args: &[&str], stdin: Option<&[u8]>) -> String {
    let out = hashdir(args, stdin);
    assert_eq!(out.status.code(), Some(code), "{}", describe(args, &out));
    let err = text(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{}", describe(args, &out));
    assert!(lines[0].starts_with("hashdir: "), "{err}");
    lines[0].to_owned()
}

fn hex(n: u128) -> String {
    format!("{n:032x}")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `key: value` lines as pairs.
fn fields(report: &str) -> Vec<(String, String)> {
    report
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn field(report: &str, name: &str) -> u64 {
    let found = fields(report).into_iter().find(|(k, _)| k == name);
    let (_, v) = found.unwrap_or_else(|| panic!("no {name} in\n{report}"));
    v.parse()
        .unwrap_or_else(|_| panic!("{name}: {v} is not a number"))
}

/// 200 keys with 1..=3 values each, and key 7777 with 40 (more than fit inline in a bucket).
fn sample_pairs() -> Vec<(u128, u128)> {
    let mut pairs = Vec::new();
    for k in 0..200u128 {
        for v in 0..=(k % 3) {
            pairs.push((k << 64 | 0xabc, v + 1000 * k));
        }
    }
    pairs.extend((0..40).map(|v| (7777, v)));
    pairs
}

fn hex_lines(pairs: &[(u128, u128)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{} {}\n", hex(*k), hex(*v)))
        .collect()
}

fn dumped(path: &Path) -> BTreeSet<(String, String)> {
    ok(&["dump", s(path)], None)
        .lines()
        .map(|l| {
            let (k, v) = l.split_once(' ').unwrap_or_else(|| panic!("bad line {l}"));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

#[test]
fn create_load_get_delete_stats() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("data.h5");
    let f = s(&file);
    assert!(ok(&["create", f, "--capacity", "64M"], None).contains("created"));
    assert!(file.exists());
    let again = fails(1, &["create", f, "--capacity", "64M"], None);
    assert!(again.contains("already exists"), "{again}");

    let pairs = sample_pairs();
    let input = hex_lines(&pairs);
    let loaded = ok(&["load", f, "-", "--batch", "97"], Some(input.as_bytes()));
    assert!(
        loaded.contains(&format!("loaded {} pairs", pairs.len())) && loaded.contains("pairs/s"),
        "{loaded}"
    );

    let key5 = hex(5 << 64 | 0xabc);
    let got = ok(&["get", f, &key5, &hex(12345), &hex(7777)], None);
    let mut expected = vec![
        format!("{key5} {}", hex(5000)),
        format!("{key5} {}", hex(5001)),
        format!("{key5} {}", hex(5002)),
        format!("{} absent", hex(12345)),
    ];
    expected.extend((0..40).map(|v| format!("{} {}", hex(7777), hex(v))));
    assert_eq!(got.lines().collect::<Vec<_>>(), expected, "{got}");

    let stats = ok(&["stats", f], None);
    let names: Vec<String> = fields(&stats).into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        names,
        [
            "epoch",
            "global_depth",
            "keys",
            "values",
            "buckets",
            "extents",
            "file_bytes",
            "disk_bytes",
            "wal_bytes",
            "delta_tables",
            "delta_bytes",
            "merging"
        ]
    );
    assert_eq!(field(&stats, "keys"), 201);
    assert_eq!(field(&stats, "values"), pairs.len() as u64);
    assert!(field(&stats, "epoch") > 0 && field(&stats, "buckets") > 0);
    assert!(field(&stats, "extents") >= 1, "{stats}");
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!(field(&stats, "file_bytes"), meta.len());
    assert_eq!(field(&stats, "disk_bytes"), meta.blocks() * 512);
    assert!(
        field(&stats, "disk_bytes") < meta.len() / 2,
        "load's close gave the unused space back: {stats}"
    );
    assert_eq!(
        field(&stats, "wal_bytes"),
        0,
        "load closes with a checkpoint"
    );

    // One pair, then whole keys (one of them absent).
    let gone = ok(&["delete", f, &key5, "--value", &hex(5001)], None);
    assert!(gone.contains("from 1 key"), "{gone}");
    let got = ok(&["get", f, &key5], None);
    assert_eq!(got, format!("{key5} {}\n{key5} {}\n", hex(5000), hex(5002)));
    let gone = ok(&["delete", f, &key5, &hex(7777), &hex(12345)], None);
    assert!(
        gone.contains("deleted 2 keys (42 values); 1 key absent"),
        "{gone}"
    );
    let got = ok(&["get", f, &key5, &hex(7777)], None);
    assert_eq!(got, format!("{key5} absent\n{} absent\n", hex(7777)));

    // A small file's writer merges its tables when it closes: one base table, exact counts.
    let stats = ok(&["stats", f], None);
    assert_eq!(field(&stats, "delta_tables"), 0);
    assert_eq!(field(&stats, "keys"), 199);
    assert_eq!(field(&stats, "values"), pairs.len() as u64 - 43);
}

#[test]
fn binary_load_from_a_file_and_dump_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bin.h5");
    let f = s(&file);
    ok(&["create", f, "--capacity", "64M"], None);
    let mut pairs = sample_pairs();
    pairs.extend((0..3000u128).map(|i| (i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c), i)));
    let mut records = Vec::new();
    for (k, v) in &pairs {
        records.extend_from_slice(&k.to_be_bytes());
        records.extend_from_slice(&v.to_be_bytes());
    }
    let input = dir.path().join("pairs.bin");
    std::fs::write(&input, &records).unwrap();
    let loaded = ok(
        &[
            "load",
            f,
            s(&input),
            "--format",
            "bin",
            "--batch",
            "1k",
            "--checkpoint-mb",
            "1",
        ],
        None,
    );
    assert!(
        loaded.contains(&format!("loaded {} pairs", pairs.len())),
        "{loaded}"
    );

    // Big-endian bytes print as the number's hex.
    let expected: BTreeSet<(String, String)> =
        pairs.iter().map(|(k, v)| (hex(*k), hex(*v))).collect();
    assert_eq!(dumped(&file), expected);

    // The binary dump is the same set of records, and loads back into a fresh file.
    let out = hashdir(&["dump", f, "--format", "bin"], None);
    assert!(out.status.success(), "{}", describe(&["dump"], &out));
    assert_eq!(out.stdout.len(), records.len());
    let as_set = |b: &[u8]| b.chunks(32).map(<[u8]>::to_vec).collect::<BTreeSet<_>>();
    assert_eq!(as_set(&out.stdout), as_set(&records));
    let copy = dir.path().join("copy.h5");
    ok(
        &["load", s(&copy), "--create", "--format", "bin"],
        Some(&out.stdout),
    );
    assert_eq!(dumped(&copy), expected);
}

#[test]
fn bad_input_is_one_line_and_keeps_what_came_before() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.h5");
    let f = s(&file);
    ok(&["create", f, "--capacity", "64M"], None);
    let input = format!("# comment\n{} {}\n\n{} nothex\n", hex(1), hex(2), hex(3));
    let err = fails(1, &["load", f], Some(input.as_bytes()));
    assert!(
        err.contains("stdin:4") && err.contains("value") && err.contains("1 pairs"),
        "{err}"
    );
    assert_eq!(
        ok(&["get", f, &hex(1)], None),
        format!("{} {}\n", hex(1), hex(2))
    );

    let odd = dir.path().join("odd.bin");
    std::fs::write(&odd, [0u8; 40]).unwrap();
    let err = fails(1, &["load", f, s(&odd), "--format", "bin"], None);
    assert!(err.contains("8 bytes at offset 32"), "{err}");
}

/// Bytes of each page that begins with the bucket magic (docs/FORMAT.md), one byte inside
/// the checksummed body flipped: every live bucket page is among them.
fn corrupt_bucket_pages(path: &Path) -> usize {
    use std::io::Read;
    use std::os::unix::fs::FileExt;
    // The pages of a small file lie in its first segments.
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .unwrap()
        .take(64 << 20)
        .read_to_end(&mut bytes)
        .unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    let mut flipped = 0;
    let mut at = 0;
    while let Some(i) = bytes[at..].windows(4).position(|w| w == b"HDBK") {
        let page = at + i;
        if page % 4096 == 0 && page + 100 < bytes.len() {
            f.write_all_at(&[bytes[page + 100] ^ 0x5a], (page + 100) as u64)
                .unwrap();
            flipped += 1;
        }
        at = page + 4;
    }
    flipped
}

#[test]
fn verify_passes_a_sound_file_and_fails_a_corrupt_one() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("v.h5");
    let f = s(&file);
    ok(&["create", f, "--capacity", "64M"], None);
    ok(
        &["load", f, "--batch", "50"],
        Some(hex_lines(&sample_pairs()).as_bytes()),
    );
    let report = ok(&["verify", f], None);
    assert!(report.lines().any(|l| l == "OK"), "{report}");
    assert_eq!(field(&report, "keys"), 201);
    assert_eq!(field(&report, "values"), sample_pairs().len() as u64);

    let bad = dir.path().join("bad.h5");
    std::fs::copy(&file, &bad).unwrap();
    assert!(corrupt_bucket_pages(&bad) > 0);
    let out = hashdir(&["verify", s(&bad)], None);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        describe(&["verify"], &out)
    );
    let report = text(&out.stdout);
    assert!(report.contains("problem: "), "{report}");
    assert!(!report.lines().any(|l| l == "OK"), "{report}");
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("hashdir: ") && err.contains("problem"),
        "{err}"
    );

    // Both root slots destroyed: still a report or one error line, and status 1.
    let rootless = dir.path().join("rootless.h5");
    let mut bytes = std::fs::read(&file).unwrap();
    let mut at = 0;
    while let Some(i) = bytes[at..].windows(8).position(|w| w == b"HDIRROOT") {
        bytes[at + i..at + i + 64].fill(0xee);
        at += i + 8;
    }
    assert!(at > 0, "no root slot found");
    std::fs::write(&rootless, bytes).unwrap();
    let out = hashdir(&["verify", s(&rootless)], None);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        describe(&["verify"], &out)
    );
}

#[test]
fn gc_runs_and_leaves_a_sound_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gc.h5");
    let f = s(&file);
    ok(&["create", f, "--capacity", "64M"], None);
    ok(
        &["load", f, "--batch", "25"],
        Some(hex_lines(&sample_pairs()).as_bytes()),
    );
    ok(&["delete", f, &hex(7777)], None);
    let before = dumped(&file);
    let report = ok(&["gc", f], None);
    let fields = fields(&report);
    assert_eq!(
        fields.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        ["pages reclaimed", "segment bytes reclaimed"],
        "{report}"
    );
    assert!(
        fields.iter().all(|(_, v)| v.parse::<u64>().is_ok()),
        "{report}"
    );
    // A second pass finds nothing more.
    let again = ok(&["gc", f], None);
    assert!(
        again.contains("pages reclaimed: 0") && again.contains("segment bytes reclaimed: 0"),
        "{again}"
    );
    assert!(ok(&["verify", f], None).contains("OK"));
    assert_eq!(dumped(&file), before);
}

#[test]
fn usage_errors_exit_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("u.h5");
    let f = s(&file);
    ok(&["create", f, "--capacity", "64M"], None);
    let cases: &[&[&str]] = &[
        &["frobnicate"],
        &["get", f],
        &["get", f, "1234"],
        &["get", f, &"zz".repeat(16)],
        &["delete", f, &hex(1), "--value", "x"],
        &["load", f, "--format", "csv"],
        &["load", f, "--batch", "0"],
        &["load", f, "--bogus"],
        &["dump"],
        &["stats", f, "extra"],
    ];
    for args in cases {
        let line = fails(2, args, None);
        assert!(!line.contains("error:"), "{line}");
    }
    let line = fails(2, &["get", f, "1234"], None);
    assert!(
        line.contains("32 hex digits") && line.contains("hashdir get --help"),
        "{line}"
    );
    // No arguments at all: the help, on stderr, status 2.
    let out = hashdir(&[], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("Usage"));
}

#[test]
fn every_command_has_help() {
    let top = ok(&["--help"], None);
    for sub in [
        "create", "load", "get", "delete", "stats", "verify", "gc", "dump", "bench",
    ] {
        assert!(top.contains(sub), "{top}");
        let help = ok(&[sub, "--help"], None);
        assert!(
            help.contains(&format!("Usage: hashdir {sub}")),
            "{sub}: {help}"
        );
    }
    assert!(ok(&["bench", "--help"], None).contains("cargo bench --bench hashdir"));
    assert!(ok(&["--version"], None).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn a_missing_or_foreign_file_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.h5");
    let m = s(&missing);
    for args in [
        vec!["get", m, &hex(1)],
        vec!["stats", m],
        vec!["dump", m],
        vec!["verify", m],
        vec!["gc", m],
        vec!["delete", m, &hex(1)],
    ] {
        let line = fails(1, &args, None);
        assert!(
            line.contains(m) && line.contains("does not exist"),
            "{line}"
        );
    }
    let line = fails(1, &["load", m], Some(b""));
    assert!(line.contains("does not exist"), "{line}");
    assert!(
        !missing.exists(),
        "load without --create must not create the file"
    );
    let line = fails(1, &["load", m, s(&dir.path().join("no-input.txt"))], None);
    assert!(line.contains("no-input.txt"), "{line}");

    let foreign = dir.path().join("foreign.h5");
    std::fs::write(&foreign, b"not an HDF5 file at all").unwrap();
    let line = fails(1, &["stats", s(&foreign)], None);
    assert!(line.contains("foreign.h5"), "{line}");
}

#[test]
fn bench_prints_rates() {
    let dir = tempfile::tempdir().unwrap();
    let out = ok(
        &[
            "bench",
            "--dir",
            s(dir.path()),
            "--keys",
            "5k",
            "--batch",
            "1000",
            "--lookups",
            "500",
        ],
        None,
    );
    assert!(
        out.contains("insert: 5000 pairs") && out.contains("pairs/s"),
        "{out}"
    );
    assert!(
        out.contains("lookup: 500 single-key lookups") && out.contains("µs"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "the scratch file is removed"
    );
}

/// `hashdir bench` loads the pairs `cargo bench --bench hashdir` loads for the same options
/// (both take them from `hashdir::workload`): the kept file holds exactly the workload's
/// pairs, for each shape, one file or shards.
#[test]
fn bench_loads_the_workload_of_cargo_bench() {
    use hashdir::workload::{Pairs, Shape};
    use hashdir::{Key, Options, StoreReader, Value};
    use std::collections::BTreeMap;
    let cases: [(&[&str], Shape, u64, u64); 4] = [
        (&[], Shape::KeyMajor, 3000, 1),
        (&["--values-per-key", "2"], Shape::KeyMajor, 1500, 2),
        (
            &["--values-per-key", "3", "--rounds"],
            Shape::Rounds,
            2000,
            3,
        ),
        (
            &["--values-per-key", "4", "--zipf", "1.2", "--shards", "2"],
            Shape::Zipf(1.2),
            3000,
            4,
        ),
    ];
    for (extra, shape, keys, per_key) in cases {
        let dir = tempfile::tempdir().unwrap();
        let n = keys.to_string();
        let mut args = vec!["bench", "--dir", s(dir.path()), "--keys", &n];
        args.extend(["--batch", "777", "--lookups", "300", "--keep"]);
        args.extend(extra);
        let out = ok(&args, None);
        let mut pairs = Pairs::new(shape, keys, per_key);
        assert!(
            out.contains(&format!("insert: {} pairs", pairs.len())),
            "{out}"
        );
        let (mut ks, mut vs) = (Vec::new(), Vec::new());
        pairs.fill(0, pairs.len(), &mut ks, &mut vs);
        let mut want: BTreeMap<Key, BTreeSet<Value>> = BTreeMap::new();
        for (k, v) in ks.iter().zip(&vs) {
            want.entry(*k).or_default().insert(*v);
        }
        let file = out
            .lines()
            .find_map(|l| l.strip_prefix("file: "))
            .unwrap_or_else(|| panic!("no kept file in {out}"));
        let opts = Options {
            create: false,
            ..Options::default()
        };
        let r = StoreReader::open(Path::new(file), &opts).unwrap();
        let mut got: BTreeMap<Key, BTreeSet<Value>> = BTreeMap::new();
        r.scan(|k, v| {
            got.insert(*k, v.iter().copied().collect());
            true
        })
        .unwrap();
        assert_eq!(got.len(), want.len(), "{extra:?}: keys");
        assert!(got == want, "{extra:?}: the file holds other pairs");
    }
    for bad in [["--zipf", "0"], ["--zipf", "x"]] {
        let line = fails(2, &[&["bench"], &bad[..]].concat(), None);
        assert!(line.contains("--zipf"), "{line}");
    }
    let line = fails(2, &["bench", "--rounds", "--zipf", "1"], None);
    assert!(
        line.contains("--rounds") || line.contains("--zipf"),
        "{line}"
    );
}

#[test]
fn every_command_takes_a_sharded_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let st = s(&store);
    let made = ok(&["create", st, "--shards", "3", "--capacity", "64M"], None);
    assert!(made.contains("(3 shards)"), "{made}");
    assert!(store.join("hashdir.shards").exists() && store.join("shard_002.h5").exists());
    let again = fails(1, &["create", st, "--shards", "3"], None);
    assert!(again.contains("already exists"), "{again}");

    let pairs = sample_pairs();
    let loaded = ok(
        &["load", st, "-", "--batch", "97"],
        Some(hex_lines(&pairs).as_bytes()),
    );
    assert!(
        loaded.contains(&format!("loaded {} pairs", pairs.len())),
        "{loaded}"
    );
    let key5 = hex(5 << 64 | 0xabc);
    let got = ok(&["get", st, &hex(12345), &key5], None);
    let expected = [
        format!("{} absent", hex(12345)),
        format!("{key5} {}", hex(5000)),
        format!("{key5} {}", hex(5001)),
        format!("{key5} {}", hex(5002)),
    ];
    assert_eq!(got.lines().collect::<Vec<_>>(), expected, "{got}");

    let stats = ok(&["stats", st], None);
    assert_eq!(field(&stats, "keys"), 201);
    assert_eq!(field(&stats, "values"), pairs.len() as u64);
    let verified = ok(&["verify", st], None);
    assert!(
        verified.contains("OK") && field(&verified, "keys") == 201,
        "{verified}"
    );
    let dumped = ok(&["dump", st], None);
    let mut want: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{} {}", hex(*k), hex(*v)))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut have: Vec<String> = dumped.lines().map(str::to_owned).collect();
    want.sort();
    have.sort();
    assert_eq!(have, want);
    let gone = ok(&["delete", st, &key5], None);
    assert!(gone.contains("deleted 1 key (3 values)"), "{gone}");
    ok(&["gc", st], None);
    assert_eq!(field(&ok(&["stats", st], None), "keys"), 200);

    // A plain file is not made a store by --shards, nor a store a file.
    let file = dir.path().join("one.h5");
    ok(&["create", s(&file), "--capacity", "64M"], None);
    let wrong = fails(
        1,
        &["load", s(&file), "-", "--create", "--shards", "2"],
        Some(b""),
    );
    assert!(wrong.contains("single file"), "{wrong}");
    std::fs::remove_file(store.join("hashdir.shards")).unwrap();
    let bare = fails(1, &["stats", st], None);
    assert!(bare.contains("hashdir.shards"), "{bare}");
}

#[test]
fn copy_makes_a_compacted_file_that_verifies_and_opens_in_h5py() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.h5");
    let dst = dir.path().join("copy.h5");
    let (f, d) = (s(&src), s(&dst));
    ok(&["create", f, "--capacity", "64M"], None);
    ok(
        &["load", f, "--batch", "50"],
        Some(hex_lines(&sample_pairs()).as_bytes()),
    );
    ok(&["delete", f, &hex(5 << 64 | 0xabc)], None);
    let want = dumped(&src);

    let args = ["copy", f, d, "--progress"];
    let out = hashdir(&args, None);
    assert!(out.status.success(), "{}", describe(&args, &out));
    let line = text(&out.stdout);
    let values = want.len();
    assert!(
        line.starts_with(&format!("copied 200 keys ({values} values) of epoch ")),
        "{line}"
    );
    assert!(
        text(&out.stderr).contains("copied 100% (200 keys"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(dumped(&dst), want);
    let report = ok(&["verify", d], None);
    assert!(report.lines().any(|l| l == "OK"), "{report}");
    assert_eq!(field(&ok(&["stats", d], None), "delta_tables"), 0);
    assert_eq!(field(&ok(&["stats", d], None), "keys"), 200);

    // Without --progress and without a terminal, stderr stays quiet.
    let quiet = dir.path().join("quiet.h5");
    let args = ["copy", f, s(&quiet)];
    let out = hashdir(&args, None);
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        describe(&args, &out)
    );

    let h5py = Command::new("python3")
        .args([
            "-c",
            "import h5py, sys; f = h5py.File(sys.argv[1], 'r', swmr=True); print(sorted(f))",
            d,
        ])
        .output()
        .expect("run python3");
    assert!(h5py.status.success(), "{}", text(&h5py.stderr));
    assert_eq!(text(&h5py.stdout).trim(), "['data', 'root']");

    let before = std::fs::read(&dst).unwrap();
    let err = fails(1, &["copy", f, d], None);
    assert_eq!(err, format!("hashdir: {d} already exists"));
    assert_eq!(
        std::fs::read(&dst).unwrap(),
        before,
        "an existing file is left alone"
    );
    let missing = dir.path().join("missing.h5");
    let err = fails(1, &["copy", s(&missing), s(&dir.path().join("x.h5"))], None);
    assert!(err.contains("does not exist"), "{err}");
    assert!(!dir.path().join("x.h5").exists());
}
