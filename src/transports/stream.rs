//! The data path of TCP and Unix stream transports: asyncio's `_SelectorSocketTransport`
//! semantics, natively.
//!
//! `StreamTransport` is the native half of `uvloop._transports.SocketTransport` (an
//! `asyncio.Transport`, which a native class cannot subclass). The Python half owns the socket
//! and does what happens once per connection (set-up, connection_lost, error reports, repr);
//! this half does what happens per read and per write, with the protocol's callbacks looked up
//! once. Readiness comes from the loop's selector as `Ready::Io` entries of the ready queue.

use std::cell::RefCell;
use std::os::raw::c_int;

use pyo3::exceptions::{PyKeyboardInterrupt, PyRuntimeError, PySystemExit, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyMemoryView};

use super::buffer::{read_into_new_bytes, BufferView, Chunk};
use super::syscall;
use super::write_queue::WriteQueue;
use crate::gil::{GilCell, GilRefCell};
use crate::handles::Outcome;
use crate::loop_::{Loop, READABLE, WRITABLE};
use crate::python;
use crate::uv::error::errno_error;

/// asyncio's `max_size` of one socket read.
const READ_SIZE: usize = 256 * 1024;
/// After a read at least this long, the next one goes straight into its `bytes` (reads of a
/// connection tend to be alike, and copying a long one out of the read buffer costs more than
/// allocating the largest one).
const DIRECT_READ_MIN: usize = 32 * 1024;
/// The most such a read takes: less than glibc's threshold for serving an allocation with its
/// own mmap (128 KiB), which would cost page faults and an munmap per read.
const DIRECT_READ_SIZE: usize = 120 * 1024;
/// asyncio's `constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES`.
const LOG_THRESHOLD_FOR_CONNLOST_WRITES: u32 = 5;

