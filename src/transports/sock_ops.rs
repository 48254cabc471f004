//! `sock_recv`, `sock_recv_into` and `sock_sendall`: the system call first, and only when the
//! socket is not ready, a `SockOp` that the selector runs when it is, settling a future.
//!
//! asyncio tries the call at once, then registers a reader (or writer) whose handle retries it
//! and a done-callback that unregisters it. A SockOp is that pair in one native object: it is
//! the selector's target for the fd and the future's done-callback.

use std::os::raw::c_int;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::buffer::{copy_from_read_buffer, read_buffer, read_into_new_bytes, READ_BUFFER_SIZE};
use super::buffer::{BufferView, Chunk};
use super::syscall;
use crate::gil::GilRefCell;
use crate::handles::Outcome;
use crate::loop_::{Loop, READABLE, WRITABLE};
use crate::python;
use crate::uv::error::errno_error;

enum Operation {
    Recv(usize),
    RecvInto(Py<PyAny>),
    /// The bytes to send and how many went already.
    SendAll(Chunk, usize),
}

#[pyclass(frozen, module = "uvloop.loop", name = "SockOp")]
pub struct SockOp {
    event_loop: Py<Loop>,
    fd: c_int,
    future: Py<PyAny>,
    /// READABLE or WRITABLE: what the operation waits for.
    interest: u32,
    /// None once the operation finished or its future was cancelled.
    operation: GilRefCell<Option<Operation>>,
}

fn fd_of(sock: &Bound<'_, PyAny>) -> PyResult<c_int> {
    sock.call_method0(pyo3::intern!(sock.py(), "fileno"))?
        .extract()
}

/// What a non-blocking attempt gave: a result, or nothing yet.
enum Attempt {
    Done(Py<PyAny>),
    WouldBlock,
}

/// `sock.recv(size)`: through the loop thread's read buffer (copied into an exact-size
/// `bytes`), or straight into a new `bytes` when `size` exceeds that buffer.
fn try_recv(py: Python<'_>, fd: c_int, size: usize) -> PyResult<Attempt> {
    let received = if size > READ_BUFFER_SIZE {
        read_into_new_bytes(py, size, |buf, len| syscall::recv(fd, buf, len))
    } else {
        syscall::recv(fd, read_buffer(), size).map(|n| copy_from_read_buffer(py, n))
    };
    match received {
        Ok(data) => Ok(Attempt::Done(data.into_any().unbind())),
        Err(libc::EAGAIN) => Ok(Attempt::WouldBlock),
        Err(errno) => Err(errno_error(errno)),
    }
}

fn try_recv_into(py: Python<'_>, fd: c_int, buffer: &Bound<'_, PyAny>) -> PyResult<Attempt> {
    let view = BufferView::get(buffer, true)?;
    match syscall::recv(fd, view.as_ptr(), view.len()) {
        Ok(n) => Ok(Attempt::Done(n.into_pyobject(py)?.into_any().unbind())),
        Err(libc::EAGAIN) => Ok(Attempt::WouldBlock),
        Err(errno) => Err(errno_error(errno)),
    }
}

/// Sends what is left of `data` after `sent` bytes; returns the new total sent.
fn try_send(fd: c_int, data: &[u8], sent: usize) -> PyResult<usize> {
    if sent >= data.len() {
        return Ok(sent);
    }
    match syscall::send(fd, &data[sent..]) {
        Ok(n) => Ok(sent + n),
        Err(libc::EAGAIN) => Ok(sent),
        Err(errno) => Err(errno_error(errno)),
    }
}

impl SockOp {
    /// `sock.recv(size)` now, or a future for it.
    pub fn recv(
        event_loop: &Bound<'_, Loop>,
        sock: &Bound<'_, PyAny>,
        size: isize,
    ) -> PyResult<Py<PyAny>> {
        let py = event_loop.py();
        let size = usize::try_from(size)
            .map_err(|_| PyValueError::new_err("negative buffersize in recv"))?;
        let fd = fd_of(sock)?;
        match try_recv(py, fd, size)? {
            Attempt::Done(data) => Ok(data),
            Attempt::WouldBlock => Self::wait(event_loop, fd, Operation::Recv(size), READABLE),
        }
    }

    /// `sock.recv_into(buffer)` now, or a future for it.
    pub fn recv_into(
        event_loop: &Bound<'_, Loop>,
        sock: &Bound<'_, PyAny>,
        buffer: &Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        let fd = fd_of(sock)?;
        match try_recv_into(event_loop.py(), fd, buffer)? {
            Attempt::Done(count) => Ok(count),
            Attempt::WouldBlock => Self::wait(
                event_loop,
                fd,
                Operation::RecvInto(buffer.clone().unbind()),
                READABLE,
            ),
        }
    }

