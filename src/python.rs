//! Python objects the native code calls: asyncio's types and the helpers in `uvloop._native_support`
//! for the rare paths (error reports, reprs, debug-mode stacks) that are plain Python by nature.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyTuple;

/// Looks an attribute up once per process and keeps it.
fn cached<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyAny>>,
    module: &str,
    name: &str,
) -> PyResult<&'py Bound<'py, PyAny>> {
    cell.get_or_try_init(py, || {
        Ok::<_, PyErr>(py.import(module)?.getattr(name)?.unbind())
    })
    .map(|obj| obj.bind(py))
}

macro_rules! python_object {
    ($fn_name:ident, $module:literal, $name:literal) => {
        pub fn $fn_name(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
            static CELL: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
            cached(py, &CELL, $module, $name)
        }
    };
}

python_object!(future_type, "asyncio", "Future");
python_object!(task_type, "asyncio", "Task");
python_object!(buffered_protocol_type, "asyncio", "BufferedProtocol");
python_object!(asyncio_logger, "asyncio.log", "logger");
python_object!(
    support_extract_stack,
    "uvloop._native_support",
    "extract_stack"
);
python_object!(support_handle_repr, "uvloop._native_support", "handle_repr");
python_object!(
    support_report_callback_error,
    "uvloop._native_support",
    "report_callback_error"
);
python_object!(
    support_warn_slow_callback,
    "uvloop._native_support",
    "warn_slow_callback"
);
python_object!(
    support_check_callback,
    "uvloop._native_support",
    "check_callback"
);
python_object!(
    support_report_protocol_callback_error,
    "uvloop._native_support",
    "report_protocol_callback_error"
);
python_object!(
    support_report_accept_error,
    "uvloop._native_support",
    "report_accept_error"
);
python_object!(
    support_socket_for_fd,
    "uvloop._native_support",
    "socket_for_fd"
);
python_object!(transport_socket_type, "asyncio.trsock", "TransportSocket");
python_object!(
    support_numeric_datagram_address,
    "uvloop._native_support",
    "numeric_datagram_address"
);

/// `asyncio.log.logger.warning(message)`.
pub fn log_warning(py: Python<'_>, message: &str) -> PyResult<()> {
    asyncio_logger(py)?.call_method1(pyo3::intern!(py, "warning"), (message,))?;
    Ok(())
}

/// `format_helpers.extract_stack()` starting at the Python code that called into the loop.
pub fn extract_stack(py: Python<'_>) -> PyResult<Py<PyAny>> {
    Ok(support_extract_stack(py)?.call0()?.unbind())
}

pub fn handle_repr(py: Python<'_>, handle: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    Ok(support_handle_repr(py)?.call1((handle,))?.unbind())
}

/// Builds asyncio's "Exception in callback ..." context and hands it to the exception handler.
pub fn report_callback_error(
    py: Python<'_>,
    handle: &Bound<'_, PyAny>,
    callback: &Py<PyAny>,
    args: &Py<PyTuple>,
    err: PyErr,
) -> PyResult<()> {
    support_report_callback_error(py)?.call1((handle, callback, args, err.into_value(py)))?;
    Ok(())
}

/// A protocol callback the transport called on the loop's behalf raised: asyncio's "Exception in
/// callback ..." report, as if it had been a scheduled handle.
pub fn report_protocol_callback_error(
    py: Python<'_>,
    event_loop: &Bound<'_, PyAny>,
    callback: &Bound<'_, PyAny>,
    err: PyErr,
) -> PyResult<()> {
    support_report_protocol_callback_error(py)?.call1((
        event_loop,
        callback,
        err.into_value(py),
    ))?;
    Ok(())
}

/// A failed accept: asyncio's report ("socket.accept() out of system resource" for the errors
/// of a full process or system, the loop's exception handler for the others).
pub fn report_accept_error(
    py: Python<'_>,
    event_loop: &Bound<'_, PyAny>,
    sock: &Bound<'_, PyAny>,
    err: PyErr,
) -> PyResult<()> {
    support_report_accept_error(py)?.call1((event_loop, sock, err.into_value(py)))?;
    Ok(())
}