thread_local! {
    /// Every read lands here first, then is copied once into an exact-size `bytes`.
    static READ_BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs `read` on the loop thread's read buffer (READ_SIZE bytes).
pub fn with_read_buffer<R>(read: impl FnOnce(&mut [u8]) -> R) -> R {
    READ_BUFFER.with_borrow_mut(|buffer| {
        if buffer.len() < READ_SIZE {
            buffer.resize(READ_SIZE, 0);
        }
        read(&mut buffer[..READ_SIZE])
    })
}

/// What a receive gives: Ok(None) when the socket has nothing now (EAGAIN), an empty `bytes`
/// at end of stream, Err(errno) on failure.
pub type Received<'py> = Result<Option<Bound<'py, PyBytes>>, c_int>;

fn none_on_eagain(received: Result<Bound<'_, PyBytes>, c_int>) -> Received<'_> {
    match received {
        Ok(data) => Ok(Some(data)),
        Err(libc::EAGAIN) => Ok(None),
        Err(errno) => Err(errno),
    }
}

/// Receives at most `size` bytes from `fd` through the loop thread's read buffer (copied into
/// an exact-size `bytes`), or straight into a new `bytes` when `size` exceeds that buffer.
pub fn recv_bytes(py: Python<'_>, fd: c_int, size: usize) -> Received<'_> {
    if size > READ_SIZE {
        return recv_new_bytes(py, fd, size);
    }
    none_on_eagain(with_read_buffer(|buffer| {
        let buffer = &mut buffer[..size];
        syscall::recv(fd, buffer.as_mut_ptr(), buffer.len()).map(|n| PyBytes::new(py, &buffer[..n]))
    }))
}

/// Receives at most `size` bytes from `fd` straight into a new `bytes`, shrunk in place.
fn recv_new_bytes(py: Python<'_>, fd: c_int, size: usize) -> Received<'_> {
    none_on_eagain(read_into_new_bytes(py, size, |buffer| {
        syscall::recv(fd, buffer.as_mut_ptr(), buffer.len())
    }))
}

/// The protocol with the callbacks of its read path, looked up when it is set.
struct Protocol {
    obj: Py<PyAny>,
    read: ReadPath,
}

enum ReadPath {
    /// `data_received`, or None if the protocol has none (looked up again, to raise, on use).
    Data(Option<Py<PyAny>>),
    /// A `BufferedProtocol`'s `get_buffer` and `buffer_updated`.
    Buffered(Option<(Py<PyAny>, Py<PyAny>)>),
}

impl Protocol {
    fn new(protocol: &Bound<'_, PyAny>) -> PyResult<Self> {
        let py = protocol.py();
        let method = |name| protocol.getattr(name).ok().map(Bound::unbind);
        let read = if protocol.is_instance(python::buffered_protocol_type(py)?)? {
            ReadPath::Buffered(
                method(pyo3::intern!(py, "get_buffer"))
                    .zip(method(pyo3::intern!(py, "buffer_updated"))),
            )
        } else {
            ReadPath::Data(method(pyo3::intern!(py, "data_received")))
        };
        Ok(Self {
            obj: protocol.clone().unbind(),
            read,
        })
    }
}

/// A protocol callback's failure: KeyboardInterrupt and SystemExit leave the loop, anything else
/// is the transport's fatal error.
enum Failure {
    Escape(PyErr),
    Fatal(PyErr),
}

impl Failure {
    fn classify(py: Python<'_>, err: PyErr) -> Self {
        if err.is_instance_of::<PyKeyboardInterrupt>(py) || err.is_instance_of::<PySystemExit>(py) {
            Failure::Escape(err)
        } else {
            Failure::Fatal(err)
        }
    }
}

#[pyclass(frozen, module = "uvloop.loop", name = "StreamTransport")]
pub struct StreamTransport {
    event_loop: Py<Loop>,
    fd: c_int,
    /// The Python transport that protocols see; None once the connection is lost.
    transport: GilRefCell<Option<Py<PyAny>>>,
    protocol: GilRefCell<Option<Protocol>>,
    /// The context protocol callbacks run in (the one the transport was made in).
    context: Py<PyAny>,
    /// What the selector watches for on `fd`.
    interest: GilCell<u32>,
    /// The last read was long: read the next one straight into its `bytes`.
    direct_reads: GilCell<bool>,
    closing: GilCell<bool>,
    eof: GilCell<bool>,
    paused: GilCell<bool>,
    protocol_paused: GilCell<bool>,
    conn_lost: GilCell<u32>,
    queue: GilRefCell<WriteQueue>,
    high_water: GilCell<usize>,
    low_water: GilCell<usize>,
    /// The future sendfile waits on until the queue is empty.
    empty_waiter: GilRefCell<Option<Py<PyAny>>>,
}

impl StreamTransport {
    /// Runs what the selector found ready, in the transport's context.
    pub fn on_ready(slf: &Bound<'_, Self>, ready: u32) -> Outcome {
        let py = slf.py();
        let this = slf.get();
        let context = this.context.as_ptr();
        // SAFETY: GIL held; `context` is a live contextvars.Context; Enter and Exit are paired.
        if unsafe { ffi::PyContext_Enter(context) } < 0 {
            return Outcome::Escape(PyErr::fetch(py));
        }
        let mut outcome = Ok(());
        if ready & READABLE != 0 && this.interest.get(py) & READABLE != 0 {
            outcome = Self::read_ready(slf);
        }
        if outcome.is_ok() && ready & WRITABLE != 0 && this.interest.get(py) & WRITABLE != 0 {
            outcome = Self::write_ready(slf);
        }
        // SAFETY: paired with the Enter above, on the same thread.
        if unsafe { ffi::PyContext_Exit(context) } < 0 {
            return Outcome::Escape(PyErr::fetch(py));
        }
        match outcome {
            Ok(()) => Outcome::Done,
            Err(err) => Outcome::Escape(err),
        }
    }

    /// asyncio's `_read_ready`: one read, handed to the protocol. Err only for what must leave
    /// the loop.
    fn read_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.conn_lost.get(py) > 0 {
            return Ok(());
        }
        let read = match this.protocol.borrow(py).as_ref() {
            Some(protocol) => match &protocol.read {
                ReadPath::Data(method) => ReadPath::Data(method.as_ref().map(|m| m.clone_ref(py))),
                ReadPath::Buffered(methods) => ReadPath::Buffered(
                    methods
                        .as_ref()
                        .map(|(get, updated)| (get.clone_ref(py), updated.clone_ref(py))),
                ),
            },
            None => return Ok(()),
        };
        match read {
            ReadPath::Data(method) => Self::read_data(slf, method),
            ReadPath::Buffered(methods) => Self::read_into_buffer(slf, methods),
        }
    }

    fn read_data(slf: &Bound<'_, Self>, method: Option<Py<PyAny>>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let received = if this.direct_reads.get(py) {
            recv_new_bytes(py, this.fd, DIRECT_READ_SIZE)
        } else {
            recv_bytes(py, this.fd, READ_SIZE)
        };
        let data = match received {
            Ok(Some(data)) if data.as_bytes().is_empty() => return Self::read_eof(slf),
            Ok(Some(data)) => {
                this.direct_reads
                    .set(py, data.as_bytes().len() >= DIRECT_READ_MIN);
                data
            }
            Ok(None) => return Ok(()),
            Err(errno) => {
                return Self::fatal_error(
                    slf,
                    errno_error(errno),
                    "Fatal read error on socket transport",
                )
            }
        };
        let result = match method {
            Some(method) => method.bind(py).call1((data,)).map(drop),
            None => Self::protocol_call(slf, "data_received", (data,)),
        };
        Self::check_protocol_call(
            slf,
            result,
            "Fatal error: protocol.data_received() call failed.",
        )
    }

    fn read_into_buffer(
        slf: &Bound<'_, Self>,
        methods: Option<(Py<PyAny>, Py<PyAny>)>,
    ) -> PyResult<()> {
        let py = slf.py();
        let get_buffer = match &methods {
            Some((get, _)) => get.bind(py).call1((-1,)),
            None => Self::protocol_method(slf, "get_buffer").and_then(|m| m.call1((-1,))),
        };
        let view = get_buffer.and_then(|buffer| {
            if buffer.len()? == 0 {
                return Err(PyRuntimeError::new_err(
                    "get_buffer() returned an empty buffer",
                ));
            }
            Ok(buffer)
        });
        let buffer = match view {
            Ok(buffer) => buffer,
            Err(err) => {
                return Self::check_protocol_call(
                    slf,
                    Err(err),
                    "Fatal error: protocol.get_buffer() call failed.",
                )
            }
        };
        // The view is released before buffer_updated, which may resize the buffer.
        let received = BufferView::get(&buffer, true).and_then(|view| {
            match syscall::recv(slf.get().fd, view.as_ptr(), view.len()) {
                Ok(n) => Ok(Some(n)),
                Err(libc::EAGAIN) => Ok(None),
                Err(errno) => Err(errno_error(errno)),
            }
        });
        let count = match received {
            Ok(Some(0)) => return Self::read_eof(slf),
            Ok(Some(count)) => count,
            Ok(None) => return Ok(()),
            Err(err) => {
                return Self::check_protocol_call(
                    slf,
                    Err(err),
                    "Fatal read error on socket transport",
                )
            }
        };
        let result = match &methods {
            Some((_, updated)) => updated.bind(py).call1((count,)).map(drop),
            None => Self::protocol_call(slf, "buffer_updated", (count,)),
        };
        Self::check_protocol_call(
            slf,
            result,
            "Fatal error: protocol.buffer_updated() call failed.",
        )
    }

    /// asyncio's `_read_ready__on_eof`.
    fn read_eof(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        Self::debug_log(slf, "received EOF")?;
        let keep_open = match Self::protocol_method(slf, "eof_received").and_then(|m| m.call0()) {
            Ok(result) => result.is_truthy(),
            Err(err) => Err(err),
        };
        match keep_open {
            Ok(true) => Self::remove_interest(slf, READABLE),
            Ok(false) => Self::close_transport(slf),
            Err(err) => match Failure::classify(py, err) {
                Failure::Escape(err) => Err(err),
                Failure::Fatal(err) => Self::fatal_error(
                    slf,
                    err,
                    "Fatal error: protocol.eof_received() call failed.",
                ),
            },
        }
    }

    /// asyncio's `_write_ready`: sends what is queued, then finishes a close or write_eof.
    fn write_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.conn_lost.get(py) > 0 {
            return Ok(());
        }
        let sent = this
            .queue
            .borrow_mut(py)
            .write(this.fd, py, syscall::sendmsg);
        match sent {
            Err(errno) => {
                Self::remove_interest(slf, WRITABLE)?;
                let dropped = this.queue.borrow_mut(py).take();
                drop(dropped);
                let err = errno_error(errno);
                let exc = err.clone_ref(py);
                Self::fatal_error(slf, err, "Fatal write error on socket transport")?;
                let waiter = this
                    .empty_waiter
                    .borrow(py)
                    .as_ref()
                    .map(|w| w.clone_ref(py));
                if let Some(waiter) = waiter {
                    waiter.call_method1(py, "set_exception", (exc,))?;
                }
                Ok(())
            }
            Ok(done) => {
                Self::maybe_resume_protocol(slf)?;
                if !done || !this.queue.borrow(py).is_empty() {
                    return Ok(());
                }
                Self::remove_interest(slf, WRITABLE)?;
                let waiter = this
                    .empty_waiter
                    .borrow(py)
                    .as_ref()
                    .map(|w| w.clone_ref(py));
                if let Some(waiter) = waiter {
                    waiter.call_method1(py, "set_result", (py.None(),))?;
                }
                if this.closing.get(py) {
                    this.conn_lost.set(py, this.conn_lost.get(py) + 1);
                    Self::call_transport(slf, "_call_connection_lost", (py.None(),))
                } else if this.eof.get(py) {
                    // As asyncio's sock.shutdown(SHUT_WR): a failure here propagates.
                    syscall::shutdown_write(this.fd).map_err(errno_error)
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Outcome of a protocol callback run from the read path.
    fn check_protocol_call(
        slf: &Bound<'_, Self>,
        result: PyResult<()>,
        message: &str,
    ) -> PyResult<()> {
        match result {
            Ok(()) => Ok(()),
            Err(err) => match Failure::classify(slf.py(), err) {
                Failure::Escape(err) => Err(err),
                Failure::Fatal(err) => Self::fatal_error(slf, err, message),
            },
        }
    }

    fn protocol_method<'py>(slf: &Bound<'py, Self>, name: &str) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let protocol = slf
            .get()
            .protocol
            .borrow(py)
            .as_ref()
            .map(|p| p.obj.clone_ref(py));
        match protocol {
            Some(protocol) => protocol.into_bound(py).getattr(name),
            None => Err(PyRuntimeError::new_err("transport has no protocol")),
        }
    }

    fn protocol_call<'py>(
        slf: &Bound<'py, Self>,
        name: &str,
        args: impl pyo3::call::PyCallArgs<'py>,
    ) -> PyResult<()> {
        Self::protocol_method(slf, name)?.call1(args).map(drop)
    }

    /// Calls a method of the Python transport (the once-per-connection and error paths).
    fn call_transport<'py>(
        slf: &Bound<'py, Self>,
        name: &str,
        args: impl pyo3::call::PyCallArgs<'py>,
    ) -> PyResult<()> {
        let py = slf.py();
        let transport = slf
            .get()
            .transport
            .borrow(py)
            .as_ref()
            .map(|t| t.clone_ref(py));
        match transport {
            Some(transport) => transport.bind(py).call_method1(name, args).map(drop),
            None => Ok(()),
        }
    }

    /// asyncio's `_fatal_error`: reported by the Python transport, which then force-closes.
    fn fatal_error(slf: &Bound<'_, Self>, err: PyErr, message: &str) -> PyResult<()> {
        let py = slf.py();
        if slf.get().transport.borrow(py).is_none() {
            return Self::force_close(slf, Some(err.into_value(py).into_any()));
        }
        Self::call_transport(slf, "_fatal_error", (err.into_value(py), message))
    }

    fn debug_log(slf: &Bound<'_, Self>, message: &str) -> PyResult<()> {
        if slf.get().event_loop.get().debug(slf.py()) {
            Self::call_transport(slf, "_debug_log", (message,))?;
        }
        Ok(())
    }

    fn set_interest(slf: &Bound<'_, Self>, interest: u32) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.interest.get(py) == interest {
            return Ok(());
        }
        let me = super::IoTarget::Stream(slf.clone().unbind());
        this.event_loop
            .get()
            .set_stream_interest(py, this.fd, &me, interest)?;
        this.interest.set(py, interest);
        Ok(())
    }

    fn add_interest(slf: &Bound<'_, Self>, side: u32) -> PyResult<()> {
        let interest = slf.get().interest.get(slf.py());
        Self::set_interest(slf, interest | side)
    }

    fn remove_interest(slf: &Bound<'_, Self>, side: u32) -> PyResult<()> {
        let interest = slf.get().interest.get(slf.py());
        Self::set_interest(slf, interest & !side)
    }

    /// Asks the loop to call the Python transport's `_call_connection_lost(exc)` soon.
    fn connection_lost_soon(slf: &Bound<'_, Self>, exc: Option<Py<PyAny>>) -> PyResult<()> {
        let py = slf.py();
        let transport = slf
            .get()
            .transport
            .borrow(py)
            .as_ref()
            .map(|t| t.clone_ref(py));
        let Some(transport) = transport else {
            return Ok(());
        };
        let callback = transport
            .bind(py)
            .getattr(pyo3::intern!(py, "_call_connection_lost"))?;
        slf.get()
            .event_loop
            .bind(py)
            .call_method1(pyo3::intern!(py, "call_soon"), (callback, exc))?;
        Ok(())
    }

    /// asyncio's `_FlowControlMixin._maybe_pause_protocol`.
    fn maybe_pause_protocol(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.queue.borrow(py).size() <= this.high_water.get(py) || this.protocol_paused.get(py) {
            return Ok(());
        }
        this.protocol_paused.set(py, true);
        Self::flow_control_call(slf, "pause_writing")
    }

    /// asyncio's `_FlowControlMixin._maybe_resume_protocol`.
    fn maybe_resume_protocol(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if !this.protocol_paused.get(py) || this.queue.borrow(py).size() > this.low_water.get(py) {
            return Ok(());
        }
        this.protocol_paused.set(py, false);
        Self::flow_control_call(slf, "resume_writing")
    }

    fn flow_control_call(slf: &Bound<'_, Self>, name: &str) -> PyResult<()> {
        match Self::protocol_call(slf, name, ()) {
            Ok(()) => Ok(()),
            Err(err) => match Failure::classify(slf.py(), err) {
                Failure::Escape(err) => Err(err),
                Failure::Fatal(err) => Self::call_transport(
                    slf,
                    "_report_protocol_error",
                    (
                        format!("protocol.{name}() failed"),
                        err.into_value(slf.py()),
                    ),
                ),
            },
        }
    }

    /// asyncio's `_SelectorTransport.close`.
    fn close_transport(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.closing.get(py) {
            return Ok(());
        }
        this.closing.set(py, true);
        Self::remove_interest(slf, READABLE)?;
        if this.queue.borrow(py).is_empty() {
            this.conn_lost.set(py, this.conn_lost.get(py) + 1);
            Self::remove_interest(slf, WRITABLE)?;
            Self::connection_lost_soon(slf, None)?;
        }
        Ok(())
    }

    /// asyncio's `_force_close`.
    fn force_close(slf: &Bound<'_, Self>, exc: Option<Py<PyAny>>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.conn_lost.get(py) > 0 {
            return Ok(());
        }
        if !this.queue.borrow(py).is_empty() {
            let dropped = this.queue.borrow_mut(py).take();
            drop(dropped);
            Self::remove_interest(slf, WRITABLE)?;
        }
        if !this.closing.get(py) {
            this.closing.set(py, true);
            Self::remove_interest(slf, READABLE)?;
        }
        this.conn_lost.set(py, this.conn_lost.get(py) + 1);
        Self::connection_lost_soon(slf, exc)
    }

    /// asyncio's `write` checks and the immediate send; `chunk` is queued with what was sent.
    fn write_chunk(slf: &Bound<'_, Self>, chunk: Chunk) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let lost = this.conn_lost.get(py);
        if lost > 0 {
            if lost >= LOG_THRESHOLD_FOR_CONNLOST_WRITES {
                python::log_warning(py, "socket.send() raised exception.")?;
            }
            this.conn_lost.set(py, lost + 1);
            return Ok(());
        }
        let mut sent = 0;
        if this.queue.borrow(py).is_empty() {
            match syscall::send(this.fd, chunk.bytes(py)) {
                Ok(n) if n == chunk.bytes(py).len() => return Ok(()),
                Ok(n) => sent = n,
                Err(libc::EAGAIN) => {}
                Err(errno) => {
                    return Self::fatal_error(
                        slf,
                        errno_error(errno),
                        "Fatal write error on socket transport",
                    )
                }
            }
            Self::add_interest(slf, WRITABLE)?;
        }
        this.queue.borrow_mut(py).push(chunk, sent, py);
        Self::maybe_pause_protocol(slf)
    }

    fn check_writable(&self, py: Python<'_>, method: &str) -> PyResult<()> {
        if self.eof.get(py) {
            return Err(PyRuntimeError::new_err(format!(
                "Cannot call {method}() after write_eof()"
            )));
        }
        if self.empty_waiter.borrow(py).is_some() {
            return Err(PyRuntimeError::new_err(format!(
                "unable to {method}; sendfile is in progress"
            )));
        }
        Ok(())
    }
}

