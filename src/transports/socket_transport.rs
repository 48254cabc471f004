//! The stream transports protocols see: `uvloop._transports.SocketTransport` (a Python subclass of
//! `asyncio.Transport`), `ReadPipeTransport` and `WritePipeTransport` (of `asyncio.ReadTransport`
//! and `asyncio.WriteTransport`), so that they are what asyncio documents. Each has a `_core` slot
//! holding its `StreamCore`, and native method descriptors installed on it for every method that
//! runs per read, per write or per connection. A transport is made natively (`tp_alloc` and the
//! slot), so no Python code runs to make one.

use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::exceptions::{PyAttributeError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};

use super::stream::{Kind, StreamCore, StreamEvent};
use crate::loop_::Loop;
use crate::uv::{pipe, tcp};

/// The Python class and where its `_core` slot lives in an instance.
struct TransportClass {
    class: Py<PyType>,
    core_offset: isize,
}

/// The installed classes, by `Kind` (socket, read pipe, write pipe).
static CLASSES: [PyOnceLock<TransportClass>; 3] =
    [PyOnceLock::new(), PyOnceLock::new(), PyOnceLock::new()];

fn kind_index(kind: Kind) -> usize {
    match kind {
        Kind::Socket => 0,
        Kind::ReadPipe => 1,
        Kind::WritePipe => 2,
    }
}

fn transport_class(py: Python<'_>, kind: Kind) -> PyResult<&TransportClass> {
    CLASSES[kind_index(kind)]
        .get(py)
        .ok_or_else(|| PyTypeError::new_err("uvloop's transport classes are not installed"))
}

/// The installed class `slf` is an instance of.
fn class_of(py: Python<'_>, slf: *mut ffi::PyObject) -> PyResult<&TransportClass> {
    for cell in &CLASSES {
        if let Some(class) = cell.get(py) {
            // SAFETY: GIL held; both are live objects (a type check, no reference taken).
            let is_instance = unsafe {
                ffi::PyObject_TypeCheck(slf, class.class.as_ptr().cast::<ffi::PyTypeObject>())
            };
            if is_instance != 0 {
                return Ok(class);
            }
        }
    }
    Err(PyTypeError::new_err("not a uvloop transport"))
}

/// The core in the `_core` slot of `slf` (an instance of an installed class: the method
/// descriptors check that before calling).
fn core_of<'py>(py: Python<'py>, slf: *mut ffi::PyObject) -> PyResult<Bound<'py, StreamCore>> {
    let class = class_of(py, slf)?;
    // SAFETY: `slf` is an instance of the class (the descriptor's type check), whose layout has
    // the `_core` object slot at `core_offset`; the slot holds NULL or a strong reference.
    let core = unsafe {
        *(slf
            .cast::<u8>()
            .offset(class.core_offset)
            .cast::<*mut ffi::PyObject>())
    };
    if core.is_null() {
        return Err(PyAttributeError::new_err("transport has no _core"));
    }
    // SAFETY: a live object referenced by the slot, borrowed for this call.
    let core = unsafe { Bound::from_borrowed_ptr(py, core) };
    core.cast_into::<StreamCore>().map_err(PyErr::from)
}

/// A new transport instance whose `_core` slot holds `core`.
pub(super) fn new_transport<'py>(
    py: Python<'py>,
    core: &Bound<'py, StreamCore>,
) -> PyResult<Bound<'py, PyAny>> {
    let class = transport_class(py, core.get().kind())?;
    let class_ptr = class.class.as_ptr().cast::<ffi::PyTypeObject>();
    // SAFETY: GIL held; a heap type always has tp_alloc (PyType_GenericAlloc), which returns a
    // new, zeroed, GC-tracked instance or NULL with an exception.
    let obj = unsafe {
        let alloc = (*class_ptr).tp_alloc.unwrap_or(ffi::PyType_GenericAlloc);
        Bound::from_owned_ptr_or_err(py, alloc(class_ptr, 0))?
    };
    // SAFETY: the fresh instance has the `_core` slot at `core_offset`, still NULL; it takes a
    // new strong reference.
    unsafe {
        let slot = obj
            .as_ptr()
            .cast::<u8>()
            .offset(class.core_offset)
            .cast::<*mut ffi::PyObject>();
        *slot = core.clone().into_ptr();
    }
    Ok(obj)
}

