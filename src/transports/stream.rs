//! TCP and Unix stream transports on libuv handles (`uv_tcp_t`, `uv_pipe_t`), with asyncio's
//! `_SelectorSocketTransport` semantics.
//!
//! `StreamCore` is the native state of a `uvloop._transports.SocketTransport` (an
//! `asyncio.Transport`, see `socket_transport`). libuv reads into memory the core hands it (the
//! loop thread's read buffer, a new `bytes` for long reads, or a `BufferedProtocol`'s buffer) and
//! writes what `uv_try_write` could not send at once through `uv_write` requests that own their
//! buffers. Every protocol-visible consequence of a libuv callback is queued as a `StreamEvent` on
//! the loop's ready queue, where asyncio would have queued the transport's reader or writer handle,
//! so protocol callbacks run in asyncio's order and never inside libuv.
//!
//! libuv holds a strong reference to the core (the handle's `Owner`) from open until the handle's
//! close callback: an open connection stays alive, and `_call_connection_lost` (or the loop's
//! `close()`) is what closes the handle.

use std::collections::VecDeque;
use std::os::raw::c_int;

use pyo3::exceptions::{PyKeyboardInterrupt, PyRuntimeError, PySystemExit, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyMemoryView};

use super::buffer::READ_BUFFER_SIZE;
use super::buffer::{copy_from_read_buffer, read_buffer, BufferView, Chunk, NewBytes};
use super::private_fd;
use super::server::{ServerClients, ServerListener};
use super::syscall;
use crate::gil::{GilCell, GilRefCell};
use crate::handles::Outcome;
use crate::loop_::{Loop, Ready};
use crate::python;
use crate::uv::error::UvError;
use crate::uv::handle::LoopClose;
use crate::uv::stream::{buf, Stream, StreamEvents};
use crate::uv::sys;

/// After a read at least this long, the next one goes straight into its `bytes` (reads of a
/// connection tend to be alike, and copying a long one out of the read buffer costs more than
/// allocating the largest one).
const DIRECT_READ_MIN: usize = 32 * 1024;
/// The most such a read takes: less than glibc's threshold for serving an allocation with its
/// own mmap (128 KiB), which would cost page faults and an munmap per read.
const DIRECT_READ_SIZE: usize = 120 * 1024;
/// asyncio's `constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES`.
const LOG_THRESHOLD_FOR_CONNLOST_WRITES: u32 = 5;
/// How many chunks one vectored write hands libuv at most (well under IOV_MAX).
const MAX_WRITE_BUFS: usize = 64;

/// What a libuv callback (or a transport method) leaves for the ready queue.
pub enum StreamEvent {
    /// `protocol.connection_made(transport)`, queued when the transport is made, then the start
    /// of reading (asyncio queues its reader right behind connection_made).
    ConnectionMade,
    /// Reading starts again, behind what arrived while it was paused.
    StartReading,
    /// The stream has bytes to read, found by a poll whose I/O is queued: read when the event
    /// runs, as asyncio reads when its reader handle runs (see `StreamCore::alloc`).
    Readable,
    Data(Py<PyBytes>),
    /// A BufferedProtocol's buffer got this many bytes (see `StreamCore::buffered_read`).
    Filled(usize),
    Eof,
    /// A failed read (errno), or a failed `get_buffer()` call.
    ReadFailed(ReadFailure),
    /// A write request failed (errno).
    WriteFailed(c_int),
    /// Writes finished: flow control, the sendfile waiter, and a pending close or shutdown.
    Drained,
    /// asyncio's `_call_connection_lost(exc)`.
    ConnectionLost(Option<Py<PyAny>>),
    /// A server accepted the connection: its protocol and transport are made now.
    Accepted(Py<ServerListener>),
    /// A read pipe's `protocol.eof_received()` (asyncio calls it soon after end of file).
    EofReceived,
    /// The reading end of a write pipe went away (see `Loop::watch_peer_close`).
    PeerClosed,
}

pub enum ReadFailure {
    /// A failed read: the errno.
    Errno(c_int),
    /// Boxed: a PyErr is eight words, which would make every entry of the loop's ready queue
    /// that large.
    GetBuffer(Box<PyErr>),
}

impl StreamEvent {
    fn visit(&self, visit: &pyo3::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        match self {
            StreamEvent::Data(data) => visit.call(data),
            StreamEvent::ConnectionLost(Some(exc)) => visit.call(exc),
            StreamEvent::Accepted(listener) => visit.call(listener),
            _ => Ok(()),
        }
    }

    /// Events of the read side, held back while reading is paused.
    fn is_read(&self) -> bool {
        matches!(
            self,
            StreamEvent::Data(_) | StreamEvent::Eof | StreamEvent::ReadFailed(_)
        )
    }
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
    fn new(protocol: &Bound<'_, PyAny>, kind: Kind) -> PyResult<Self> {
        let py = protocol.py();
        let method = |name| protocol.getattr(name).ok().map(Bound::unbind);
        // asyncio's pipe transports call data_received whatever the protocol.
        let buffered =
            kind == Kind::Socket && protocol.is_instance(python::buffered_protocol_type(py)?)?;
        let read = if buffered {
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

    fn is_buffered(&self) -> bool {
        matches!(self.read, ReadPath::Buffered(_))
    }
}

/// A buffered read between libuv's alloc and its delivery: the protocol's buffer (held as a
/// writable view) and the `buffer_updated` of the protocol that gave it.
struct BufferedRead {
    view: BufferView,
    updated: Py<PyAny>,
}

/// Where the next read of a data protocol lands.
enum ReadTarget {
    None,
    /// The loop thread's read buffer.
    Shared,
    /// A new `bytes` object (long reads).
    Direct(NewBytes),
}

/// A protocol callback's failure: KeyboardInterrupt and SystemExit leave the loop, anything else
/// is the transport's fatal error (or goes to the exception handler).
fn escapes(py: Python<'_>, err: &PyErr) -> bool {
    err.is_instance_of::<PyKeyboardInterrupt>(py) || err.is_instance_of::<PySystemExit>(py)
}

/// What a stream transport is: a socket's (asyncio's `_SelectorSocketTransport`), or either end of
/// a pipe (asyncio's `_UnixReadPipeTransport` and `_UnixWritePipeTransport`, whose closing,
/// end-of-file and error handling differ).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Socket,
    ReadPipe,
    WritePipe,
}

/// Boolean state of a transport.
#[derive(Clone, Copy, Default)]
struct Flags {
    closing: bool,
    /// write_eof() was called.
    eof: bool,
    /// pause_reading() was called (and resume_reading() not since).
    paused: bool,
    protocol_paused: bool,
    /// libuv is reading (uv_read_start without a stop since).
    reading: bool,
    /// A read event is queued and not yet run: libuv's next alloc is declined until it has,
    /// so reads reach the protocol one per poll, as asyncio reads.
    read_queued: bool,
    /// The last read was long: read the next one straight into its `bytes`.
    direct_reads: bool,
    /// Inside libuv's alloc callback (a BufferedProtocol's get_buffer runs there): libuv must
    /// not be told to stop reading until its read callback (it calls that next).
    in_alloc: bool,
    /// Reading was stopped during the alloc callback: uv_read_stop is due in the read callback.
    stop_after_read: bool,
    /// A TCP socket (else a Unix socket or a pipe).
    tcp: bool,
}

#[pyclass(frozen, module = "uvloop.loop", name = "StreamCore")]
pub struct StreamCore {
    event_loop: Py<Loop>,
    /// The Python transport that protocols see; None once the connection is lost.
    transport: GilRefCell<Option<Py<PyAny>>>,
    protocol: GilRefCell<Option<Protocol>>,
    /// The context protocol callbacks run in (a copy of the one the transport was made in).
    context: Py<PyAny>,
    /// The libuv handle; None once closed.
    stream: GilRefCell<Option<Stream<Owner>>>,
    kind: Kind,
    /// The descriptor libuv owns (for reprs and the loop's transport table).
    fd: GilCell<c_int>,
    flags: GilCell<Flags>,
    conn_lost: GilCell<u32>,
    /// Bytes accepted by write() and not yet handed to libuv (while a write request is out).
    pending: GilRefCell<VecDeque<Chunk>>,
    pending_size: GilCell<usize>,
    /// Write requests libuv has not finished.
    writes_in_flight: GilCell<u32>,
    high_water: GilCell<usize>,
    low_water: GilCell<usize>,
    /// The future sendfile waits on until the write buffer is empty.
    empty_waiter: GilRefCell<Option<Py<PyAny>>>,
    read_target: GilRefCell<ReadTarget>,
    buffered_read: GilRefCell<Option<BufferedRead>>,
    /// The result of a socket read made in the alloc callback (see `alloc`), for the read
    /// callback libuv makes right after it.
    received: GilCell<Option<isize>>,
    /// Read events that arrived while reading was paused, delivered on resume_reading().
    held: GilRefCell<VecDeque<StreamEvent>>,
    /// The socket object: the one the transport was made with, or one made on demand for
    /// `get_extra_info('socket')`, over a descriptor of its own (see `private_fd`); closed with
    /// the transport.
    sock: GilRefCell<Option<Py<PyAny>>>,
    /// `extra` given at creation plus what get_extra_info computed; made on first use.
    extra: GilRefCell<Option<Py<PyDict>>>,
    /// The clients of the server that accepted the connection, and this core's slot there.
    server: GilRefCell<Option<(Py<ServerClients>, usize)>>,
}

/// What a stream handle's callbacks hold: the transport's core, alive while the handle is open.
pub struct Owner(Py<StreamCore>);

impl LoopClose for Owner {
    fn close_at_loop_close(&self, py: Python<'_>) {
        let core = self.0.bind(py);
        let this = core.get();
        this.conn_lost.set(py, this.conn_lost.get(py).max(1));
        let mut flags = this.flags.get(py);
        flags.closing = true;
        this.flags.set(py, flags);
        StreamCore::close_handle(core);
    }
}

impl StreamEvents for Owner {
    fn alloc(&self, py: Python<'_>) -> (*mut u8, usize) {
        StreamCore::alloc(self.0.bind(py))
    }

