//! The descriptors libuv watches are its own.
//!
//! libuv aborts the process when it changes what it watches on a descriptor that was closed (or
//! closed and reused) behind its back. A socket object belongs to the user, who may close it or
//! `os.close()` its fileno; asyncio then raises, libuv would abort. So the libuv handle over a
//! socket gets a duplicate of the socket's descriptor that only the handle closes, and the socket
//! object keeps its own, closed by the transport (or the server) as asyncio closes it.

use std::os::raw::c_int;

use pyo3::PyErr;

use crate::uv::error::os_error;

/// Hands `open` (which gives the descriptor to a libuv handle) a close-on-exec duplicate of
/// `fd`, closed again if `open` fails.
pub fn with_duplicate<T, E>(fd: c_int, open: impl FnOnce(c_int) -> Result<T, E>) -> Result<T, PyErr>
where
    PyErr: From<E>,
{
    let duplicate = duplicate(fd)?;
    open(duplicate).map_err(|err| {
        // SAFETY: libuv did not take the duplicate: it is ours to close, once.
        unsafe { libc::close(duplicate) };
        PyErr::from(err)
    })
}

/// A close-on-exec duplicate of `fd`, owned by the caller.
pub fn duplicate(fd: c_int) -> Result<c_int, PyErr> {
    // SAFETY: a plain system call on a descriptor number; the result is checked.
    let duplicate = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if duplicate < 0 {
        return Err(os_error(std::io::Error::last_os_error()));
    }
    Ok(duplicate)
}
