//! `Loop.call_soon` and `Loop.call_soon_threadsafe` as hand-written METH_FASTCALL methods.
//!
//! asyncio's Task calls `loop.call_soon(step, context=ctx)` once per step, and callback-driven
//! code calls it once per callback: PyO3's generic argument extraction (keyword matching, the
//! `*args` tuple) was a tenth of a call_soon chain's time. This parses the one shape directly and
//! hands over to the Loop's implementation.

use std::os::raw::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::{run, Loop};

type Method = fn(
    &Bound<'_, Loop>,
    Bound<'_, PyAny>,
    Bound<'_, PyTuple>,
    Option<Bound<'_, PyAny>>,
) -> PyResult<Py<crate::handles::Handle>>;

/// Installs the methods on the native Loop type.
pub fn install(py: Python<'_>) -> PyResult<()> {
    install_one(
        py,
        c"call_soon",
        call_soon,
        c"call_soon($self, callback, /, *args, context=None)\n--\n\nArrange for callback(*args) to be called soon, in `context` (default: a copy of the current one).",
    )?;
    install_one(
        py,
        c"call_soon_threadsafe",
        call_soon_threadsafe,
        c"call_soon_threadsafe($self, callback, /, *args, context=None)\n--\n\nLike call_soon(), from any thread: wakes the loop if it is waiting.",
    )
}

fn install_one(
    py: Python<'_>,
    name: &'static std::ffi::CStr,
    function: ffi::PyCFunctionFastWithKeywords,
    doc: &'static std::ffi::CStr,
) -> PyResult<()> {
    // Leaked on purpose: a method descriptor keeps a pointer to its definition for ever.
    let definition = Box::leak(Box::new(ffi::PyMethodDef {
        ml_name: name.as_ptr(),
        ml_meth: ffi::PyMethodDefPointer {
            PyCFunctionFastWithKeywords: function,
        },
        ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
        ml_doc: doc.as_ptr(),
    }));
    let loop_type = py.get_type::<Loop>();
    // SAFETY: GIL held; the type pointer is live and the definition outlives the descriptor.
    let descriptor = unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            ffi::PyDescr_NewMethod(loop_type.as_type_ptr(), definition),
        )
    }?;
    loop_type.setattr(name.to_string_lossy().as_ref(), descriptor)
}

unsafe extern "C" fn call_soon(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: as for `trampoline`.
    unsafe {
        trampoline(
            "call_soon",
            Loop::call_soon_impl,
            slf,
            args,
            nargsf,
            kwnames,
        )
    }
}

unsafe extern "C" fn call_soon_threadsafe(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: as for `trampoline`.
    unsafe {
        trampoline(
            "call_soon_threadsafe",
            Loop::call_soon_threadsafe_impl,
            slf,
            args,
            nargsf,
            kwnames,
        )
    }
}

/// # Safety
/// The arguments are what CPython passes to a METH_FASTCALL|METH_KEYWORDS method of Loop, with
/// the GIL held: `slf` is a Loop (the descriptor checks its type), `args` holds the positional
/// then the keyword values, `kwnames` names the latter (or is NULL).
unsafe fn trampoline(
    name: &str,
    method: Method,
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls methods with the GIL held.
    let py = unsafe { Python::assume_attached() };
    let result = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: per this function's contract.
        unsafe { parse_and_call(py, name, method, slf, args, nargsf, kwnames) }
    }));
    let error = match result {
        Ok(Ok(handle)) => return handle.into_ptr(),
        Ok(Err(err)) => err,
        Err(payload) => run::panic_to_pyerr(payload),
    };
    error.restore(py);
    std::ptr::null_mut()
}

/// # Safety
/// As for `trampoline`.
unsafe fn parse_and_call(
    py: Python<'_>,
    name: &str,
    method: Method,
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> PyResult<Py<crate::handles::Handle>> {
    // SAFETY: per the caller, valid vectorcall arguments.
    unsafe {
        let nargs = ffi::PyVectorcall_NARGS(nargsf as usize);
        if nargs < 1 {
            return Err(PyTypeError::new_err(format!(
                "{name}() missing 1 required positional argument: 'callback'"
            )));
        }
        let slf = Borrowed::from_ptr(py, slf).cast_unchecked::<Loop>();
        let callback = Borrowed::from_ptr(py, *args).to_owned();
        let rest = ffi::PyTuple_New(nargs - 1);
        if rest.is_null() {
            return Err(PyErr::fetch(py));
        }
        for index in 1..nargs {
            let item = *args.offset(index);
            ffi::Py_INCREF(item);
            ffi::PyTuple_SET_ITEM(rest, index - 1, item);
        }
        let rest = Bound::from_owned_ptr(py, rest).cast_into_unchecked::<PyTuple>();
        let mut context = None;
        if !kwnames.is_null() {
            let method_name = name;
            for index in 0..ffi::PyTuple_GET_SIZE(kwnames) {
                let name = ffi::PyTuple_GET_ITEM(kwnames, index);
                let value = *args.offset(nargs + index);
                if ffi::PyUnicode_CompareWithASCIIString(name, c"context".as_ptr() as *const c_char)
                    != 0
                {
                    let keyword = Borrowed::from_ptr(py, name).to_owned();
                    return Err(PyTypeError::new_err(format!(
                        "{method_name}() got an unexpected keyword argument '{keyword}'"
                    )));
                }
                if value != ffi::Py_None() {
                    context = Some(Borrowed::from_ptr(py, value).to_owned());
                }
            }
        }
        method(&slf, callback, rest, context)
    }
}