    fn read(&self, py: Python<'_>, nread: isize) {
        StreamCore::on_read(self.0.bind(py), nread);
    }

    fn written(&self, py: Python<'_>, status: c_int) {
        StreamCore::on_written(self.0.bind(py), status);
    }

    fn shut_down(&self, _py: Python<'_>, _status: c_int) {}
}

impl StreamCore {
    /// A core for a connection whose handle is opened next (`set_stream`).
    /// A core for a connection whose handle is opened next (`set_stream`); an accepted one gets
    /// its protocol once the factory made it.
    pub fn new(
        event_loop: Py<Loop>,
        kind: Kind,
        protocol: Option<&Bound<'_, PyAny>>,
        context: Py<PyAny>,
        fd: c_int,
        tcp: bool,
    ) -> PyResult<Self> {
        let protocol = protocol.map(|p| Protocol::new(p, kind)).transpose()?;
        Ok(Self {
            event_loop,
            transport: GilRefCell::new(None),
            protocol: GilRefCell::new(protocol),
            context,
            stream: GilRefCell::new(None),
            kind,
            fd: GilCell::new(fd),
            flags: GilCell::new(Flags {
                tcp,
                ..Flags::default()
            }),
            conn_lost: GilCell::new(0),
            pending: GilRefCell::new(VecDeque::new()),
            pending_size: GilCell::new(0),
            writes_in_flight: GilCell::new(0),
            high_water: GilCell::new(64 * 1024),
            low_water: GilCell::new(16 * 1024),
            empty_waiter: GilRefCell::new(None),
            read_target: GilRefCell::new(ReadTarget::None),
            received: GilCell::new(None),
            buffered_read: GilRefCell::new(None),
            held: GilRefCell::new(VecDeque::new()),
            sock: GilRefCell::new(None),
            extra: GilRefCell::new(None),
            server: GilRefCell::new(None),
        })
    }

    pub fn owner(slf: &Bound<'_, Self>) -> Owner {
        Owner(slf.clone().unbind())
    }

    pub fn set_stream(&self, py: Python<'_>, stream: Stream<Owner>) {
        drop(self.stream.replace(py, Some(stream)));
    }

    pub fn set_transport(&self, py: Python<'_>, transport: Py<PyAny>) {
        drop(self.transport.replace(py, Some(transport)));
    }

    pub fn set_socket(&self, py: Python<'_>, sock: Option<Py<PyAny>>) {
        drop(self.sock.replace(py, sock));
    }

    pub fn set_extra(&self, py: Python<'_>, extra: Option<Py<PyDict>>) {
        drop(self.extra.replace(py, extra));
    }

    pub fn set_server(&self, py: Python<'_>, server: Option<(Py<ServerClients>, usize)>) {
        drop(self.server.replace(py, server));
    }

