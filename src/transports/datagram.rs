//! The per-datagram half of `uvloop._transports.DatagramTransport`, which is asyncio's selector
//! datagram transport otherwise: receiving a datagram into the protocol, and the common case of
//! `sendto` (bytes, nothing queued, an address given as numbers or none needed).
//!
//! Everything else `sendto` meets (other buffer types, a queue to wait behind, a lost
//! connection, a wrong or symbolic address, a full socket buffer) goes to asyncio's own
//! `sendto`, which then does exactly what it does on asyncio.

use std::ffi::CString;
use std::os::raw::c_int;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};

use super::buffer::{copy_from_read_buffer, read_buffer, READ_BUFFER_SIZE};
use super::syscall;
use super::TransportRef;
use crate::gil::GilRefCell;
use crate::uv::error::errno_error;

/// What `bind` learns once asyncio's `__init__` has set the transport up.
struct SetUp {
    /// asyncio's queue of `(data, addr)` waiting for the socket to accept them.
    queue: Py<PyAny>,
    /// The peer given as `remote_addr`, which every `sendto` must match.
    address: Option<Py<PyAny>>,
    /// The socket has a peer (asyncio then uses `send`, whatever the address).
    connected: bool,
    /// asyncio's `sendto`, bound to the transport.
    python_sendto: Py<PyAny>,
}

/// The last sender's address: its raw form and the Python tuple made for it, handed out again
/// while the same peer keeps sending.
struct CachedAddress {
    raw: [u8; std::mem::size_of::<libc::sockaddr_in6>()],
    len: usize,
    tuple: Py<PyAny>,
}

#[pyclass(frozen, module = "uvloop.loop", name = "DatagramCore")]
pub struct DatagramCore {
    fd: c_int,
    family: c_int,
    /// The Python transport (its `_protocol` and `_conn_lost` are read at each use).
    transport: TransportRef,
    bound: GilRefCell<Option<SetUp>>,
    last_address: GilRefCell<Option<CachedAddress>>,
}

impl DatagramCore {
    fn transport(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.transport
            .get(py)
            .ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("transport is gone"))
    }

    /// Tells the protocol about a failed system call, as asyncio does with an OSError.
    fn error_received(
        &self,
        py: Python<'_>,
        transport: &Bound<'_, PyAny>,
        errno: c_int,
    ) -> PyResult<()> {
        let err = errno_error(errno);
        transport
            .getattr(pyo3::intern!(py, "_protocol"))?
            .call_method1(pyo3::intern!(py, "error_received"), (err.into_value(py),))?;
        Ok(())
    }

    /// The address of a datagram's sender in the socket module's form, reusing the tuple of
    /// the previous datagram when it came from the same peer.
    fn sender<'py>(
        &self,
        py: Python<'py>,
        storage: &libc::sockaddr_storage,
        len: libc::socklen_t,
    ) -> PyResult<Bound<'py, PyAny>> {
        let len = len as usize;
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
        if let Some(cached) = &*self.last_address.borrow(py) {
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
        let previous = self.last_address.replace(py, Some(cached));
        drop(previous);
        Ok(tuple)
    }
}

#[pymethods]
impl DatagramCore {
    #[new]
    fn new(transport: Py<PyAny>, fd: c_int, family: c_int) -> Self {
        Self {
            fd,
            family,
            transport: TransportRef::new(transport),
            bound: GilRefCell::new(None),
            last_address: GilRefCell::new(None),
        }
    }

    /// Called at the end of the transport's `__init__`, with asyncio's `sendto` bound to it.
    fn bind(&self, py: Python<'_>, python_sendto: Py<PyAny>) -> PyResult<()> {
        let transport = self.transport(py)?;
        let transport = transport.bind(py);
        let address = transport.getattr(pyo3::intern!(py, "_address"))?;
        let peer = transport
            .getattr(pyo3::intern!(py, "_extra"))?
            .get_item(pyo3::intern!(py, "peername"))?;
        let bound = SetUp {
            queue: transport.getattr(pyo3::intern!(py, "_buffer"))?.unbind(),
            address: (address.is_truthy()?).then(|| address.unbind()),
            connected: peer.is_truthy()?,
            python_sendto,
        };
        drop(self.bound.replace(py, Some(bound)));
        Ok(())
    }

