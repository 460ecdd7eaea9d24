//! Test instrumentation of the writer's data-file I/O (cargo feature `failpoints` only; without
//! it every function here is empty and compiles to nothing).
//!
//! - `HASHDIR_IO_TRACE=path`: every write, hole punch, length change and sync that reaches the
//!   data file is appended to `path`, in the order the operations completed, so a test can
//!   rebuild what the file could hold after a power cut at any point (tests/powercut.rs).
//!   While tracing, data-file operations run one at a time under one lock, so the order in the
//!   trace is the order the kernel saw them.
//! - `HASHDIR_IO_FAULT=op:n[+]:errno`: the n-th operation of kind `op` (`write`, `sync`,
//!   `punch`; counted from 1 over the process) fails with `errno` (`EIO`, `ENOSPC`, `EDQUOT`,
//!   `EROFS`) without reaching the file; with `+`, that one and every later one of the kind.
//!
//! Trace format (little-endian): the 8 bytes `HDTRACE1`, then records of
//! `kind u8 | offset u64 | len u64 | payload`:
//! - `W`: a write of `len` bytes at `offset`; the payload is the bytes;
//! - `P`: a hole punched over `[offset, offset + len)`; no payload;
//! - `L`: the file's length set to `offset`; no payload;
//! - `S`: a completed `fdatasync`/`fsync`: every operation recorded before it is durable;
//! - `M`: a marker from the program (`mark`): `offset` is its value; no payload.
//! - `F`: an injected fault (`HASHDIR_IO_FAULT`): the operation did not reach the file and
//!   failed; `offset` is the kind (0 write or length change, 1 sync, 2 punch), `len` the errno.

// Test instrumentation: without the feature, what only the tests call goes unused.
#![cfg_attr(not(feature = "failpoints"), allow(dead_code))]
use std::io;

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
    use std::fs::File;
    use std::io::{self, Write};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;

    struct Tracer {
        out: Mutex<Option<io::BufWriter<File>>>,
    }

    fn tracer() -> Option<&'static Tracer> {
        static T: OnceLock<Option<Tracer>> = OnceLock::new();
        T.get_or_init(|| {
            let path = std::env::var_os("HASHDIR_IO_TRACE")?;
            let mut f = io::BufWriter::new(File::create(path).ok()?);
            f.write_all(b"HDTRACE1").ok()?;
            Some(Tracer {
                out: Mutex::new(Some(f)),
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
            record(b'F', op as u64, f.errno as u64, &[]);
        }
        fires.then(|| io::Error::from_raw_os_error(f.errno))
    }

    pub fn record(kind: u8, off: u64, len: u64, payload: &[&[u8]]) {
        let Some(t) = tracer() else { return };
        let mut g = t.out.lock();
        let Some(out) = g.as_mut() else { return };
        let mut head = [0u8; 17];
        head[0] = kind;
        head[1..9].copy_from_slice(&off.to_le_bytes());
        head[9..17].copy_from_slice(&len.to_le_bytes());
        let ok = out.write_all(&head).is_ok() && payload.iter().all(|p| out.write_all(p).is_ok());
        // A sync is a point the test builds images at: the record must be on disk before the
        // program goes on (it may be killed right after).
        let ok = ok && (!matches!(kind, b'S' | b'M' | b'F') || out.flush().is_ok());
        if !ok {
            *g = None; // a broken trace must not pass for a complete one
        }
    }

    /// Runs one data-file operation: fails it if a fault is armed for it, else performs it
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
        record(b'M', value, 0, &[]);
    }

    pub fn enabled() -> bool {
        tracer().is_some() || fault_spec().is_some()
    }
}

/// Performs a write of `bufs` at `off` through `f`, which returns the bytes it wrote (a short
/// vectored write is recorded as what reached the file).
pub fn write(off: u64, bufs: &[&[u8]], f: impl FnOnce() -> io::Result<usize>) -> io::Result<usize> {
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
                imp::record(b'W', off, *n as u64, &parts);
            },
            f,
        )
    }
    #[cfg(not(feature = "failpoints"))]
    {
        let _ = (off, bufs);
        f()
    }
}

/// Performs an `fdatasync`/`fsync` through `f`.
pub fn sync(f: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
    #[cfg(feature = "failpoints")]
    {
        imp::op(IoOp::Sync, |_| imp::record(b'S', 0, 0, &[]), f)
    }
    #[cfg(not(feature = "failpoints"))]
    {
        f()
    }
}

/// Performs a hole punch over `[off, off + len)` through `f` (which says whether the
/// filesystem punched it).
pub fn punch(off: u64, len: u64, f: impl FnOnce() -> io::Result<bool>) -> io::Result<bool> {
    #[cfg(feature = "failpoints")]
    {
        imp::op(
            IoOp::Punch,
            |done: &bool| {
                if *done {
                    imp::record(b'P', off, len, &[]);
                }
            },
            f,
        )
    }
    #[cfg(not(feature = "failpoints"))]
    {
        let _ = (off, len);
        f()
    }
}

/// Performs a change of the file's length to `len` through `f`.
pub fn set_len(len: u64, f: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
    #[cfg(feature = "failpoints")]
    {
        imp::op(IoOp::Write, |_| imp::record(b'L', len, 0, &[]), f)
    }
    #[cfg(not(feature = "failpoints"))]
    {
        let _ = len;
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