/// Makes the transport for a connected socket: the libuv handle takes the descriptor (the socket
/// object keeps it until the transport closes, then is detached), and connection_made (then reading) is
/// queued, as asyncio's transport queues them.
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
    let stream = if tcp {
        tcp::open(uv, fd, StreamCore::owner(&core))?
    } else {
        pipe::open(uv, fd, StreamCore::owner(&core))?
    };
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
    event_loop.get().remember_transport(py, fd, &core);
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
    // SAFETY: plain system call on a descriptor number; the result is checked.
    let fd = unsafe { libc::fcntl(fileno, libc::F_DUPFD_CLOEXEC, 0) };
    if fd < 0 {
        return Err(crate::uv::error::os_error(std::io::Error::last_os_error()));
    }
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
/// "read_pipe" or "write_pipe".
#[pyfunction]
pub fn install_transport_class(cls: &Bound<'_, PyType>, kind: &str) -> PyResult<()> {
    let py = cls.py();
    let (kind, methods): (Kind, &[Method]) = match kind {
        "socket" => (Kind::Socket, SOCKET_METHODS),
        "read_pipe" => (Kind::ReadPipe, READ_PIPE_METHODS),
        "write_pipe" => (Kind::WritePipe, WRITE_PIPE_METHODS),
        other => {
            return Err(PyTypeError::new_err(format!(
                "unknown transport kind {other:?}"
            )))
        }
    };
    let descriptor = cls
        .getattr(pyo3::intern!(py, "__dict__"))?
        .get_item("_core")?;
    // SAFETY: GIL held; a type check of a live object against a static type object.
    let is_member = unsafe {
        ffi::PyObject_TypeCheck(descriptor.as_ptr(), &raw mut ffi::PyMemberDescr_Type) != 0
    };
    if !is_member {
        return Err(PyTypeError::new_err("_core must be a __slots__ member"));
    }
    // SAFETY: a member descriptor is a PyMemberDescrObject whose d_member points at the slot's
    // static definition (a PyMemberDef; a PyGetSetDef-typed field before 3.11 with the same
    // address), which records the slot's offset.
    let core_offset = unsafe {
        let member = (*descriptor.as_ptr().cast::<ffi::PyMemberDescrObject>()).d_member;
        (*member.cast::<ffi::PyMemberDef>()).offset
    };
    let class_ptr = cls.as_ptr().cast::<ffi::PyTypeObject>();
    for (name, method, flags) in methods {
        // Leaked on purpose: a method descriptor keeps a pointer to its definition for ever.
        let definition = Box::leak(Box::new(ffi::PyMethodDef {
            ml_name: name.as_ptr(),
            ml_meth: *method,
            ml_flags: *flags,
            ml_doc: std::ptr::null(),
        }));
        // SAFETY: GIL held; the type and the definition outlive the descriptor.
        let descriptor = unsafe {
            Bound::from_owned_ptr_or_err(py, ffi::PyDescr_NewMethod(class_ptr, definition))?
        };
        cls.setattr(name.to_str().unwrap_or_default(), descriptor)?;
    }
    let installed = TransportClass {
        class: cls.clone().unbind(),
        core_offset,
    };
    if CLASSES[kind_index(kind)].set(py, installed).is_err() {
        return Err(pyo3::exceptions::PyRuntimeError::new_err(
            "this transport class is already installed",
        ));
    }
    Ok(())
}

/// Runs a method body for CPython: the core looked up, errors and panics turned into exceptions.
fn call(
    slf: *mut ffi::PyObject,
    body: impl for<'py> FnOnce(&Bound<'py, StreamCore>) -> PyResult<Py<PyAny>>,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls methods with the GIL held.
    let py = unsafe { Python::assume_attached() };
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        core_of(py, slf).and_then(|core| body(&core))
    }));
    let result = match outcome {
        Ok(result) => result,
        Err(payload) => Err(crate::loop_::panic_to_pyerr(payload)),
    };
    match result {
        Ok(value) => value.into_ptr(),
        Err(err) => {
            err.restore(py);
            std::ptr::null_mut()
        }
    }
}

