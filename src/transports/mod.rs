//! Transports and socket operations: the per-read and per-write halves of asyncio's, natively.

mod buffer;
mod datagram;
mod private_fd;
mod process;
mod python_class;
mod server;
mod sock_ops;
mod sockaddr;
mod socket_transport;
mod stream;
mod syscall;
mod udp;

use pyo3::prelude::*;

use crate::gil::GilRefCell;
pub use datagram::DatagramCore;
pub use process::ChildProcess;
pub use server::{ServerClients, ServerListener};
pub use sock_ops::SockOp;
pub use socket_transport::{install_transport_class, open_pipe_transport, open_socket_transport};
pub use stream::{StreamCore, StreamEvent};
pub use udp::{open_udp_transport, DatagramEvent, UdpCore};

/// The Python transport a native half works for, until the cyclic GC clears it.
pub struct TransportRef(GilRefCell<Option<Py<PyAny>>>);

impl TransportRef {
    pub fn new(transport: Py<PyAny>) -> Self {
        Self(GilRefCell::new(Some(transport)))
    }

    pub fn get(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.0
            .borrow(py)
            .as_ref()
            .map(|transport| transport.clone_ref(py))
    }

    /// For `__traverse__` (which runs with the GIL held by the collector).
    pub fn visit(&self, visit: &pyo3::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        // SAFETY: tp_traverse runs with the GIL held by the collector.
        let py = unsafe { Python::assume_attached() };
        match self.0.try_borrow(py).as_deref() {
            Some(Some(transport)) => visit.call(transport),
            _ => Ok(()),
        }
    }

    /// For `__clear__`.
    pub fn clear(&self, py: Python<'_>) {
        drop(self.0.take(py));
    }
}
