//! The one error type of the library; `ffi` maps each variant to a status code.

use std::fmt;
use std::path::PathBuf;

/// The library's result type.
pub type Result<T> = std::result::Result<T, Error>;

/// Every error of the library; the C API maps each variant to a `hashdir_status`.
#[derive(Debug)]
pub enum Error {
    /// A caller passed something unusable (NULL, bad size, bad option).
    InvalidArgument(String),
    /// An operating-system call failed.
    Io {
        /// The call that failed (`open`, `pwrite`, `fdatasync`, ...).
        op: &'static str,
        /// The file it was called on.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// An HDF5 call failed.
    Hdf5 {
        /// The HDF5 call that failed.
        op: &'static str,
        /// HDF5's error stack.
        detail: String,
    },
    /// A checksum or structural check failed.
    Corrupt {
        /// The structure that failed (`root`, `bucket page`, ...).
        what: &'static str,
        /// Its file offset (0 when none applies).
        offset: u64,
        /// The check that failed.
        detail: String,
    },
    /// The file is not HDF5, not a hashdir file, or of an unknown format version.
    NotHashdir {
        /// The file.
        path: PathBuf,
        /// What ruled it out.
        reason: String,
    },
    /// Another writer holds the file.
    Locked {
        /// The file.
        path: PathBuf,
    },
    /// The file does not exist and creation was not asked for.
    NotFound {
        /// The file.
        path: PathBuf,
    },
    /// `get`'s output buffer holds fewer values than the keys have.
    BufferTooSmall {
        /// Values the keys have together.
        needed: usize,
        /// Values the buffer holds.
        capacity: usize,
    },
    /// The file's data area has no room left (its size is fixed when the file is created).
    NoSpace {
        /// Bytes asked for.
        needed: u64,
        /// Bytes of the data area.
        capacity: u64,
    },
    /// The writer refuses work after a failure it cannot recover from in place (a failed
    /// fsync, failed background work): reopening the file recovers every durable batch.
    /// `errno` is the operating-system error of the first failure, if it was one.
    Unusable {
        /// The first failure.
        why: String,
        /// Its operating-system error, if it was one.
        errno: Option<i32>,
    },
}

impl Error {
    /// The operating-system error behind this one, if any.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Io { source, .. } => source.raw_os_error(),
            Error::Unusable { errno, .. } => *errno,
            _ => None,
        }
    }

    pub(crate) fn corrupt(what: &'static str, offset: u64, detail: impl Into<String>) -> Error {
        Error::Corrupt {
            what,
            offset,
            detail: detail.into(),
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidArgument(m) => write!(f, "invalid argument: {m}"),
            Error::Io { op, path, source } => {
                write!(f, "I/O error in {op} on {}: {source}", path.display())
            }
            Error::Hdf5 { op, detail } => write!(f, "HDF5 error in {op}: {detail}"),
            Error::Corrupt {
                what,
                offset,
                detail,
            } => write!(f, "corrupt {what} at file offset {offset}: {detail}"),
            Error::NotHashdir { path, reason } => {
                write!(f, "{} is not a hashdir file: {reason}", path.display())
            }
            Error::Locked { path } => write!(
                f,
                "{} is locked: another writer has it open",
                path.display()
            ),
            Error::NotFound { path } => write!(
                f,
                "{} does not exist (pass HASHDIR_CREATE to create it)",
                path.display()
            ),
            Error::BufferTooSmall { needed, capacity } => write!(
                f,
                "value buffer too small: {needed} values needed, capacity {capacity}"
            ),
            Error::Unusable { why, .. } => write!(
                f,
                "the writer is unusable after an earlier failure ({why}); reopen the file: \
                 every durable batch is kept"
            ),
            Error::NoSpace { needed, capacity } => write!(
                f,
                "the file's data area is full ({capacity} bytes, set by the capacity it was \
                 created with; {needed} more bytes needed): copy it into a file created with \
                 a larger capacity"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
