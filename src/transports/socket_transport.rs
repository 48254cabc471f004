//! The stream transports protocols see (see `python_class`): `uvloop._transports.SocketTransport`
//! (an `asyncio.Transport`), `ReadPipeTransport` and `WritePipeTransport` (an
//! `asyncio.ReadTransport` and an `asyncio.WriteTransport`), each holding a `StreamCore`, their
//! method tables, and the functions that open them.

use std::os::raw::c_int;

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyType};

use super::private_fd;
use super::python_class::{
    self, boolean, noargs, none, one_arg, with_fastcall, with_one_arg, without_args, ClassKind,
    Method,
};
use super::stream::{Kind, StreamCore, StreamEvent};
use crate::loop_::Loop;
use crate::uv::{pipe, tcp};

/// Makes the transport for a connected socket: the libuv handle gets a duplicate of its
/// descriptor (see `private_fd`; the socket object is closed with the transport, as asyncio
/// closes it), and connection_made (then reading) is queued, as asyncio's transport queues them.
#[pyfunction]
#[pyo3(signature = (event_loop, sock, protocol, extra=None))]
pub fn open_socket_transport<'py>(
    event_loop: &Bound<'py, Loop>,
    sock: &Bound<'py, PyAny>,
    protocol: &Bound<'py, PyAny>,
    extra: Option<Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = event_loop.py();
    event_loop.get().check_open(py)?;
    let fd: c_int = sock.call_method0(pyo3::intern!(py, "fileno"))?.extract()?;
    let family: c_int = sock.getattr(pyo3::intern!(py, "family"))?.extract()?;
    let tcp = family == libc::AF_INET || family == libc::AF_INET6;
    let context = crate::handles::copy_current_context(py)?;
    let core = Bound::new(
        py,
        StreamCore::new(
            event_loop.clone().unbind(),
            Kind::Socket,
            Some(protocol),
            context,
            fd,
            tcp,
        )?,
    )?;
    let uv = event_loop.get().uv();
    let stream = private_fd::with_duplicate(fd, |duplicate| {
        if tcp {
            tcp::open(uv, duplicate, StreamCore::owner(&core))
        } else {
            pipe::open(uv, duplicate, StreamCore::owner(&core))
        }
    })?;
    if tcp {
        // As asyncio's _set_nodelay (for every TCP socket, see the README).
        tcp::set_nodelay(&stream)?;
    }
    let this = core.get();
    this.set_stream(py, stream);
    this.set_socket(py, Some(sock.clone().unbind()));
    this.set_extra(py, extra.map(Bound::unbind));
    let transport = new_transport(py, &core)?;
    this.set_transport(py, transport.clone().unbind());
    event_loop.get().remember_transport(py, fd, core.as_any());
    StreamCore::queue(&core, StreamEvent::ConnectionMade);
    Ok(transport)
}

/// Makes the transport for a pipe end (or a FIFO, a socket, a character device) `pipe`: libuv
/// gets a duplicate of its descriptor, so that closing the transport closes the pipe object as
/// asyncio does; a write pipe's reading end going away is watched, as asyncio watches it.
#[pyfunction]
#[pyo3(signature = (event_loop, pipe, protocol, write, watch_peer))]
pub fn open_pipe_transport<'py>(
    event_loop: &Bound<'py, Loop>,
    pipe: &Bound<'py, PyAny>,
    protocol: &Bound<'py, PyAny>,
    write: bool,
    watch_peer: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let py = event_loop.py();
    event_loop.get().check_open(py)?;
    let fileno: c_int = pipe.call_method0(pyo3::intern!(py, "fileno"))?.extract()?;
    let kind = if write {
        Kind::WritePipe
    } else {
        Kind::ReadPipe
    };
    let context = crate::handles::copy_current_context(py)?;
    let fd = private_fd::duplicate(fileno)?;
    let core = Bound::new(
        py,
        StreamCore::new(
            event_loop.clone().unbind(),
            kind,
            Some(protocol),
            context,
            fd,
            false,
        )?,
    )?;
    let stream = match pipe::open(event_loop.get().uv(), fd, StreamCore::owner(&core)) {
        Ok(stream) => stream,
        Err(err) => {
            // SAFETY: libuv did not take the duplicate; it is ours to close.
            unsafe { libc::close(fd) };
            return Err(err.into());
        }
    };
    let this = core.get();
    this.set_stream(py, stream);
    let extra = PyDict::new(py);
    extra.set_item("pipe", pipe)?;
    this.set_extra(py, Some(extra.unbind()));
    let transport = new_transport(py, &core)?;
    this.set_transport(py, transport.clone().unbind());
    if watch_peer {
        event_loop.get().watch_peer_close(py, fd, &core)?;
    }
    StreamCore::queue(&core, StreamEvent::ConnectionMade);
    Ok(transport)
}