/// The bytes of what `write()` accepts: bytes (kept), bytearray and memoryview (copied).
pub fn chunk_of(data: &Bound<'_, PyAny>) -> PyResult<Chunk> {
    if let Ok(bytes) = data.cast::<PyBytes>() {
        return Ok(Chunk::Shared(bytes.clone().unbind()));
    }
    if data.is_instance_of::<PyByteArray>() || data.is_instance_of::<PyMemoryView>() {
        return Ok(Chunk::Owned(
            BufferView::get(data, false)?.as_slice().to_vec(),
        ));
    }
    Err(PyTypeError::new_err(format!(
        "data argument must be a bytes-like object, not {}",
        data.get_type().name()?.repr()?
    )))
}

#[pymethods]
impl StreamTransport {
    #[new]
    fn py_new(
        event_loop: Py<Loop>,
        fd: c_int,
        protocol: &Bound<'_, PyAny>,
        transport: Py<PyAny>,
        context: Py<PyAny>,
    ) -> PyResult<Self> {
        Ok(Self {
            event_loop,
            fd,
            transport: GilRefCell::new(Some(transport)),
            protocol: GilRefCell::new(Some(Protocol::new(protocol)?)),
            context,
            interest: GilCell::new(0),
            direct_reads: GilCell::new(false),
            closing: GilCell::new(false),
            eof: GilCell::new(false),
            paused: GilCell::new(false),
            protocol_paused: GilCell::new(false),
            conn_lost: GilCell::new(0),
            queue: GilRefCell::new(WriteQueue::default()),
            high_water: GilCell::new(64 * 1024),
            low_water: GilCell::new(16 * 1024),
            empty_waiter: GilRefCell::new(None),
        })
    }