    /// The server's accounting moved this core to `slot`.
    pub fn move_server_slot(&self, py: Python<'_>, slot: usize) {
        if let Some((_, current)) = self.server.borrow_mut(py).as_mut() {
            *current = slot;
        }
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn fd(&self, py: Python<'_>) -> c_int {
        self.fd.get(py)
    }

    pub fn set_fd(&self, py: Python<'_>, fd: c_int) {
        self.fd.set(py, fd);
    }

    /// Closes an accepted connection whose protocol could not be made (no connection_lost).
    pub fn abandon(slf: &Bound<'_, Self>) {
        let py = slf.py();
        let this = slf.get();
        this.conn_lost.set(py, this.conn_lost.get(py) + 1);
        this.update_flags(py, |f| f.closing = true);
        Self::close_handle(slf);
    }

    pub fn is_tcp(&self, py: Python<'_>) -> bool {
        self.flags.get(py).tcp
    }

    pub fn transport(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.transport.borrow(py).as_ref().map(|t| t.clone_ref(py))
    }

    fn update_flags(&self, py: Python<'_>, change: impl FnOnce(&mut Flags)) {
        let mut flags = self.flags.get(py);
        change(&mut flags);
        self.flags.set(py, flags);
    }

    /// Queues `event` on the loop's ready queue.
    pub fn queue(slf: &Bound<'_, Self>, event: StreamEvent) {
        let py = slf.py();
        slf.get()
            .event_loop
            .get()
            .push_ready(py, Ready::Stream(slf.clone().unbind(), event));
    }

    /// Hands an event from a libuv callback to the loop: run now, inside the poll, when that
    /// keeps asyncio's order (see `Loop::deliver_io`), else queued.
    pub fn deliver(slf: &Bound<'_, Self>, event: StreamEvent) {
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

    fn with_stream<R>(&self, py: Python<'_>, f: impl FnOnce(&Stream<Owner>) -> R) -> Option<R> {
        self.stream.borrow(py).as_ref().map(f)
    }

    // ---- libuv callbacks -------------------------------------------------------------------

    /// libuv's alloc callback: where the read it is about to make lands. A poll whose I/O is
    /// queued reads nothing now: it queues `Readable`, and the read happens when that runs, so
    /// that what one poll found is not all held in memory at once (ten connections' 100 KiB
    /// reads alive together, then freed together, make glibc give the heap top back and
    /// fault it in again on every read) and a read comes after the callbacks queued before it.
    ///
    /// A socket is read here, with `recv()`, and libuv is given no memory: it then calls the
    /// read callback with UV_ENOBUFS at once, which delivers this read instead. libuv's own
    /// `read()` goes through the file layer (position lock, file permission hook, fsnotify),
    /// which costs a measurable part of a small message's round trip (see bench/RESULTS.md).
    fn alloc(slf: &Bound<'_, Self>) -> (*mut u8, usize) {
        let py = slf.py();
        let this = slf.get();
        if this.flags.get(py).read_queued || this.conn_lost.get(py) > 0 {
            return (std::ptr::null_mut(), 0);
        }
        if !this.event_loop.get().io_inline(py) {
            this.update_flags(py, |f| f.read_queued = true);
            Self::queue(slf, StreamEvent::Readable);
            return (std::ptr::null_mut(), 0);
        }
        let (target, len) = Self::read_destination(slf, false);
        if this.kind != Kind::Socket || target.is_null() {
            return (target, len);
        }
        let nread = match this.with_stream(py, Stream::fileno) {
            Some(Ok(fd)) => this.read_fd(fd, target, len),
            _ => 0,
        };
        this.received.set(py, Some(nread));
        (std::ptr::null_mut(), 0)
    }

    /// Reads the stream's descriptor into the `len` writable bytes at `target`; the result as
    /// libuv reports a read: a byte count, 0 for nothing there (EAGAIN, EINTR), UV_EOF at the
    /// end, or a negative libuv error.
    fn read_fd(&self, fd: c_int, target: *mut u8, len: usize) -> isize {
        let result = if self.kind == Kind::Socket {
            syscall::recv(fd, target, len)
        } else {
            syscall::read(fd, target, len)
        };
        match result {
            Ok(0) => sys::uv_errno_t_UV_EOF as isize,
            Ok(n) => n as isize,
            Err(libc::EAGAIN) => 0,
            Err(errno) => -(errno as isize),
        }
    }

    /// Where a read lands: the protocol's buffer, a new `bytes` for long reads, or the loop
    /// thread's read buffer; (NULL, 0) when there is none to give. `in_context`: the
    /// transport's context is entered already (a queued event runs in it).
    fn read_destination(slf: &Bound<'_, Self>, in_context: bool) -> (*mut u8, usize) {
        let py = slf.py();
        let this = slf.get();
        let flags = this.flags.get(py);
        let buffered = match this.protocol.borrow(py).as_ref() {
            Some(protocol) => protocol.is_buffered(),
            None => return (std::ptr::null_mut(), 0),
        };
        if buffered {
            return Self::alloc_protocol_buffer(slf, in_context);
        }
        if flags.direct_reads {
            if let Ok(bytes) = NewBytes::new(py, DIRECT_READ_SIZE) {
                let answer = (bytes.as_mut_ptr(), bytes.capacity());
                drop(this.read_target.replace(py, ReadTarget::Direct(bytes)));
                return answer;
            }
        }
        drop(this.read_target.replace(py, ReadTarget::Shared));
        (read_buffer(), READ_BUFFER_SIZE)
    }

    /// A BufferedProtocol's `get_buffer(-1)`, in the transport's context (entered here unless
    /// `entered`); a failure is held for `on_read` (which libuv calls with UV_ENOBUFS when the
    /// alloc is declined).
    fn alloc_protocol_buffer(slf: &Bound<'_, Self>, entered: bool) -> (*mut u8, usize) {
        let py = slf.py();
        let this = slf.get();
        let methods = match this.protocol.borrow(py).as_ref().map(|p| &p.read) {
            Some(ReadPath::Buffered(Some((get, updated)))) => {
                Some((get.clone_ref(py), updated.clone_ref(py)))
            }
            _ => None,
        };
        this.update_flags(py, |f| f.in_alloc = true);
        let get_buffer = || {
            let (get_buffer, updated) = match methods {
                Some((get, updated)) => (get.into_bound(py), updated),
                None => (
                    Self::protocol_method(slf, pyo3::intern!(slf.py(), "get_buffer"))?,
                    Self::protocol_method(slf, pyo3::intern!(slf.py(), "buffer_updated"))?.unbind(),
                ),
            };
            let buffer = get_buffer.call1((-1,))?;
            if buffer.len()? == 0 {
                return Err(PyRuntimeError::new_err(
                    "get_buffer() returned an empty buffer",
                ));
            }
            let view = BufferView::get(&buffer, true)?;
            Ok(BufferedRead { view, updated })
        };
        let result = if entered {
            get_buffer()
        } else {
            in_context(py, &this.context, get_buffer)
        };
        this.update_flags(py, |f| f.in_alloc = false);
        match result {
            Ok(read) => {
                let answer = (read.view.as_ptr(), read.view.len());
                drop(this.buffered_read.replace(py, Some(read)));
                answer
            }
            Err(err) => {
                this.update_flags(py, |f| {
                    f.read_queued = true;
                    f.stop_after_read = f.reading;
                    f.reading = false;
                });
                Self::queue(
                    slf,
                    StreamEvent::ReadFailed(ReadFailure::GetBuffer(Box::new(err))),
                );
                (std::ptr::null_mut(), 0)
            }
        }
    }

    fn on_read(slf: &Bound<'_, Self>, nread: isize) {
        let nread = match slf.get().received.replace(slf.py(), None) {
            Some(own) if nread == sys::uv_errno_t_UV_ENOBUFS as isize => own,
            _ => nread,
        };
        if let Some(event) = Self::read_done(slf, nread) {
            slf.get().update_flags(slf.py(), |f| f.read_queued = true);
            Self::deliver(slf, event);
        }
    }

    /// A queued `Readable`: reads the stream's fd now, as libuv would have (reading stays
    /// watched by libuv, which finds the fd readable again if more is left).
    fn read_now(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let Some(Ok(fd)) = this.with_stream(py, Stream::fileno) else {
            return Ok(());
        };
        let (target, len) = Self::read_destination(slf, true);
        let nread = if target.is_null() {
            sys::uv_errno_t_UV_ENOBUFS as isize
        } else {
            // Nothing there after all (0): the target is released unused, libuv looks again.
            this.read_fd(fd, target, len)
        };
        match Self::read_done(slf, nread) {
            Some(event) => Self::dispatch(slf, event),
            None => Ok(()),
        }
    }

    /// A read's result (`nread` as libuv reports it) as the event to deliver, if any.
    fn read_done(slf: &Bound<'_, Self>, nread: isize) -> Option<StreamEvent> {
        let py = slf.py();
        let this = slf.get();
        if this.flags.get(py).stop_after_read {
            this.update_flags(py, |f| f.stop_after_read = false);
            this.with_stream(py, Stream::read_stop);
        }
        let target = this.read_target.replace(py, ReadTarget::None);
        if nread > 0 {
            let n = nread as usize;
            if let Some(read) = this.buffered_read.borrow(py).as_ref() {
                let _ = read;
                Some(StreamEvent::Filled(n))
            } else {
                let data = match target {
                    ReadTarget::Direct(bytes) => bytes.finish(py, n).ok(),
                    ReadTarget::Shared => Some(copy_from_read_buffer(py, n)),
                    ReadTarget::None => None,
                };
                this.update_flags(py, |f| f.direct_reads = n >= DIRECT_READ_MIN);
                match data {
                    Some(data) => Some(StreamEvent::Data(data.unbind())),
                    None => Some(StreamEvent::ReadFailed(ReadFailure::Errno(libc::ENOMEM))),
                }
            }
        } else {
            drop(target);
            // Nothing read into the protocol's buffer: it is released unused.
            if nread != sys::uv_errno_t_UV_ENOBUFS as isize {
                drop(this.buffered_read.take(py));
            }
            match nread as c_int {
                0 | sys::uv_errno_t_UV_ENOBUFS => None,
                // libuv stops reading after either (a read of our own must stop it too).
                sys::uv_errno_t_UV_EOF => {
                    Self::read_ended(slf);
                    Some(StreamEvent::Eof)
                }
                err => {
                    Self::read_ended(slf);
                    Some(StreamEvent::ReadFailed(ReadFailure::Errno(-err)))
                }
            }
        }
    }

    fn read_ended(slf: &Bound<'_, Self>) {
        let py = slf.py();
        let this = slf.get();
        this.with_stream(py, Stream::read_stop);
        this.update_flags(py, |f| f.reading = false);
    }

    fn on_written(slf: &Bound<'_, Self>, status: c_int) {
        let py = slf.py();
        let this = slf.get();
        this.writes_in_flight
            .set(py, this.writes_in_flight.get(py).saturating_sub(1));
        if status == sys::uv_errno_t_UV_ECANCELED {
            return;
        }
        if status < 0 {
            this.drop_pending(py);
            Self::deliver(slf, StreamEvent::WriteFailed(-status));
            return;
        }
        if this.conn_lost.get(py) == 0 && !this.pending.borrow(py).is_empty() {
            if let Err(err) = Self::submit_pending(slf) {
                Self::deliver(slf, StreamEvent::WriteFailed(err.errno()));
                return;
            }
        }
        Self::deliver(slf, StreamEvent::Drained);
    }

    // ---- events ----------------------------------------------------------------------------

    /// Runs a queued event in the transport's context.
    pub fn run_event(slf: &Bound<'_, Self>, event: StreamEvent) -> Outcome {
        let py = slf.py();
        let this = slf.get();
        let result = in_context(py, &this.context, || Self::dispatch(slf, event));
        match result {
            Ok(()) => Outcome::Done,
            Err(err) if escapes(py, &err) => Outcome::Escape(err),
            // Errors of the reporting itself (a failing exception handler, say) go where an
            // exception handler's own errors go in asyncio: to the log, and the loop goes on.
            Err(err) => {
                err.write_unraisable(py, Some(slf.as_any()));
                Outcome::Done
            }
        }
    }

    fn dispatch(slf: &Bound<'_, Self>, event: StreamEvent) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if event.is_read() || matches!(event, StreamEvent::Filled(_) | StreamEvent::Readable) {
            this.update_flags(py, |f| f.read_queued = false);
        }
        match event {
            StreamEvent::Readable => {
                let flags = this.flags.get(py);
                if this.conn_lost.get(py) > 0 || flags.closing || flags.paused || !flags.reading {
                    return Ok(());
                }
                Self::read_now(slf)
            }
            StreamEvent::ConnectionMade => {
                Self::connection_made(slf)?;
                if this.kind != Kind::WritePipe && this.is_reading(py) {
                    Self::read_start(slf);
                }
                Ok(())
            }
            StreamEvent::StartReading => {
                if this.is_reading(py) {
                    Self::read_start(slf);
                }
                Ok(())
            }
            StreamEvent::Filled(n) => Self::buffer_updated(slf, n),
            event if event.is_read() => {
                let flags = this.flags.get(py);
                if this.conn_lost.get(py) > 0 || flags.closing {
                    return Ok(());
                }
                if flags.paused {
                    this.held.borrow_mut(py).push_back(event);
                    return Ok(());
                }
                match event {
                    StreamEvent::Data(data) => Self::data_received(slf, data),
                    StreamEvent::Eof => Self::read_eof(slf),
                    StreamEvent::ReadFailed(ReadFailure::Errno(errno)) => Self::fatal_error(
                        slf,
                        UvError(-errno).into(),
                        this.message("Fatal read error on socket transport"),
                    ),
                    StreamEvent::ReadFailed(ReadFailure::GetBuffer(err)) => Self::fatal_error(
                        slf,
                        *err,
                        "Fatal error: protocol.get_buffer() call failed.",
                    ),
                    _ => Ok(()),
                }
            }
            StreamEvent::WriteFailed(errno) => {
                let err: PyErr = UvError(-errno).into();
                if this.kind == Kind::WritePipe {
                    this.conn_lost.set(py, this.conn_lost.get(py) + 1);
                }
                let waiter = this
                    .empty_waiter
                    .borrow(py)
                    .as_ref()
                    .map(|w| w.clone_ref(py));
                let exc = err.clone_ref(py).into_value(py);
                Self::fatal_error(
                    slf,
                    err,
                    this.message("Fatal write error on socket transport"),
                )?;
                if let Some(waiter) = waiter {
                    waiter.call_method1(py, pyo3::intern!(py, "set_exception"), (exc,))?;
                }
                Ok(())
            }
            StreamEvent::Drained => Self::drained(slf),
            StreamEvent::EofReceived => {
                let method = Self::protocol_method(slf, pyo3::intern!(py, "eof_received"));
                Self::run_callback(slf, method, ())
            }
            StreamEvent::PeerClosed => Self::peer_closed(slf),
            StreamEvent::ConnectionLost(exc) => Self::call_connection_lost(slf, exc),
            StreamEvent::Accepted(listener) => {
                ServerListener::connection_accepted(listener.bind(py), slf)
            }
            _ => Ok(()),
        }
    }

    fn connection_made(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let (Some(transport), Ok(method)) = (
            this.transport(py),
            Self::protocol_method(slf, pyo3::intern!(slf.py(), "connection_made")),
        ) else {
            return Ok(());
        };
        if let Err(err) = method.call1((transport,)) {
            if escapes(py, &err) {
                return Err(err);
            }
            python::report_protocol_callback_error(py, this.event_loop.bind(py), &method, err)?;
        }
        Ok(())
    }

    fn data_received(slf: &Bound<'_, Self>, data: Py<PyBytes>) -> PyResult<()> {
        let py = slf.py();
        let method = match slf.get().protocol.borrow(py).as_ref().map(|p| &p.read) {
            Some(ReadPath::Data(Some(method))) => Some(method.clone_ref(py)),
            Some(ReadPath::Buffered(_)) | None => return Ok(()),
            Some(ReadPath::Data(None)) => None,
        };
        let result = match method {
            Some(method) => call_one(py, &method, data.as_any()),
            None => Self::protocol_method(slf, pyo3::intern!(slf.py(), "data_received"))
                .and_then(|m| m.call1((data,)).map(drop)),
        };
        if slf.get().kind == Kind::ReadPipe {
            // asyncio's read pipe lets it out of its reader handle: reported, reading goes on.
            return match result {
                Ok(()) => Ok(()),
                Err(err) if escapes(py, &err) => Err(err),
                Err(err) => {
                    let method = Self::protocol_method(slf, pyo3::intern!(py, "data_received"))
                        .unwrap_or_else(|_| slf.get().event_loop.bind(py).clone().into_any());
                    python::report_protocol_callback_error(
                        py,
                        slf.get().event_loop.bind(py),
                        &method,
                        err,
                    )
                }
            };
        }
        Self::protocol_result(
            slf,
            result,
            "Fatal error: protocol.data_received() call failed.",
        )
    }

    fn buffer_updated(slf: &Bound<'_, Self>, nbytes: usize) -> PyResult<()> {
        let py = slf.py();
        let Some(read) = slf.get().buffered_read.take(py) else {
            return Ok(());
        };
        let BufferedRead { view, updated } = read;
        // The view goes before buffer_updated, which may resize the buffer.
        drop(view);
        if slf.get().conn_lost.get(py) > 0 {
            return Ok(());
        }
        let result = updated.bind(py).call1((nbytes,)).map(drop);
        Self::protocol_result(
            slf,
            result,
            "Fatal error: protocol.buffer_updated() call failed.",
        )
    }

    /// asyncio's `_read_ready__on_eof` (sockets), or a read pipe's end of file: eof_received and
    /// connection_lost soon.
    fn read_eof(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.kind == Kind::ReadPipe {
            if this.event_loop.get().debug(py) {
                Self::call_transport(slf, "_info_log", ("was closed by peer",))?;
            }
            this.update_flags(py, |f| f.closing = true);
            Self::read_stop(slf);
            Self::queue(slf, StreamEvent::EofReceived);
            Self::queue(slf, StreamEvent::ConnectionLost(None));
            return Ok(());
        }
        Self::debug_log(slf, "received EOF")?;
        let keep_open = Self::protocol_method(slf, pyo3::intern!(slf.py(), "eof_received"))
            .and_then(|m| m.call0())
            .and_then(|result| result.is_truthy());
        match keep_open {
            // libuv stopped reading at end of stream.
            Ok(true) => Ok(()),
            Ok(false) => Self::close(slf),
            Err(err) => Self::protocol_result(
                slf,
                Err(err),
                "Fatal error: protocol.eof_received() call failed.",
            ),
        }
    }

    /// The tail of asyncio's `_write_ready`, once libuv finished a write.
    fn drained(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let lost = this.conn_lost.get(py) > 0;
        if lost && (this.kind == Kind::WritePipe || !this.flags.get(py).closing) {
            return Ok(());
        }
        Self::maybe_resume_protocol(slf)?;
        if !this.write_buffer_empty(py) {
            return Ok(());
        }
        let waiter = this
            .empty_waiter
            .borrow(py)
            .as_ref()
            .map(|w| w.clone_ref(py));
        if let Some(waiter) = waiter {
            waiter.call_method1(py, pyo3::intern!(py, "set_result"), (py.None(),))?;
        }
        let flags = this.flags.get(py);
        if this.kind == Kind::WritePipe {
            if flags.closing {
                Self::call_connection_lost(slf, None)?;
            }
            return Ok(());
        }
        if flags.closing {
            if this.conn_lost.get(py) == 0 {
                this.conn_lost.set(py, 1);
                Self::call_connection_lost(slf, None)?;
            }
        } else if flags.eof {
            Self::shutdown(slf)?;
        }
        Ok(())
    }

    /// A socket transport's error message, or the pipe transport's wording of it.
    fn message(&self, socket: &'static str) -> &'static str {
        if self.kind == Kind::Socket {
            return socket;
        }
        match socket {
            "Fatal read error on socket transport" => "Fatal read error on pipe transport",
            "Fatal write error on socket transport" => "Fatal write error on pipe transport",
            other => other,
        }
    }

    /// Calls a protocol callback asyncio would have scheduled as a handle: its failure goes to
    /// the exception handler, and the transport carries on.
    fn run_callback<'py>(
        slf: &Bound<'py, Self>,
        method: PyResult<Bound<'py, PyAny>>,
        args: impl pyo3::call::PyCallArgs<'py>,
    ) -> PyResult<()> {
        let py = slf.py();
        let method = match method {
            Ok(method) => method,
            Err(err) if escapes(py, &err) => return Err(err),
            Err(err) => {
                let loop_ = slf.get().event_loop.bind(py);
                return python::report_protocol_callback_error(py, loop_, loop_.as_any(), err);
            }
        };
        match method.call1(args) {
            Ok(_) => Ok(()),
            Err(err) if escapes(py, &err) => Err(err),
            Err(err) => python::report_protocol_callback_error(
                py,
                slf.get().event_loop.bind(py),
                &method,
                err,
            ),
        }
    }

    /// asyncio's write pipe `_read_ready`: the reading end went away.
    fn peer_closed(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.stream.borrow(py).is_none() {
            return Ok(());
        }
        if this.event_loop.get().debug(py) {
            Self::call_transport(slf, "_info_log", ("was closed by peer",))?;
        }
        let exc = if this.write_buffer_empty(py) {
            None
        } else {
            let err = pyo3::exceptions::PyBrokenPipeError::new_err(());
            Some(err.into_value(py).into_any())
        };
        Self::pipe_close(slf, exc)
    }

    /// A protocol callback's outcome: its failure is the transport's fatal error.
    fn protocol_result(slf: &Bound<'_, Self>, result: PyResult<()>, message: &str) -> PyResult<()> {
        match result {
            Ok(()) => Ok(()),
            Err(err) if escapes(slf.py(), &err) => Err(err),
            Err(err) => Self::fatal_error(slf, err, message),
        }
    }

    fn protocol_method<'py>(
        slf: &Bound<'py, Self>,
        name: &Bound<'py, pyo3::types::PyString>,
    ) -> PyResult<Bound<'py, PyAny>> {
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

