//! `Loop.call_soon` as a hand-written METH_FASTCALL method.
//!
//! asyncio's Task calls `loop.call_soon(step, context=ctx)` once per step, and callback-driven
//! code calls it once per callback: PyO3's generic argument extraction (keyword matching, the
//! `*args` tuple) was a tenth of a call_soon chain's time. This parses the one shape directly and
//! hands over to `Loop::call_soon_impl`.

use std::os::raw::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::{run, Loop};

/// Installs the method on the native Loop type, replacing nothing (the type has no other).
pub fn install(py: Python<'_>) -> PyResult<()> {
    // Leaked on purpose: a method descriptor keeps a pointer to its definition for ever.
    let definition = Box::leak(Box::new(ffi::PyMethodDef {
        ml_name: c"call_soon".as_ptr(),
        ml_meth: ffi::PyMethodDefPointer {
            PyCFunctionFastWithKeywords: call_soon,
        },
        ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
        ml_doc: c"call_soon($self, callback, /, *args, context=None)\n--\n\nArrange for callback(*args) to be called soon, in `context` (default: a copy of the current one).".as_ptr(),
    }));
    let loop_type = py.get_type::<Loop>();
    // SAFETY: GIL held; the type pointer is live and the definition outlives the descriptor.
    let descriptor = unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            ffi::PyDescr_NewMethod(loop_type.as_type_ptr(), definition),
        )
    }?;
    loop_type.setattr(pyo3::intern!(py, "call_soon"), descriptor)
}

unsafe extern "C" fn call_soon(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls methods with the GIL held.
    let py = unsafe { Python::assume_attached() };
    let result = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the arguments are what CPython passes to a METH_FASTCALL|METH_KEYWORDS method
        // of Loop: `slf` is a Loop (the descriptor checks its type), `args` holds the positional
        // then the keyword values, `kwnames` names the latter (or is NULL).
        unsafe { parse_and_call(py, slf, args, nargsf, kwnames) }
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
/// As for `call_soon`.
unsafe fn parse_and_call(
    py: Python<'_>,
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> PyResult<Py<crate::handles::Handle>> {
    // SAFETY: per the caller, valid vectorcall arguments.
    unsafe {
        let nargs = ffi::PyVectorcall_NARGS(nargsf as usize);
        if nargs < 1 {
            return Err(PyTypeError::new_err(
                "call_soon() missing 1 required positional argument: 'callback'",
            ));
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
            for index in 0..ffi::PyTuple_GET_SIZE(kwnames) {
                let name = ffi::PyTuple_GET_ITEM(kwnames, index);
                let value = *args.offset(nargs + index);
                if ffi::PyUnicode_CompareWithASCIIString(name, c"context".as_ptr() as *const c_char)
                    != 0
                {
                    let name = Borrowed::from_ptr(py, name).to_owned();
                    return Err(PyTypeError::new_err(format!(
                        "call_soon() got an unexpected keyword argument '{name}'"
                    )));
                }
                if value != ffi::Py_None() {
                    context = Some(Borrowed::from_ptr(py, value).to_owned());
                }
            }
        }
        Loop::call_soon_impl(&slf, callback, rest, context)
    }
}
