//! How every export runs: panics caught, errors turned into a status code plus this
//! thread's last-error message.

use super::abi::hashdir_status::{self, *};
use crate::Error;
use std::any::Any;
use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Why a call failed, as C will see it.
#[derive(Debug)]
pub(super) struct Failure {
    pub(super) status: hashdir_status,
    pub(super) message: String,
}

impl Failure {
    pub(super) fn invalid(message: impl Into<String>) -> Failure {
        Error::InvalidArgument(message.into()).into()
    }

    pub(super) fn panic(message: impl Into<String>) -> Failure {
        Failure {
            status: HASHDIR_ERR_PANIC,
            message: message.into(),
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure {
            status: status_of(&e),
            message: e.to_string(),
        }
    }
}

pub(super) type CallResult<T = ()> = Result<T, Failure>;

fn status_of(e: &Error) -> hashdir_status {
    match e {
        Error::InvalidArgument(_) => HASHDIR_ERR_INVALID_ARGUMENT,
        // C callers cannot act differently on an HDF5 failure than on an OS one: both
        // mean the bytes could not be moved.
        Error::Io { .. } | Error::Hdf5 { .. } | Error::NoSpace { .. } | Error::Unusable { .. } => {
            HASHDIR_ERR_IO
        }
        Error::Corrupt { .. } => HASHDIR_ERR_CORRUPT,
        Error::NotHashdir { .. } => HASHDIR_ERR_NOT_HASHDIR,
        Error::Locked { .. } => HASHDIR_ERR_LOCKED,
        Error::NotFound { .. } => HASHDIR_ERR_NOT_FOUND,
        Error::BufferTooSmall { .. } => HASHDIR_ERR_BUFFER_TOO_SMALL,
    }
}

thread_local! {
    // A CString so `hashdir_last_error` can hand out a pointer without allocating.
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(function: &str, message: &str) {
    let text = format!("{function}: {message}").replace('\0', "\\0");
    let text = CString::new(text).unwrap_or_default();
    // During thread teardown the slot may be gone; the status code still reports the failure.
    let _ = LAST_ERROR.try_with(|slot| *slot.borrow_mut() = text);
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "panic with a non-string payload"
    }
}

/// Runs an export's body, turning a panic into `on_panic` and a last-error message, so
/// no unwind ever reaches C (which would be undefined behaviour).
pub(super) fn guard<T>(function: &str, on_panic: T, body: impl FnOnce() -> T) -> T {
    // Raw pointers make the closures !UnwindSafe; nothing they touch is observed after
    // a panic except a writer, which poisons itself (see `writer.rs`).
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|payload| {
        set_last_error(function, &format!("panic: {}", panic_message(&*payload)));
        on_panic
    })
}

/// [`guard`] for the status-returning exports: a failure sets this thread's last error.
pub(super) fn ffi_call(function: &str, body: impl FnOnce() -> CallResult) -> hashdir_status {
    guard(function, HASHDIR_ERR_PANIC, || match body() {
        Ok(()) => HASHDIR_OK,
        Err(failure) => {
            set_last_error(function, &failure.message);
            failure.status
        }
    })
}

const VERSION: &CStr =
    match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
        Ok(v) => v,
        Err(_) => panic!("crate version contains a NUL byte"),
    };

/// The library version, e.g. "0.1.0".
///
/// # Threads
/// Any thread.
///
/// # Memory
/// A static string owned by the library; do not free it.
#[no_mangle]
pub extern "C" fn hashdir_version() -> *const c_char {
    VERSION.as_ptr()
}

/// A description of the last failed `hashdir_*` call on this thread, naming the
/// function; "" if none has failed yet. Never NULL. Successful calls leave it unchanged.
///
/// # Threads
/// Each thread has its own message.
///
/// # Memory
/// Owned by the library; valid until the next failing `hashdir_*` call on this thread
/// or until the thread exits. Copy it to keep it.
#[no_mangle]
pub extern "C" fn hashdir_last_error() -> *const c_char {
    guard("hashdir_last_error", c"".as_ptr(), || {
        LAST_ERROR
            .try_with(|slot| slot.borrow().as_ptr())
            .unwrap_or(c"".as_ptr())
    })
}

/// The name of a status code, e.g. "HASHDIR_ERR_LOCKED"; "HASHDIR_UNKNOWN_STATUS" for a
/// value that is not one. Takes a plain integer so any value C holds is safe to pass.
///
/// # Threads
/// Any thread.
///
/// # Memory
/// A static string owned by the library; do not free it.
#[no_mangle]
pub extern "C" fn hashdir_status_name(status: u32) -> *const c_char {
    let name = match status {
        0 => c"HASHDIR_OK",
        1 => c"HASHDIR_ERR_INVALID_ARGUMENT",
        2 => c"HASHDIR_ERR_IO",
        3 => c"HASHDIR_ERR_CORRUPT",
        4 => c"HASHDIR_ERR_NOT_HASHDIR",
        5 => c"HASHDIR_ERR_LOCKED",
        6 => c"HASHDIR_ERR_NOT_FOUND",
        7 => c"HASHDIR_ERR_BUFFER_TOO_SMALL",
        8 => c"HASHDIR_ERR_PANIC",
        _ => c"HASHDIR_UNKNOWN_STATUS",
    };
    name.as_ptr()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last_error() -> String {
        // SAFETY: hashdir_last_error returns a valid NUL-terminated string.
        unsafe { CStr::from_ptr(hashdir_last_error()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn panic_becomes_status_and_message() {
        let status = ffi_call("hashdir_test", || panic!("boom {}", 42));
        assert_eq!(status, HASHDIR_ERR_PANIC);
        assert_eq!(last_error(), "hashdir_test: panic: boom 42");
    }

    #[test]
    fn error_maps_to_status_and_success_keeps_message() {
        let status = ffi_call("hashdir_test", || {
            Err(Error::Locked {
                path: "/x.h5".into(),
            }
            .into())
        });
        assert_eq!(status, HASHDIR_ERR_LOCKED);
        assert_eq!(ffi_call("hashdir_other", || Ok(())), HASHDIR_OK);
        assert!(
            last_error().starts_with("hashdir_test: /x.h5 is locked"),
            "{}",
            last_error()
        );
    }

    #[test]
    fn message_with_nul_is_kept() {
        ffi_call("hashdir_test", || Err(Failure::invalid("a\0b")));
        assert_eq!(last_error(), "hashdir_test: invalid argument: a\\0b");
    }

    #[test]
    fn last_error_is_per_thread() {
        ffi_call("hashdir_test", || Err(Failure::invalid("here")));
        let other = std::thread::spawn(last_error).join().unwrap();
        assert_eq!(other, "");
    }

    #[test]
    fn status_names_match_variants() {
        let all = [
            HASHDIR_OK,
            HASHDIR_ERR_INVALID_ARGUMENT,
            HASHDIR_ERR_IO,
            HASHDIR_ERR_CORRUPT,
            HASHDIR_ERR_NOT_HASHDIR,
            HASHDIR_ERR_LOCKED,
            HASHDIR_ERR_NOT_FOUND,
            HASHDIR_ERR_BUFFER_TOO_SMALL,
            HASHDIR_ERR_PANIC,
        ];
        for status in all {
            // SAFETY: hashdir_status_name returns a static NUL-terminated string.
            let name = unsafe { CStr::from_ptr(hashdir_status_name(status as u32)) };
            assert_eq!(name.to_str().unwrap(), format!("{status:?}"));
        }
    }
}
