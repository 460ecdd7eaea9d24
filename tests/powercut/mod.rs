//! The power-cut harness shared by tests/powercut.rs and tests/iofault.rs: the trace parser,
//! the image builder, the workload and its model, the oracle, and what runs them.
#![allow(dead_code)]

pub mod files;
pub mod image;
pub mod oracle;
pub mod trace;
pub mod workload;

use crate::common::Rng;
use image::{Chooser, Fate};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use trace::Rec;
use workload::{decode_mark, Call, Marker};

/// A scratch directory, on tmpfs when there is one (thousands of images are written and
/// opened): `HASHDIR_TEST_DIR`, else /dev/shm, else the system's temp dir. Removed on drop.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let base = std::env::var_os("HASHDIR_TEST_DIR")
            .map(PathBuf::from)
            .or_else(|| Some(PathBuf::from("/dev/shm")).filter(|p| writable_dir(p)))
            .unwrap_or_else(std::env::temp_dir);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let p = base.join(format!("hashdir-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn writable_dir(p: &Path) -> bool {
    let probe = p.join(format!(".hashdir-probe-{}", std::process::id()));
    let ok = std::fs::write(&probe, b"x").is_ok();
    let _ = std::fs::remove_file(&probe);
    ok
}

/// The length of the files of a run: fixed when the base is made (a hashdir file never
/// changes its length), so an image holds only the file's bytes up to its last data and
/// the rest is a hole.
static FILE_LEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A file's bytes up to the end of its last data (the rest of it is a hole, zeros).
pub fn read_prefix(path: &Path) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    use std::os::unix::io::AsRawFd;
    let f = std::fs::File::open(path).unwrap();
    let len = f.metadata().unwrap().len() as i64;
    // The end of the last data extent: SEEK_DATA / SEEK_HOLE from the start.
    let (mut at, mut end) = (0i64, 0i64);
    loop {
        // SAFETY: lseek on an open descriptor; it reads no memory of ours.
        let data = unsafe { libc::lseek(f.as_raw_fd(), at, libc::SEEK_DATA) };
        if data < 0 || data >= len {
            break;
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(f.as_raw_fd(), data, libc::SEEK_HOLE) };
        end = if hole < 0 { len } else { hole };
        at = end;
    }
    let mut b = vec![0u8; end as usize];
    f.read_exact_at(&mut b, 0).unwrap();
    b
}

/// Writes an image as a file of the run's length, leaving its all-zero 4 KiB blocks (and
/// everything past the image's bytes) as holes.
pub fn write_image(path: &Path, bytes: &[u8]) {
    write_image_len(
        path,
        bytes,
        FILE_LEN.load(std::sync::atomic::Ordering::Relaxed),
    );
}

/// Writes an image as a file of at least `len` bytes, leaving its all-zero 4 KiB blocks (and
/// everything past the image's bytes) as holes.
pub fn write_image_len(path: &Path, bytes: &[u8], len: u64) {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(hashdir::reader_table_path(path));
    let f = std::fs::File::create(path).unwrap();
    f.set_len(len.max(bytes.len() as u64)).unwrap();
    for (i, block) in bytes.chunks(image::BLOCK as usize).enumerate() {
        if block.iter().any(|&b| b != 0) {
            f.write_all_at(block, i as u64 * image::BLOCK).unwrap();
        }
    }
}

/// Removes an image and the reader table beside it.
pub fn remove_image(path: &Path) {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(hashdir::reader_table_path(path));
}

/// The seed of image `i` of a run seeded with `seed`.
pub fn image_seed(seed: u64, i: u64) -> u64 {
    Rng(seed ^ (i + 1).wrapping_mul(0xd1b5_4a32_d192_ed03)).next()
}

/// How an image decides the fate of the operations after the last completed sync.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Profile {
    /// Everything reached the disk whole: the page cache's view (what SIGKILL leaves).
    PageCache,
    /// Nothing did: only what was synced.
    SyncedOnly,
    /// Each piece kept with `keep`, torn with `torn`, else lost; each punch or length change
    /// applied with probability 1/2.
    Random { keep: f64, torn: f64 },
}

impl Profile {
    /// One in eight images keeps everything, one in eight nothing, the rest mix at random.
    pub fn pick(rng: &mut Rng) -> Profile {
        match rng.below(8) {
            0 => Profile::PageCache,
            1 => Profile::SyncedOnly,
            _ => {
                let keep = rng.below(1001) as f64 / 1000.0;
                let torn = (1.0 - keep) * rng.below(1001) as f64 / 1000.0;
                Profile::Random { keep, torn }
            }
        }
    }
}

