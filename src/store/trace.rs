//! Test instrumentation of the writer's file I/O (cargo feature `failpoints` only; without it
//! every function here is empty and compiles to nothing).
//!
//! - `HASHDIR_IO_TRACE=path`: every write, hole punch, length change, sync, creation and
//!   rename that reaches a file of the store (a data file; a sharded store's shard files, set
//!   log and manifest, and the directory's syncs) is appended to `path`, in the order the
//!   operations completed, so a test can rebuild what the files could hold after a power cut
//!   at any point (tests/powercut.rs). While tracing, these operations run one at a time under
//!   one lock, so the order in the trace is the order the kernel saw them.
//!   `HASHDIR_IO_TRACE_ROOT=dir`: paths under `dir` are recorded relative to it (`dir` itself
//!   as the empty path); without it, or outside it, paths are recorded as the program gave them.
//! - `HASHDIR_IO_FAULT=op:n[+]:errno`: the n-th operation of kind `op` (`write`, `sync`,
//!   `punch`; counted from 1 over the process) fails with `errno` (`EIO`, `ENOSPC`, `EDQUOT`,
//!   `EROFS`) without reaching the file; with `+`, that one and every later one of the kind.
//!   Length changes, creations and renames count as writes.
//!
//! Trace format (little-endian): the 8 bytes `HDTRACE2`, then records of
//! `kind u8 | file u32 | offset u64 | len u64 | payload`. `file` is an index the trace binds
//! to a path with an `N` record before its first use (indices count from 0 in binding order);
//! records that concern no file (`M`, `F`) carry `u32::MAX`.
//! - `N`: binds `file` to a path of `len` bytes (the payload);
//! - `W`: a write of `len` bytes at `offset`; the payload is the bytes;
//! - `P`: a hole punched over `[offset, offset + len)`; no payload;
//! - `L`: the file's length set to `offset`; no payload;
//! - `C`: the file created empty, or cut to length 0 if it existed (`File::create`);
//! - `R`: `file` renamed to the path bound to index `offset` (which it replaces);
//! - `S`: a completed `fdatasync`/`fsync` of `file`: its operations recorded before are durable;
//! - `D`: a completed `fsync` of the directory `file`: its entries (creations and renames
//!   recorded before) are durable;
//! - `M`: a marker from the program (`mark`): `offset` is its value; no payload.
//! - `F`: an injected fault (`HASHDIR_IO_FAULT`): the operation did not reach the file and
//!   failed; `offset` is the kind (0 write or length change, 1 sync, 2 punch), `len` the errno.

// Test instrumentation: without the feature, what only the tests call goes unused.
#![cfg_attr(not(feature = "failpoints"), allow(dead_code))]
use std::io;
use std::path::Path;

/// Kinds of operation a fault can be injected into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoOp {
    Write,
    Sync,
    Punch,
}

#[cfg(feature = "failpoints")]
mod imp {
    use super::IoOp;
    use parking_lot::Mutex;
    use std::collections::HashMap;
    use std::fs::File;
    use std::io::{self, Write};
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;

    /// The `file` of records that concern no file.
    pub const NO_FILE: u32 = u32::MAX;

    struct Out {
        w: io::BufWriter<File>,
        /// The index bound to each path so far.
        files: HashMap<PathBuf, u32>,
    }

    struct Tracer {
        out: Mutex<Option<Out>>,
        root: Option<PathBuf>,
    }