    /// As much of `data` as the socket takes now; None when that was all, else a future for
    /// the rest.
    pub fn sendall(
        event_loop: &Bound<'_, Loop>,
        sock: &Bound<'_, PyAny>,
        data: &Bound<'_, PyAny>,
    ) -> PyResult<Option<Py<PyAny>>> {
        let fd = fd_of(sock)?;
        let (sent, total) = {
            let view = BufferView::get(data, false)?;
            (try_send(fd, view.as_slice(), 0)?, view.len())
        };
        if sent == total {
            return Ok(None);
        }
        // The rest is copied: `data` may be a mutable buffer that changes meanwhile.
        let chunk = match data.cast::<PyBytes>() {
            Ok(bytes) => Chunk::Shared(bytes.clone().unbind()),
            Err(_) => Chunk::copy_of(BufferView::get(data, false)?.as_slice())?,
        };
        Self::wait(event_loop, fd, Operation::SendAll(chunk, sent), WRITABLE).map(Some)
    }

    /// Registers the operation with the selector and returns its future.
    fn wait(
        event_loop: &Bound<'_, Loop>,
        fd: c_int,
        operation: Operation,
        interest: u32,
    ) -> PyResult<Py<PyAny>> {
        let py = event_loop.py();
        // As asyncio: an fd a transport owns cannot be used by sock_* methods.
        event_loop.call_method1(pyo3::intern!(py, "_ensure_fd_no_transport"), (fd,))?;
        let names = crate::kwnames!(py, "loop")?;
        let future = python::vectorcall(
            python::future_type(py)?,
            &[event_loop.as_any()],
            Some(names),
        )?;
        let op = Py::new(
            py,
            SockOp {
                event_loop: event_loop.clone().unbind(),
                fd,
                future: future.clone().unbind(),
                interest,
                operation: GilRefCell::new(Some(operation)),
            },
        )?;
        future.call_method1(pyo3::intern!(py, "add_done_callback"), (op.clone_ref(py),))?;
        event_loop.get().arm_sock_op(py, fd, &op, interest)?;
        Ok(future.unbind())
    }

    /// The selector found the fd ready: retry the operation, settle the future when done.
    pub fn on_ready(slf: &Bound<'_, Self>) -> Outcome {
        let py = slf.py();
        let this = slf.get();
        let future = this.future.bind(py);
        let done = future
            .call_method0(pyo3::intern!(py, "done"))
            .and_then(|done| done.is_truthy())
            .unwrap_or(true);
        let attempt = if done {
            Ok(None)
        } else {
            let mut operation = this.operation.borrow_mut(py);
            match operation.as_mut() {
                None => Ok(None),
                Some(Operation::Recv(size)) => try_recv(py, this.fd, *size).map(Some),
                Some(Operation::RecvInto(buffer)) => {
                    try_recv_into(py, this.fd, buffer.bind(py)).map(Some)
                }
                Some(Operation::SendAll(chunk, sent)) => {
                    let data = chunk.bytes(py);
                    try_send(this.fd, data, *sent).map(|now| {
                        *sent = now;
                        Some(if now == data.len() {
                            Attempt::Done(py.None())
                        } else {
                            Attempt::WouldBlock
                        })
                    })
                }
            }
        };
        let settled = match attempt {
            Ok(Some(Attempt::WouldBlock)) => {
                // A one-shot registration fired without the operation being possible: re-arm.
                let me = slf.clone().unbind();
                match this
                    .event_loop
                    .get()
                    .arm_sock_op(py, this.fd, &me, this.interest)
                {
                    Ok(()) => return Outcome::Done,
                    Err(err) => future
                        .call_method1(pyo3::intern!(py, "set_exception"), (err.into_value(py),)),
                }
            }
            Ok(Some(Attempt::Done(value))) => {
                future.call_method1(pyo3::intern!(py, "set_result"), (value,))
            }
            Ok(None) => Ok(future.clone()),
            Err(err) => {
                future.call_method1(pyo3::intern!(py, "set_exception"), (err.into_value(py),))
            }
        };
        // Settling only schedules the future's callbacks; it cannot fail on an undone future.
        drop(settled);
        Self::finish(slf);
        Outcome::Done
    }

    /// Forgets the operation; its fd stays registered, disarmed, for the next one.
    fn finish(slf: &Bound<'_, Self>) {
        let py = slf.py();
        let this = slf.get();
        let operation = this.operation.take(py);
        if operation.is_none() {
            return;
        }
        drop(operation);
        let me = slf.clone().unbind();
        this.event_loop.get().disarm_sock_op(py, this.fd, &me);
    }
}

#[pymethods]
impl SockOp {
    /// The future's done-callback: a cancelled wait stops watching the fd.
    fn __call__(slf: &Bound<'_, Self>, _future: &Bound<'_, PyAny>) {
        Self::finish(slf);
    }

    fn __traverse__(&self, visit: pyo3::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        // SAFETY: tp_traverse runs with the GIL held by the collector.
        let py = unsafe { Python::assume_attached() };
        visit.call(&self.event_loop)?;
        visit.call(&self.future)?;
        if let Some(operation) = self.operation.try_borrow(py) {
            match &*operation {
                Some(Operation::RecvInto(buffer)) => visit.call(buffer)?,
                Some(Operation::SendAll(Chunk::Shared(bytes), _)) => visit.call(bytes)?,
                _ => {}
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        // SAFETY: tp_clear runs with the GIL held by the collector.
        let py = unsafe { Python::assume_attached() };
        drop(self.operation.take(py));
    }
}