/// A chooser drawing from a seeded generator under a profile.
pub struct RandomChooser<'a> {
    pub rng: &'a mut Rng,
    pub profile: Profile,
}

impl RandomChooser<'_> {
    fn unit(&mut self) -> f64 {
        (self.rng.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl Chooser for RandomChooser<'_> {
    fn piece(&mut self, _: usize, _: u64, _: u64, sectors: u32) -> Fate {
        let (keep, torn) = match self.profile {
            Profile::PageCache => return Fate::Kept,
            Profile::SyncedOnly => return Fate::Lost,
            Profile::Random { keep, torn } => (keep, torn),
        };
        let u = self.unit();
        if u < keep {
            Fate::Kept
        } else if u < keep + torn && sectors > 1 {
            // A proper subset: some sectors, not none and not all.
            let all = (1u64 << sectors) - 1;
            Fate::Torn((1 + self.rng.below(all - 1)) as u8)
        } else {
            Fate::Lost
        }
    }

    fn meta(&mut self, _: usize) -> bool {
        match self.profile {
            Profile::PageCache => true,
            Profile::SyncedOnly => false,
            Profile::Random { .. } => self.rng.below(2) == 0,
        }
    }
}

/// What the trace says at each record: how many batches were acknowledged before it, and the
/// call in progress.
pub struct Timeline {
    /// `acked[i]`: batches acknowledged by the markers among the first `i` records.
    pub acked: Vec<u64>,
    /// `during[i]`: the innermost call begun and not yet done among the first `i` records.
    pub during: Vec<Option<(Call, u64)>>,
    /// `synced[i]`: batches acknowledged before the last `sync` call that returned among the
    /// first `i` records (in a run without faults every call that returned succeeded).
    pub synced: Vec<u64>,
    /// The acknowledgements in trace order.
    pub acks: Vec<u64>,
    /// Index of the first write that reaches past `base_len`, if any.
    pub first_growth: Option<usize>,
    pub ends_complete: bool,
    pub ends_stopped: bool,
    /// Markers that decode to nothing known (a harness error).
    pub unknown: Vec<u64>,
}

impl Timeline {
    pub fn of(recs: &[Rec], base_len: u64) -> Timeline {
        let mut t = Timeline {
            acked: vec![0],
            during: vec![None],
            synced: vec![0],
            acks: Vec::new(),
            first_growth: None,
            ends_complete: false,
            ends_stopped: false,
            unknown: Vec::new(),
        };
        let (mut acked, mut during, mut synced) = (0u64, None, 0u64);
        for (i, r) in recs.iter().enumerate() {
            match r {
                Rec::Mark(v) => match decode_mark(*v) {
                    Marker::Ack(n) => {
                        acked = acked.max(n);
                        t.acks.push(n);
                    }
                    Marker::Call { call, done, batch } => {
                        during = (!done).then_some((call, batch));
                        if call == Call::Sync && done {
                            synced = acked;
                        }
                    }
                    Marker::End => t.ends_complete = i + 1 == recs.len(),
                    Marker::Stopped => t.ends_stopped = i + 1 == recs.len(),
                    Marker::Unknown(v) => t.unknown.push(v),
                },
                Rec::Write { off, data }
                    if t.first_growth.is_none() && off + data.len() as u64 > base_len =>
                {
                    t.first_growth = Some(i);
                }
                _ => {}
            }
            t.acked.push(acked);
            t.during.push(during);
            t.synced.push(synced);
        }
        t
    }

    /// A crash point's place, for messages: "after N acknowledged, during commit of batch B".
    pub fn place(&self, crash: usize) -> String {
        let what = match self.during[crash] {
            Some((c, b)) => format!("during {} of batch {b}", c.name()),
            None => "between calls".to_string(),
        };
        format!("{} batches acknowledged, {what}", self.acked[crash])
    }
}

/// Counts of the operations in a trace.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counts {
    pub writes: u64,
    pub write_bytes: u64,
    pub punches: u64,
    pub lengths: u64,
    pub syncs: u64,
    pub marks: u64,
    pub faults: u64,
    /// Creations, renames and directory syncs (traces of several files).
    pub creates: u64,
    pub renames: u64,
    pub dir_syncs: u64,
}

impl Counts {
    pub fn of(recs: &[Rec]) -> Counts {
        let mut c = Counts::default();
        for r in recs {
            match r {
                Rec::Write { data, .. } => {
                    c.writes += 1;
                    c.write_bytes += data.len() as u64;
                }
                Rec::Punch { .. } => c.punches += 1,
                Rec::SetLen { .. } => c.lengths += 1,
                Rec::Sync => c.syncs += 1,
                Rec::Mark(_) => c.marks += 1,
                Rec::Fault { .. } => c.faults += 1,
                Rec::Create => c.creates += 1,
                Rec::Rename { .. } => c.renames += 1,
                Rec::SyncDir => c.dir_syncs += 1,
            }
        }
        c
    }
}