    /// Starts reading (scheduled right after connection_made, as asyncio does).
    fn _start_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        if !Self::is_reading(slf.get(), slf.py()) {
            return Ok(());
        }
        Self::add_interest(slf, READABLE)
    }

    fn write(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let chunk = chunk_of(data)?;
        slf.get().check_writable(slf.py(), "write")?;
        if chunk.bytes(slf.py()).is_empty() {
            return Ok(());
        }
        Self::write_chunk(slf, chunk)
    }

    fn writelines(slf: &Bound<'_, Self>, list_of_data: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        #[cfg(Py_3_12)]
        slf.get().check_writable(py, "writelines")?;
        let mut joined = Vec::new();
        for data in list_of_data.try_iter()? {
            let data = data?;
            joined.extend_from_slice(chunk_of(&data)?.bytes(py));
        }
        #[cfg(not(Py_3_12))]
        slf.get().check_writable(py, "write")?;
        if joined.is_empty() {
            return Ok(());
        }
        Self::write_chunk(slf, Chunk::Owned(joined))
    }

    fn write_eof(&self, py: Python<'_>) -> PyResult<()> {
        if self.closing.get(py) || self.eof.get(py) {
            return Ok(());
        }
        self.eof.set(py, true);
        if self.queue.borrow(py).is_empty() {
            syscall::shutdown_write(self.fd).map_err(errno_error)?;
        }
        Ok(())
    }

    fn can_write_eof(&self) -> bool {
        true
    }

    fn close(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::close_transport(slf)
    }

    fn abort(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::force_close(slf, None)
    }

    #[pyo3(signature = (exc=None))]
    fn _force_close(slf: &Bound<'_, Self>, exc: Option<Py<PyAny>>) -> PyResult<()> {
        Self::force_close(slf, exc)
    }

    fn is_closing(&self, py: Python<'_>) -> bool {
        self.closing.get(py)
    }

    fn is_reading(&self, py: Python<'_>) -> bool {
        !self.paused.get(py) && !self.closing.get(py)
    }

    fn pause_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if !this.is_reading(py) {
            return Ok(());
        }
        this.paused.set(py, true);
        Self::remove_interest(slf, READABLE)?;
        Self::debug_log(slf, "pauses reading")
    }

    fn resume_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.closing.get(py) || !this.paused.get(py) {
            return Ok(());
        }
        this.paused.set(py, false);
        Self::add_interest(slf, READABLE)?;
        Self::debug_log(slf, "resumes reading")
    }

    /// Sets the watermarks (already checked by the Python transport) and applies them.
    fn _set_write_buffer_limits(slf: &Bound<'_, Self>, high: usize, low: usize) -> PyResult<()> {
        let py = slf.py();
        slf.get().high_water.set(py, high);
        slf.get().low_water.set(py, low);
        Self::maybe_pause_protocol(slf)
    }

    fn get_write_buffer_size(&self, py: Python<'_>) -> usize {
        self.queue.borrow(py).size()
    }

    fn get_write_buffer_limits(&self, py: Python<'_>) -> (usize, usize) {
        (self.low_water.get(py), self.high_water.get(py))
    }

    fn get_protocol(&self, py: Python<'_>) -> Py<PyAny> {
        match self.protocol.borrow(py).as_ref() {
            Some(protocol) => protocol.obj.clone_ref(py),
            None => py.None(),
        }
    }

    fn set_protocol(&self, protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        let new = Protocol::new(protocol)?;
        let old = self.protocol.replace(protocol.py(), Some(new));
        drop(old);
        Ok(())
    }

    #[getter]
    fn _protocol_paused(&self, py: Python<'_>) -> bool {
        self.protocol_paused.get(py)
    }

    #[getter]
    fn _conn_lost(&self, py: Python<'_>) -> u32 {
        self.conn_lost.get(py)
    }

    #[getter]
    fn _eof(&self, py: Python<'_>) -> bool {
        self.eof.get(py)
    }

    #[setter(_empty_waiter)]
    fn set_empty_waiter(&self, py: Python<'_>, waiter: Option<Py<PyAny>>) {
        let old = self.empty_waiter.replace(py, waiter);
        drop(old);
    }

    /// After connection_lost: drops the protocol and the Python transport (breaking their
    /// cycle) and fails a pending sendfile wait.
    fn _connection_lost(&self, py: Python<'_>) -> PyResult<()> {
        let waiter = self.empty_waiter.take(py);
        let protocol = self.protocol.take(py);
        let transport = self.transport.take(py);
        drop((protocol, transport));
        if let Some(waiter) = waiter {
            let err = pyo3::exceptions::PyConnectionError::new_err("Connection is closed by peer");
            waiter.call_method1(py, "set_exception", (err.into_value(py),))?;
        }
        Ok(())
    }

    fn __traverse__(&self, visit: pyo3::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        // SAFETY: tp_traverse runs with the GIL held by the collector.
        let py = unsafe { Python::assume_attached() };
        visit.call(&self.event_loop)?;
        visit.call(&self.context)?;
        if let Some(transport) = self.transport.try_borrow(py) {
            if let Some(transport) = &*transport {
                visit.call(transport)?;
            }
        }
        if let Some(protocol) = self.protocol.try_borrow(py) {
            if let Some(protocol) = &*protocol {
                visit.call(&protocol.obj)?;
                match &protocol.read {
                    ReadPath::Data(method) => {
                        if let Some(method) = method {
                            visit.call(method)?;
                        }
                    }
                    ReadPath::Buffered(methods) => {
                        if let Some((get, updated)) = methods {
                            visit.call(get)?;
                            visit.call(updated)?;
                        }
                    }
                }
            }
        }
        if let Some(waiter) = self.empty_waiter.try_borrow(py) {
            if let Some(waiter) = &*waiter {
                visit.call(waiter)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        // SAFETY: tp_clear runs with the GIL held by the collector.
        let py = unsafe { Python::assume_attached() };
        drop(self.transport.take(py));
        drop(self.protocol.take(py));
        drop(self.empty_waiter.take(py));
    }
}
