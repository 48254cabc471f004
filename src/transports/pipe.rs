//! The per-read and per-write halves of `uvloop._transports.ReadPipeTransport` and
//! `WritePipeTransport`, which are asyncio's pipe transports otherwise.
//!
//! `PipeReader.read_ready` is the read transport's reader: data goes straight to the protocol,
//! the rare outcomes (end of file, a failed read) to the transport's `_read_ended`.
//! `PipeWriteQueue` is the write transport's `_buffer` (asyncio appends to it with `+=`, asks its
//! length and clears it) and its writer: queued bytes leave with one `writev`, and the transport
//! hears only when the queue empties (`_write_drained`) or a write fails (`_write_failed`).

use std::os::raw::c_int;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyMemoryView};

use super::buffer::{read_into_new_bytes, Chunk};
use super::stream::chunk_of;
use super::syscall;
use super::write_queue::WriteQueue;
use super::TransportRef;
use crate::gil::GilRefCell;
use crate::uv::error::errno_error;

/// The most one read takes: a pipe's default capacity, as libuv reads.
const PIPE_READ_SIZE: usize = 64 * 1024;

/// One read: Ok(None) at end of file, Err(errno) on failure (EAGAIN included).
fn read_bytes(py: Python<'_>, fd: c_int) -> Result<Option<Bound<'_, PyBytes>>, c_int> {
    let data = read_into_new_bytes(py, PIPE_READ_SIZE, |buf, len| syscall::read(fd, buf, len))?;
    Ok((!data.as_bytes().is_empty()).then_some(data))
}

#[pyclass(frozen, module = "uvloop.loop", name = "PipeReader")]
pub struct PipeReader {
    fd: c_int,
    transport: TransportRef,
}

#[pymethods]
impl PipeReader {
    #[new]
    fn new(transport: Py<PyAny>, fd: c_int) -> Self {
        Self {
            fd,
            transport: TransportRef::new(transport),
        }
    }

    /// One read: data to the protocol's `data_received`; end of file (None) or a failure (the
    /// OSError) to the transport's `_read_ended`.
    fn read_ready(&self, py: Python<'_>) -> PyResult<()> {
        let Some(transport) = self.transport.get(py) else {
            return Ok(());
        };
        let transport = transport.bind(py);
        let received = read_bytes(py, self.fd);
        match received {
            Ok(Some(data)) => {
                transport
                    .getattr(pyo3::intern!(py, "_protocol"))?
                    .call_method1(pyo3::intern!(py, "data_received"), (data,))?;
            }
            Ok(None) => {
                transport.call_method1(pyo3::intern!(py, "_read_ended"), (py.None(),))?;
            }
            Err(libc::EAGAIN) => {}
            Err(errno) => {
                let err = errno_error(errno).into_value(py);
                transport.call_method1(pyo3::intern!(py, "_read_ended"), (err,))?;
            }
        }
        Ok(())
    }

    fn __traverse__(&self, visit: pyo3::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        self.transport.visit(&visit)
    }

    fn __clear__(&self) {
        // SAFETY: tp_clear runs with the GIL held by the collector.
        let py = unsafe { Python::assume_attached() };
        self.transport.clear(py);
    }
}

#[pyclass(frozen, module = "uvloop.loop", name = "PipeWriteQueue")]
pub struct PipeWriteQueue {
    fd: c_int,
    transport: TransportRef,
    queue: GilRefCell<WriteQueue>,
}

/// A queued piece of `data` without copying it when it is a `bytes` or the tail of one seen
/// through a memoryview (asyncio queues `memoryview(data)[n:]` after a partial write); with
/// how many leading bytes of the chunk are not part of `data`.
fn queued_chunk(data: &Bound<'_, PyAny>) -> PyResult<(Chunk, usize)> {
    if let Ok(view) = data.cast::<PyMemoryView>() {
        if let Ok(bytes) = view
            .getattr(pyo3::intern!(data.py(), "obj"))?
            .cast_into_exact::<PyBytes>()
        {
            let whole = bytes.as_bytes();
            let part = super::buffer::BufferView::get(data, false)?;
            let start = (part.as_ptr() as usize).wrapping_sub(whole.as_ptr() as usize);
            if start <= whole.len() && start + part.len() == whole.len() {
                return Ok((Chunk::Shared(bytes.unbind()), start));
            }
        }
    }
    Ok((chunk_of(data)?, 0))
}

#[pymethods]
impl PipeWriteQueue {
    #[new]
    fn new(transport: Py<PyAny>, fd: c_int) -> Self {
        Self {
            fd,
            transport: TransportRef::new(transport),
            queue: GilRefCell::new(WriteQueue::default()),
        }
    }

    /// `_buffer += data`.
    fn __iadd__(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let (chunk, skipped) = queued_chunk(data)?;
        self.queue.borrow_mut(py).push(chunk, skipped, py);
        Ok(())
    }

    fn __len__(&self, py: Python<'_>) -> usize {
        self.queue.borrow(py).size()
    }

    fn clear(&self, py: Python<'_>) {
        let dropped = self.queue.borrow_mut(py).take();
        drop(dropped);
    }

    /// The transport's writer: as much of the queue as the pipe takes.
    fn write_ready(&self, py: Python<'_>) -> PyResult<()> {
        let Some(transport) = self.transport.get(py) else {
            return Err(PyRuntimeError::new_err("pipe transport is gone"));
        };
        let written = self
            .queue
            .borrow_mut(py)
            .write(self.fd, py, syscall::writev);
        match written {
            Ok(false) => Ok(()),
            Ok(true) => transport
                .call_method0(py, pyo3::intern!(py, "_write_drained"))
                .map(drop),
            Err(errno) => {
                let err = errno_error(errno).into_value(py);
                transport
                    .call_method1(py, pyo3::intern!(py, "_write_failed"), (err,))
                    .map(drop)
            }
        }
    }

    fn __traverse__(&self, visit: pyo3::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        self.transport.visit(&visit)
    }

    fn __clear__(&self) {
        // SAFETY: tp_clear runs with the GIL held by the collector.
        let py = unsafe { Python::assume_attached() };
        self.transport.clear(py);
        self.clear(py);
    }
}