/// What a child printed: acknowledged batches, failed calls, whether it finished.
#[derive(Debug, Default)]
pub struct ChildReport {
    pub acked: Vec<u64>,
    /// `(call, batch, errno, message)` of the call that failed.
    pub failed: Option<(String, u64, Option<i32>, String)>,
    pub finished: bool,
    pub status: Option<std::process::ExitStatus>,
}

/// Runs the test `test` of this binary as a child with role `role`, `path` as its argument
/// and `env` on top of an environment cleared of the harness's variables.
pub fn run_child(test: &str, role: &str, path: &Path, env: &[(&str, String)]) -> ChildReport {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env("HASHDIR_CHILD", role)
        .env("HASHDIR_ARG", path)
        .env_remove("HASHDIR_FAILPOINT")
        .env_remove("HASHDIR_IO_TRACE")
        .env_remove("HASHDIR_IO_FAULT")
        .stdout(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    let mut rep = ChildReport::default();
    for line in out.lines().map_while(|l| l.ok()) {
        let Some(at) = line.find('@') else { continue };
        let msg = &line[at + 1..];
        if let Some(b) = msg.strip_prefix("acked ") {
            rep.acked.push(b.trim().parse().unwrap());
        } else if let Some(rest) = msg.strip_prefix("failed ") {
            // "failed <call> <batch> errno=<n|-> <message>"
            let mut parts = rest.splitn(4, ' ');
            let call = parts.next().unwrap_or("").to_string();
            let batch = parts
                .next()
                .and_then(|b| b.parse().ok())
                .unwrap_or(u64::MAX);
            let errno = parts
                .next()
                .and_then(|e| e.strip_prefix("errno="))
                .and_then(|e| e.parse().ok());
            rep.failed = Some((call, batch, errno, parts.next().unwrap_or("").to_string()));
        }
        rep.finished |= msg.starts_with("finished");
    }
    rep.status = Some(child.wait().unwrap());
    rep
}

/// The child's side of `run_child`'s protocol for one failure.
pub fn report_failure(f: &workload::Failure) {
    let errno = f.error.errno().map_or("-".to_string(), |e| e.to_string());
    println!(
        "@failed {} {} errno={errno} {}",
        f.call.name(),
        f.batch,
        f.error
    );
}

/// Creates the file a run starts from: created and closed by a writer, then fsynced, so it is
/// what the disk holds before the traced run begins.
pub fn make_base(path: &Path, opts: &hashdir::Options) -> Vec<u8> {
    crate::common::open_writer(path, opts)
        .unwrap()
        .close()
        .unwrap();
    let f = std::fs::File::open(path).unwrap();
    f.sync_all().unwrap();
    FILE_LEN.store(
        f.metadata().unwrap().len(),
        std::sync::atomic::Ordering::Relaxed,
    );
    read_prefix(path)
}

/// Compares a replay of a whole trace with the file the writer left: the differing 4 KiB
/// blocks (first few) and the lengths. Empty when they are equal.
pub fn replay_differences(replayed: &[u8], actual: &[u8]) -> Option<String> {
    if replayed == actual {
        return None;
    }
    let blocks = replayed
        .len()
        .max(actual.len())
        .div_ceil(image::BLOCK as usize);
    let (mut n, mut bytes, mut first) = (0u64, 0u64, Vec::new());
    for i in 0..blocks {
        let r = |v: &[u8]| {
            let (a, b) = (i * image::BLOCK as usize, (i + 1) * image::BLOCK as usize);
            v.get(a.min(v.len())..b.min(v.len()))
                .unwrap_or(&[])
                .to_vec()
        };
        let (x, y) = (r(replayed), r(actual));
        let mut x = x;
        let mut y = y;
        x.resize(image::BLOCK as usize, 0);
        y.resize(image::BLOCK as usize, 0);
        if x != y {
            n += 1;
            bytes += x.iter().zip(&y).filter(|(a, b)| a != b).count() as u64;
            if first.len() < 6 {
                first.push(i as u64 * image::BLOCK);
            }
        }
    }
    // Past the shorter one, both are zeros (a file is its bytes up to its last data, then a
    // hole): only differing blocks count.
    if n == 0 {
        return None;
    }
    Some(format!(
        "replaying the whole trace over the base gives {} bytes, the writer left {} bytes; {n} blocks of 4 KiB differ ({bytes} bytes), first at offsets {first:?}",
        replayed.len(),
        actual.len()
    ))
}
