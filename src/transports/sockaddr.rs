//! Socket addresses between their C and Python forms: what a datagram's sender is in the socket
//! module's form (with the tuple of a repeating peer cached), and the numeric addresses
//! `sendto` can take without a name lookup.

use std::ffi::CString;
use std::os::raw::c_int;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};

use crate::gil::GilRefCell;
use crate::uv::udp::SocketAddress;

/// The last sender's address: its raw form and the Python tuple made for it, handed out again
/// while the same peer keeps sending.
struct CachedAddress {
    raw: [u8; std::mem::size_of::<libc::sockaddr_in6>()],
    len: usize,
    tuple: Py<PyAny>,
}

/// The Python form of the senders of one endpoint's datagrams.
pub struct SenderCache(GilRefCell<Option<CachedAddress>>);

impl Default for SenderCache {
    fn default() -> Self {
        Self(GilRefCell::new(None))
    }
}

impl SenderCache {
    /// The address in `storage` (`len` bytes) in the socket module's form, reusing the tuple of
    /// the previous datagram when it came from the same peer.
    pub fn sender<'py>(
        &self,
        py: Python<'py>,
        storage: &libc::sockaddr_storage,
        len: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        let family = c_int::from(storage.ss_family);
        let cacheable = (family == libc::AF_INET || family == libc::AF_INET6)
            && len <= std::mem::size_of::<libc::sockaddr_in6>();
        if !cacheable {
            return socket_address(py, storage, len);
        }
        // SAFETY: the kernel wrote `len` bytes of address into the storage, which is larger.
        let raw = unsafe {
            std::slice::from_raw_parts((storage as *const libc::sockaddr_storage).cast::<u8>(), len)
        };
        if let Some(cached) = &*self.0.borrow(py) {
            if cached.raw[..cached.len] == *raw {
                return Ok(cached.tuple.bind(py).clone());
            }
        }
        let tuple = socket_address(py, storage, len)?;
        let mut cached = CachedAddress {
            raw: [0; std::mem::size_of::<libc::sockaddr_in6>()],
            len,
            tuple: tuple.clone().unbind(),
        };
        cached.raw[..len].copy_from_slice(raw);
        drop(self.0.replace(py, Some(cached)));
        Ok(tuple)
    }

    pub fn visit(&self, visit: &pyo3::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        // SAFETY: tp_traverse runs with the GIL held by the collector.
        let py = unsafe { Python::assume_attached() };
        match self.0.try_borrow(py).as_deref() {
            Some(Some(cached)) => visit.call(&cached.tuple),
            _ => Ok(()),
        }
    }

    pub fn clear(&self, py: Python<'_>) {
        drop(self.0.take(py));
    }
}

/// The length of an IPv4 or IPv6 address in `storage` (what libuv hands over without one).
pub fn inet_len(family: c_int) -> usize {
    match family {
        libc::AF_INET => std::mem::size_of::<libc::sockaddr_in>(),
        libc::AF_INET6 => std::mem::size_of::<libc::sockaddr_in6>(),
        _ => 0,
    }
}

/// A socket address the kernel takes, from a Python address of numbers for `family` (what
/// `socket.sendto` parses without a name lookup); None for anything else.
pub fn numeric_address(family: c_int, addr: &Bound<'_, PyAny>) -> Option<SocketAddress> {
    let tuple = addr.cast::<PyTuple>().ok()?;
    let host = tuple.get_item(0).ok()?;
    let host = CString::new(host.cast::<pyo3::types::PyString>().ok()?.to_str().ok()?).ok()?;
    let port: u16 = tuple.get_item(1).ok()?.extract().ok()?;
    match (family, tuple.len()) {
        (libc::AF_INET, 2) => {
            // SAFETY: sockaddr_in is plain C data.
            let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = port.to_be();
            // SAFETY: a NUL-terminated string and room for an IPv4 address.
            let parsed =
                unsafe { inet_pton(libc::AF_INET, host.as_ptr(), (&raw mut sin.sin_addr).cast()) };
            (parsed == 1).then_some(SocketAddress::V4(sin))
        }
        (libc::AF_INET6, 2..=4) => {
            let flowinfo: u32 = match tuple.get_item(2) {
                Ok(value) => value.extract().ok()?,
                Err(_) => 0,
            };
            let scope_id: u32 = match tuple.get_item(3) {
                Ok(value) => value.extract().ok()?,
                Err(_) => 0,
            };
            if flowinfo > 0xfffff {
                return None;
            }
            // SAFETY: sockaddr_in6 is plain C data.
            let mut sin6: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = port.to_be();
            sin6.sin6_flowinfo = flowinfo.to_be();
            sin6.sin6_scope_id = scope_id;
            // SAFETY: a NUL-terminated string and room for an IPv6 address.
            let parsed = unsafe {
                inet_pton(
                    libc::AF_INET6,
                    host.as_ptr(),
                    (&raw mut sin6.sin6_addr).cast(),
                )
            };
            (parsed == 1).then_some(SocketAddress::V6(sin6))
        }
        _ => None,
    }
}

/// The socket module's form of an address of `len` bytes (its `makesockaddr`).
pub fn socket_address<'py>(
    py: Python<'py>,
    storage: &libc::sockaddr_storage,
    len: usize,
) -> PyResult<Bound<'py, PyAny>> {
    if len == 0 {
        return Ok(py.None().into_bound(py));
    }
    match c_int::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Ok((
                ipv4_text(sin.sin_addr.s_addr.to_ne_bytes()),
                u16::from_be(sin.sin_port),
            )
                .into_pyobject(py)?
                .into_any())
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6 = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            Ok((
                ipv6_text(&sin6.sin6_addr.s6_addr),
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
            let path_len = len.saturating_sub(offset).min(sun.sun_path.len());
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
    /// POSIX inet_pton (not bound by the libc crate).
    fn inet_pton(af: c_int, src: *const libc::c_char, dst: *mut libc::c_void) -> c_int;
}

/// Dotted-decimal text of an IPv4 address given in network order.
fn ipv4_text(octets: [u8; 4]) -> String {
    let mut text = String::with_capacity(15);
    for (i, octet) in octets.into_iter().enumerate() {
        if i > 0 {
            text.push('.');
        }
        if octet >= 100 {
            text.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            text.push(char::from(b'0' + octet / 10 % 10));
        }
        text.push(char::from(b'0' + octet % 10));
    }
    text
}

/// inet_ntop's text for an IPv6 address (what the socket module shows), e.g. `::1` or
/// `::ffff:127.0.0.1`.
fn ipv6_text(octets: &[u8; 16]) -> String {
    let mut buffer = [0 as libc::c_char; 64];
    // SAFETY: the address bytes and the output buffer are valid for the sizes given.
    let text = unsafe {
        inet_ntop(
            libc::AF_INET6,
            octets.as_ptr().cast(),
            buffer.as_mut_ptr(),
            buffer.len() as libc::socklen_t,
        )
    };
    if text.is_null() {
        return std::net::Ipv6Addr::from(*octets).to_string();
    }
    // SAFETY: inet_ntop wrote a NUL-terminated string into the buffer.
    unsafe { std::ffi::CStr::from_ptr(buffer.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::ipv4_text;

    #[test]
    fn ipv4_text_is_dotted_decimal() {
        assert_eq!(ipv4_text([127, 0, 0, 1]), "127.0.0.1");
        assert_eq!(ipv4_text([255, 10, 100, 9]), "255.10.100.9");
        assert_eq!(ipv4_text([0, 0, 0, 0]), "0.0.0.0");
    }
}
