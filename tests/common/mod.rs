//! Helpers shared by the integration tests: temp dirs, a seeded PRNG, child processes.
#![allow(dead_code)]

pub mod engine;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// A directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let base = std::env::var_os("HASHDIR_TEST_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let p = base.join(format!("hashdir-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// The names in the directory, sorted.
    pub fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// splitmix64: small, seedable, good enough for test data.
pub struct Rng(pub u64);

impl Rng {
    /// Seed from HASHDIR_SEED or the clock; printed so a failure can be replayed.
    pub fn seeded(test: &str) -> Rng {
        let seed = std::env::var("HASHDIR_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("{test}: seed {seed} (replay with HASHDIR_SEED={seed})");
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn bytes16(&mut self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.next().to_le_bytes());
        b[8..].copy_from_slice(&self.next().to_le_bytes());
        b
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// A 16-byte key or value made from a number (big-endian in the last 8 bytes).
pub fn k(n: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[8..].copy_from_slice(&n.to_be_bytes());
    b
}

/// Runs the test named `test` of this test binary as a child process with `role` in
/// HASHDIR_CHILD and `arg` in HASHDIR_ARG; stdout piped.
pub fn spawn_child(test: &str, role: &str, arg: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env("HASHDIR_CHILD", role)
        .env("HASHDIR_ARG", arg)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// The role this process plays, when it is a child.
pub fn child_role() -> Option<(String, String)> {
    let role = std::env::var("HASHDIR_CHILD").ok()?;
    Some((role, std::env::var("HASHDIR_ARG").unwrap_or_default()))
}

/// Runs `open` again while it fails with `Locked`, for at most 2 s: a process forked by another
/// test thread of this binary shares every descriptor, the writer's locked one included, until
/// the child execs (OFD locks go with the open file description, not the process). A real
/// second writer holds the lock for good and still fails.
pub fn retry_locked<T>(mut open: impl FnMut() -> hashdir::Result<T>) -> hashdir::Result<T> {
    for _ in 0..100 {
        match open() {
            Err(hashdir::Error::Locked { .. }) => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            r => return r,
        }
    }
    open()
}

/// `Writer::open` through `retry_locked`.
pub fn open_writer(
    path: &std::path::Path,
    opts: &hashdir::Options,
) -> hashdir::Result<hashdir::Writer> {
    retry_locked(|| hashdir::Writer::open(path, opts))
}