    /// Calls a method of the Python transport (error reports and debug logs: rare paths).
    fn call_transport<'py>(
        slf: &Bound<'py, Self>,
        name: &str,
        args: impl pyo3::call::PyCallArgs<'py>,
    ) -> PyResult<()> {
        match slf.get().transport(slf.py()) {
            Some(transport) => transport.bind(slf.py()).call_method1(name, args).map(drop),
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

    // ---- reading ---------------------------------------------------------------------------

    fn read_start(slf: &Bound<'_, Self>) {
        let py = slf.py();
        let this = slf.get();
        let flags = this.flags.get(py);
        if flags.stop_after_read {
            // Stopped and restarted within one alloc callback: libuv never stopped.
            this.update_flags(py, |f| {
                f.stop_after_read = false;
                f.reading = true;
            });
            return;
        }
        if flags.reading {
            return;
        }
        // ENOTCONN after end of stream (asyncio would see the EOF again; nothing to do).
        if this.with_stream(py, |s| s.read_start()) == Some(Ok(())) {
            this.update_flags(py, |f| f.reading = true);
        }
    }

    fn read_stop(slf: &Bound<'_, Self>) {
        let py = slf.py();
        let this = slf.get();
        let flags = this.flags.get(py);
        if !flags.reading {
            return;
        }
        if flags.in_alloc {
            // libuv calls the read callback right after alloc; stopping now would leave it
            // without one.
            this.update_flags(py, |f| {
                f.reading = false;
                f.stop_after_read = true;
            });
            return;
        }
        this.with_stream(py, Stream::read_stop);
        this.update_flags(py, |f| f.reading = false);
    }

    fn is_reading(&self, py: Python<'_>) -> bool {
        let flags = self.flags.get(py);
        !flags.paused && !flags.closing
    }

    // ---- writing ---------------------------------------------------------------------------

    fn write_buffer_size(&self, py: Python<'_>) -> usize {
        let in_libuv = if self.conn_lost.get(py) == 0 {
            self.with_stream(py, Stream::write_queue_size).unwrap_or(0)
        } else {
            0
        };
        self.pending_size.get(py) + in_libuv
    }

    fn write_buffer_empty(&self, py: Python<'_>) -> bool {
        self.writes_in_flight.get(py) == 0 && self.pending.borrow(py).is_empty()
    }

    fn drop_pending(&self, py: Python<'_>) {
        let dropped = std::mem::take(&mut *self.pending.borrow_mut(py));
        self.pending_size.set(py, 0);
        drop(dropped);
    }

    /// What write() does on a lost connection (count, and warn once writes pile up); false
    /// when the data is to be dropped.
    fn accepts_writes(slf: &Bound<'_, Self>) -> PyResult<bool> {
        let py = slf.py();
        let this = slf.get();
        let lost = this.conn_lost.get(py);
        let pipe = this.kind == Kind::WritePipe;
        if lost == 0 && !(pipe && this.flags.get(py).closing) {
            return Ok(true);
        }
        if lost >= LOG_THRESHOLD_FOR_CONNLOST_WRITES {
            python::log_warning(
                py,
                if pipe {
                    "pipe closed by peer or os.write(pipe, data) raised exception."
                } else {
                    "socket.send() raised exception."
                },
            )?;
        }
        this.conn_lost.set(py, lost + 1);
        Ok(false)
    }

    /// Behind a write request still out: the chunks wait for its callback.
    fn add_pending(slf: &Bound<'_, Self>, chunks: impl IntoIterator<Item = Chunk>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let mut added = 0;
        {
            let mut pending = this.pending.borrow_mut(py);
            for chunk in chunks {
                added += chunk.bytes(py).len();
                pending.push_back(chunk);
            }
        }
        this.pending_size.set(py, this.pending_size.get(py) + added);
        Self::maybe_pause_protocol(slf)
    }

    /// Sends what the socket takes now; None when the stream is closed. Called only while no
    /// write request is queued (libuv's own condition for trying at once). A socket's single
    /// buffer goes out with `send()` on libuv's descriptor: `uv_try_write` uses `write()`, whose
    /// trip through the file layer (position lock, file permission hook, fsnotify) costs a
    /// measurable part of a small response (see bench/RESULTS.md); pipes, and the vectored
    /// writes of `writelines`, keep `uv_try_write`.
    fn try_write(slf: &Bound<'_, Self>, bufs: &[sys::uv_buf_t]) -> Option<Result<usize, UvError>> {
        let this = slf.get();
        this.with_stream(slf.py(), |stream| match (this.kind, bufs) {
            (Kind::Socket, [one]) => {
                let fd = stream.fileno()?;
                // SAFETY: the caller's buffer points at `len` readable bytes it holds for the call.
                let data = unsafe { std::slice::from_raw_parts(one.base.cast::<u8>(), one.len) };
                match syscall::send(fd, data) {
                    Ok(n) => Ok(n),
                    Err(libc::EAGAIN | libc::ENOBUFS) => Ok(0),
                    Err(errno) => Err(UvError(-errno)),
                }
            }
            _ => stream.try_write(bufs),
        })
    }

    /// asyncio's `write`: the immediate send, the rest queued.
    fn write_chunk(slf: &Bound<'_, Self>, chunk: Chunk) -> PyResult<()> {
        let py = slf.py();
        if !Self::accepts_writes(slf)? {
            return Ok(());
        }
        if !slf.get().write_buffer_empty(py) {
            return Self::add_pending(slf, [chunk]);
        }
        let sent = {
            let data = chunk.bytes(py);
            match Self::try_write(slf, &[buf(data)]) {
                Some(Ok(n)) if n >= data.len() => return Ok(()),
                Some(Ok(n)) => n,
                Some(Err(err)) => return Self::write_failed(slf, err),
                None => return Ok(()),
            }
        };
        let rest = [buf(&chunk.bytes(py)[sent..])];
        if let Err(err) = Self::submit(slf, &rest, chunk) {
            return Self::write_failed(slf, err);
        }
        Self::maybe_pause_protocol(slf)
    }

    /// `writelines`: one vectored send, the rest queued as one write request.
    fn write_chunks(slf: &Bound<'_, Self>, chunks: Vec<Chunk>) -> PyResult<()> {
        let py = slf.py();
        if !Self::accepts_writes(slf)? {
            return Ok(());
        }
        if !slf.get().write_buffer_empty(py) {
            return Self::add_pending(slf, chunks);
        }
        let sent = {
            let bufs: Vec<sys::uv_buf_t> = chunks.iter().map(|c| buf(c.bytes(py))).collect();
            Self::try_write(slf, &bufs)
        };
        let mut sent = match sent {
            Some(Ok(n)) => n,
            Some(Err(err)) => return Self::write_failed(slf, err),
            None => return Ok(()),
        };
        let mut rest = Vec::with_capacity(chunks.len());
        let mut bufs = Vec::with_capacity(chunks.len());
        for chunk in chunks {
            let len = chunk.bytes(py).len();
            if sent >= len {
                sent -= len;
                continue;
            }
            bufs.push(buf(&chunk.bytes(py)[sent..]));
            sent = 0;
            rest.push(chunk);
        }
        if rest.is_empty() {
            return Ok(());
        }
        if let Err(err) = Self::submit(slf, &bufs, rest) {
            return Self::write_failed(slf, err);
        }
        Self::maybe_pause_protocol(slf)
    }

    /// A write failed at once: asyncio's fatal error (a pipe counts the connection as lost).
    fn write_failed(slf: &Bound<'_, Self>, err: UvError) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.kind == Kind::WritePipe {
            this.conn_lost.set(py, this.conn_lost.get(py) + 1);
        }
        Self::fatal_error(
            slf,
            err.into(),
            this.message("Fatal write error on socket transport"),
        )
    }

    /// Hands libuv a write request for `bufs`, which point into `keep`.
    fn submit<K>(slf: &Bound<'_, Self>, bufs: &[sys::uv_buf_t], keep: K) -> Result<(), UvError> {
        let py = slf.py();
        let this = slf.get();
        let result = this
            .with_stream(py, |s| s.write(bufs, keep))
            .unwrap_or(Err(UvError(sys::uv_errno_t_UV_EBADF)));
        if result.is_ok() {
            this.writes_in_flight
                .set(py, this.writes_in_flight.get(py) + 1);
        }
        result
    }

    /// Hands everything pending to libuv, in requests of at most MAX_WRITE_BUFS chunks.
    fn submit_pending(slf: &Bound<'_, Self>) -> Result<(), UvError> {
        let py = slf.py();
        let this = slf.get();
        loop {
            let chunks: Vec<Chunk> = {
                let mut pending = this.pending.borrow_mut(py);
                let take = pending.len().min(MAX_WRITE_BUFS);
                pending.drain(..take).collect()
            };
            if chunks.is_empty() {
                return Ok(());
            }
            let size: usize = chunks.iter().map(|c| c.bytes(py).len()).sum();
            this.pending_size
                .set(py, this.pending_size.get(py).saturating_sub(size));
            let bufs: Vec<sys::uv_buf_t> = chunks.iter().map(|c| buf(c.bytes(py))).collect();
            Self::submit(slf, &bufs, chunks)?;
        }
    }

    fn shutdown(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        match slf.get().with_stream(py, Stream::shutdown) {
            Some(Err(err)) if err.0 != sys::uv_errno_t_UV_ENOTCONN => Err(err.into()),
            _ => Ok(()),
        }
    }

    /// asyncio's `_FlowControlMixin._maybe_pause_protocol`.
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

    /// asyncio's `_FlowControlMixin._maybe_resume_protocol`.
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
        match Self::protocol_method(slf, name).and_then(|m| m.call0()) {
            Ok(_) => Ok(()),
            Err(err) if escapes(py, &err) => Err(err),
            Err(err) => Self::call_transport(
                slf,
                "_report_protocol_error",
                (format!("protocol.{name}() failed"), err.into_value(py)),
            ),
        }
    }

