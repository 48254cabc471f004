//! UDP endpoints on libuv (`uv_udp_t`), with asyncio's `_SelectorDatagramTransport` semantics.
//!
//! `UdpCore` is the native state of a `uvloop._transports.UDPTransport` (an
//! `asyncio.DatagramTransport`, see `python_class`). libuv watches the socket (`uv_udp_recv_start`)
//! and each datagram is read into the loop thread's read buffer when it calls for memory, with
//! `recvfrom()` (libuv's own read is `recvmsg()`, whose message header costs a measurable part
//! of a small datagram's round trip, see bench/RESULTS.md); `sendto` sends at once with
//! `sendto()` when nothing is queued and queues the rest as `uv_udp_send` requests owning their
//! bytes. As with streams, what libuv callbacks find runs inside a blocking poll when that keeps
//! asyncio's order, else from the ready queue.
//!
//! AF_UNIX datagram endpoints do not come here (see `datagram`).

use std::os::raw::c_int;

use pyo3::exceptions::{PyKeyboardInterrupt, PySystemExit, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use super::buffer::{copy_from_read_buffer, read_buffer, BufferView, READ_BUFFER_SIZE};
use super::private_fd;
use super::python_class::{
    self, boolean, noargs, none, one_arg, with_fastcall, with_one_arg, without_args, ClassKind,
    Method,
};
use super::sockaddr::{inet_len, numeric_address, SenderCache};
use super::syscall;
use crate::gil::{GilCell, GilRefCell};
use crate::handles::Outcome;
use crate::loop_::{Loop, Ready};
use crate::python;
use crate::uv::error::UvError;
use crate::uv::handle::LoopClose;
use crate::uv::sys;
use crate::uv::udp::{SocketAddress, Udp, UdpEvents};

/// asyncio's `constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES`.
const LOG_THRESHOLD_FOR_CONNLOST_WRITES: u32 = 5;

/// What a libuv callback (or a transport method) leaves for the ready queue.
pub enum DatagramEvent {
    /// connection_made, then reading starts (asyncio queues its reader right behind it).
    ConnectionMade,
    Received(Py<PyBytes>, Py<PyAny>),
    /// A failed receive or send: the protocol's error_received (errno).
    Failed(c_int),
    /// A queued datagram left: flow control, and a pending close.
    Sent,
    ConnectionLost(Option<Py<PyAny>>),
}

impl DatagramEvent {
    fn visit(&self, visit: &pyo3::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        match self {
            DatagramEvent::Received(data, addr) => {
                visit.call(data)?;
                visit.call(addr)
            }
            DatagramEvent::ConnectionLost(Some(exc)) => visit.call(exc),
            _ => Ok(()),
        }
    }
}

/// How the running Python's asyncio counts and sends (it changed between versions).
#[derive(Clone, Copy)]
struct Version {
    /// Bytes counted per queued datagram besides its data (3.13: 8).
    header_size: usize,
    /// Empty datagrams are dropped (before 3.13) rather than sent.
    drops_empty: bool,
}

#[derive(Clone, Copy, Default)]
struct Flags {
    closing: bool,
    paused: bool,
    reading: bool,
    protocol_paused: bool,
}

/// The protocol and its `datagram_received`.
type DatagramProtocol = (Py<PyAny>, Option<Py<PyAny>>);

#[pyclass(frozen, module = "uvloop.loop", name = "UdpCore")]
pub struct UdpCore {
    event_loop: Py<Loop>,
    transport: GilRefCell<Option<Py<PyAny>>>,
    protocol: GilRefCell<Option<DatagramProtocol>>,
    context: Py<PyAny>,
    handle: GilRefCell<Option<Udp<UdpOwner>>>,
    fd: c_int,
    family: c_int,
    /// The peer given as `remote_addr`, which every sendto must match.
    address: Option<Py<PyAny>>,
    /// The socket has a peer (datagrams go to it, whatever the address).
    connected: bool,
    /// The socket object, detached when libuv closes the descriptor.
    sock: Py<PyAny>,
    extra: Py<PyDict>,
    version: Version,
    flags: GilCell<Flags>,
    conn_lost: GilCell<u32>,
    high_water: GilCell<usize>,
    low_water: GilCell<usize>,
    senders: SenderCache,
    /// The poll in which the last datagram was read (see `Loop::read_once_per_poll`).
    read_in_poll: GilCell<u64>,
    /// A datagram read in the alloc callback (its size, or 0 for none, or a negative libuv
    /// error; and its sender), for the receive callback libuv makes right after it.
    received: GilCell<Option<(isize, libc::sockaddr_storage)>>,
    /// The last address sendto parsed: replies go back to the same tuple again and again (it
    /// is immutable, so the same object is the same address).
    last_destination: GilRefCell<Option<(Py<PyAny>, SocketAddress)>>,
}

/// What the UDP handle's callbacks hold: the core, alive while the handle is open.
pub struct UdpOwner(Py<UdpCore>);

impl LoopClose for UdpOwner {
    fn close_at_loop_close(&self, py: Python<'_>) {
        let core = self.0.bind(py);
        let this = core.get();
        this.conn_lost.set(py, this.conn_lost.get(py).max(1));
        this.update_flags(py, |f| f.closing = true);
        UdpCore::close_handle(core);
    }
}

impl UdpEvents for UdpOwner {
    /// Reads the datagram here and gives libuv no memory, so that it calls `received` with
    /// UV_ENOBUFS at once (see the module's documentation).
    fn alloc(&self, py: Python<'_>) -> (*mut u8, usize) {
        let this = self.0.get();
        if this.conn_lost.get(py) > 0
            || !this
                .event_loop
                .get()
                .read_once_per_poll(py, &this.read_in_poll)
        {
            return (std::ptr::null_mut(), 0);
        }
        let Some(Ok(fd)) = this.with_handle(py, Udp::fileno) else {
            return (std::ptr::null_mut(), 0);
        };
        // SAFETY: sockaddr_storage is plain C data.
        let mut sender: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut sender_len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let nread = match syscall::recvfrom(
            fd,
            read_buffer(),
            READ_BUFFER_SIZE,
            &mut sender,
            &mut sender_len,
        ) {
            Ok(n) => n as isize,
            Err(libc::EAGAIN) => 0,
            Err(errno) => -(errno as isize),
        };
        this.received.set(py, Some((nread, sender)));
        (std::ptr::null_mut(), 0)
    }

    fn received(&self, py: Python<'_>, nread: isize, addr: *const libc::sockaddr) {
        let core = self.0.get();
        match core.received.replace(py, None) {
            Some((nread, sender)) if nread > 0 || (nread == 0 && sender.ss_family != 0) => {
                let addr = (&raw const sender).cast::<libc::sockaddr>();
                UdpCore::on_received(self.0.bind(py), nread, addr);
            }
            // Nothing there after all, or a failed read.
            Some((nread, _)) => UdpCore::on_received(self.0.bind(py), nread, std::ptr::null()),
            None => UdpCore::on_received(self.0.bind(py), nread, addr),
        }
    }

    fn sent(&self, py: Python<'_>, status: c_int) {
        UdpCore::on_sent(self.0.bind(py), status);
    }
}

fn escapes(py: Python<'_>, err: &PyErr) -> bool {
    err.is_instance_of::<PyKeyboardInterrupt>(py) || err.is_instance_of::<PySystemExit>(py)
}

impl UdpCore {
    fn update_flags(&self, py: Python<'_>, change: impl FnOnce(&mut Flags)) {
        let mut flags = self.flags.get(py);
        change(&mut flags);
        self.flags.set(py, flags);
    }

    fn queue(slf: &Bound<'_, Self>, event: DatagramEvent) {
        let py = slf.py();
        slf.get()
            .event_loop
            .get()
            .push_ready(py, Ready::Datagram(slf.clone().unbind(), event));
    }

    /// An event from a libuv callback: run at once when that keeps asyncio's order, else queued.
    fn deliver(slf: &Bound<'_, Self>, event: DatagramEvent) {
        let py = slf.py();
        let event_loop = slf.get().event_loop.get();
        if event_loop.io_inline(py) {
            if let Outcome::Escape(err) = Self::run_event(slf, event) {
                event_loop.escape(py, err);
            }
        } else {
            Self::queue(slf, event);
        }
    }

    pub fn transport(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.transport.borrow(py).as_ref().map(|t| t.clone_ref(py))
    }

    fn with_handle<R>(&self, py: Python<'_>, f: impl FnOnce(&Udp<UdpOwner>) -> R) -> Option<R> {
        self.handle.borrow(py).as_ref().map(f)
    }

    fn on_received(slf: &Bound<'_, Self>, nread: isize, addr: *const libc::sockaddr) {
        let py = slf.py();
        let this = slf.get();
        if nread < 0 {
            if nread != sys::uv_errno_t_UV_ENOBUFS as isize {
                Self::deliver(slf, DatagramEvent::Failed(-(nread as c_int)));
            }
            return;
        }
        if addr.is_null() {
            return; // nothing this time
        }
        let data = copy_from_read_buffer(py, nread as usize);
        // SAFETY: libuv's storage for the sender is a sockaddr_storage, valid for the callback.
        let storage = unsafe { &*addr.cast::<libc::sockaddr_storage>() };
        let len = inet_len(c_int::from(storage.ss_family));
        match this.senders.sender(py, storage, len) {
            Ok(sender) => {
                Self::deliver(slf, DatagramEvent::Received(data.unbind(), sender.unbind()))
            }
            Err(err) => err.write_unraisable(py, Some(slf.as_any())),
        }
    }

    fn on_sent(slf: &Bound<'_, Self>, status: c_int) {
        if status == sys::uv_errno_t_UV_ECANCELED {
            return;
        }
        if status < 0 {
            Self::deliver(slf, DatagramEvent::Failed(-status));
        }
        Self::deliver(slf, DatagramEvent::Sent);
    }

    /// Runs an event in the transport's context.
    pub fn run_event(slf: &Bound<'_, Self>, event: DatagramEvent) -> Outcome {
        let py = slf.py();
        let context = slf.get().context.as_ptr();
        // SAFETY: GIL held; a live contextvars.Context; Enter and Exit are paired.
        if unsafe { ffi::PyContext_Enter(context) } < 0 {
            return Outcome::Escape(PyErr::fetch(py));
        }
        let result = Self::dispatch(slf, event);
        // SAFETY: paired with the Enter above.
        if unsafe { ffi::PyContext_Exit(context) } < 0 {
            return Outcome::Escape(PyErr::fetch(py));
        }
        match result {
            Ok(()) => Outcome::Done,
            Err(err) if escapes(py, &err) => Outcome::Escape(err),
            Err(err) => {
                err.write_unraisable(py, Some(slf.as_any()));
                Outcome::Done
            }
        }
    }

    fn dispatch(slf: &Bound<'_, Self>, event: DatagramEvent) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        match event {
            DatagramEvent::ConnectionMade => {
                let transport = this.transport.borrow(py).as_ref().map(|t| t.clone_ref(py));
                if let Some(transport) = transport {
                    Self::protocol_call(slf, pyo3::intern!(py, "connection_made"), (transport,))?;
                }
                if this.is_reading(py) {
                    Self::recv_start(slf);
                }
                Ok(())
            }
            DatagramEvent::Received(data, addr) => {
                if this.conn_lost.get(py) > 0 || this.flags.get(py).paused {
                    return Ok(());
                }
                let method = this
                    .protocol
                    .borrow(py)
                    .as_ref()
                    .and_then(|(_, method)| method.as_ref().map(|m| m.clone_ref(py)));
                match method {
                    Some(method) => {
                        let method = method.into_bound(py);
                        let result = python::vectorcall(
                            &method,
                            &[data.bind(py).as_any(), addr.bind(py)],
                            None,
                        );
                        Self::report_callback(slf, &method, result.map(drop))
                    }
                    None => Self::protocol_call(
                        slf,
                        pyo3::intern!(py, "datagram_received"),
                        (data, addr),
                    ),
                }
            }
            DatagramEvent::Failed(errno) => Self::error_received(slf, errno),
            DatagramEvent::Sent => Self::sent(slf),
            DatagramEvent::ConnectionLost(exc) => Self::call_connection_lost(slf, exc),
        }
    }

    /// Calls a protocol method as asyncio's handles would: its failure goes to the exception
    /// handler and the transport carries on.
    fn protocol_call<'py>(
        slf: &Bound<'py, Self>,
        name: &Bound<'py, pyo3::types::PyString>,
        args: impl pyo3::call::PyCallArgs<'py>,
    ) -> PyResult<()> {
        let py = slf.py();
        let protocol = slf
            .get()
            .protocol
            .borrow(py)
            .as_ref()
            .map(|(p, _)| p.clone_ref(py));
        let Some(protocol) = protocol else {
            return Ok(());
        };
        let method = match protocol.bind(py).getattr(name) {
            Ok(method) => method,
            Err(err) => return Self::report_callback(slf, protocol.bind(py), Err(err)),
        };
        let result = method.call1(args).map(drop);
        Self::report_callback(slf, &method, result)
    }

    fn report_callback(
        slf: &Bound<'_, Self>,
        callback: &Bound<'_, PyAny>,
        result: PyResult<()>,
    ) -> PyResult<()> {
        let py = slf.py();
        match result {
            Ok(()) => Ok(()),
            Err(err) if escapes(py, &err) => Err(err),
            Err(err) => python::report_protocol_callback_error(
                py,
                slf.get().event_loop.bind(py),
                callback,
                err,
            ),
        }
    }

    fn error_received(slf: &Bound<'_, Self>, errno: c_int) -> PyResult<()> {
        let py = slf.py();
        let err: PyErr = UvError(-errno).into();
        Self::protocol_call(
            slf,
            pyo3::intern!(py, "error_received"),
            (err.into_value(py),),
        )
    }

    /// The tail of asyncio's `_sendto_ready`.
    fn sent(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        Self::maybe_resume_protocol(slf)?;
        if this.queued(py).1 == 0 && this.flags.get(py).closing && this.conn_lost.get(py) == 0 {
            this.conn_lost.set(py, 1);
            Self::call_connection_lost(slf, None)?;
        }
        Ok(())
    }

    fn recv_start(slf: &Bound<'_, Self>) {
        let py = slf.py();
        let this = slf.get();
        if this.flags.get(py).reading {
            return;
        }
        if this.with_handle(py, Udp::recv_start) == Some(Ok(())) {
            this.update_flags(py, |f| f.reading = true);
        }
    }

    fn recv_stop(slf: &Bound<'_, Self>) {
        let py = slf.py();
        let this = slf.get();
        if !this.flags.get(py).reading {
            return;
        }
        this.with_handle(py, Udp::recv_stop);
        this.update_flags(py, |f| f.reading = false);
    }

    fn is_reading(&self, py: Python<'_>) -> bool {
        let flags = self.flags.get(py);
        !flags.paused && !flags.closing
    }

    /// Bytes and datagrams waiting in libuv's send queue.
    fn queued(&self, py: Python<'_>) -> (usize, usize) {
        self.with_handle(py, Udp::send_queue).unwrap_or((0, 0))
    }

    fn write_buffer_size(&self, py: Python<'_>) -> usize {
        let (bytes, count) = self.queued(py);
        bytes + count * self.version.header_size
    }

    fn maybe_pause_protocol(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.flags.get(py).protocol_paused
            || this.write_buffer_size(py) <= this.high_water.get(py)
        {
            return Ok(());
        }
        this.update_flags(py, |f| f.protocol_paused = true);
        Self::flow_control_call(slf, pyo3::intern!(py, "pause_writing"))
    }

    fn maybe_resume_protocol(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if !this.flags.get(py).protocol_paused
            || this.write_buffer_size(py) > this.low_water.get(py)
        {
            return Ok(());
        }
        this.update_flags(py, |f| f.protocol_paused = false);
        Self::flow_control_call(slf, pyo3::intern!(py, "resume_writing"))
    }

    fn flow_control_call<'py>(
        slf: &Bound<'py, Self>,
        name: &Bound<'py, pyo3::types::PyString>,
    ) -> PyResult<()> {
        let py = slf.py();
        let protocol = slf
            .get()
            .protocol
            .borrow(py)
            .as_ref()
            .map(|(p, _)| p.clone_ref(py));
        let Some(protocol) = protocol else {
            return Ok(());
        };
        match protocol.bind(py).call_method0(name) {
            Ok(_) => Ok(()),
            Err(err) if escapes(py, &err) => Err(err),
            Err(err) => Self::call_transport(
                slf,
                "_report_protocol_error",
                (format!("protocol.{name}() failed"), err.into_value(py)),
            ),
        }
    }

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

    fn fatal_error(slf: &Bound<'_, Self>, err: PyErr, message: &str) -> PyResult<()> {
        let py = slf.py();
        if slf.get().transport.borrow(py).is_none() {
            return Self::force_close(slf, Some(err.into_value(py).into_any()));
        }
        Self::call_transport(slf, "_fatal_error", (err.into_value(py), message))
    }

    // ---- sending ---------------------------------------------------------------------------

    /// asyncio's `sendto`.
    fn sendto(
        slf: &Bound<'_, Self>,
        data: &Bound<'_, PyAny>,
        addr: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let bytes: Py<PyBytes> = if let Ok(bytes) = data.cast_exact::<PyBytes>() {
            bytes.clone().unbind()
        } else if data.is_instance_of::<pyo3::types::PyByteArray>()
            || data.is_instance_of::<pyo3::types::PyMemoryView>()
            || data.is_instance_of::<PyBytes>()
        {
            // Copied now: what is queued must not change with the caller's buffer.
            PyBytes::new(py, BufferView::get(data, false)?.as_slice()).unbind()
        } else {
            return Err(PyTypeError::new_err(format!(
                "data argument must be a bytes-like object, not {}",
                data.get_type().name()?.repr()?
            )));
        };
        if this.version.drops_empty && bytes.as_bytes(py).is_empty() {
            return Ok(());
        }
        let mut addr = addr.filter(|a| !a.is_none()).cloned();
        if let Some(address) = &this.address {
            if let Some(given) = &addr {
                if !given.eq(address)? {
                    return Err(PyValueError::new_err(format!(
                        "Invalid address: must be None or {}",
                        address.bind(py).str()?
                    )));
                }
            }
            addr = Some(address.bind(py).clone());
        }
        let lost = this.conn_lost.get(py);
        if lost > 0 {
            // asyncio warns only with a peer; without one its own code fails on the closed
            // socket, where a write after close is simply dropped here.
            if this.address.is_some() && lost >= LOG_THRESHOLD_FOR_CONNLOST_WRITES {
                python::log_warning(py, "socket.send() raised exception.")?;
            }
            this.conn_lost.set(py, lost + 1);
            return Ok(());
        }
        let target = if this.connected {
            None
        } else {
            match addr.as_ref().and_then(|a| this.destination(a)) {
                Some(target) => Some(target),
                None => return Self::sendto_by_name(slf, &bytes, addr),
            }
        };
        Self::send_to(slf, bytes, target.as_ref())
    }

    /// The socket address of a Python address of numbers (None for anything else).
    fn destination(&self, addr: &Bound<'_, PyAny>) -> Option<SocketAddress> {
        let py = addr.py();
        if let Some((cached, target)) = &*self.last_destination.borrow(py) {
            if cached.as_ptr() == addr.as_ptr() {
                return Some(*target);
            }
        }
        let target = numeric_address(self.family, addr)?;
        if addr.is_exact_instance_of::<pyo3::types::PyTuple>() {
            let old = self
                .last_destination
                .replace(py, Some((addr.clone().unbind(), target)));
            drop(old);
        }
        Some(target)
    }

    /// Sends now, or queues behind what libuv has queued.
    fn send_to(
        slf: &Bound<'_, Self>,
        bytes: Py<PyBytes>,
        target: Option<&SocketAddress>,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.queued(py).1 == 0 {
            let Some(Ok(fd)) = this.with_handle(py, Udp::fileno) else {
                return Ok(());
            };
            let data = bytes.as_bytes(py);
            // libuv's uv_udp_try_send would use sendmsg(), with a message header to build and
            // copy in; sendto() has none (see the module's documentation).
            let sent = match target {
                // SAFETY: the address is a sockaddr_in/in6 of `len()` bytes, alive for the call.
                Some(address) => unsafe {
                    syscall::sendto(fd, data, address.as_ptr(), address.len())
                },
                None => syscall::send(fd, data),
            };
            match sent {
                Ok(_) => return Ok(()),
                Err(libc::EAGAIN | libc::ENOBUFS) => {}
                Err(errno) => return Self::error_received(slf, errno),
            }
        }
        let queued = this.with_handle(py, |h| {
            let data: &[u8] = bytes.as_bytes(py);
            // The bytes object keeps the data alive until libuv's callback.
            let (ptr, len) = (data.as_ptr(), data.len());
            // SAFETY: `ptr`/`len` describe the contents of `bytes`, which the request keeps.
            let data = unsafe { std::slice::from_raw_parts(ptr, len) };
            h.send(data, target, bytes.clone_ref(py))
        });
        if let Some(Err(err)) = queued {
            return Self::error_received(slf, err.errno());
        }
        Self::maybe_pause_protocol(slf)
    }

    /// An address the native parser did not take (a host name, a service name, a malformed
    /// one): a host name is refused with ValueError, since resolving it would block the loop (as
    /// uvloop refuses it); the socket module sends to the rest, or refuses it as on asyncio.
    /// Behind a queue, or when the socket is full, the datagram is queued.
    fn sendto_by_name(
        slf: &Bound<'_, Self>,
        bytes: &Py<PyBytes>,
        addr: Option<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let sock = this.sock.bind(py);
        let numeric = match python::numeric_datagram_address(py, sock, addr.as_ref()) {
            Ok(numeric) => numeric,
            Err(err) if err.is_instance_of::<PyValueError>(py) => return Err(err),
            Err(err) => return Self::socket_error(slf, err),
        };
        if this.queued(py).1 == 0 {
            match sock.call_method1(pyo3::intern!(py, "sendto"), (bytes, &numeric)) {
                Ok(_) => return Ok(()),
                Err(err) if err.is_instance_of::<pyo3::exceptions::PyBlockingIOError>(py) => {}
                Err(err) => return Self::socket_error(slf, err),
            }
        }
        match numeric_address(this.family, &numeric) {
            Some(target) => Self::send_to(slf, bytes.clone_ref(py), Some(&target)),
            None => Self::socket_error(slf, PyValueError::new_err("unsupported address")),
        }
    }

    /// What asyncio's sendto does with an exception of the socket module: OSError to the
    /// protocol's error_received, anything else is fatal.
    fn socket_error(slf: &Bound<'_, Self>, err: PyErr) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if escapes(py, &err) {
            return Err(err);
        }
        if !err.is_instance_of::<pyo3::exceptions::PyOSError>(py) {
            return Self::fatal_error(slf, err, "Fatal write error on datagram transport");
        }
        let protocol = this
            .protocol
            .borrow(py)
            .as_ref()
            .map(|(p, _)| p.clone_ref(py));
        match protocol {
            Some(protocol) => {
                let result = protocol
                    .bind(py)
                    .call_method1(pyo3::intern!(py, "error_received"), (err.into_value(py),))
                    .map(drop);
                Self::report_callback(slf, protocol.bind(py), result)
            }
            None => Ok(()),
        }
    }

    // ---- closing ---------------------------------------------------------------------------

    fn close(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.flags.get(py).closing {
            return Ok(());
        }
        this.update_flags(py, |f| f.closing = true);
        Self::recv_stop(slf);
        if this.queued(py).1 == 0 {
            this.conn_lost.set(py, this.conn_lost.get(py) + 1);
            Self::queue(slf, DatagramEvent::ConnectionLost(None));
        }
        Ok(())
    }

    fn force_close(slf: &Bound<'_, Self>, exc: Option<Py<PyAny>>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.conn_lost.get(py) > 0 {
            return Ok(());
        }
        if !this.flags.get(py).closing {
            this.update_flags(py, |f| f.closing = true);
            Self::recv_stop(slf);
        }
        this.conn_lost.set(py, this.conn_lost.get(py) + 1);
        Self::queue(slf, DatagramEvent::ConnectionLost(exc));
        Ok(())
    }

    fn call_connection_lost(slf: &Bound<'_, Self>, exc: Option<Py<PyAny>>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.handle.borrow(py).is_none() {
            return Ok(());
        }
        let result = Self::protocol_call(slf, pyo3::intern!(py, "connection_lost"), (exc,));
        Self::close_handle(slf);
        drop(this.transport.take(py));
        drop(this.protocol.take(py));
        result
    }

    fn close_handle(slf: &Bound<'_, Self>) {
        let py = slf.py();
        let this = slf.get();
        let Some(handle) = this.handle.take(py) else {
            return;
        };
        // libuv closes its duplicate; the socket object goes as asyncio closes it.
        let _ = this.sock.call_method0(py, pyo3::intern!(py, "close"));
        this.event_loop
            .get()
            .forget_transport(py, this.fd, slf.as_any());
        drop(handle);
    }

    pub fn visit_event(
        event: &DatagramEvent,
        visit: &pyo3::PyVisit<'_>,
    ) -> Result<(), pyo3::PyTraverseError> {
        event.visit(visit)
    }
}

