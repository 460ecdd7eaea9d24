//! The I/O trace that `hashdir::testing::trace` writes (`HASHDIR_IO_TRACE`), parsed.
//!
//! Format (little-endian): the 8 bytes `HDTRACE2`, then records `kind u8 | file u32 |
//! offset u64 | len u64 | payload`, where `N` (a path) and `W` (the bytes written) have a
//! payload of `len` bytes. `N` binds the next file index to a path; every other record names
//! a bound index, or `NO_FILE` (markers and faults). See src/store/trace.rs.

use std::fmt;

pub const MAGIC: &[u8; 8] = b"HDTRACE2";
pub const HEAD: usize = 21;
/// The `file` of records that concern no file (`M`, `F`).
pub const NO_FILE: u32 = u32::MAX;

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
    /// An `fdatasync`/`fsync` of the file completed: its operations recorded before are
    /// durable.
    Sync,
    /// A marker the program wrote (`trace::mark`).
    Mark(u64),
    /// An injected fault: the operation of kind `op` (`FAULT_*`) failed with `errno` without
    /// reaching the file.
    Fault { op: u64, errno: u64 },
    /// The file was created empty, or cut to length 0 if it existed (`File::create`).
    Create,
    /// The file was renamed to the path of index `to`, replacing what was there.
    Rename { to: u32 },
    /// An `fsync` of the directory completed: the creations and renames recorded before are
    /// durable.
    SyncDir,
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
            Rec::Create => write!(f, "C"),
            Rec::Rename { to } => write!(f, "R[to {to}]"),
            Rec::SyncDir => write!(f, "D"),
        }
    }
}

/// A trace of several files: the paths bound to the file indices, and each record with the
/// index of its file (`NO_FILE` for markers and faults). The `N` records are not in `recs`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trace {
    pub paths: Vec<String>,
    pub recs: Vec<Rec>,
    pub file: Vec<u32>,
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

/// Parses a whole trace of one file: the records of its operations, markers and faults. A
/// trace that names a second file, or records a creation, rename or directory sync, is an
/// error, as is anything `parse_files` rejects.
pub fn parse(bytes: &[u8]) -> Result<Vec<Rec>, ParseError> {
    parse_inner(bytes, true).map(|t| t.recs)
}

/// Parses a whole trace of any number of files. Anything but a sequence of complete, known
/// records on bound files is an error: a trace that ends inside a record (cut short) must not
/// pass for a complete one. Record numbers in errors count the `N` records too.
pub fn parse_files(bytes: &[u8]) -> Result<Trace, ParseError> {
    parse_inner(bytes, false)
}

fn parse_inner(bytes: &[u8], one_file: bool) -> Result<Trace, ParseError> {
    let err = |record, at, what: String| Err(ParseError { record, at, what });
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return err(0, 0, "not a trace (no HDTRACE2 header)".into());
    }
    let mut t = Trace::default();
    let mut at = MAGIC.len();
    let mut n = 0;
    while at < bytes.len() {
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
        let file = u32::from_le_bytes(bytes[at + 1..at + 5].try_into().unwrap());
        let off = u64::from_le_bytes(bytes[at + 5..at + 13].try_into().unwrap());
        let len = u64::from_le_bytes(bytes[at + 13..at + 21].try_into().unwrap());
        let body = at + HEAD;
        let payload = |what: &str| -> Result<&[u8], ParseError> {
            let left = (bytes.len() - body) as u64;
            if len > left {
                return Err(ParseError {
                    record: n,
                    at,
                    what: format!("truncated {what}: {left} of {len} payload bytes"),
                });
            }
            Ok(&bytes[body..body + len as usize])
        };
        let bound = |i: u32| (i as usize) < t.paths.len();
        let rec = match kind {
            b'N' => {
                let name = payload("path")?;
                if file as usize != t.paths.len() {
                    return err(
                        n,
                        at,
                        format!("binds index {file}, not the next one {}", t.paths.len()),
                    );
                }
                if one_file && !t.paths.is_empty() {
                    return err(n, at, "a second file in a one-file trace".into());
                }
                t.paths.push(String::from_utf8_lossy(name).into_owned());
                at = body + len as usize;
                n += 1;
                continue;
            }
            b'M' | b'F' => {
                if file != NO_FILE {
                    return err(n, at, format!("a marker or fault on file {file}"));
                }
                match kind {
                    b'M' => Rec::Mark(off),
                    _ => Rec::Fault {
                        op: off,
                        errno: len,
                    },
                }
            }
            _ if !bound(file) => return err(n, at, format!("file {file} is not bound")),
            b'W' => {
                let data = payload("write")?.to_vec();
                if off.checked_add(len).is_none() {
                    return err(n, at, format!("write at {off} of {len} bytes overflows"));
                }
                at = body + len as usize;
                n += 1;
                t.recs.push(Rec::Write { off, data });
                t.file.push(file);
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
            b'C' | b'R' | b'D' if one_file => {
                return err(
                    n,
                    at,
                    format!("a {} record in a one-file trace", kind as char),
                )
            }
            b'C' => Rec::Create,
            b'R' => {
                if off > u32::MAX as u64 || !bound(off as u32) {
                    return err(n, at, format!("rename to file {off}, which is not bound"));
                }
                Rec::Rename { to: off as u32 }
            }
            b'D' => Rec::SyncDir,
            k => return err(n, at, format!("unknown record kind {k:#04x}")),
        };
        t.recs.push(rec);
        t.file.push(file);
        at = body;
        n += 1;
    }
    Ok(t)
}

/// Encodes the records of one file in the trace format (the tests' synthetic traces): the
/// file is bound, as the empty path, before them.
pub fn encode(recs: &[Rec]) -> Vec<u8> {
    let file = recs
        .iter()
        .map(|r| match r {
            Rec::Mark(_) | Rec::Fault { .. } => NO_FILE,
            _ => 0,
        })
        .collect();
    encode_files(&Trace {
        paths: vec![String::new()],
        recs: recs.to_vec(),
        file,
    })
}

/// Encodes a trace of several files: every path bound first, then the records.
pub fn encode_files(t: &Trace) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    let head = |out: &mut Vec<u8>, kind: u8, file: u32, off: u64, len: u64| {
        out.push(kind);
        out.extend_from_slice(&file.to_le_bytes());
        out.extend_from_slice(&off.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
    };
    for (i, p) in t.paths.iter().enumerate() {
        head(&mut out, b'N', i as u32, 0, p.len() as u64);
        out.extend_from_slice(p.as_bytes());
    }
    for (r, &file) in t.recs.iter().zip(&t.file) {
        let (kind, off, len, payload): (u8, u64, u64, &[u8]) = match r {
            Rec::Write { off, data } => (b'W', *off, data.len() as u64, data),
            Rec::Punch { off, len } => (b'P', *off, *len, &[]),
            Rec::SetLen { len } => (b'L', *len, 0, &[]),
            Rec::Sync => (b'S', 0, 0, &[]),
            Rec::Mark(v) => (b'M', *v, 0, &[]),
            Rec::Fault { op, errno } => (b'F', *op, *errno, &[]),
            Rec::Create => (b'C', 0, 0, &[]),
            Rec::Rename { to } => (b'R', *to as u64, 0, &[]),
            Rec::SyncDir => (b'D', 0, 0, &[]),
        };
        head(&mut out, kind, file, off, len);
        out.extend_from_slice(payload);
    }
    out
}