    // ---- closing ---------------------------------------------------------------------------

    /// asyncio's pipe transports' `_close(exc)`: connection_lost soon, whatever is queued.
    fn pipe_close(slf: &Bound<'_, Self>, exc: Option<Py<PyAny>>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        this.update_flags(py, |f| f.closing = true);
        this.drop_pending(py);
        Self::read_stop(slf);
        drop(std::mem::take(&mut *this.held.borrow_mut(py)));
        this.event_loop
            .get()
            .unwatch_peer_close(py, this.fd.get(py), slf);
        Self::queue(slf, StreamEvent::ConnectionLost(exc));
        Ok(())
    }

    /// asyncio's `_SelectorTransport.close` (a read pipe's close; a write pipe's is write_eof).
    fn close(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        match this.kind {
            Kind::Socket => {}
            Kind::ReadPipe if this.flags.get(py).closing => return Ok(()),
            Kind::ReadPipe => return Self::pipe_close(slf, None),
            Kind::WritePipe if this.stream.borrow(py).is_none() => return Ok(()),
            Kind::WritePipe => return Self::write_eof(slf),
        }
        if this.flags.get(py).closing {
            return Ok(());
        }
        this.update_flags(py, |f| f.closing = true);
        Self::read_stop(slf);
        drop(std::mem::take(&mut *this.held.borrow_mut(py)));
        if this.write_buffer_empty(py) {
            this.conn_lost.set(py, this.conn_lost.get(py) + 1);
            Self::queue(slf, StreamEvent::ConnectionLost(None));
        }
        Ok(())
    }

