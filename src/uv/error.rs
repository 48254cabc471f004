//! libuv error codes as Python exceptions.

use std::ffi::CStr;
use std::os::raw::c_int;

use pyo3::exceptions::PyOSError;
use pyo3::PyErr;

use super::sys;

/// A negative libuv status code (on Unix, `-errno`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UvError(pub c_int);

impl UvError {
    /// Turns a libuv return value into a `Result`.
    pub fn check(status: c_int) -> Result<c_int, UvError> {
        if status < 0 {
            Err(UvError(status))
        } else {
            Ok(status)
        }
    }

    pub fn errno(self) -> c_int {
        -self.0
    }

    pub fn message(self) -> String {
        // SAFETY: uv_strerror returns a pointer to a static NUL-terminated string for any code
        // (unknown codes get a leaked "Unknown system error" string), never NULL.
        unsafe { CStr::from_ptr(sys::uv_strerror(self.0)) }
            .to_string_lossy()
            .into_owned()
    }
}

impl From<std::io::Error> for UvError {
    fn from(err: std::io::Error) -> UvError {
        UvError(-err.raw_os_error().unwrap_or(libc::EIO))
    }
}

impl From<UvError> for PyErr {
    /// `OSError(errno, strerror)`: CPython picks the matching subclass (ConnectionResetError, ...),
    /// and the message is the C library's, as `socket` gives it.
    fn from(err: UvError) -> PyErr {
        let errno = err.errno();
        // SAFETY: strerror returns a pointer to a NUL-terminated string that stays valid until the
        // next strerror call on this thread; it is copied out before anything else runs.
        let text = unsafe { CStr::from_ptr(libc::strerror(errno)) }
            .to_string_lossy()
            .into_owned();
        PyOSError::new_err((errno, text))
    }
}

/// `OSError(errno, strerror)` for a system call's error (PyO3's own conversion drops the errno).
pub fn os_error(err: std::io::Error) -> PyErr {
    match err.raw_os_error() {
        Some(errno) => UvError(-errno).into(),
        None => PyOSError::new_err(err.to_string()),
    }
}

/// `OSError(errno, strerror)` for an errno value.
pub fn errno_error(errno: c_int) -> PyErr {
    UvError(-errno).into()
}
