//! The Python classes of the transports protocols see. Each is a Python subclass of the asyncio
//! transport ABC it implements (so that it is one, as asyncio documents) with a `_core` slot
//! holding its native state, and native method descriptors installed on it for every method that
//! runs per packet, per read, per write or per connection. An instance is made natively
//! (`tp_alloc` and the slot), so no Python code runs to make one.

use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::exceptions::{PyAttributeError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;
use pyo3::PyClass;

/// The transport classes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ClassKind {
    Socket = 0,
    ReadPipe = 1,
    WritePipe = 2,
    Datagram = 3,
}

/// A method descriptor to install: name, C function, calling convention.
pub type Method = (&'static std::ffi::CStr, ffi::PyMethodDefPointer, c_int);

/// A method taking no argument (METH_NOARGS).
pub const fn without_args(name: &'static std::ffi::CStr, function: ffi::PyCFunction) -> Method {
    (
        name,
        ffi::PyMethodDefPointer {
            PyCFunction: function,
        },
        ffi::METH_NOARGS,
    )
}

/// A method taking one positional argument (METH_O).
pub const fn with_one_arg(name: &'static std::ffi::CStr, function: ffi::PyCFunction) -> Method {
    (
        name,
        ffi::PyMethodDefPointer {
            PyCFunction: function,
        },
        ffi::METH_O,
    )
}

/// A method with the vectorcall convention and keywords (METH_FASTCALL | METH_KEYWORDS).
pub const fn with_fastcall(
    name: &'static std::ffi::CStr,
    function: ffi::PyCFunctionFastWithKeywords,
) -> Method {
    (
        name,
        ffi::PyMethodDefPointer {
            PyCFunctionFastWithKeywords: function,
        },
        ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
    )
}

/// An installed class and where its `_core` slot lives in an instance.
struct TransportClass {
    class: Py<PyType>,
    core_offset: isize,
}

static CLASSES: [PyOnceLock<TransportClass>; 4] = [
    PyOnceLock::new(),
    PyOnceLock::new(),
    PyOnceLock::new(),
    PyOnceLock::new(),
];

fn installed(py: Python<'_>, kind: ClassKind) -> PyResult<&TransportClass> {
    CLASSES[kind as usize]
        .get(py)
        .ok_or_else(|| PyTypeError::new_err("uvloop's transport classes are not installed"))
}

/// Installs `methods` on `cls` and records it as the class of `kind` (once per process).
pub fn install(cls: &Bound<'_, PyType>, kind: ClassKind, methods: &[Method]) -> PyResult<()> {
    let py = cls.py();
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
    let class = TransportClass {
        class: cls.clone().unbind(),
        core_offset,
    };
    if CLASSES[kind as usize].set(py, class).is_err() {
        return Err(pyo3::exceptions::PyRuntimeError::new_err(
            "this transport class is already installed",
        ));
    }
    Ok(())
}

/// The installed class `slf` is an instance of.
fn class_of(py: Python<'_>, slf: *mut ffi::PyObject) -> PyResult<&TransportClass> {
    // SAFETY: GIL held; `slf` is a live object.
    let exact = unsafe { ffi::Py_TYPE(slf) }.cast::<ffi::PyObject>();
    for cell in &CLASSES {
        if let Some(class) = cell.get(py) {
            if class.class.as_ptr() == exact {
                return Ok(class);
            }
        }
    }
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

/// The core in the `_core` slot of `slf`, an instance of an installed class (the method
/// descriptors check that before calling).
pub fn core_of<'py, T: PyClass>(
    py: Python<'py>,
    slf: *mut ffi::PyObject,
) -> PyResult<Bound<'py, T>> {
    let class = class_of(py, slf)?;
    // SAFETY: `slf` is an instance of the class, whose layout has the `_core` object slot at
    // `core_offset`; the slot holds NULL or a strong reference.
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
    core.cast_into::<T>().map_err(PyErr::from)
}

/// A new instance of the class of `kind` whose `_core` slot holds `core`.
pub fn new_instance<'py>(
    py: Python<'py>,
    kind: ClassKind,
    core: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let class = installed(py, kind)?;
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

