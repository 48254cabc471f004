//! The native read of the pipe transports (whose other parts are asyncio's own): one system
//! call into the loop thread's read buffer and an exact-size `bytes`, where `os.read(fd,
//! max_size)` would make a 256 KiB `bytes` and shrink it, and None where it would raise
//! BlockingIOError.

use std::os::raw::c_int;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::stream::with_read_buffer;
use crate::uv::error::os_error;

/// `os.read(fd, max_size)` on a non-blocking fd, without the exception when there is nothing
/// to read: None then.
#[pyfunction]
pub fn read(py: Python<'_>, fd: c_int) -> PyResult<Option<Py<PyBytes>>> {
    with_read_buffer(|buffer| loop {
        // SAFETY: the buffer is valid for its length.
        let n = unsafe { libc::read(fd, buffer.as_mut_ptr().cast(), buffer.len()) };
        if n >= 0 {
            return Ok(Some(PyBytes::new(py, &buffer[..n as usize]).unbind()));
        }
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN) => return Ok(None),
            _ => return Err(os_error(err)),
        }
    })
}
