//! The writer's exclusive lock: an open-file-description (OFD) write lock on one byte.
//!
//! OFD locks belong to the open file description, not to the process, so a second writer in
//! the same process conflicts just like one in another process (classic POSIX `fcntl` locks
//! would silently succeed there and be dropped by any `close` of the file). The locked byte
//! lies far beyond any data so it never interacts with HDF5 (whose own flock-based locking we
//! turn off) or with readers' I/O. The lock goes away with the last descriptor of that open
//! file, i.e. when the writer closes or its process dies.

use std::fs::File;
use std::io;
use std::os::unix::io::AsRawFd;
use std::path::Path;

use crate::error::{Error, Result};

/// The byte we lock; no hashdir file comes anywhere near 4 EiB.
const LOCK_BYTE: i64 = 1 << 62;

/// Takes the writer lock on `file` without waiting: `Error::Locked` if another open file
/// description (in any process) holds it.
pub(super) fn lock_writer(file: &File, path: &Path) -> Result<()> {
    match set_lock(file, libc::F_WRLCK as libc::c_short) {
        Ok(()) => Ok(()),
        Err(e) if is_contended(&e) => Err(Error::Locked {
            path: path.to_path_buf(),
        }),
        Err(e) => Err(Error::io("fcntl(F_OFD_SETLK)", path, e)),
    }
}

fn is_contended(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES))
}

fn set_lock(file: &File, kind: libc::c_short) -> io::Result<()> {
    // SAFETY: `flock` is plain old data; all-zero is a valid value and OFD locks require l_pid 0.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = LOCK_BYTE;
    fl.l_len = 1;
    loop {
        // SAFETY: the descriptor is open for the lifetime of `file`, and `fl` is a valid,
        // initialised `struct flock` that outlives the call.
        let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &mut fl) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}
