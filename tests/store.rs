//! Tests of the store layer: the HDF5 container (created once, never rewritten by HDF5), the
//! writer lock, raw I/O inside the data area, readers' mappings, the reader table, and files
//! that are not ours.
//!
//! Some tests re-run this test binary as a child process (see `child_process_entry`).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Output;
use std::sync::Barrier;

mod common;

use common::{child_role, retry_locked, spawn_child, Rng, TempDir};
use hashdir::testing::layout::{MIN_CAPACITY, PAGE, ROOT_SLOT, SEGMENT};
use hashdir::testing::{Create, Positional, ReadFile, ReaderTable, WriterFile};
use hashdir::{Error, Options, Reader, Writer};

// ---------------------------------------------------------------------------------------------
// Helpers

/// A first root slot that records the data area it was made for.
fn slot0(data: u64, capacity: u64) -> Vec<u8> {
    let mut b: Vec<u8> = (0..200u32).map(|i| (i * 7 + 3) as u8).collect();
    b[..8].copy_from_slice(&data.to_le_bytes());
    b[8..16].copy_from_slice(&capacity.to_le_bytes());
    b
}

fn creation(capacity: u64) -> Create<'static> {
    Create {
        capacity,
        root: &slot0,
    }
}

fn create(path: &Path) -> WriterFile {
    WriterFile::open(path, Some(&creation(MIN_CAPACITY))).unwrap()
}

/// Opens the writer, waiting out a lock a forked sibling may still share (`retry_locked`).
fn reopen(path: &Path) -> WriterFile {
    retry_locked(|| WriterFile::open(path, None)).unwrap()
}

fn read_vec(w: &impl Positional, off: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    w.read_at(off, &mut buf).unwrap();
    buf
}

/// The hdf5 crate with HDF5's file locking off: its flock on a descriptor that a child
/// spawned by another test thread inherits would otherwise outlive the handle.
fn h5_options() -> hdf5::FileBuilder {
    let mut b = hdf5::File::with_options();
    b.with_fapl(|p| p.file_locking(false));
    b
}

/// Content (of a small file) and modification time, to prove a file was left untouched.
fn fingerprint(path: &Path) -> (Vec<u8>, i64, i64) {
    let m = fs::metadata(path).unwrap();
    (fs::read(path).unwrap(), m.mtime(), m.mtime_nsec())
}

// ---------------------------------------------------------------------------------------------
// Child processes

const EXIT_LOCKED: i32 = 10;
const EXIT_OPENED: i32 = 11;
const EXIT_OTHER: i32 = 12;

/// Runs this test binary again as a child acting out `role` on `path`.
fn run_child(role: &str, path: &Path) -> Output {
    spawn_child("child_process_entry", role, path.to_str().unwrap())
        .wait_with_output()
        .unwrap()
}