/// Installs the native methods of a transport class (once per process): `kind` is "socket",
/// "read_pipe", "write_pipe" or "datagram".
#[pyfunction]
pub fn install_transport_class(cls: &Bound<'_, PyType>, kind: &str) -> PyResult<()> {
    let (kind, methods): (ClassKind, &[Method]) = match kind {
        "socket" => (ClassKind::Socket, SOCKET_METHODS),
        "read_pipe" => (ClassKind::ReadPipe, READ_PIPE_METHODS),
        "write_pipe" => (ClassKind::WritePipe, WRITE_PIPE_METHODS),
        "datagram" => (ClassKind::Datagram, super::udp::DATAGRAM_METHODS),
        other => {
            return Err(PyTypeError::new_err(format!(
                "unknown transport kind {other:?}"
            )))
        }
    };
    python_class::install(cls, kind, methods)
}

/// A new transport instance of the class of `core`'s kind.
pub(super) fn new_transport<'py>(
    py: Python<'py>,
    core: &Bound<'py, StreamCore>,
) -> PyResult<Bound<'py, PyAny>> {
    let kind = match core.get().kind() {
        Kind::Socket => ClassKind::Socket,
        Kind::ReadPipe => ClassKind::ReadPipe,
        Kind::WritePipe => ClassKind::WritePipe,
    };
    python_class::new_instance(py, kind, core.as_any())
}

noargs!(StreamCore, m_write_eof, |core| StreamCore::write_eof(core)
    .map(|()| none(core.py())));
noargs!(StreamCore, m_can_write_eof, |core| Ok(boolean(
    core.py(),
    true
)));
noargs!(StreamCore, m_close, |core| StreamCore::close_method(core)
    .map(|()| none(core.py())));
noargs!(StreamCore, m_abort, |core| StreamCore::abort(core)
    .map(|()| none(core.py())));
noargs!(StreamCore, m_is_closing, |core| Ok(boolean(
    core.py(),
    core.get().is_closing(core.py())
)));
noargs!(StreamCore, m_is_reading, |core| Ok(boolean(
    core.py(),
    core.get().is_reading_method(core.py())
)));
noargs!(StreamCore, m_pause_reading, |core| {
    StreamCore::pause_reading(core).map(|()| none(core.py()))
});
noargs!(StreamCore, m_resume_reading, |core| {
    StreamCore::resume_reading(core).map(|()| none(core.py()))
});
noargs!(StreamCore, m_get_write_buffer_size, |core| {
    let size = core.get().get_write_buffer_size(core.py());
    Ok(size.into_pyobject(core.py())?.into_any().unbind())
});
noargs!(StreamCore, m_get_write_buffer_limits, |core| {
    let limits = core.get().get_write_buffer_limits(core.py());
    Ok(limits.into_pyobject(core.py())?.into_any().unbind())
});
noargs!(StreamCore, m_get_protocol, |core| Ok(core
    .get()
    .get_protocol(core.py())));