    /// The transport's reader: one datagram to the protocol's `datagram_received`, or a failed
    /// receive to its `error_received`.
    fn read_ready(&self, py: Python<'_>) -> PyResult<()> {
        let transport = self.transport(py)?;
        let transport = transport.bind(py);
        if transport
            .getattr(pyo3::intern!(py, "_conn_lost"))?
            .is_truthy()?
        {
            return Ok(());
        }
        // SAFETY: sockaddr_storage is plain C data, large enough for every address family.
        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut storage_len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let received = syscall::recvfrom(
            self.fd,
            read_buffer(),
            READ_BUFFER_SIZE,
            &mut storage,
            &mut storage_len,
        )
        .map(|n| copy_from_read_buffer(py, n));
        match received {
            Ok(data) => {
                let sender = self.sender(py, &storage, storage_len)?;
                transport
                    .getattr(pyo3::intern!(py, "_protocol"))?
                    .call_method1(pyo3::intern!(py, "datagram_received"), (data, sender))?;
                Ok(())
            }
            Err(libc::EAGAIN) => Ok(()),
            Err(errno) => self.error_received(py, transport, errno),
        }
    }

    /// asyncio's `sendto`, sending at once in the common case.
    #[pyo3(signature = (data, addr=None))]
    fn sendto(
        &self,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        addr: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        // Taken out of the cell: the fallback and the protocol may call back in.
        let Some((queue, address, connected, python_sendto)) =
            self.bound.borrow(py).as_ref().map(|bound| {
                (
                    bound.queue.clone_ref(py),
                    bound.address.as_ref().map(|address| address.clone_ref(py)),
                    bound.connected,
                    bound.python_sendto.clone_ref(py),
                )
            })
        else {
            return Err(pyo3::exceptions::PyRuntimeError::new_err(
                "transport is not set up",
            ));
        };
        let fallback = move || python_sendto.call1(py, (data, addr)).map(drop);
        let Ok(bytes) = data.cast_exact::<PyBytes>() else {
            return fallback();
        };
        let payload = bytes.as_bytes();
        if payload.is_empty() {
            return fallback();
        }
        let addr = match (&address, addr) {
            (Some(address), Some(given)) if !given.is_none() => {
                if !given.eq(address).unwrap_or(false) {
                    return fallback();
                }
                Some(address.bind(py).clone())
            }
            (Some(address), _) => Some(address.bind(py).clone()),
            (None, given) => given.cloned(),
        };
        let transport = self.transport(py)?;
        let transport = transport.bind(py);
        if transport
            .getattr(pyo3::intern!(py, "_conn_lost"))?
            .is_truthy()?
            || queue.bind(py).len()? != 0
        {
            return fallback();
        }
        let sent = if connected {
            syscall::send(self.fd, payload)
        } else {
            let Some(target) = addr.and_then(|addr| numeric_address(self.family, &addr)) else {
                return fallback();
            };
            syscall::sendto(self.fd, payload, &target)
        };
        match sent {
            Ok(_) => Ok(()),
            Err(libc::EAGAIN) => fallback(),
            Err(errno) => self.error_received(py, transport, errno),
        }
    }

    fn __traverse__(&self, visit: pyo3::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        // SAFETY: tp_traverse runs with the GIL held by the collector.
        let py = unsafe { Python::assume_attached() };
        self.transport.visit(&visit)?;
        if let Some(bound) = self.bound.try_borrow(py) {
            if let Some(bound) = &*bound {
                visit.call(&bound.queue)?;
                visit.call(&bound.python_sendto)?;
                if let Some(address) = &bound.address {
                    visit.call(address)?;
                }
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        // SAFETY: tp_clear runs with the GIL held by the collector.
        let py = unsafe { Python::assume_attached() };
        self.transport.clear(py);
        drop(self.bound.take(py));
        drop(self.last_address.take(py));
    }
}

/// A socket address the kernel takes, from a Python address of numbers for `family` (what
/// `socket.sendto` parses without a name lookup); None for anything else.
fn numeric_address(family: c_int, addr: &Bound<'_, PyAny>) -> Option<syscall::SocketAddress> {
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
            (parsed == 1).then_some(syscall::SocketAddress::V4(sin))
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
            (parsed == 1).then_some(syscall::SocketAddress::V6(sin6))
        }
        _ => None,
    }
}

/// The socket module's form of an address (its `makesockaddr`).
fn socket_address<'py>(
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