fn none(py: Python<'_>) -> Py<PyAny> {
    py.None()
}

macro_rules! noargs {
    ($name:ident, |$core:ident| $body:expr) => {
        unsafe extern "C" fn $name(
            slf: *mut ffi::PyObject,
            _unused: *mut ffi::PyObject,
        ) -> *mut ffi::PyObject {
            call(slf, |$core| $body)
        }
    };
}

macro_rules! one_arg {
    ($name:ident, |$core:ident, $arg:ident| $body:expr) => {
        unsafe extern "C" fn $name(
            slf: *mut ffi::PyObject,
            arg: *mut ffi::PyObject,
        ) -> *mut ffi::PyObject {
            call(slf, |$core| {
                // SAFETY: CPython passes a live argument, borrowed for the call.
                let $arg = unsafe { Bound::from_borrowed_ptr($core.py(), arg) };
                $body
            })
        }
    };
}

noargs!(m_write_eof, |core| StreamCore::write_eof(core)
    .map(|()| none(core.py())));
noargs!(m_can_write_eof, |core| Ok(true
    .into_pyobject(core.py())?
    .to_owned()
    .into_any()
    .unbind()));
noargs!(m_close, |core| StreamCore::close_method(core)
    .map(|()| none(core.py())));
noargs!(m_abort, |core| StreamCore::abort(core)
    .map(|()| none(core.py())));
noargs!(m_is_closing, |core| {
    let closing = core.get().is_closing(core.py());
    Ok(closing
        .into_pyobject(core.py())?
        .to_owned()
        .into_any()
        .unbind())
});
noargs!(m_is_reading, |core| {
    let reading = core.get().is_reading_method(core.py());
    Ok(reading
        .into_pyobject(core.py())?
        .to_owned()
        .into_any()
        .unbind())
});
noargs!(m_pause_reading, |core| StreamCore::pause_reading(core)
    .map(|()| none(core.py())));
noargs!(m_resume_reading, |core| StreamCore::resume_reading(core)
    .map(|()| none(core.py())));
noargs!(m_get_write_buffer_size, |core| {
    let size = core.get().get_write_buffer_size(core.py());
    Ok(size.into_pyobject(core.py())?.into_any().unbind())
});
noargs!(m_get_write_buffer_limits, |core| {
    let limits = core.get().get_write_buffer_limits(core.py());
    Ok(limits.into_pyobject(core.py())?.into_any().unbind())
});
noargs!(m_get_protocol, |core| Ok(core
    .get()
    .get_protocol(core.py())));
noargs!(m_make_empty_waiter, |core| StreamCore::make_empty_waiter(
    core
));
noargs!(m_reset_empty_waiter, |core| {
    core.get().reset_empty_waiter(core.py());
    Ok(none(core.py()))
});
one_arg!(m_write, |core, data| StreamCore::write(core, &data)
    .map(|()| none(core.py())));
one_arg!(m_writelines, |core, data| StreamCore::writelines(
    core, &data
)
.map(|()| none(core.py())));
one_arg!(m_set_protocol, |core, protocol| core
    .get()
    .set_protocol(&protocol)
    .map(|()| none(core.py())));
