//! The I/O trace that `hashdir::testing::trace` writes (`HASHDIR_IO_TRACE`), parsed.
//!
//! Format (little-endian): the 8 bytes `HDTRACE1`, then records `kind u8 | offset u64 |
//! len u64 | payload`, where only `W` has a payload (`len` bytes). See src/store/trace.rs.

use std::fmt;

pub const MAGIC: &[u8; 8] = b"HDTRACE1";
const HEAD: usize = 17;

/// Kinds of the operation an `F` record says failed (`IoOp as u64` in src/store/trace.rs).
pub const FAULT_WRITE: u64 = 0;
pub const FAULT_SYNC: u64 = 1;
pub const FAULT_PUNCH: u64 = 2;

/// One record, in the order the operations completed.
#[derive(Clone, PartialEq, Eq)]
pub enum Rec {
    /// `data` reached the file at `off`.
    Write { off: u64, data: Vec<u8> },
    /// A hole was punched over `[off, off + len)` (the length is kept).
    Punch { off: u64, len: u64 },
    /// The file's length was set to `len`.
    SetLen { len: u64 },
    /// An `fdatasync`/`fsync` completed: everything recorded before it is durable.
    Sync,
    /// A marker the program wrote (`trace::mark`).
    Mark(u64),
    /// An injected fault: the operation of kind `op` (`FAULT_*`) failed with `errno` without
    /// reaching the file.
    Fault { op: u64, errno: u64 },
}

impl fmt::Debug for Rec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rec::Write { off, data } => write!(f, "W[{off}+{}]", data.len()),
            Rec::Punch { off, len } => write!(f, "P[{off}+{len}]"),
            Rec::SetLen { len } => write!(f, "L[{len}]"),
            Rec::Sync => write!(f, "S"),
            Rec::Mark(v) => write!(f, "M[{v:#x}]"),
            Rec::Fault { op, errno } => write!(f, "F[op {op}, errno {errno}]"),
        }
    }
}

/// Why a trace could not be read: the record number and byte offset where it went wrong.
#[derive(Debug, PartialEq, Eq)]
pub struct ParseError {
    pub record: usize,
    pub at: usize,
    pub what: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "trace record {} at byte {}: {}",
            self.record, self.at, self.what
        )
    }
}

/// Parses a whole trace. Anything but a sequence of complete, known records is an error:
/// a trace that ends inside a record (cut short) must not pass for a complete one.
pub fn parse(bytes: &[u8]) -> Result<Vec<Rec>, ParseError> {
    let err = |record, at, what: String| Err(ParseError { record, at, what });
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return err(0, 0, "not a trace (no HDTRACE1 header)".into());
    }
    let mut recs = Vec::new();
    let mut at = MAGIC.len();
    while at < bytes.len() {
        let n = recs.len();
        if bytes.len() - at < HEAD {
            return err(
                n,
                at,
                format!(
                    "truncated record: {} of {HEAD} header bytes",
                    bytes.len() - at
                ),
            );
        }
        let kind = bytes[at];
        let off = u64::from_le_bytes(bytes[at + 1..at + 9].try_into().unwrap());
        let len = u64::from_le_bytes(bytes[at + 9..at + 17].try_into().unwrap());
        let body = at + HEAD;
        let rec = match kind {
            b'W' => {
                let left = (bytes.len() - body) as u64;
                if len > left {
                    return err(
                        n,
                        at,
                        format!("truncated write: {left} of {len} payload bytes"),
                    );
                }
                if off.checked_add(len).is_none() {
                    return err(n, at, format!("write at {off} of {len} bytes overflows"));
                }
                let data = bytes[body..body + len as usize].to_vec();
                at = body + len as usize;
                recs.push(Rec::Write { off, data });
                continue;
            }
            b'P' => {
                if off.checked_add(len).is_none() {
                    return err(n, at, format!("punch at {off} of {len} bytes overflows"));
                }
                Rec::Punch { off, len }
            }
            b'L' => Rec::SetLen { len: off },
            b'S' => Rec::Sync,
            b'M' => Rec::Mark(off),
            b'F' => Rec::Fault {
                op: off,
                errno: len,
            },
            k => return err(n, at, format!("unknown record kind {k:#04x}")),
        };
        recs.push(rec);
        at = body;
    }
    Ok(recs)
}

/// Encodes records in the trace format (the tests' synthetic traces).
pub fn encode(recs: &[Rec]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    for r in recs {
        let (kind, off, len, payload): (u8, u64, u64, &[u8]) = match r {
            Rec::Write { off, data } => (b'W', *off, data.len() as u64, data),
            Rec::Punch { off, len } => (b'P', *off, *len, &[]),
            Rec::SetLen { len } => (b'L', *len, 0, &[]),
            Rec::Sync => (b'S', 0, 0, &[]),
            Rec::Mark(v) => (b'M', *v, 0, &[]),
            Rec::Fault { op, errno } => (b'F', *op, *errno, &[]),
        };
        out.push(kind);
        out.extend_from_slice(&off.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(payload);
    }
    out
}