/// A protocol factory failed for an accepted connection (reported in debug mode, as asyncio).
pub fn report_connection_setup_error(
    py: Python<'_>,
    event_loop: &Bound<'_, PyAny>,
    err: PyErr,
) -> PyResult<()> {
    event_loop.call_method1(
        pyo3::intern!(py, "call_exception_handler"),
        (pyo3::types::PyDict::from_sequence(
            &pyo3::types::PyList::new(
                py,
                [
                    (
                        "message",
                        "Error on transport creation for incoming connection"
                            .into_pyobject(py)?
                            .into_any(),
                    ),
                    ("exception", err.into_value(py).into_bound(py).into_any()),
                ],
            )?
            .into_any(),
        )?,),
    )?;
    Ok(())
}

/// A socket object for a descriptor libuv owns (detached before libuv closes it).
pub fn socket_for_fd(py: Python<'_>, fd: std::os::raw::c_int) -> PyResult<Py<PyAny>> {
    Ok(support_socket_for_fd(py)?.call1((fd,))?.unbind())
}

/// `addr` for a datagram socket's `sendto` with its host in numbers; ValueError for a host name.
pub fn numeric_datagram_address<'py>(
    py: Python<'py>,
    sock: &Bound<'py, PyAny>,
    addr: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    support_numeric_datagram_address(py)?.call1((sock, addr))
}

/// `asyncio.trsock.TransportSocket(sock)`.
pub fn transport_socket<'py>(
    py: Python<'py>,
    sock: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    transport_socket_type(py)?.call1((sock,))
}

/// Logs asyncio's debug-mode "Executing <handle> took N seconds" warning.
pub fn warn_slow_callback(py: Python<'_>, handle: &Bound<'_, PyAny>, seconds: f64) -> PyResult<()> {
    support_warn_slow_callback(py)?.call1((handle, seconds))?;
    Ok(())
}

/// asyncio's debug-mode `_check_callback`: TypeError for coroutines and non-callables.
pub fn check_callback(py: Python<'_>, callback: &Bound<'_, PyAny>, method: &str) -> PyResult<()> {
    support_check_callback(py)?.call1((callback, method))?;
    Ok(())
}

const MAX_VECTORCALL_ARGS: usize = 8;

/// `callable(*positional, **dict(zip(kwnames, keyword_values)))` through vectorcall, without the
/// dict that `call(args, kwargs)` would build.
pub fn vectorcall<'py>(
    callable: &Bound<'py, PyAny>,
    args: &[&Bound<'py, PyAny>],
    kwnames: Option<&Bound<'py, PyTuple>>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = callable.py();
    let kw_count = kwnames.map_or(0, |names| names.len());
    let mut ptrs = [std::ptr::null_mut(); MAX_VECTORCALL_ARGS];
    if args.len() > MAX_VECTORCALL_ARGS {
        return Err(pyo3::exceptions::PySystemError::new_err(
            "too many vectorcall arguments",
        ));
    }
    for (slot, arg) in ptrs.iter_mut().zip(args) {
        *slot = arg.as_ptr();
    }
    let positional = args.len() - kw_count;
    let kwnames_ptr = kwnames.map_or(std::ptr::null_mut(), |names| names.as_ptr());
    // SAFETY: GIL held; `ptrs` holds borrowed live objects for the duration of the call, the
    // last `kw_count` of them named by `kwnames`, a tuple of str (or NULL when there are none).
    unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            pyo3::ffi::PyObject_Vectorcall(
                callable.as_ptr(),
                ptrs.as_ptr(),
                positional,
                kwnames_ptr,
            ),
        )
    }
}

/// The tuple of keyword names `names`, built once per call site.
#[macro_export]
macro_rules! kwnames {
    ($py:expr, $($name:literal),+) => {{
        static CELL: pyo3::sync::PyOnceLock<pyo3::Py<pyo3::types::PyTuple>> =
            pyo3::sync::PyOnceLock::new();
        CELL.get_or_try_init($py, || pyo3::types::PyTuple::new($py, [$($name),+]).map(pyo3::Bound::unbind))
            .map(|names| names.bind($py))
    }};
}