    /// asyncio's `_force_close` (a pipe's `_close`).
    fn force_close(slf: &Bound<'_, Self>, exc: Option<Py<PyAny>>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.kind != Kind::Socket {
            return Self::pipe_close(slf, exc);
        }
        if this.conn_lost.get(py) > 0 {
            return Ok(());
        }
        this.drop_pending(py);
        if !this.flags.get(py).closing {
            this.update_flags(py, |f| f.closing = true);
            Self::read_stop(slf);
        }
        drop(std::mem::take(&mut *this.held.borrow_mut(py)));
        this.conn_lost.set(py, this.conn_lost.get(py) + 1);
        Self::queue(slf, StreamEvent::ConnectionLost(exc));
        Ok(())
    }

    /// asyncio's `_call_connection_lost`: the protocol hears of it, then the handle closes and
    /// the transport lets go of the protocol, the server and the sendfile waiter.
    fn call_connection_lost(slf: &Bound<'_, Self>, exc: Option<Py<PyAny>>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.stream.borrow(py).is_none() {
            return Ok(());
        }
        let method = Self::protocol_method(slf, pyo3::intern!(slf.py(), "connection_lost"));
        let result = method.and_then(|m| {
            m.call1((exc,)).map(drop).or_else(|err| {
                if escapes(py, &err) {
                    return Err(err);
                }
                python::report_protocol_callback_error(py, this.event_loop.bind(py), &m, err)
            })
        });
        Self::close_handle(slf);
        let closed_pipe = if this.kind == Kind::Socket {
            Ok(())
        } else {
            Self::close_pipe_object(slf)
        };
        let server = this.server.take(py);
        let transport = this.transport.take(py);
        let protocol = this.protocol.take(py);
        let waiter = this.empty_waiter.take(py);
        let detached = match server {
            Some((clients, slot)) => ServerClients::detach(clients.bind(py), slf, slot),
            None => Ok(()),
        };
        drop((transport, protocol));
        let failed_waiter = match waiter {
            Some(waiter) => {
                let err =
                    pyo3::exceptions::PyConnectionError::new_err("Connection is closed by peer");
                waiter
                    .call_method1(
                        py,
                        pyo3::intern!(py, "set_exception"),
                        (err.into_value(py),),
                    )
                    .map(drop)
            }
            None => Ok(()),
        };
        result.and(closed_pipe).and(detached).and(failed_waiter)
    }

    /// asyncio closes a pipe transport's pipe object after connection_lost.
    fn close_pipe_object(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let pipe = slf
            .get()
            .extra
            .borrow(py)
            .as_ref()
            .map(|extra| extra.bind(py).get_item("pipe"))
            .transpose()?
            .flatten();
        match pipe {
            Some(pipe) => pipe.call_method0(pyo3::intern!(py, "close")).map(drop),
            None => Ok(()),
        }
    }

    /// Closes the libuv handle (and with it the descriptor), once.
    fn close_handle(slf: &Bound<'_, Self>) {
        let py = slf.py();
        let this = slf.get();
        let Some(stream) = this.stream.take(py) else {
            return;
        };
        // libuv closes its own descriptor; the socket object goes as asyncio closes it.
        if let Some(sock) = this.sock.borrow(py).as_ref() {
            let _ = sock.call_method0(py, pyo3::intern!(py, "close"));
        }
        this.event_loop
            .get()
            .forget_transport(py, this.fd.get(py), slf.as_any());
        if this.kind == Kind::WritePipe {
            this.event_loop
                .get()
                .unwatch_peer_close(py, this.fd.get(py), slf);
        }
        drop(this.read_target.replace(py, ReadTarget::None));
        drop(this.buffered_read.take(py));
        drop(std::mem::take(&mut *this.held.borrow_mut(py)));
        this.drop_pending(py);
        drop(stream);
    }

    fn check_writable(&self, py: Python<'_>, method: &str) -> PyResult<()> {
        if self.flags.get(py).eof {
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

    // ---- the transport's methods (see socket_transport) ------------------------------------

    pub fn write(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let chunk = match chunk_of(data) {
            // asyncio's write pipe asserts the type.
            Err(_) if slf.get().kind == Kind::WritePipe => {
                return Err(pyo3::exceptions::PyAssertionError::new_err(
                    data.repr()?.unbind(),
                ))
            }
            chunk => chunk?,
        };
        slf.get().check_writable(slf.py(), "write")?;
        if chunk.bytes(slf.py()).is_empty() {
            return Ok(());
        }
        Self::write_chunk(slf, chunk)
    }

    pub fn writelines(slf: &Bound<'_, Self>, list_of_data: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        #[cfg(Py_3_12)]
        slf.get().check_writable(py, "writelines")?;
        let mut chunks = Vec::new();
        for data in list_of_data.try_iter()? {
            let chunk = chunk_of(&data?)?;
            if !chunk.bytes(py).is_empty() {
                chunks.push(chunk);
            }
        }
        #[cfg(not(Py_3_12))]
        slf.get().check_writable(py, "write")?;
        if chunks.is_empty() {
            return Ok(());
        }
        Self::write_chunks(slf, chunks)
    }

    pub fn write_eof(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let flags = this.flags.get(py);
        if this.kind == Kind::WritePipe {
            // asyncio's write pipe: closes once what is queued is written.
            if flags.closing {
                return Ok(());
            }
            this.update_flags(py, |f| f.closing = true);
            if this.write_buffer_empty(py) {
                this.event_loop
                    .get()
                    .unwatch_peer_close(py, this.fd.get(py), slf);
                Self::queue(slf, StreamEvent::ConnectionLost(None));
            }
            return Ok(());
        }
        if flags.closing || flags.eof {
            return Ok(());
        }
        this.update_flags(py, |f| f.eof = true);
        if this.write_buffer_empty(py) {
            Self::shutdown(slf)?;
        }
        Ok(())
    }

    pub fn close_method(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::close(slf)
    }

    pub fn abort(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::force_close(slf, None)
    }

    pub fn force_close_method(slf: &Bound<'_, Self>, exc: Option<Py<PyAny>>) -> PyResult<()> {
        Self::force_close(slf, exc)
    }

    pub fn is_closing(&self, py: Python<'_>) -> bool {
        self.flags.get(py).closing
    }

    pub fn is_reading_method(&self, py: Python<'_>) -> bool {
        self.is_reading(py)
    }

    pub fn pause_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if !this.is_reading(py) {
            return Ok(());
        }
        this.update_flags(py, |f| f.paused = true);
        Self::read_stop(slf);
        Self::debug_log(slf, "pauses reading")
    }

    pub fn resume_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let flags = this.flags.get(py);
        if flags.closing || !flags.paused {
            return Ok(());
        }
        this.update_flags(py, |f| f.paused = false);
        // What arrived while paused goes first, in order, where a new read would go.
        let held = std::mem::take(&mut *this.held.borrow_mut(py));
        if held.is_empty() {
            Self::read_start(slf);
        } else {
            this.update_flags(py, |f| f.read_queued = true);
            for event in held {
                Self::queue(slf, event);
            }
            Self::queue(slf, StreamEvent::StartReading);
        }
        Self::debug_log(slf, "resumes reading")
    }

    pub fn get_write_buffer_size(&self, py: Python<'_>) -> usize {
        self.write_buffer_size(py)
    }

    pub fn get_write_buffer_limits(&self, py: Python<'_>) -> (usize, usize) {
        (self.low_water.get(py), self.high_water.get(py))
    }

    pub fn get_protocol(&self, py: Python<'_>) -> Py<PyAny> {
        match self.protocol.borrow(py).as_ref() {
            Some(protocol) => protocol.obj.clone_ref(py),
            None => py.None(),
        }
    }

    pub fn set_protocol(&self, protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        let new = Protocol::new(protocol, self.kind)?;
        drop(self.protocol.replace(protocol.py(), Some(new)));
        Ok(())
    }

    /// `get_extra_info(name, default)`: the socket, its names (looked up once, on first use),
    /// or what was given as `extra`.
    pub fn get_extra_info(
        slf: &Bound<'_, Self>,
        name: &Bound<'_, PyAny>,
        default: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let this = slf.get();
        if let Some(extra) = this.extra.borrow(py).as_ref() {
            if let Some(value) = extra.bind(py).get_item(name)? {
                return Ok(value.unbind());
            }
        }
        let value = match name.extract::<&str>().ok() {
            Some("socket") => Self::transport_socket(slf)?,
            Some(which @ ("sockname" | "peername")) => Self::socket_name(slf, which)?,
            _ => None,
        };
        match value {
            Some(value) => {
                let extra = {
                    let mut extra = this.extra.borrow_mut(py);
                    extra
                        .get_or_insert_with(|| PyDict::new(py).unbind())
                        .clone_ref(py)
                };
                extra.bind(py).set_item(name, &value)?;
                Ok(value)
            }
            None => Ok(default.map_or_else(|| py.None(), |d| d.clone().unbind())),
        }
    }

    /// The socket object (the one given, or one made now for the descriptor libuv owns).
    pub fn socket(slf: &Bound<'_, Self>) -> PyResult<Option<Py<PyAny>>> {
        let py = slf.py();
        let this = slf.get();
        if let Some(sock) = this.sock.borrow(py).as_ref() {
            return Ok(Some(sock.clone_ref(py)));
        }
        if this.stream.borrow(py).is_none() {
            return Ok(None);
        }
        // An accepted connection: its socket object gets a descriptor of its own, which becomes
        // the one asyncio's checks know the transport by.
        let fd = private_fd::duplicate(this.fd.get(py))?;
        let sock = match python::socket_for_fd(py, fd) {
            Ok(sock) => sock,
            Err(err) => {
                // SAFETY: no socket object took the duplicate; it is ours to close.
                unsafe { libc::close(fd) };
                return Err(err);
            }
        };
        let event_loop = this.event_loop.get();
        event_loop.forget_transport(py, this.fd.get(py), slf.as_any());
        this.fd.set(py, fd);
        event_loop.remember_transport(py, fd, slf.as_any());
        drop(this.sock.replace(py, Some(sock.clone_ref(py))));
        Ok(Some(sock))
    }

    fn transport_socket(slf: &Bound<'_, Self>) -> PyResult<Option<Py<PyAny>>> {
        let py = slf.py();
        match Self::socket(slf)? {
            Some(sock) => Ok(Some(python::transport_socket(py, sock.bind(py))?.unbind())),
            None => Ok(None),
        }
    }

    /// `sock.getsockname()` / `sock.getpeername()`; None (not cached) once the socket is closed
    /// or when the call fails, as asyncio stores None then.
    fn socket_name(slf: &Bound<'_, Self>, which: &str) -> PyResult<Option<Py<PyAny>>> {
        let py = slf.py();
        let Some(sock) = Self::socket(slf)? else {
            return Ok(None);
        };
        let method = if which == "sockname" {
            pyo3::intern!(py, "getsockname")
        } else {
            pyo3::intern!(py, "getpeername")
        };
        match sock.call_method0(py, method) {
            Ok(name) => Ok(Some(name)),
            Err(err) if err.is_instance_of::<pyo3::exceptions::PyOSError>(py) => {
                Ok(Some(py.None()))
            }
            Err(err) => Err(err),
        }
    }

    pub fn set_write_buffer_limits(slf: &Bound<'_, Self>, high: usize, low: usize) -> PyResult<()> {
        let py = slf.py();
        slf.get().high_water.set(py, high);
        slf.get().low_water.set(py, low);
        Self::maybe_pause_protocol(slf)
    }

    pub fn make_empty_waiter(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let this = slf.get();
        if this.empty_waiter.borrow(py).is_some() {
            return Err(PyRuntimeError::new_err("Empty waiter is already set"));
        }
        let waiter = this
            .event_loop
            .bind(py)
            .call_method0(pyo3::intern!(py, "create_future"))?
            .unbind();
        drop(this.empty_waiter.replace(py, Some(waiter.clone_ref(py))));
        if this.write_buffer_empty(py) {
            waiter.call_method1(py, pyo3::intern!(py, "set_result"), (py.None(),))?;
        }
        Ok(waiter)
    }

    /// sendfile is writing on the socket itself (so sock_* may use it meanwhile).
    pub fn sendfile_in_progress(&self, py: Python<'_>) -> bool {
        self.empty_waiter.borrow(py).is_some()
    }

    pub fn reset_empty_waiter(&self, py: Python<'_>) {
        drop(self.empty_waiter.take(py));
    }

    pub fn traverse(&self, visit: &pyo3::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        // SAFETY: tp_traverse runs with the GIL held by the collector.
        let py = unsafe { Python::assume_attached() };
        visit.call(&self.event_loop)?;
        visit.call(&self.context)?;
        if let Some(server) = self.server.try_borrow(py) {
            if let Some((clients, _)) = &*server {
                visit.call(clients)?;
            }
        }
        for cell in [&self.transport, &self.sock, &self.empty_waiter] {
            if let Some(obj) = cell.try_borrow(py) {
                if let Some(obj) = &*obj {
                    visit.call(obj)?;
                }
            }
        }
        if let Some(extra) = self.extra.try_borrow(py) {
            if let Some(extra) = &*extra {
                visit.call(extra)?;
            }
        }
        if let Some(protocol) = self.protocol.try_borrow(py) {
            if let Some(protocol) = &*protocol {
                visit.call(&protocol.obj)?;
                match &protocol.read {
                    ReadPath::Data(Some(method)) => visit.call(method)?,
                    ReadPath::Buffered(Some((get, updated))) => {
                        visit.call(get)?;
                        visit.call(updated)?;
                    }
                    _ => {}
                }
            }
        }
        if let Some(read) = self.buffered_read.try_borrow(py) {
            if let Some(read) = &*read {
                visit.call(&read.updated)?;
            }
        }
        if let Some(pending) = self.pending.try_borrow(py) {
            for chunk in pending.iter() {
                if let Chunk::Shared(bytes) = chunk {
                    visit.call(bytes)?;
                }
            }
        }
        if let Some(held) = self.held.try_borrow(py) {
            for event in held.iter() {
                event.visit(visit)?;
            }
        }
        Ok(())
    }

    pub fn visit_event(
        event: &StreamEvent,
        visit: &pyo3::PyVisit<'_>,
    ) -> Result<(), pyo3::PyTraverseError> {
        event.visit(visit)
    }
}