/// Not a test of its own: the body of child processes; does nothing in a normal run.
#[test]
fn child_process_entry() {
    let Some((role, path)) = child_role() else {
        return;
    };
    match role.as_str() {
        "probe_lock" => {
            let code = match WriterFile::open(Path::new(&path), None) {
                Err(Error::Locked { .. }) => EXIT_LOCKED,
                Ok(_) => EXIT_OPENED,
                Err(e) => {
                    println!("child: {e}");
                    EXIT_OTHER
                }
            };
            std::process::exit(code)
        }
        other => panic!("unknown child role {other}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Creation and reopening

#[test]
fn handles_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<WriterFile>();
    send_sync::<ReadFile>();
    send_sync::<hashdir::testing::Mmap>();
}

#[test]
fn create_then_reopen() {
    let dir = TempDir::new("create");
    let path = dir.file("a.h5");
    let w = create(&path);
    assert_eq!(w.path(), path);
    let (root, data, cap) = (w.root_offset(), w.data_offset(), w.capacity());
    assert_eq!(cap, MIN_CAPACITY);
    // The first root slot was written knowing where the data area is; the second is zeros.
    assert_eq!(read_vec(&w, root, 200), slot0(data, cap));
    assert!(read_vec(&w, root + ROOT_SLOT as u64, ROOT_SLOT)
        .iter()
        .all(|b| *b == 0));
    // Both areas are page-aligned, the root slots come first, and the data area ends the file.
    assert_eq!((root % PAGE as u64, data % PAGE as u64), (0, 0));
    assert!(root + 2 * ROOT_SLOT as u64 <= data);
    let m = fs::metadata(&path).unwrap();
    assert_eq!(
        m.len(),
        data + cap,
        "the file is as long as its data area reaches"
    );
    assert!(
        m.blocks() * 512 < 4 << 20,
        "but a hole: {} bytes on disk",
        m.blocks() * 512
    );
    drop(w);
    let w = reopen(&path);
    assert_eq!(
        (w.root_offset(), w.data_offset(), w.capacity()),
        (root, data, cap)
    );
    assert_eq!(read_vec(&w, root, 200), slot0(data, cap));
}

#[test]
fn capacities_out_of_range_are_refused_before_anything_is_made() {
    let dir = TempDir::new("capacity");
    let path = dir.file("a.h5");
    for bad in [0, MIN_CAPACITY - SEGMENT, MIN_CAPACITY + 1, 1 << 50] {
        assert!(matches!(
            WriterFile::open(&path, Some(&creation(bad))),
            Err(Error::InvalidArgument(_))
        ));
    }
    assert!(dir.entries().is_empty(), "{:?}", dir.entries());
    let opts = Options {
        capacity: 3 << 20,
        ..Options::default()
    };
    assert!(matches!(
        Writer::open(&path, &opts),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn racing_creators_get_one_file_and_one_writer() {
    let dir = TempDir::new("race");
    let path = dir.file("a.h5");
    let threads = 4;
    let barrier = Barrier::new(threads);
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let r = WriterFile::open(&path, Some(&creation(MIN_CAPACITY)));
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
    assert_eq!(
        read_vec(&w, w.root_offset(), 8),
        w.data_offset().to_le_bytes()
    );
}

/// HDF5 writes a file once, when it is created: whatever the writer does afterwards (commits,
/// log switches, flushes, merges, gc, close, reopen), every byte outside the root slots and
/// the data area — HDF5's superblock, object headers and attributes — stays as it was. So no
/// torn HDF5 metadata write can ever make a file unopenable.
#[test]
fn hdf5_metadata_never_changes_after_creation() {
    let dir = TempDir::new("meta");
    let path = dir.file("a.h5");
    let opts = Options {
        capacity: MIN_CAPACITY,
        checkpoint_bytes: 64 << 10,
        ..Options::default()
    };
    drop(retry_locked(|| Writer::open(&path, &opts)).unwrap());
    let (root, data) = {
        let r = ReadFile::open(&path).unwrap();
        (r.root_offset(), r.data_offset())
    };
    let metadata = |p: &Path| {
        let mut all = vec![0u8; data as usize];
        std::os::unix::fs::FileExt::read_exact_at(&fs::File::open(p).unwrap(), &mut all, 0)
            .unwrap();
        all[root as usize..root as usize + 2 * ROOT_SLOT].fill(0);
        all
    };
    let before = metadata(&path);
    for session in 0..3u64 {
        // A child another test thread forks holds the lock until it execs.
        let mut w = retry_locked(|| Writer::open(&path, &opts)).unwrap();
        for b in 0..40u64 {
            let keys: Vec<[u8; 16]> = (0..500)
                .map(|i| {
                    Rng(session << 32 | b << 16 | i)
                        .bytes(16)
                        .try_into()
                        .unwrap()
                })
                .collect();
            w.insert(&keys, &keys).unwrap();
            w.commit().unwrap();
        }
        w.checkpoint().unwrap();
        w.gc().unwrap();
        w.close().unwrap();
    }
    assert!(hashdir::verify(&path).unwrap().is_ok());
    assert!(
        metadata(&path) == before,
        "HDF5's metadata changed after creation"
    );
    assert_eq!(
        fs::metadata(&path).unwrap().len(),
        data + MIN_CAPACITY,
        "and so did the length"
    );
}

// ---------------------------------------------------------------------------------------------
// Raw I/O

#[test]
fn writes_read_back_and_persist() {
    let dir = TempDir::new("io");
    let path = dir.file("a.h5");
    let w = create(&path);
    let at = w.data_offset() + 3 * SEGMENT + 5 * PAGE as u64;
    let page = Rng(1).bytes(PAGE);
    w.write_at(at, &page).unwrap();
    let parts = [Rng(2).bytes(100), Rng(3).bytes(3000), Rng(4).bytes(1)];
    let refs: Vec<&[u8]> = parts.iter().map(|p| &p[..]).collect();
    w.write_vectored_at(at + PAGE as u64, &refs).unwrap();
    w.sync().unwrap();
    assert_eq!(read_vec(&w, at, PAGE), page);
    drop(w);
    let w = reopen(&path);
    assert_eq!(read_vec(&w, at, PAGE), page);
    assert_eq!(read_vec(&w, at + PAGE as u64, 3101), parts.concat());
    // Reading past the end of the file is damage, not a short read.
    let end = w.data_offset() + w.capacity();
    assert!(matches!(
        w.read_at(end - 8, &mut [0u8; 16]),
        Err(Error::Corrupt { .. })
    ));
    assert_eq!(w.data_end(), end);
}

#[test]
fn punched_ranges_read_zeros_and_free_their_blocks() {
    let dir = TempDir::new("punch");
    let path = dir.file("a.h5");
    let w = create(&path);
    let base = w.data_offset() + SEGMENT;
    let data = Rng(base).bytes(PAGE * 8);
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

// ---------------------------------------------------------------------------------------------
// The writer lock

#[test]
fn second_writer_in_process_is_locked() {
    let dir = TempDir::new("lock");
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
    assert_eq!(
        read_vec(&w, w.root_offset(), 8),
        w.data_offset().to_le_bytes()
    );
    drop(w);
    reopen(&path);
}

#[test]
fn writer_in_another_process_is_locked() {
    let dir = TempDir::new("lockproc");
    let path = dir.file("a.h5");
    let w = create(&path);
    let out = run_child("probe_lock", &path);
    assert_eq!(
        out.status.code(),
        Some(EXIT_LOCKED),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    drop(w);
    // Retried: a child another test thread spawns may briefly share our (closed) descriptor.
    let opened = (0..20).any(|_| run_child("probe_lock", &path).status.code() == Some(EXIT_OPENED));
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
    let dir = TempDir::new("cloexec");
    let path = dir.file("a.h5");
    let w = create(&path);
    let fds = open_fds(&path);
    // Ours only: HDF5 holds the file only while it validates it.
    assert_eq!(fds.len(), 1, "{fds:?}");
    for (fd, flags) in &fds {
        assert_ne!(flags & libc::O_CLOEXEC as u32, 0, "fd {fd} lacks O_CLOEXEC");
    }
    drop(w);
    assert!(open_fds(&path).is_empty(), "closing leaves no descriptor");
}

// ---------------------------------------------------------------------------------------------
// Foreign files

fn assert_not_hashdir_untouched(path: &Path) {
    let before = fingerprint(path);
    match WriterFile::open(path, None) {
        Err(Error::NotHashdir { reason, .. }) => eprintln!("writer: {reason}"),
        other => panic!("expected NotHashdir, got {other:?}"),
    }
    match WriterFile::open(path, Some(&creation(MIN_CAPACITY))) {
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

/// An HDF5 file in the SWMR-capable format with our identity attributes, at `format`.
fn with_identity(path: &Path, format: u32) {
    let f = h5_options()
        .with_fapl(|p| p.libver_v110())
        .create(path)
        .unwrap();
    let m = hdf5::types::FixedAscii::<7>::from_ascii("hashdir").unwrap();
    f.new_attr::<hdf5::types::FixedAscii<7>>()
        .create("hashdir_magic")
        .unwrap()
        .write_scalar(&m)
        .unwrap();
    for (name, v) in [("hashdir_format", format), ("page_size", PAGE as u32)] {
        f.new_attr::<u32>()
            .create(name)
            .unwrap()
            .write_scalar(&v)
            .unwrap();
    }
}

#[test]
fn foreign_files_are_not_hashdir_and_stay_untouched() {
    let dir = TempDir::new("foreign");

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
        WriterFile::open(&sig, Some(&creation(MIN_CAPACITY))).map(drop)
    ));
    assert!(refused(ReadFile::open(&sig).map(drop)));
    assert!(fingerprint(&sig) == before, "sig.h5 was modified");

    let plain = dir.file("plain.h5");
    {
        let f = h5_options().create(&plain).unwrap();
        f.new_dataset::<u8>().shape(10).create("x").unwrap();
    }
    assert_not_hashdir_untouched(&plain);

    let future = dir.file("future.h5");
    with_identity(&future, 99);
    assert_not_hashdir_untouched(&future);
}

/// A file of an earlier format version is refused with the way to move its data.
#[test]
fn an_older_format_is_refused_with_the_way_to_migrate() {
    let dir = TempDir::new("v2");
    let path = dir.file("v2.h5");
    with_identity(&path, 2);
    let before = fingerprint(&path);
    for e in [
        WriterFile::open(&path, None).err(),
        ReadFile::open(&path).err(),
    ] {
        let msg = e.expect("refused").to_string();
        assert!(
            msg.contains("format version 2") && msg.contains("hashdir dump"),
            "{msg}"
        );
    }
    assert!(fingerprint(&path) == before);
}

/// Our attributes, but `/root` and `/data` not as the format says (not page-aligned, `/data`
/// chunked): corrupt, not a foreign file.
#[test]
fn a_broken_layout_is_corrupt() {
    let dir = TempDir::new("layout");
    let path = dir.file("a.h5");
    with_identity(&path, hashdir::testing::layout::FORMAT_VERSION);
    {
        let f = h5_options().append(&path).unwrap();
        let root = f
            .new_dataset::<u8>()
            .shape([2, ROOT_SLOT])
            .create("root")
            .unwrap();
        root.write_raw(&vec![0u8; 2 * ROOT_SLOT]).unwrap();
        f.new_dataset::<u8>()
            .chunk(1 << 20)
            .shape(MIN_CAPACITY as usize)
            .create("data")
            .unwrap();
    }
    for r in [
        ReadFile::open(&path).err(),
        WriterFile::open(&path, None).err(),
    ] {
        match r {
            Some(Error::Corrupt {
                what: "dataset layout",
                ..
            }) => {}
            other => panic!("expected a corrupt layout, got {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Readers

#[test]
fn readers_map_what_is_in_use_and_refuse_a_cut_file() {
    let dir = TempDir::new("map");
    let path = dir.file("a.h5");
    drop(create(&path));
    let r = ReadFile::open(&path).unwrap();
    let small = r.map(0).unwrap();
    assert!((small.len() as u64) < r.data_offset() + MIN_CAPACITY || MIN_CAPACITY <= 1 << 30);
    assert!(small.len() as u64 >= r.root_offset() + 2 * ROOT_SLOT as u64);
    // The same mapping while it covers what is asked.
    let again = r.map(r.root_offset()).unwrap();
    assert!(std::sync::Arc::ptr_eq(&small, &again));
    let whole = r.map(u64::MAX).unwrap();
    assert_eq!(whole.len() as u64, r.data_offset() + MIN_CAPACITY);
    drop((small, again, whole));
    // A file someone cut short would fault a mapping past its end: refused instead.
    let cut = dir.file("cut.h5");
    fs::copy(&path, &cut).unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(&cut)
        .unwrap()
        .set_len(r.data_offset() + SEGMENT)
        .unwrap();
    let open = ReadFile::open(&cut).and_then(|c| c.map(u64::MAX).map(drop));
    assert!(open.is_err(), "{open:?}");
}

/// A reader table that cannot be written (read-only, or a directory in its place) leaves
/// readers working without pins; one is made when possible and readers pin in it.
#[test]
fn readers_work_without_a_writable_reader_table() {
    let dir = TempDir::new("table");
    let path = dir.file("a.h5");
    let opts = Options {
        capacity: MIN_CAPACITY,
        ..Options::default()
    };
    let mut w = retry_locked(|| Writer::open(&path, &opts)).unwrap();
    w.insert(&[[1; 16]], &[[2; 16]]).unwrap();
    w.commit().unwrap();
    let table = hashdir::testing::table_path(&path);
    assert!(ReaderTable::open(&path).unwrap().is_some());
    drop(w);
    fs::remove_file(&table).unwrap();
    fs::create_dir(&table).unwrap(); // not a file: cannot be a table
    let r = Reader::open(&path, &opts).unwrap();
    let (mut first, mut found) = ([[0u8; 16]; 1], [0u8; 1]);
    r.lookup(&[[1; 16]], &mut first, &mut found).unwrap();
    assert_eq!((found[0], first[0]), (1, [2; 16]));
    assert!(!r.reads_log_in_place(), "no pin, so the log is copied");
}