one_arg!(m_force_close, |core, exc| {
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
    call(slf, |core| {
        let py = core.py();
        // SAFETY: CPython passes `nargs` positional arguments followed by one per keyword name,
        // all borrowed for the call; `kwnames` is NULL or a tuple of str.
        let (positional, keywords) = unsafe {
            let kwnames = (!kwnames.is_null()).then(|| Bound::from_borrowed_ptr(py, kwnames));
            let count = nargs as usize + kwnames.as_ref().map_or(0, |k| k.len().unwrap_or(0));
            let all: Vec<Bound<'_, PyAny>> = (0..count)
                .map(|i| Bound::from_borrowed_ptr(py, *args.add(i)))
                .collect();
            (all, kwnames)
        };
        let mut name = None;
        let mut default = None;
        for (i, value) in positional.iter().take(nargs as usize).enumerate() {
            match i {
                0 => name = Some(value),
                1 => default = Some(value),
                _ => {
                    return Err(PyTypeError::new_err(format!(
                        "get_extra_info() takes from 2 to 3 positional arguments but {} were given",
                        nargs + 1
                    )))
                }
            }
        }
        if let Some(keywords) = keywords {
            let keywords = keywords.cast::<PyTuple>()?;
            for (key, value) in keywords.iter().zip(positional.iter().skip(nargs as usize)) {
                let slot = match key.extract::<&str>()? {
                    "name" if name.is_none() => &mut name,
                    "default" if default.is_none() => &mut default,
                    other => {
                        return Err(PyTypeError::new_err(format!(
                            "get_extra_info() got an unexpected keyword argument '{other}'"
                        )))
                    }
                };
                *slot = Some(value);
            }
        }
        let Some(name) = name else {
            return Err(PyTypeError::new_err(
                "get_extra_info() missing 1 required positional argument: 'name'",
            ));
        };
        StreamCore::get_extra_info(core, name, default)
    })
}

type Method = (&'static std::ffi::CStr, ffi::PyMethodDefPointer, c_int);

const SOCKET_METHODS: &[Method] = &[
    (
        c"write",
        ffi::PyMethodDefPointer {
            PyCFunction: m_write,
        },
        ffi::METH_O,
    ),
    (
        c"writelines",
        ffi::PyMethodDefPointer {
            PyCFunction: m_writelines,
        },
        ffi::METH_O,
    ),
    (
        c"write_eof",
        ffi::PyMethodDefPointer {
            PyCFunction: m_write_eof,
        },
        ffi::METH_NOARGS,
    ),
    (
        c"can_write_eof",
        ffi::PyMethodDefPointer {
            PyCFunction: m_can_write_eof,
        },
        ffi::METH_NOARGS,
    ),
    (
        c"close",
        ffi::PyMethodDefPointer {
            PyCFunction: m_close,
        },
        ffi::METH_NOARGS,
    ),
    (
        c"abort",
        ffi::PyMethodDefPointer {
            PyCFunction: m_abort,
        },
        ffi::METH_NOARGS,
    ),
    (
        c"is_closing",
        ffi::PyMethodDefPointer {
            PyCFunction: m_is_closing,
        },
        ffi::METH_NOARGS,
    ),
    (
        c"is_reading",
        ffi::PyMethodDefPointer {
            PyCFunction: m_is_reading,
        },
        ffi::METH_NOARGS,
    ),
    (
        c"pause_reading",
        ffi::PyMethodDefPointer {
            PyCFunction: m_pause_reading,
        },
        ffi::METH_NOARGS,
    ),
    (
        c"resume_reading",
        ffi::PyMethodDefPointer {
            PyCFunction: m_resume_reading,
        },
        ffi::METH_NOARGS,
    ),
    (
        c"get_write_buffer_size",
        ffi::PyMethodDefPointer {
            PyCFunction: m_get_write_buffer_size,
        },
        ffi::METH_NOARGS,
    ),
    (
        c"get_write_buffer_limits",
        ffi::PyMethodDefPointer {
            PyCFunction: m_get_write_buffer_limits,
        },
        ffi::METH_NOARGS,
    ),
    (
        c"get_protocol",
        ffi::PyMethodDefPointer {
            PyCFunction: m_get_protocol,
        },
        ffi::METH_NOARGS,
    ),
    (
        c"set_protocol",
        ffi::PyMethodDefPointer {
            PyCFunction: m_set_protocol,
        },
        ffi::METH_O,
    ),
    (
        c"get_extra_info",
        ffi::PyMethodDefPointer {
            PyCFunctionFastWithKeywords: m_get_extra_info,
        },
        ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
    ),
    (
        c"_force_close",
        ffi::PyMethodDefPointer {
            PyCFunction: m_force_close,
        },
        ffi::METH_O,
    ),
    (
        c"_make_empty_waiter",
        ffi::PyMethodDefPointer {
            PyCFunction: m_make_empty_waiter,
        },
        ffi::METH_NOARGS,
    ),
    (
        c"_reset_empty_waiter",
        ffi::PyMethodDefPointer {
            PyCFunction: m_reset_empty_waiter,
        },
        ffi::METH_NOARGS,
    ),
];

const READ_PIPE_METHODS: &[Method] = &[
    (
        c"close",
        ffi::PyMethodDefPointer {
            PyCFunction: m_close,
        },
        ffi::METH_NOARGS,
    ),
    (
        c"is_closing",
        ffi::PyMethodDefPointer {
            PyCFunction: m_is_closing,
        },
        ffi::METH_NOARGS,
    ),
    (
        c"is_reading",
        ffi::PyMethodDefPointer {
            PyCFunction: m_is_reading,
        },
        ffi::METH_NOARGS,
    ),
    (
        c"pause_reading",
        ffi::PyMethodDefPointer {
            PyCFunction: m_pause_reading,
        },
        ffi::METH_NOARGS,
    ),
    (
        c"resume_reading",
        ffi::PyMethodDefPointer {
            PyCFunction: m_resume_reading,
        },
        ffi::METH_NOARGS,
    ),
    (
        c"get_protocol",
        ffi::PyMethodDefPointer {
            PyCFunction: m_get_protocol,
        },
        ffi::METH_NOARGS,
    ),
    (
        c"set_protocol",
        ffi::PyMethodDefPointer {
            PyCFunction: m_set_protocol,
        },
        ffi::METH_O,
    ),
    (
        c"get_extra_info",
        ffi::PyMethodDefPointer {
            PyCFunctionFastWithKeywords: m_get_extra_info,
        },
        ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
    ),
    (
        c"_force_close",
        ffi::PyMethodDefPointer {
            PyCFunction: m_force_close,
        },
        ffi::METH_O,
    ),
];

const WRITE_PIPE_METHODS: &[Method] = &[
    (
        c"write",
        ffi::PyMethodDefPointer {
            PyCFunction: m_write,
        },
        ffi::METH_O,
    ),
    (
        c"writelines",
        ffi::PyMethodDefPointer {
            PyCFunction: m_writelines,
        },
        ffi::METH_O,
    ),
    (
        c"write_eof",
        ffi::PyMethodDefPointer {
            PyCFunction: m_write_eof,
        },
        ffi::METH_NOARGS,
    ),
    (
        c"can_write_eof",
        ffi::PyMethodDefPointer {
            PyCFunction: m_can_write_eof,
        },
        ffi::METH_NOARGS,
    ),
    (
        c"close",
        ffi::PyMethodDefPointer {
            PyCFunction: m_close,
        },
        ffi::METH_NOARGS,
    ),
    (
        c"abort",
        ffi::PyMethodDefPointer {
            PyCFunction: m_abort,
        },
        ffi::METH_NOARGS,
    ),
    (
        c"is_closing",
        ffi::PyMethodDefPointer {
            PyCFunction: m_is_closing,
        },
        ffi::METH_NOARGS,
    ),
    (
        c"get_write_buffer_size",
        ffi::PyMethodDefPointer {
            PyCFunction: m_get_write_buffer_size,
        },
        ffi::METH_NOARGS,
    ),
    (
        c"get_write_buffer_limits",
        ffi::PyMethodDefPointer {
            PyCFunction: m_get_write_buffer_limits,
        },
        ffi::METH_NOARGS,
    ),
    (
        c"get_protocol",
        ffi::PyMethodDefPointer {
            PyCFunction: m_get_protocol,
        },
        ffi::METH_NOARGS,
    ),
    (
        c"set_protocol",
        ffi::PyMethodDefPointer {
            PyCFunction: m_set_protocol,
        },
        ffi::METH_O,
    ),
    (
        c"get_extra_info",
        ffi::PyMethodDefPointer {
            PyCFunctionFastWithKeywords: m_get_extra_info,
        },
        ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
    ),
    (
        c"_force_close",
        ffi::PyMethodDefPointer {
            PyCFunction: m_force_close,
        },
        ffi::METH_O,
    ),
];