/// `callable(arg)` by vectorcall, without an argument tuple.
fn call_one(py: Python<'_>, callable: &Py<PyAny>, arg: &Py<PyAny>) -> PyResult<()> {
    // SAFETY: GIL held; both objects are live for the call; the result is a new reference or
    // NULL with an exception set.
    unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            ffi::PyObject_CallOneArg(callable.as_ptr(), arg.as_ptr()),
        )
        .map(drop)
    }
}

/// Runs `body` with `context` entered (a `contextvars.Context`).
fn in_context<R>(
    py: Python<'_>,
    context: &Py<PyAny>,
    body: impl FnOnce() -> PyResult<R>,
) -> PyResult<R> {
    // SAFETY: GIL held; `context` is a live contextvars.Context; Enter and Exit are paired.
    if unsafe { ffi::PyContext_Enter(context.as_ptr()) } < 0 {
        return Err(PyErr::fetch(py));
    }
    let result = body();
    // SAFETY: paired with the Enter above, on the same thread.
    if unsafe { ffi::PyContext_Exit(context.as_ptr()) } < 0 {
        let exit_err = PyErr::fetch(py);
        return result.and(Err(exit_err));
    }
    result
}

/// The bytes of what `write()` accepts: bytes (kept), bytearray and memoryview (copied).
pub fn chunk_of(data: &Bound<'_, PyAny>) -> PyResult<Chunk> {
    if let Ok(bytes) = data.cast::<PyBytes>() {
        return Ok(Chunk::Shared(bytes.clone().unbind()));
    }
    if data.is_instance_of::<PyByteArray>() || data.is_instance_of::<PyMemoryView>() {
        return Chunk::copy_of(BufferView::get(data, false)?.as_slice());
    }
    // Worded as the running Python's asyncio words it.
    let expected = if cfg!(Py_3_14) {
        "a bytes, bytearray, or memoryview object"
    } else {
        "a bytes-like object"
    };
    Err(PyTypeError::new_err(format!(
        "data argument must be {expected}, not {}",
        data.get_type().name()?.repr()?
    )))
}