noargs!(StreamCore, m_make_empty_waiter, |core| {
    StreamCore::make_empty_waiter(core)
});
noargs!(StreamCore, m_reset_empty_waiter, |core| {
    core.get().reset_empty_waiter(core.py());
    Ok(none(core.py()))
});
one_arg!(StreamCore, m_write, |core, data| StreamCore::write(
    core, &data
)
.map(|()| none(core.py())));
one_arg!(StreamCore, m_writelines, |core, data| {
    StreamCore::writelines(core, &data).map(|()| none(core.py()))
});
one_arg!(StreamCore, m_set_protocol, |core, protocol| core
    .get()
    .set_protocol(&protocol)
    .map(|()| none(core.py())));
one_arg!(StreamCore, m_force_close, |core, exc| {
    let exc = (!exc.is_none()).then(|| exc.unbind());
    StreamCore::force_close_method(core, exc).map(|()| none(core.py()))
});

/// `get_extra_info(name, default=None)`.
unsafe extern "C" fn m_get_extra_info(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    python_class::call::<StreamCore>(slf, |core| {
        // SAFETY: the arguments CPython passed to this method.
        let [name, default] = unsafe {
            python_class::fastcall_arguments(
                core.py(),
                "get_extra_info",
                ["name", "default"],
                1,
                args,
                nargs,
                kwnames,
            )?
        };
        let name = name.ok_or_else(|| PyTypeError::new_err("get_extra_info() needs a name"))?;
        StreamCore::get_extra_info(core, &name, default.as_ref())
    })
}

const SOCKET_METHODS: &[Method] = &[
    with_one_arg(c"write", m_write),
    with_one_arg(c"writelines", m_writelines),
    without_args(c"write_eof", m_write_eof),
    without_args(c"can_write_eof", m_can_write_eof),
    without_args(c"close", m_close),
    without_args(c"abort", m_abort),
    without_args(c"is_closing", m_is_closing),
    without_args(c"is_reading", m_is_reading),
    without_args(c"pause_reading", m_pause_reading),
    without_args(c"resume_reading", m_resume_reading),
    without_args(c"get_write_buffer_size", m_get_write_buffer_size),
    without_args(c"get_write_buffer_limits", m_get_write_buffer_limits),
    without_args(c"get_protocol", m_get_protocol),
    with_one_arg(c"set_protocol", m_set_protocol),
    with_fastcall(c"get_extra_info", m_get_extra_info),
    with_one_arg(c"_force_close", m_force_close),
    without_args(c"_make_empty_waiter", m_make_empty_waiter),
    without_args(c"_reset_empty_waiter", m_reset_empty_waiter),
];

const READ_PIPE_METHODS: &[Method] = &[
    without_args(c"close", m_close),
    without_args(c"is_closing", m_is_closing),
    without_args(c"is_reading", m_is_reading),
    without_args(c"pause_reading", m_pause_reading),
    without_args(c"resume_reading", m_resume_reading),
    without_args(c"get_protocol", m_get_protocol),
    with_one_arg(c"set_protocol", m_set_protocol),
    with_fastcall(c"get_extra_info", m_get_extra_info),
    with_one_arg(c"_force_close", m_force_close),
];

const WRITE_PIPE_METHODS: &[Method] = &[
    with_one_arg(c"write", m_write),
    with_one_arg(c"writelines", m_writelines),
    without_args(c"write_eof", m_write_eof),
    without_args(c"can_write_eof", m_can_write_eof),
    without_args(c"close", m_close),
    without_args(c"abort", m_abort),
    without_args(c"is_closing", m_is_closing),
    without_args(c"get_write_buffer_size", m_get_write_buffer_size),
    without_args(c"get_write_buffer_limits", m_get_write_buffer_limits),
    without_args(c"get_protocol", m_get_protocol),
    with_one_arg(c"set_protocol", m_set_protocol),
    with_fastcall(c"get_extra_info", m_get_extra_info),
    with_one_arg(c"_force_close", m_force_close),
];
