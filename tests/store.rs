//! Tests of the store layer: the HDF5 container, the writer lock, raw I/O at chunk addresses,
//! readers in and out of the writer's process, and recovery after a writer is killed.
//!
//! Some tests re-run this test binary as a child process (see `child_process_entry`).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Instant;

use hashdir::format::layout::{BLOB_CHUNK, PAGE, PAGES_PER_CHUNK, ROOT_SLOT, VALUE_SHARDS};
use hashdir::store::{Ds, Positional, ReadFile, WriterFile};
use hashdir::Error;

// ---------------------------------------------------------------------------------------------
// Helpers

/// A directory removed at the end of the test.
struct TestDir(PathBuf);

impl TestDir {
    fn new(name: &str) -> TestDir {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("hashdir-store-{name}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TestDir(dir)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn root_bytes() -> Vec<u8> {
    (0..200u32).map(|i| (i * 7 + 3) as u8).collect()
}

/// Deterministic bytes distinct per `seed`.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Opens the writer, waiting out a transient `Locked`: a child process that another test
/// thread is spawning shares our descriptors (and so the OFD lock) between fork and exec.
fn reopen(path: &Path) -> WriterFile {
    reopen_with(path, None)
}

fn reopen_with(path: &Path, initial_root: Option<&[u8]>) -> WriterFile {
    for _ in 0..500 {
        match WriterFile::open(path, initial_root) {
            Err(Error::Locked { .. }) => std::thread::sleep(std::time::Duration::from_millis(10)),
            other => return other.unwrap(),
        }
    }
    panic!("{} stayed locked", path.display());
}

/// The hdf5 crate with HDF5's file locking off: its flock on a descriptor that a child
/// spawned by another test thread inherits would otherwise outlive the handle.
fn h5_options() -> hdf5::FileBuilder {
    let mut b = hdf5::File::with_options();
    b.with_fapl(|p| p.file_locking(false));
    b
}

fn create(path: &Path) -> WriterFile {
    WriterFile::open(path, Some(&root_bytes())).unwrap()
}

fn read_vec(w: &WriterFile, off: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    w.read_at(off, &mut buf).unwrap();
    buf
}

/// Every byte range the writer owns (root slots and all chunks) is page-aligned, so no page
/// write straddles two OS pages, and the ranges are pairwise disjoint.
fn assert_disjoint(w: &WriterFile) {
    let mut ranges = vec![(w.root_offset(), 2 * ROOT_SLOT as u64)];
    for ds in Ds::all() {
        let len = WriterFile::chunk_bytes(ds);
        ranges.extend(w.chunks(ds).iter().map(|&a| (a, len)));
    }
    for &(addr, _) in &ranges {
        assert_eq!(addr % PAGE as u64, 0, "{addr} is not page-aligned");
    }
    ranges.sort_unstable();
    for pair in ranges.windows(2) {
        let ((a, alen), (b, _)) = (pair[0], pair[1]);
        assert!(a + alen <= b, "ranges overlap: {a}+{alen} > {b}");
    }
}

/// Content and modification time, to prove a file was left untouched.
fn fingerprint(path: &Path) -> (Vec<u8>, i64, i64) {
    let m = fs::metadata(path).unwrap();
    (fs::read(path).unwrap(), m.mtime(), m.mtime_nsec())
}

// ---------------------------------------------------------------------------------------------
// Child processes

const CHILD_ROLE: &str = "HASHDIR_STORE_TEST_ROLE";
const CHILD_PATH: &str = "HASHDIR_STORE_TEST_PATH";
const EXIT_LOCKED: i32 = 10;
const EXIT_OPENED: i32 = 11;
const EXIT_OTHER: i32 = 12;

/// Runs this test binary again as a child acting out `role` on `path`.
fn run_child(role: &str, path: &Path) -> Output {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ROLE, role)
        .env(CHILD_PATH, path)
        .output()
        .unwrap()
}

/// Not a test of its own: the body of child processes; does nothing in a normal run.
#[test]
fn child_process_entry() {
    let Ok(role) = std::env::var(CHILD_ROLE) else {
        return;
    };
    let path = PathBuf::from(std::env::var(CHILD_PATH).unwrap());
    match role.as_str() {
        "probe_lock" => child_probe_lock(&path),
        "crash_writer" => child_crash_writer(&path),
        "grow_forever" => child_grow_forever(&path),
        other => panic!("unknown child role {other}"),
    }
}

fn child_probe_lock(path: &Path) -> ! {
    let code = match WriterFile::open(path, None) {
        Err(Error::Locked { .. }) => EXIT_LOCKED,
        Ok(_) => EXIT_OPENED,
        Err(e) => {
            eprintln!("child: {e}");
            EXIT_OTHER
        }
    };
    std::process::exit(code)
}

/// Opens the writer, grows, writes a page and a root slot, records the chunk addresses in
/// `<path>.addrs`, and dies by SIGKILL without closing anything.
fn child_crash_writer(path: &Path) -> ! {
    let mut w = reopen(path);
    w.grow(Ds::Pages, 3).unwrap();
    w.grow(Ds::Wal, 2).unwrap();
    let page_off = w.chunks(Ds::Pages)[2] + 5 * PAGE as u64;
    w.write_at(page_off, &pattern(42, PAGE)).unwrap();
    w.write_at(w.chunks(Ds::Wal)[1], &pattern(43, 100)).unwrap();
    w.write_at(w.root_offset() + ROOT_SLOT as u64, &pattern(44, ROOT_SLOT))
        .unwrap();
    let addrs: Vec<String> = [Ds::Pages, Ds::Wal]
        .iter()
        .map(|&ds| format!("{:?}", w.chunks(ds)))
        .collect();
    fs::write(path.with_extension("addrs"), addrs.join("\n")).unwrap();
    // Killed from outside (kill(1)) rather than via libc, to keep `unsafe` out of tests.
    let pid = std::process::id().to_string();
    Command::new("kill").args(["-KILL", &pid]).status().unwrap();
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// Grows two datasets a chunk at a time and stamps each new chunk, until killed.
fn child_grow_forever(path: &Path) -> ! {
    let mut w = reopen(path);
    println!("opened");
    loop {
        for ds in [Ds::Pages, Ds::Wal] {
            let n = w.chunks(ds).len();
            w.grow(ds, n as u64 + 1).unwrap();
            let addr = w.chunks(ds)[n];
            w.write_at(addr, &pattern(addr, 64)).unwrap();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Creation and reopening

#[test]
fn handles_cross_threads() {
    fn send<T: Send>() {}
    fn send_sync<T: Send + Sync>() {}
    send::<WriterFile>();
    send_sync::<ReadFile>();
    send_sync::<hashdir::store::Mmap>();
}

#[test]
fn create_then_reopen() {
    let dir = TestDir::new("create");
    let path = dir.file("a.h5");
    let w = create(&path);
    assert_eq!(w.path(), path);
    assert_eq!(read_vec(&w, w.root_offset(), 200), root_bytes());
    let rest = read_vec(&w, w.root_offset() + 200, 2 * ROOT_SLOT - 200);
    assert!(
        rest.iter().all(|&b| b == 0),
        "rest of the root slots is zero"
    );
    for ds in Ds::all() {
        assert!(w.chunks(ds).is_empty(), "{ds:?} starts empty");
    }
    assert_disjoint(&w);
    let root = w.root_offset();
    w.close().unwrap();
    assert_eq!(dir.entries(), ["a.h5"], "no temp file is left behind");

    let w = reopen(&path);
    assert_eq!(w.root_offset(), root);
    assert_eq!(read_vec(&w, root, 200), root_bytes());
    drop(w);
    // Once created, an initial root is ignored: the existing file is opened.
    let w = reopen_with(&path, Some(&[9; 10]));
    assert_eq!(read_vec(&w, root, 200), root_bytes());
}

#[test]
fn vectored_writes_land_in_order_on_both_handles() {
    let dir = TestDir::new("vectored");
    let mut w = create(&dir.file("v.h5"));
    w.grow(Ds::Pages, 1).unwrap();
    let at = w.chunks(Ds::Pages)[0];
    let (a, b, c) = (pattern(1, PAGE), pattern(2, 100), pattern(3, PAGE + 7));
    w.write_vectored_at(at, &[&a, &[], &b, &c]).unwrap();
    let raw = w.raw_io().unwrap();
    raw.write_vectored_at(at + 3 * PAGE as u64, &[&c, &a])
        .unwrap();
    let want: Vec<u8> = [&a[..], &b, &c, &[0; PAGE - 107], &c, &a].concat();
    assert_eq!(read_vec(&w, at, want.len()), want);
    // More buffers than one pwritev takes.
    let small: Vec<Vec<u8>> = (0..2500).map(|i| pattern(i, 8)).collect();
    let refs: Vec<&[u8]> = small.iter().map(|v| &v[..]).collect();
    raw.write_vectored_at(at, &refs).unwrap();
    assert_eq!(read_vec(&w, at, 8 * 2500), small.concat());
}

#[test]
fn missing_file_without_initial_root_is_not_found() {
    let dir = TestDir::new("missing");
    let path = dir.file("nope.h5");
    assert!(matches!(
        WriterFile::open(&path, None),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(ReadFile::open(&path), Err(Error::NotFound { .. })));
    assert!(dir.entries().is_empty(), "nothing was created");
}

#[test]
fn oversized_initial_root_is_refused() {
    let dir = TestDir::new("bigroot");
    let path = dir.file("a.h5");
    let big = vec![1u8; ROOT_SLOT + 1];
    assert!(matches!(
        WriterFile::open(&path, Some(&big)),
        Err(Error::InvalidArgument(_))
    ));
    let exact = vec![1u8; ROOT_SLOT];
    let w = WriterFile::open(&path, Some(&exact)).unwrap();
    assert_eq!(read_vec(&w, w.root_offset(), ROOT_SLOT), exact);
}

#[test]
fn racing_creators_get_one_file_and_one_writer() {
    let dir = TestDir::new("race");
    let path = dir.file("a.h5");
    let threads = 4;
    let barrier = Barrier::new(threads);
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let r = WriterFile::open(&path, Some(&root_bytes()));
                    // Hold the writer until everyone has tried.
                    barrier.wait();
                    r.map(drop)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let opened = results.iter().filter(|r| r.is_ok()).count();
    let locked = results
        .iter()
        .filter(|r| matches!(r, Err(Error::Locked { .. })))
        .count();
    assert_eq!((opened, locked), (1, threads - 1), "{results:?}");
    assert_eq!(dir.entries(), ["a.h5"]);
    let w = reopen(&path);
    assert_eq!(read_vec(&w, w.root_offset(), 200), root_bytes());
}

// ---------------------------------------------------------------------------------------------
// Growth and raw I/O

#[test]
fn grow_write_read_and_persist() {
    let dir = TestDir::new("grow");
    let path = dir.file("a.h5");
    let mut w = create(&path);
    assert_eq!(
        WriterFile::chunk_bytes(Ds::Pages),
        PAGE as u64 * PAGES_PER_CHUNK
    );
    assert_eq!(WriterFile::chunk_bytes(Ds::Wal), BLOB_CHUNK);
    assert_eq!(WriterFile::chunk_bytes(Ds::Values(3)), BLOB_CHUNK);

    w.grow(Ds::Pages, 4).unwrap();
    w.grow(Ds::Pages, 2).unwrap(); // shrinking is a no-op
    w.grow(Ds::Wal, 1).unwrap();
    w.grow(Ds::Values(3), 2).unwrap();
    w.grow(Ds::Values(VALUE_SHARDS as u8 - 1), 1).unwrap();
    assert_eq!(w.chunks(Ds::Pages).len(), 4);
    assert_eq!(w.chunks(Ds::Wal).len(), 1);
    assert_eq!(w.chunks(Ds::Values(3)).len(), 2);
    assert!(w.chunks(Ds::Values(0)).is_empty());
    assert_disjoint(&w);

    // Last page of every pages chunk, and the tail of each blob chunk.
    let mut written = Vec::new();
    for (i, &addr) in w.chunks(Ds::Pages).iter().enumerate() {
        let off = addr + (PAGES_PER_CHUNK - 1) * PAGE as u64;
        written.push((off, pattern(i as u64, PAGE)));
    }
    for ds in [Ds::Wal, Ds::Values(3)] {
        for &addr in w.chunks(ds) {
            written.push((addr + BLOB_CHUNK - 64, pattern(addr, 64)));
        }
    }
    for (off, data) in &written {
        w.write_at(*off, data).unwrap();
    }
    for (off, data) in &written {
        assert_eq!(&read_vec(&w, *off, data.len()), data);
    }
    w.sync().unwrap();
    let end = written
        .iter()
        .map(|(o, d)| o + d.len() as u64)
        .max()
        .unwrap();
    assert!(w.size().unwrap().len >= end);

    let chunks: Vec<Vec<u64>> = Ds::all().map(|ds| w.chunks(ds).to_vec()).collect();
    w.close().unwrap();
    let w = reopen(&path);
    let again: Vec<Vec<u64>> = Ds::all().map(|ds| w.chunks(ds).to_vec()).collect();
    assert_eq!(again, chunks, "chunk addresses persist across reopen");
    for (off, data) in &written {
        assert_eq!(&read_vec(&w, *off, data.len()), data);
    }
}

/// A punched range reads as zeros, takes no blocks any more, leaves the length and its
/// neighbours alone, and takes writes again.
#[test]
fn punched_ranges_read_zeros_and_free_their_blocks() {
    let dir = TestDir::new("punch");
    let path = dir.file("a.h5");
    let mut w = create(&path);
    w.grow(Ds::Pages, 1).unwrap();
    let base = w.chunks(Ds::Pages)[0];
    let data = pattern(base, PAGE * 8);
    w.write_at(base, &data).unwrap();
    let before = w.size().unwrap();
    assert!(w.punch(base + PAGE as u64, 4 * PAGE as u64).unwrap());
    let after = w.size().unwrap();
    assert_eq!(after.len, before.len);
    assert!(after.allocated <= before.allocated - 4 * PAGE as u64);
    let got = read_vec(&w, base, PAGE * 8);
    assert_eq!(&got[..PAGE], &data[..PAGE]);
    assert!(got[PAGE..5 * PAGE].iter().all(|&b| b == 0));
    assert_eq!(&got[5 * PAGE..], &data[5 * PAGE..]);
    w.write_at(base + PAGE as u64, &data[..PAGE]).unwrap();
    assert_eq!(read_vec(&w, base + PAGE as u64, PAGE), &data[..PAGE]);
}

#[test]
fn bad_shard_and_reads_past_the_end() {
    let dir = TestDir::new("badshard");
    let path = dir.file("a.h5");
    let mut w = create(&path);
    assert!(matches!(
        w.grow(Ds::Values(VALUE_SHARDS as u8), 1),
        Err(Error::InvalidArgument(_))
    ));
    let len = w.size().unwrap().len;
    let mut buf = [0u8; 16];
    assert!(matches!(
        w.read_at(len + 4096, &mut buf),
        Err(Error::Corrupt { .. })
    ));
}

/// What the writer pwrites at the addresses it learnt is what HDF5 itself reads back: the
/// file stays an honest HDF5 file.
#[test]
fn raw_writes_are_visible_through_hdf5() {
    let dir = TestDir::new("h5view");
    let path = dir.file("a.h5");
    let mut w = create(&path);
    w.grow(Ds::Pages, 2).unwrap();
    w.grow(Ds::Wal, 1).unwrap();
    let page = pattern(7, PAGE);
    let page_row = PAGES_PER_CHUNK + 3; // chunk 1, row 3
    w.write_at(w.chunks(Ds::Pages)[1] + 3 * PAGE as u64, &page)
        .unwrap();
    let wal = pattern(8, 333);
    w.write_at(w.chunks(Ds::Wal)[0] + 1000, &wal).unwrap();
    let slot1 = pattern(9, ROOT_SLOT);
    w.write_at(w.root_offset() + ROOT_SLOT as u64, &slot1)
        .unwrap();
    w.close().unwrap();

    let f = h5_options().open(&path).unwrap();
    let magic: hdf5::types::FixedAscii<7> = f.attr("hashdir_magic").unwrap().read_scalar().unwrap();
    assert_eq!(magic.as_str(), "hashdir");
    let version: u32 = f.attr("hashdir_format").unwrap().read_scalar().unwrap();
    assert_eq!(version, 2);
    let page_size: u32 = f.attr("page_size").unwrap().read_scalar().unwrap();
    assert_eq!(page_size as usize, PAGE);

    let root = f.dataset("root").unwrap().read_raw::<u8>().unwrap();
    assert_eq!(&root[..200], &root_bytes()[..]);
    assert_eq!(&root[ROOT_SLOT..], &slot1[..]);
    let pages = f.dataset("pages").unwrap();
    assert_eq!(pages.shape(), [2 * PAGES_PER_CHUNK as usize, PAGE]);
    let rows = pages.read_raw::<u8>().unwrap();
    let at = page_row as usize * PAGE;
    assert_eq!(&rows[at..at + PAGE], &page[..]);
    let wal_bytes = f.dataset("wal").unwrap().read_raw::<u8>().unwrap();
    assert_eq!(&wal_bytes[1000..1333], &wal[..]);
    for i in 0..VALUE_SHARDS {
        let shard = f.dataset(&format!("values/shard_{i:02}")).unwrap();
        assert_eq!(shard.shape(), [0]);
    }
}

#[test]
fn h5dump_reads_the_file() {
    let dir = TestDir::new("h5dump");
    let path = dir.file("a.h5");
    let mut w = create(&path);
    w.grow(Ds::Pages, 1).unwrap();
    w.close().unwrap();
    let out = match Command::new("h5dump").arg("-H").arg(&path).output() {
        Ok(out) => out,
        Err(e) => {
            eprintln!("h5dump not available ({e}); skipped");
            return;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "h5dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in ["hashdir_magic", "root", "pages", "wal", "shard_07"] {
        assert!(text.contains(name), "h5dump output lacks {name}:\n{text}");
    }
}

// ---------------------------------------------------------------------------------------------
// The writer lock

#[test]
fn second_writer_in_process_is_locked() {
    let dir = TestDir::new("lock");
    let path = dir.file("a.h5");
    let w = create(&path);
    assert!(matches!(
        WriterFile::open(&path, None),
        Err(Error::Locked { .. })
    ));
    // Through another name for the same file as well.
    let alias = dir.file("alias.h5");
    fs::hard_link(&path, &alias).unwrap();
    assert!(matches!(
        WriterFile::open(&alias, None),
        Err(Error::Locked { .. })
    ));
    // The failed attempts did not disturb the holder.
    assert_eq!(read_vec(&w, w.root_offset(), 200), root_bytes());
    w.close().unwrap();
    reopen(&path);
}

#[test]
fn writer_in_another_process_is_locked() {
    let dir = TestDir::new("lockproc");
    let path = dir.file("a.h5");
    let w = create(&path);
    let out = run_child("probe_lock", &path);
    assert_eq!(
        out.status.code(),
        Some(EXIT_LOCKED),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(w);
    // Retried: a child another test thread spawns may briefly share our (closed) descriptor.
    let opened = (0..20).any(|_| {
        let out = run_child("probe_lock", &path);
        out.status.code() == Some(EXIT_OPENED)
    });
    assert!(opened, "the lock outlived its writer");
}

/// Descriptors this process has open on `path`, with their open flags (from /proc).
fn open_fds(path: &Path) -> Vec<(String, u32)> {
    let target = fs::canonicalize(path).unwrap();
    let mut fds = Vec::new();
    for entry in fs::read_dir("/proc/self/fd").unwrap() {
        let fd = entry.unwrap().file_name().to_string_lossy().into_owned();
        if fs::read_link(format!("/proc/self/fd/{fd}")).ok() != Some(target.clone()) {
            continue;
        }
        let Ok(info) = fs::read_to_string(format!("/proc/self/fdinfo/{fd}")) else {
            continue;
        };
        let flags = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .map(|v| u32::from_str_radix(v.trim(), 8).unwrap())
            .unwrap();
        fds.push((fd, flags));
    }
    fds
}

#[test]
fn descriptors_do_not_leak_into_child_programs() {
    let dir = TestDir::new("cloexec");
    let path = dir.file("a.h5");
    let w = create(&path);
    let fds = open_fds(&path);
    // Ours and HDF5's (other test threads never open this file).
    assert!(fds.len() >= 2, "{fds:?}");
    for (fd, flags) in &fds {
        assert_ne!(flags & libc::O_CLOEXEC as u32, 0, "fd {fd} lacks O_CLOEXEC");
    }
    w.close().unwrap();
    assert!(open_fds(&path).is_empty(), "close leaves no descriptor");
}

// ---------------------------------------------------------------------------------------------
// Foreign files

fn assert_not_hashdir_untouched(path: &Path) {
    let before = fingerprint(path);
    match WriterFile::open(path, None) {
        Err(Error::NotHashdir { reason, .. }) => eprintln!("writer: {reason}"),
        other => panic!("expected NotHashdir, got {other:?}"),
    }
    match WriterFile::open(path, Some(&root_bytes())) {
        Err(Error::NotHashdir { .. }) => {}
        other => panic!("expected NotHashdir, got {other:?}"),
    }
    match ReadFile::open(path) {
        Err(Error::NotHashdir { reason, .. }) => eprintln!("reader: {reason}"),
        other => panic!("expected NotHashdir, got {other:?}"),
    }
    assert!(
        fingerprint(path) == before,
        "{} was modified",
        path.display()
    );
}

#[test]
fn foreign_files_are_not_hashdir_and_stay_untouched() {
    let dir = TestDir::new("foreign");

    let text = dir.file("text.h5");
    fs::write(&text, b"just some text, not HDF5 at all\n".repeat(100)).unwrap();
    assert_not_hashdir_untouched(&text);

    let empty = dir.file("empty.h5");
    fs::write(&empty, b"").unwrap();
    assert_not_hashdir_untouched(&empty);

    // An HDF5 signature over garbage: refused (as an HDF5 error: it claims to be HDF5).
    let sig = dir.file("sig.h5");
    fs::write(&sig, [&b"\x89HDF\r\n\x1a\n"[..], &[0x55; 4000]].concat()).unwrap();
    let before = fingerprint(&sig);
    let refused =
        |r: Result<(), Error>| matches!(r, Err(Error::Hdf5 { .. }) | Err(Error::NotHashdir { .. }));
    assert!(refused(WriterFile::open(&sig, None).map(drop)));
    assert!(refused(
        WriterFile::open(&sig, Some(&root_bytes())).map(drop)
    ));
    assert!(refused(ReadFile::open(&sig).map(drop)));
    assert!(fingerprint(&sig) == before, "sig.h5 was modified");

    let plain = dir.file("plain.h5");
    {
        let f = h5_options().create(&plain).unwrap();
        f.new_dataset::<u8>().shape(10).create("x").unwrap();
    }
    assert_not_hashdir_untouched(&plain);

    // SWMR-capable format, so only our attribute checks can reject these.
    let v110 = |path: &Path| {
        h5_options()
            .with_fapl(|p| p.libver_v110())
            .create(path)
            .unwrap()
    };
    let wrong_magic = dir.file("magic.h5");
    {
        let f = v110(&wrong_magic);
        let m = hdf5::types::FixedAscii::<7>::from_ascii("hashdix").unwrap();
        f.new_attr::<hdf5::types::FixedAscii<7>>()
            .create("hashdir_magic")
            .unwrap()
            .write_scalar(&m)
            .unwrap();
    }
    assert_not_hashdir_untouched(&wrong_magic);

    let future = dir.file("future.h5");
    {
        let f = v110(&future);
        let m = hdf5::types::FixedAscii::<7>::from_ascii("hashdir").unwrap();
        f.new_attr::<hdf5::types::FixedAscii<7>>()
            .create("hashdir_magic")
            .unwrap()
            .write_scalar(&m)
            .unwrap();
        for (name, v) in [("hashdir_format", 99u32), ("page_size", PAGE as u32)] {
            f.new_attr::<u32>()
                .create(name)
                .unwrap()
                .write_scalar(&v)
                .unwrap();
        }
    }
    assert_not_hashdir_untouched(&future);
}

// ---------------------------------------------------------------------------------------------
// Readers

#[test]
fn reader_in_writer_process_shares_the_root_and_maps() {
    let dir = TestDir::new("reader");
    let path = dir.file("a.h5");
    // A reader opened before the writer leaves no HDF5 state that would block the writer.
    let early = ReadFile::open(&path).err();
    assert!(matches!(early, Some(Error::NotFound { .. })));
    let mut w = create(&path);
    let before_writer = {
        let r = ReadFile::open(&path).unwrap();
        assert_eq!(r.root_offset(), w.root_offset());
        r
    };

    let r = ReadFile::open(&path).unwrap();
    assert_eq!(r.path(), path);
    assert_eq!(r.root_offset(), w.root_offset());
    let m1 = r.map().unwrap();
    assert_eq!(m1.len() as u64, w.size().unwrap().len);
    let mut buf = vec![0u8; 200];
    m1.read(r.root_offset(), &mut buf).unwrap();
    assert_eq!(buf, root_bytes());
    assert!(
        Arc::ptr_eq(&m1, &r.map().unwrap()),
        "unchanged file: same mapping"
    );
    assert!(matches!(
        m1.read(m1.len() as u64 - 4, &mut [0u8; 8]),
        Err(Error::Corrupt { .. })
    ));
    assert!(matches!(
        m1.read(u64::MAX, &mut [0u8; 1]),
        Err(Error::Corrupt { .. })
    ));

    w.grow(Ds::Pages, 2).unwrap();
    let off = w.chunks(Ds::Pages)[1] + (PAGES_PER_CHUNK - 1) * PAGE as u64;
    let page = pattern(5, PAGE);
    w.write_at(off, &page).unwrap();
    let m2 = r.map().unwrap();
    assert!(m2.len() > m1.len(), "a grown file gets a new mapping");
    let mut got = vec![0u8; PAGE];
    m2.read(off, &mut got).unwrap();
    assert_eq!(got, page);
    // The old mapping stays usable by whoever still holds it.
    m1.read(r.root_offset(), &mut buf).unwrap();
    assert_eq!(buf, root_bytes());

    // Slot 1 rewritten in place is seen through the existing mapping (MAP_SHARED).
    let slot1 = pattern(6, ROOT_SLOT);
    w.write_at(w.root_offset() + ROOT_SLOT as u64, &slot1)
        .unwrap();
    let mut got = vec![0u8; ROOT_SLOT];
    m2.read(r.root_offset() + ROOT_SLOT as u64, &mut got)
        .unwrap();
    assert_eq!(got, slot1);
    drop(before_writer);

    // After the writer closes, readers open the file through HDF5 themselves.
    w.close().unwrap();
    let r2 = ReadFile::open(&path).unwrap();
    assert_eq!(r2.root_offset(), r.root_offset());
    let mut got = vec![0u8; PAGE];
    r2.map().unwrap().read(off, &mut got).unwrap();
    assert_eq!(got, page);
    // And a writer can come back while those readers exist.
    reopen(&path);
}

#[test]
fn readers_on_many_threads() {
    let dir = TestDir::new("threads");
    let path = dir.file("a.h5");
    let mut w = create(&path);
    w.grow(Ds::Pages, 1).unwrap();
    let base = w.chunks(Ds::Pages)[0];
    for i in 0..PAGES_PER_CHUNK {
        w.write_at(base + i * PAGE as u64, &pattern(i, PAGE))
            .unwrap();
    }
    let shared = ReadFile::open(&path).unwrap();
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let (shared, path) = (&shared, &path);
            s.spawn(move || {
                // Half the threads open their own reader, the others share one.
                let own;
                let r = if t % 2 == 0 {
                    own = ReadFile::open(path).unwrap();
                    &own
                } else {
                    shared
                };
                let mut buf = vec![0u8; PAGE];
                for k in 0..200u64 {
                    let i = (k * 31 + t) % PAGES_PER_CHUNK;
                    r.map()
                        .unwrap()
                        .read(base + i * PAGE as u64, &mut buf)
                        .unwrap();
                    assert_eq!(buf, pattern(i, PAGE));
                }
            });
        }
    });
    // The writer moves to another thread too.
    std::thread::spawn(move || w.close().unwrap())
        .join()
        .unwrap();
}

#[test]
fn empty_file_maps_empty() {
    // ReadFile refuses empty files (not hashdir), so exercise the mapping through a file
    // that is truncated under an open reader: the reader then maps what is there.
    let dir = TestDir::new("emptymap");
    let path = dir.file("a.h5");
    create(&path).close().unwrap();
    let r = ReadFile::open(&path).unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(0)
        .unwrap();
    let m = r.map().unwrap();
    assert_eq!(m.len(), 0);
    m.read(0, &mut []).unwrap();
    assert!(matches!(
        m.read(0, &mut [0u8; 1]),
        Err(Error::Corrupt { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Crash recovery

fn parse_addrs(line: &str) -> Vec<u64> {
    line.trim_matches(|c| c == '[' || c == ']')
        .split(", ")
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect()
}

#[test]
fn writer_killed_then_reopened() {
    let dir = TestDir::new("crash");
    let path = dir.file("a.h5");
    let mut w = create(&path);
    w.grow(Ds::Pages, 1).unwrap();
    w.close().unwrap();

    let out = run_child("crash_writer", &path);
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGKILL),
        "child: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let addrs = fs::read_to_string(path.with_extension("addrs")).unwrap();
    let mut lines = addrs.lines();
    let pages = parse_addrs(lines.next().unwrap());
    let wal = parse_addrs(lines.next().unwrap());
    assert_eq!((pages.len(), wal.len()), (3, 2));

    // The crashed writer's status flags stop a plain HDF5 open...
    assert!(h5_options().open_rw(&path).is_err());
    // ...but not a reader.
    let r = ReadFile::open(&path).unwrap();

    let mut w = reopen(&path);
    assert_eq!(w.root_offset(), r.root_offset());
    assert_eq!(w.chunks(Ds::Pages), pages);
    assert_eq!(w.chunks(Ds::Wal), wal);
    let page_off = pages[2] + 5 * PAGE as u64;
    assert_eq!(read_vec(&w, page_off, PAGE), pattern(42, PAGE));
    assert_eq!(read_vec(&w, wal[1], 100), pattern(43, 100));
    let slot1 = read_vec(&w, w.root_offset() + ROOT_SLOT as u64, ROOT_SLOT);
    assert_eq!(slot1, pattern(44, ROOT_SLOT));

    // The space the dead writer allocated is not handed out again.
    w.grow(Ds::Pages, 6).unwrap();
    w.grow(Ds::Values(0), 2).unwrap();
    assert_disjoint(&w);
    for &addr in &w.chunks(Ds::Pages)[3..] {
        w.write_at(addr, &vec![0xAB; PAGE * PAGES_PER_CHUNK as usize])
            .unwrap();
    }
    assert_eq!(read_vec(&w, page_off, PAGE), pattern(42, PAGE));
    w.close().unwrap();
    if let Err(e) = h5_options().open(&path) {
        panic!("not clean after recovery: {e}");
    }
}

/// Kills a writer at arbitrary moments of growth (inside HDF5 calls, between the allocation
/// and the stamp); every reopen must succeed with the old chunks intact and disjoint.
#[test]
fn writer_killed_mid_growth_reopens() {
    let dir = TestDir::new("crashgrow");
    let path = dir.file("a.h5");
    create(&path).close().unwrap();
    let mut before = 0;
    for round in 0..8u64 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_process_entry",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ROLE, "grow_forever")
            .env(CHILD_PATH, &path)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20 + round * 7));
        child.kill().unwrap();
        child.wait().unwrap();

        let w = reopen(&path);
        assert_disjoint(&w);
        let chunks = w.chunks(Ds::Pages).len();
        assert!(chunks >= before, "round {round}: chunks were lost");
        before = chunks;
        for ds in [Ds::Pages, Ds::Wal] {
            for &addr in w.chunks(ds) {
                let got = read_vec(&w, addr, 64);
                let stamped = got == pattern(addr, 64);
                assert!(
                    stamped || got == [0; 64],
                    "round {round}: chunk at {addr} clobbered"
                );
            }
        }
    }
    assert!(before > 0, "the child grew nothing before being killed");
}

// ---------------------------------------------------------------------------------------------
// Growth: contiguity, disjointness, stability across reopen; prints the costs (run with --nocapture).

fn gaps(addrs: &[u64], chunk: u64) -> usize {
    addrs.windows(2).filter(|p| p[1] != p[0] + chunk).count()
}

#[test]
fn growth_is_contiguous_disjoint_and_stable() {
    let dir = TestDir::new("measure");
    let path = dir.file("m.h5");
    let t = Instant::now();
    create(&path).close().unwrap();
    println!(
        "measure create_ms={:.3} fresh_file_len={}",
        t.elapsed().as_secs_f64() * 1e3,
        fs::metadata(&path).unwrap().len()
    );
    let t = Instant::now();
    let mut w = reopen(&path);
    println!(
        "measure open_fresh_ms={:.3}",
        t.elapsed().as_secs_f64() * 1e3
    );
    let pages_chunk = WriterFile::chunk_bytes(Ds::Pages);

    let t = Instant::now();
    w.grow(Ds::Pages, 64).unwrap();
    let one_step = t.elapsed();
    let p = w.chunks(Ds::Pages).to_vec();
    // The engine relies on this for extents that span chunks (it checks, and skips past gaps).
    assert_eq!(
        gaps(&p, pages_chunk),
        0,
        "one growth step is file-contiguous"
    );
    println!(
        "measure grow_pages_0_to_64 ms={:.3} gaps={} file_len={} last_chunk_end={} root_offset={} first_chunk={}",
        one_step.as_secs_f64() * 1e3,
        gaps(&p, pages_chunk),
        w.size().unwrap().len,
        p.last().unwrap() + pages_chunk,
        w.root_offset(),
        p[0]
    );

    // Interleaved growth of different datasets: do steps stay contiguous within a dataset?
    for step in 1..=8u64 {
        w.grow(Ds::Wal, step).unwrap();
        w.grow(Ds::Values((step % 8) as u8), step).unwrap();
        w.grow(Ds::Pages, 64 + step * 4).unwrap();
    }
    let p = w.chunks(Ds::Pages);
    println!(
        "measure interleaved pages_chunks={} pages_gaps={} wal_gaps={} (step=1 chunk)",
        p.len(),
        gaps(p, pages_chunk),
        gaps(w.chunks(Ds::Wal), BLOB_CHUNK),
    );
    assert_disjoint(&w);

    // Cost of growth (set_extent + flush + full chunk_iter) as the dataset gets large.
    for (target, step) in [(1_000u64, 100u64), (10_000, 1_000), (10_240, 1)] {
        let start_n = w.chunks(Ds::Pages).len() as u64;
        let t = Instant::now();
        let mut n = start_n;
        let mut steps = 0;
        while n < target {
            n = (n + step).min(target);
            w.grow(Ds::Pages, n).unwrap();
            steps += 1;
        }
        let el = t.elapsed().as_secs_f64();
        let p = w.chunks(Ds::Pages);
        println!(
            "measure grow_pages {start_n}->{target} step={step} steps={steps} ms_per_grow={:.3} gaps_total={} file_len={}",
            el * 1e3 / steps.max(1) as f64,
            gaps(p, pages_chunk),
            w.size().unwrap().len
        );
    }
    let p = w.chunks(Ds::Pages).to_vec();
    let len_open = w.size().unwrap().len;
    w.close().unwrap();
    println!(
        "measure file_len open={len_open} after_close={}",
        fs::metadata(&path).unwrap().len()
    );

    // Reopen cost: validation + SWMR open + chunk_iter of every dataset.
    let t = Instant::now();
    let w = reopen(&path);
    println!(
        "measure reopen_with_{}_page_chunks ms={:.3}",
        p.len(),
        t.elapsed().as_secs_f64() * 1e3
    );
    assert_eq!(w.chunks(Ds::Pages), p);
    let t = Instant::now();
    let r = ReadFile::open(&path);
    println!(
        "measure readfile_open_in_writer_process us={:.1}",
        t.elapsed().as_secs_f64() * 1e6
    );
    drop(r);
    let t = Instant::now();
    w.sync().unwrap();
    println!(
        "measure fdatasync ms={:.3}",
        t.elapsed().as_secs_f64() * 1e3
    );
    w.close().unwrap();
    let t = Instant::now();
    ReadFile::open(&path).unwrap();
    println!(
        "measure readfile_open_hdf5 us={:.1}",
        t.elapsed().as_secs_f64() * 1e6
    );
}