/// Makes the transport of a UDP endpoint on `sock` (bound, maybe connected to `address`):
/// libuv takes the descriptor; connection_made (then reading) is queued, as asyncio queues it.
#[pyfunction]
#[pyo3(signature = (event_loop, sock, protocol, address, extra, header_size, drops_empty))]
pub fn open_udp_transport<'py>(
    event_loop: &Bound<'py, Loop>,
    sock: &Bound<'py, PyAny>,
    protocol: &Bound<'py, PyAny>,
    address: Option<Bound<'py, PyAny>>,
    extra: Bound<'py, PyDict>,
    header_size: usize,
    drops_empty: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let py = event_loop.py();
    event_loop.get().check_open(py)?;
    let fd: c_int = sock.call_method0(pyo3::intern!(py, "fileno"))?.extract()?;
    let family: c_int = sock.getattr(pyo3::intern!(py, "family"))?.extract()?;
    let connected = extra
        .get_item("peername")?
        .map(|peer| peer.is_truthy())
        .transpose()?
        .unwrap_or(false);
    let datagram_received = protocol
        .getattr(pyo3::intern!(py, "datagram_received"))
        .ok();
    let core = Bound::new(
        py,
        UdpCore {
            event_loop: event_loop.clone().unbind(),
            transport: GilRefCell::new(None),
            protocol: GilRefCell::new(Some((
                protocol.clone().unbind(),
                datagram_received.map(Bound::unbind),
            ))),
            context: crate::handles::copy_current_context(py)?,
            handle: GilRefCell::new(None),
            fd,
            family,
            address: address
                .filter(|a| a.is_truthy().unwrap_or(false))
                .map(Bound::unbind),
            connected,
            sock: sock.clone().unbind(),
            extra: extra.unbind(),
            version: Version {
                header_size,
                drops_empty,
            },
            flags: GilCell::new(Flags::default()),
            conn_lost: GilCell::new(0),
            high_water: GilCell::new(64 * 1024),
            low_water: GilCell::new(16 * 1024),
            senders: SenderCache::default(),
            read_in_poll: GilCell::new(u64::MAX),
            received: GilCell::new(None),
            last_destination: GilRefCell::new(None),
        },
    )?;
    let handle = private_fd::with_duplicate(fd, |duplicate| {
        Udp::open(
            event_loop.get().uv(),
            duplicate,
            UdpOwner(core.clone().unbind()),
        )
    })?;
    let this = core.get();
    drop(this.handle.replace(py, Some(handle)));
    let transport = python_class::new_instance(py, ClassKind::Datagram, core.as_any())?;
    drop(this.transport.replace(py, Some(transport.clone().unbind())));
    event_loop.get().remember_transport(py, fd, core.as_any());
    UdpCore::queue(&core, DatagramEvent::ConnectionMade);
    Ok(transport)
}

