//! Transports and socket operations: the per-read and per-write halves of asyncio's, natively.

mod buffer;
mod datagram;
mod pipe;
mod sock_ops;
mod stream;
mod syscall;
mod write_queue;

use pyo3::prelude::*;

use crate::gil::GilRefCell;
use crate::handles::Outcome;
pub use datagram::DatagramCore;
pub use pipe::{PipeReader, PipeWriteQueue};
pub use sock_ops::SockOp;
pub use stream::StreamTransport;

/// What the loop's selector notifies directly (without a Handle) when its fd is ready.
pub enum IoTarget {
    Stream(Py<StreamTransport>),
    Sock(Py<SockOp>),
}

impl IoTarget {
    pub fn clone_ref(&self, py: Python<'_>) -> Self {
        match self {
            IoTarget::Stream(stream) => IoTarget::Stream(stream.clone_ref(py)),
            IoTarget::Sock(op) => IoTarget::Sock(op.clone_ref(py)),
        }
    }

    /// Runs what became possible; `ready` holds the selector's READABLE/WRITABLE bits.
    pub fn on_ready(&self, py: Python<'_>, ready: u32) -> Outcome {
        match self {
            IoTarget::Stream(stream) => StreamTransport::on_ready(stream.bind(py), ready),
            IoTarget::Sock(op) => SockOp::on_ready(op.bind(py)),
        }
    }

    /// Whether both are the same object.
    pub fn is(&self, other: &IoTarget) -> bool {
        self.as_ptr() == other.as_ptr()
    }

    fn as_ptr(&self) -> *mut pyo3::ffi::PyObject {
        match self {
            IoTarget::Stream(stream) => stream.as_ptr(),
            IoTarget::Sock(op) => op.as_ptr(),
        }
    }

    pub fn visit(&self, visit: &pyo3::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        match self {
            IoTarget::Stream(stream) => visit.call(stream),
            IoTarget::Sock(op) => visit.call(op),
        }
    }
}

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