#[pymethods]
impl StreamCore {
    /// `(fd, closed, closing, reading, writing, bufsize)` for the Python transport's repr.
    fn _repr_info(&self, py: Python<'_>) -> (c_int, bool, bool, bool, bool, usize) {
        let flags = self.flags.get(py);
        (
            self.fd.get(py),
            self.stream.borrow(py).is_none(),
            flags.closing,
            flags.reading,
            !self.write_buffer_empty(py),
            self.write_buffer_size(py),
        )
    }

    #[getter]
    fn _closed(&self, py: Python<'_>) -> bool {
        self.stream.borrow(py).is_none()
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
    fn _loop(&self, py: Python<'_>) -> Option<Py<Loop>> {
        self.transport
            .borrow(py)
            .as_ref()
            .map(|_| self.event_loop.clone_ref(py))
    }

    #[getter]
    fn _sock(slf: &Bound<'_, Self>) -> PyResult<Option<Py<PyAny>>> {
        Self::socket(slf)
    }

    #[getter]
    fn _sock_fd(&self, py: Python<'_>) -> c_int {
        self.fd.get(py)
    }

    fn _set_write_buffer_limits(slf: &Bound<'_, Self>, high: usize, low: usize) -> PyResult<()> {
        Self::set_write_buffer_limits(slf, high, low)
    }

    fn __traverse__(&self, visit: pyo3::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        self.traverse(&visit)
    }

    fn __clear__(&self) {
        // SAFETY: tp_clear runs with the GIL held by the collector.
        let py = unsafe { Python::assume_attached() };
        drop(self.transport.take(py));
        drop(self.protocol.take(py));
        drop(self.empty_waiter.take(py));
        drop(self.extra.take(py));
        drop(self.server.take(py));
        drop(std::mem::take(&mut *self.held.borrow_mut(py)));
    }
}