#[pymethods]
impl UdpCore {
    /// `(fd, closed, closing, reading, bufsize)` for the Python transport's repr.
    fn _repr_info(&self, py: Python<'_>) -> (c_int, bool, bool, bool, usize) {
        let flags = self.flags.get(py);
        (
            self.fd,
            self.handle.borrow(py).is_none(),
            flags.closing,
            flags.reading,
            self.write_buffer_size(py),
        )
    }

    #[getter]
    fn _loop(&self, py: Python<'_>) -> Option<Py<Loop>> {
        self.transport
            .borrow(py)
            .as_ref()
            .map(|_| self.event_loop.clone_ref(py))
    }

    #[getter]
    fn _protocol_paused(&self, py: Python<'_>) -> bool {
        self.flags.get(py).protocol_paused
    }

    #[getter]
    fn _conn_lost(&self, py: Python<'_>) -> u32 {
        self.conn_lost.get(py)
    }

    #[getter]
    fn _address(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.address.as_ref().map(|a| a.clone_ref(py))
    }

    #[getter]
    fn _sock_fd(&self) -> c_int {
        self.fd
    }

    fn _set_write_buffer_limits(slf: &Bound<'_, Self>, high: usize, low: usize) -> PyResult<()> {
        let py = slf.py();
        slf.get().high_water.set(py, high);
        slf.get().low_water.set(py, low);
        Self::maybe_pause_protocol(slf)
    }