/// Runs a method body for CPython: the core looked up, errors and panics turned into exceptions.
pub fn call<T: PyClass>(
    slf: *mut ffi::PyObject,
    body: impl for<'py> FnOnce(&Bound<'py, T>) -> PyResult<Py<PyAny>>,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls methods with the GIL held.
    let py = unsafe { Python::assume_attached() };
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        core_of::<T>(py, slf).and_then(|core| body(&core))
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

/// `None`, for methods that return nothing.
pub fn none(py: Python<'_>) -> Py<PyAny> {
    py.None()
}

/// A bool, for methods that answer one.
pub fn boolean(py: Python<'_>, value: bool) -> Py<PyAny> {
    pyo3::types::PyBool::new(py, value)
        .to_owned()
        .into_any()
        .unbind()
}

/// A METH_NOARGS method of core type `$core_type`.
macro_rules! noargs {
    ($core_type:ty, $name:ident, |$core:ident| $body:expr) => {
        unsafe extern "C" fn $name(
            slf: *mut pyo3::ffi::PyObject,
            _unused: *mut pyo3::ffi::PyObject,
        ) -> *mut pyo3::ffi::PyObject {
            $crate::transports::python_class::call::<$core_type>(slf, |$core| $body)
        }
    };
}

/// A METH_O method of core type `$core_type`.
macro_rules! one_arg {
    ($core_type:ty, $name:ident, |$core:ident, $arg:ident| $body:expr) => {
        unsafe extern "C" fn $name(
            slf: *mut pyo3::ffi::PyObject,
            arg: *mut pyo3::ffi::PyObject,
        ) -> *mut pyo3::ffi::PyObject {
            $crate::transports::python_class::call::<$core_type>(slf, |$core| {
                // SAFETY: CPython passes a live argument, borrowed for the call.
                let $arg = unsafe { pyo3::Bound::from_borrowed_ptr($core.py(), arg) };
                $body
            })
        }
    };
}

pub(crate) use noargs;
pub(crate) use one_arg;

/// The arguments of a METH_FASTCALL|METH_KEYWORDS call, by position or name, for a method
/// taking `names` (the first `required` of them required).
///
/// # Safety
/// `args`, `nargs` and `kwnames` must be what CPython passed to the method.
pub unsafe fn fastcall_arguments<'py, const N: usize>(
    py: Python<'py>,
    method: &str,
    names: [&str; N],
    required: usize,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> PyResult<[Option<Bound<'py, PyAny>>; N]> {
    let mut found: [Option<Bound<'py, PyAny>>; N] = std::array::from_fn(|_| None);
    let positional = usize::try_from(nargs).unwrap_or(0);
    if positional > N {
        return Err(PyTypeError::new_err(format!(
            "{method}() takes from {} to {} positional arguments but {} were given",
            required + 1,
            N + 1,
            positional + 1
        )));
    }
    for (i, slot) in found.iter_mut().enumerate().take(positional) {
        // SAFETY: per the contract, `args` holds `nargs` live positional arguments.
        *slot = Some(unsafe { Bound::from_borrowed_ptr(py, *args.add(i)) });
    }
    if !kwnames.is_null() {
        // SAFETY: per the contract, a live tuple of str.
        let kwnames = unsafe { Bound::from_borrowed_ptr(py, kwnames) };
        let kwnames = kwnames.cast::<pyo3::types::PyTuple>()?;
        for (i, key) in kwnames.iter().enumerate() {
            // SAFETY: the keyword values follow the positional arguments.
            let value = unsafe { Bound::from_borrowed_ptr(py, *args.add(positional + i)) };
            let key: String = key.extract()?;
            let Some(index) = names.iter().position(|name| *name == key) else {
                return Err(PyTypeError::new_err(format!(
                    "{method}() got an unexpected keyword argument '{key}'"
                )));
            };
            if found[index].is_some() {
                return Err(PyTypeError::new_err(format!(
                    "{method}() got multiple values for argument '{key}'"
                )));
            }
            found[index] = Some(value);
        }
    }
    if let Some(missing) = names
        .iter()
        .take(required)
        .zip(&found)
        .find(|(_, v)| v.is_none())
    {
        return Err(PyTypeError::new_err(format!(
            "{method}() missing 1 required positional argument: '{}'",
            missing.0
        )));
    }
    Ok(found)
}
