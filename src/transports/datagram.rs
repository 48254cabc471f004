//! The per-datagram half of `uvloop._transports.UnixDatagramTransport`, the transport of AF_UNIX
//! datagram endpoints (which libuv cannot carry: its receive callback drops the length of the
//! sender's address, which abstract and unnamed Unix addresses need, and its send pads every Unix
//! address to full length), and asyncio's selector datagram transport otherwise: receiving a
//! datagram into the protocol, and `sendto` on a connected socket with nothing queued.
//!
//! Everything else `sendto` meets goes to asyncio's own `sendto`, which then does exactly what it
//! does on asyncio.

use std::os::raw::c_int;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::buffer::{copy_from_read_buffer, read_buffer, READ_BUFFER_SIZE};
use super::sockaddr::SenderCache;
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

#[pyclass(frozen, module = "uvloop.loop", name = "DatagramCore")]
pub struct DatagramCore {
    fd: c_int,
    /// The Python transport (its `_protocol` and `_conn_lost` are read at each use).
    transport: TransportRef,
    bound: GilRefCell<Option<SetUp>>,
    senders: SenderCache,
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
}

#[pymethods]
impl DatagramCore {
    #[new]
    fn new(transport: Py<PyAny>, fd: c_int) -> Self {
        Self {
            fd,
            transport: TransportRef::new(transport),
            bound: GilRefCell::new(None),
            senders: SenderCache::default(),
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
            // An unnamed peer (a socketpair's other end) has the peer name "".
            connected: !peer.is_none(),
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
                let sender = self.senders.sender(py, &storage, storage_len as usize)?;
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
        // Unconnected sends (to a path, or to an abstract name) go to asyncio's sendto.
        let _ = addr;
        if !connected {
            return fallback();
        }
        let sent = syscall::send(self.fd, payload);
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
        self.senders.visit(&visit)?;
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
        self.senders.clear(py);
    }
}