    fn __traverse__(&self, visit: pyo3::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        // SAFETY: tp_traverse runs with the GIL held by the collector.
        let py = unsafe { Python::assume_attached() };
        visit.call(&self.event_loop)?;
        visit.call(&self.context)?;
        visit.call(&self.sock)?;
        visit.call(&self.extra)?;
        if let Some(address) = &self.address {
            visit.call(address)?;
        }
        if let Some(transport) = self.transport.try_borrow(py) {
            if let Some(transport) = &*transport {
                visit.call(transport)?;
            }
        }
        if let Some(protocol) = self.protocol.try_borrow(py) {
            if let Some((protocol, method)) = &*protocol {
                visit.call(protocol)?;
                if let Some(method) = method {
                    visit.call(method)?;
                }
            }
        }
        if let Some(destination) = self.last_destination.try_borrow(py) {
            if let Some((addr, _)) = &*destination {
                visit.call(addr)?;
            }
        }
        self.senders.visit(&visit)
    }

    fn __clear__(&self) {
        // SAFETY: tp_clear runs with the GIL held by the collector.
        let py = unsafe { Python::assume_attached() };
        drop(self.transport.take(py));
        drop(self.protocol.take(py));
        drop(self.last_destination.take(py));
        self.senders.clear(py);
    }
}