    fn tracer() -> Option<&'static Tracer> {
        static T: OnceLock<Option<Tracer>> = OnceLock::new();
        T.get_or_init(|| {
            let path = std::env::var_os("HASHDIR_IO_TRACE")?;
            let mut w = io::BufWriter::new(File::create(path).ok()?);
            w.write_all(b"HDTRACE2").ok()?;
            Some(Tracer {
                out: Mutex::new(Some(Out {
                    w,
                    files: HashMap::new(),
                })),
                root: std::env::var_os("HASHDIR_IO_TRACE_ROOT").map(PathBuf::from),
            })
        })
        .as_ref()
    }

    struct Fault {
        op: IoOp,
        at: u64,
        sticky: bool,
        errno: i32,
    }

    fn fault_spec() -> Option<&'static Fault> {
        static F: OnceLock<Option<Fault>> = OnceLock::new();
        F.get_or_init(|| {
            let spec = std::env::var("HASHDIR_IO_FAULT").ok()?;
            let mut parts = spec.split(':');
            let op = match parts.next()? {
                "write" => IoOp::Write,
                "sync" => IoOp::Sync,
                "punch" => IoOp::Punch,
                _ => return None,
            };
            let n = parts.next()?;
            let (n, sticky) = match n.strip_suffix('+') {
                Some(n) => (n, true),
                None => (n, false),
            };
            let errno = match parts.next()? {
                "EIO" => libc::EIO,
                "ENOSPC" => libc::ENOSPC,
                "EDQUOT" => libc::EDQUOT,
                "EROFS" => libc::EROFS,
                _ => return None,
            };
            Some(Fault {
                op,
                at: n.parse().ok()?,
                sticky,
                errno,
            })
        })
        .as_ref()
    }

    static COUNTS: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];

    fn injected(op: IoOp) -> Option<io::Error> {
        let f = fault_spec().filter(|f| f.op == op)?;
        let n = COUNTS[op as usize].fetch_add(1, Ordering::SeqCst) + 1;
        let fires = n == f.at || (f.sticky && n > f.at);
        if fires {
            // Where the fault fell among the traced operations: a test rebuilds what a
            // failed sync may have cost from it.
            record(None, b'F', op as u64, f.errno as u64, &[]);
        }
        fires.then(|| io::Error::from_raw_os_error(f.errno))
    }

    fn head(out: &mut Out, kind: u8, file: u32, off: u64, len: u64) -> io::Result<()> {
        let mut head = [0u8; 21];
        head[0] = kind;
        head[1..5].copy_from_slice(&file.to_le_bytes());
        head[5..13].copy_from_slice(&off.to_le_bytes());
        head[13..21].copy_from_slice(&len.to_le_bytes());
        out.w.write_all(&head)
    }

    /// The index of `path`, bound by an `N` record the first time.
    fn index(t: &Tracer, out: &mut Out, path: &Path) -> io::Result<u32> {
        if let Some(&i) = out.files.get(path) {
            return Ok(i);
        }
        let i = out.files.len() as u32;
        let shown = match &t.root {
            Some(root) if path == root => Path::new(""),
            Some(root) => path.strip_prefix(root).unwrap_or(path),
            None => path,
        };
        let name = shown.as_os_str().as_encoded_bytes();
        head(out, b'N', i, 0, name.len() as u64)?;
        out.w.write_all(name)?;
        out.files.insert(path.to_owned(), i);
        Ok(i)
    }

    /// Appends a record of `kind` on `file` (None: no file). `to`: for a rename, the path whose
    /// index goes in `off`.
    pub fn record(file: Option<&Path>, kind: u8, off: u64, len: u64, payload: &[&[u8]]) {
        record_to(file, None, kind, off, len, payload)
    }

    pub fn record_to(
        file: Option<&Path>,
        to: Option<&Path>,
        kind: u8,
        off: u64,
        len: u64,
        payload: &[&[u8]],
    ) {
        let Some(t) = tracer() else { return };
        let mut g = t.out.lock();
        let Some(out) = g.as_mut() else { return };
        let mut put = || -> io::Result<()> {
            let i = match file {
                Some(p) => index(t, out, p)?,
                None => NO_FILE,
            };
            let off = match to {
                Some(p) => index(t, out, p)? as u64,
                None => off,
            };
            head(out, kind, i, off, len)?;
            for p in payload {
                out.w.write_all(p)?;
            }
            // A sync is a point the test builds images at: the record must be on disk before
            // the program goes on (it may be killed right after).
            if matches!(kind, b'S' | b'D' | b'M' | b'F') {
                out.w.flush()?;
            }
            Ok(())
        };
        if put().is_err() {
            *g = None; // a broken trace must not pass for a complete one
        }
    }

    /// Runs one traced operation: fails it if a fault is armed for it, else performs it
    /// (one at a time while tracing) and records it when it succeeded.
    pub fn op<T>(
        kind: IoOp,
        rec: impl FnOnce(&T),
        f: impl FnOnce() -> io::Result<T>,
    ) -> io::Result<T> {
        if let Some(e) = injected(kind) {
            return Err(e);
        }
        static SERIAL: Mutex<()> = Mutex::new(());
        let _one_at_a_time = tracer().map(|_| SERIAL.lock());
        let r = f()?;
        rec(&r);
        Ok(r)
    }

    pub fn mark(value: u64) {
        record(None, b'M', value, 0, &[]);
    }

    pub fn enabled() -> bool {
        tracer().is_some() || fault_spec().is_some()
    }
}

