//! Native reads for the transports whose other parts are asyncio's own (datagram endpoints,
//! pipes): one system call into the loop thread's read buffer and an exact-size `bytes`, where
//! `sock.recvfrom(max_size)`/`os.read(fd, max_size)` would make a 256 KiB `bytes` and shrink it,
//! and None where they would raise BlockingIOError.

use std::os::raw::c_int;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};

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

/// `sock.recvfrom(max_size)` on a non-blocking socket, without the exception when there is
/// nothing to read: None then.
#[pyfunction]
pub fn recvfrom(py: Python<'_>, fd: c_int) -> PyResult<Option<Py<PyTuple>>> {
    // SAFETY: sockaddr_storage is plain C data, large enough for every address family.
    let mut address: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut address_len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let received = with_read_buffer(|buffer| loop {
        // SAFETY: the buffer and the address storage are valid for the sizes given.
        let n = unsafe {
            libc::recvfrom(
                fd,
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                0,
                (&raw mut address).cast(),
                &mut address_len,
            )
        };
        if n >= 0 {
            return Ok(Some(PyBytes::new(py, &buffer[..n as usize])));
        }
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN) => return Ok(None),
            _ => return Err(os_error(err)),
        }
    })?;
    let Some(data) = received else {
        return Ok(None);
    };
    let address = socket_address(py, &address, address_len)?;
    Ok(Some(PyTuple::new(py, [data.into_any(), address])?.unbind()))
}

/// The socket module's form of an address (its `makesockaddr`).
fn socket_address<'py>(
    py: Python<'py>,
    storage: &libc::sockaddr_storage,
    len: libc::socklen_t,
) -> PyResult<Bound<'py, PyAny>> {
    if len == 0 {
        return Ok(py.None().into_bound(py));
    }
    match c_int::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Ok((ip.to_string(), u16::from_be(sin.sin_port))
                .into_pyobject(py)?
                .into_any())
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6 = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            let ip = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Ok((
                ipv6_text(&ip),
                u16::from_be(sin6.sin6_port),
                u32::from_be(sin6.sin6_flowinfo),
                sin6.sin6_scope_id,
            )
                .into_pyobject(py)?
                .into_any())
        }
        libc::AF_UNIX => {
            // SAFETY: the family says the storage holds a sockaddr_un.
            let sun =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_un>() };
            let offset = std::mem::size_of::<libc::sa_family_t>();
            let path_len = (len as usize)
                .saturating_sub(offset)
                .min(sun.sun_path.len());
            // SAFETY: sun_path holds `path_len` initialised bytes (the kernel wrote the address).
            let path =
                unsafe { std::slice::from_raw_parts(sun.sun_path.as_ptr().cast::<u8>(), path_len) };
            if path.first() == Some(&0) {
                // Linux abstract namespace: the raw bytes.
                return Ok(PyBytes::new(py, path).into_any());
            }
            let end = path.iter().position(|&b| b == 0).unwrap_or(path.len());
            // SAFETY: valid pointer and length; decoding failures come back as NULL + error.
            unsafe {
                Bound::from_owned_ptr_or_err(
                    py,
                    ffi::PyUnicode_DecodeFSDefaultAndSize(
                        path.as_ptr().cast(),
                        end as ffi::Py_ssize_t,
                    ),
                )
            }
        }
        family => Ok((family, PyBytes::new(py, &[]))
            .into_pyobject(py)?
            .into_any()),
    }
}

extern "C" {
    /// POSIX inet_ntop (not bound by the libc crate).
    fn inet_ntop(
        af: c_int,
        src: *const libc::c_void,
        dst: *mut libc::c_char,
        size: libc::socklen_t,
    ) -> *const libc::c_char;
}

/// inet_ntop's text for an IPv6 address (what the socket module shows), e.g. `::1` or
/// `::ffff:127.0.0.1`.
fn ipv6_text(ip: &std::net::Ipv6Addr) -> String {
    let mut buffer = [0 as libc::c_char; 64];
    // SAFETY: the address bytes and the output buffer are valid for the sizes given.
    let text = unsafe {
        inet_ntop(
            libc::AF_INET6,
            ip.octets().as_ptr().cast(),
            buffer.as_mut_ptr(),
            buffer.len() as libc::socklen_t,
        )
    };
    if text.is_null() {
        return ip.to_string();
    }
    // SAFETY: inet_ntop wrote a NUL-terminated string into the buffer.
    unsafe { std::ffi::CStr::from_ptr(buffer.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}