noargs!(UdpCore, m_close, |core| UdpCore::close(core)
    .map(|()| none(core.py())));
noargs!(UdpCore, m_abort, |core| UdpCore::force_close(core, None)
    .map(|()| none(core.py())));
noargs!(UdpCore, m_is_closing, |core| Ok(boolean(
    core.py(),
    core.get().flags.get(core.py()).closing
)));
noargs!(UdpCore, m_is_reading, |core| Ok(boolean(
    core.py(),
    core.get().is_reading(core.py())
)));
noargs!(UdpCore, m_pause_reading, |core| {
    let py = core.py();
    if core.get().is_reading(py) {
        core.get().update_flags(py, |f| f.paused = true);
        UdpCore::recv_stop(core);
    }
    Ok(none(py))
});
noargs!(UdpCore, m_resume_reading, |core| {
    let py = core.py();
    let flags = core.get().flags.get(py);
    if !flags.closing && flags.paused {
        core.get().update_flags(py, |f| f.paused = false);
        UdpCore::recv_start(core);
    }
    Ok(none(py))
});
noargs!(UdpCore, m_get_write_buffer_size, |core| {
    let size = core.get().write_buffer_size(core.py());
    Ok(size.into_pyobject(core.py())?.into_any().unbind())
});
noargs!(UdpCore, m_get_write_buffer_limits, |core| {
    let this = core.get();
    let limits = (
        this.low_water.get(core.py()),
        this.high_water.get(core.py()),
    );
    Ok(limits.into_pyobject(core.py())?.into_any().unbind())
});
noargs!(UdpCore, m_get_protocol, |core| {
    let py = core.py();
    Ok(core
        .get()
        .protocol
        .borrow(py)
        .as_ref()
        .map_or_else(|| py.None(), |(p, _)| p.clone_ref(py)))
});
one_arg!(UdpCore, m_set_protocol, |core, protocol| {
    let py = core.py();
    let method = protocol
        .getattr(pyo3::intern!(py, "datagram_received"))
        .ok();
    let new = Some((protocol.clone().unbind(), method.map(Bound::unbind)));
    drop(core.get().protocol.replace(py, new));
    Ok(none(py))
});
one_arg!(UdpCore, m_force_close, |core, exc| {
    let exc = (!exc.is_none()).then(|| exc.unbind());
    UdpCore::force_close(core, exc).map(|()| none(core.py()))
});