/// Performs a write of `bufs` at `off` of the file at `path` through `f`, which returns the
/// bytes it wrote (a short vectored write is recorded as what reached the file).
pub fn write(
    path: &Path,
    off: u64,
    bufs: &[&[u8]],
    f: impl FnOnce() -> io::Result<usize>,
) -> io::Result<usize> {
    #[cfg(feature = "failpoints")]
    {
        imp::op(
            IoOp::Write,
            |n: &usize| {
                let mut left = *n;
                let mut parts = Vec::new();
                for b in bufs {
                    let take = left.min(b.len());
                    parts.push(&b[..take]);
                    left -= take;
                }
                imp::record(Some(path), b'W', off, *n as u64, &parts);
            },
            f,
        )
    }
    #[cfg(not(feature = "failpoints"))]
    {
        let _ = (path, off, bufs);
        f()
    }
}

/// Performs an `fdatasync`/`fsync` of the file at `path` through `f`.
pub fn sync(path: &Path, f: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
    #[cfg(feature = "failpoints")]
    {
        imp::op(IoOp::Sync, |_| imp::record(Some(path), b'S', 0, 0, &[]), f)
    }
    #[cfg(not(feature = "failpoints"))]
    {
        let _ = path;
        f()
    }
}

/// Performs an `fsync` of the directory at `path` through `f`.
pub fn sync_dir(path: &Path, f: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
    #[cfg(feature = "failpoints")]
    {
        imp::op(IoOp::Sync, |_| imp::record(Some(path), b'D', 0, 0, &[]), f)
    }
    #[cfg(not(feature = "failpoints"))]
    {
        let _ = path;
        f()
    }
}

/// Performs a hole punch over `[off, off + len)` of the file at `path` through `f` (which says
/// whether the filesystem punched it).
pub fn punch(
    path: &Path,
    off: u64,
    len: u64,
    f: impl FnOnce() -> io::Result<bool>,
) -> io::Result<bool> {
    #[cfg(feature = "failpoints")]
    {
        imp::op(
            IoOp::Punch,
            |done: &bool| {
                if *done {
                    imp::record(Some(path), b'P', off, len, &[]);
                }
            },
            f,
        )
    }
    #[cfg(not(feature = "failpoints"))]
    {
        let _ = (path, off, len);
        f()
    }
}

/// Performs a change of the length of the file at `path` to `len` through `f`.
pub fn set_len(path: &Path, len: u64, f: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
    #[cfg(feature = "failpoints")]
    {
        imp::op(
            IoOp::Write,
            |_| imp::record(Some(path), b'L', len, 0, &[]),
            f,
        )
    }
    #[cfg(not(feature = "failpoints"))]
    {
        let _ = (path, len);
        f()
    }
}

/// Performs the creation of the file at `path` (empty; cut to length 0 if it exists) through
/// `f`.
pub fn create<T>(path: &Path, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    #[cfg(feature = "failpoints")]
    {
        imp::op(IoOp::Write, |_| imp::record(Some(path), b'C', 0, 0, &[]), f)
    }
    #[cfg(not(feature = "failpoints"))]
    {
        let _ = path;
        f()
    }
}

/// Performs the rename of `from` to `to` (which it replaces) through `f`.
pub fn rename(from: &Path, to: &Path, f: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
    #[cfg(feature = "failpoints")]
    {
        imp::op(
            IoOp::Write,
            |_| imp::record_to(Some(from), Some(to), b'R', 0, 0, &[]),
            f,
        )
    }
    #[cfg(not(feature = "failpoints"))]
    {
        let _ = (from, to);
        f()
    }
}

/// Records a marker (a test program's acknowledged batch, say) in the trace.
pub fn mark(value: u64) {
    #[cfg(feature = "failpoints")]
    imp::mark(value);
    #[cfg(not(feature = "failpoints"))]
    let _ = value;
}

/// Whether tracing or fault injection is on in this process.
pub fn enabled() -> bool {
    #[cfg(feature = "failpoints")]
    {
        imp::enabled()
    }
    #[cfg(not(feature = "failpoints"))]
    {
        false
    }
}