/// `sendto(data, addr=None)`.
unsafe extern "C" fn m_sendto(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    python_class::call::<UdpCore>(slf, |core| {
        // SAFETY: the arguments CPython passed to this method.
        let [data, addr] = unsafe {
            python_class::fastcall_arguments(
                core.py(),
                "sendto",
                ["data", "addr"],
                1,
                args,
                nargs,
                kwnames,
            )?
        };
        let data = data.ok_or_else(|| PyTypeError::new_err("sendto() needs data"))?;
        UdpCore::sendto(core, &data, addr.as_ref()).map(|()| none(core.py()))
    })
}

/// `get_extra_info(name, default=None)`.
unsafe extern "C" fn m_get_extra_info(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    python_class::call::<UdpCore>(slf, |core| {
        let py = core.py();
        // SAFETY: the arguments CPython passed to this method.
        let [name, default] = unsafe {
            python_class::fastcall_arguments(
                py,
                "get_extra_info",
                ["name", "default"],
                1,
                args,
                nargs,
                kwnames,
            )?
        };
        let name = name.ok_or_else(|| PyTypeError::new_err("get_extra_info() needs a name"))?;
        match core.get().extra.bind(py).get_item(&name)? {
            Some(value) => Ok(value.unbind()),
            None => Ok(default.map_or_else(|| py.None(), Bound::unbind)),
        }
    })
}

/// The methods of `uvloop._transports.UDPTransport` (pause/resume_reading where the running
/// Python's datagram transport has them: see the Python class).
pub const DATAGRAM_METHODS: &[Method] = &[
    with_fastcall(c"sendto", m_sendto),
    without_args(c"close", m_close),
    without_args(c"abort", m_abort),
    without_args(c"is_closing", m_is_closing),
    without_args(c"_is_reading", m_is_reading),
    without_args(c"_pause_reading", m_pause_reading),
    without_args(c"_resume_reading", m_resume_reading),
    without_args(c"get_write_buffer_size", m_get_write_buffer_size),
    without_args(c"get_write_buffer_limits", m_get_write_buffer_limits),
    without_args(c"get_protocol", m_get_protocol),
    with_one_arg(c"set_protocol", m_set_protocol),
    with_fastcall(c"get_extra_info", m_get_extra_info),
    with_one_arg(c"_force_close", m_force_close),
];
