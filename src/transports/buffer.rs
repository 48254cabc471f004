//! The bytes of Python objects, as system calls need them.

use std::os::raw::c_int;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// A buffer-protocol view of an object, released when dropped.
pub struct BufferView {
    view: ffi::Py_buffer,
}

impl BufferView {
    /// A contiguous view of `obj`'s bytes; with `writable`, one the caller may write into.
    pub fn get(obj: &Bound<'_, PyAny>, writable: bool) -> PyResult<Self> {
        let flags: c_int = if writable {
            ffi::PyBUF_WRITABLE
        } else {
            ffi::PyBUF_SIMPLE
        };
        // SAFETY: Py_buffer is plain C data that PyObject_GetBuffer fills in.
        let mut view: ffi::Py_buffer = unsafe { std::mem::zeroed() };
        // SAFETY: GIL held, `obj` is live, `view` is a valid out-pointer.
        if unsafe { ffi::PyObject_GetBuffer(obj.as_ptr(), &mut view, flags) } < 0 {
            return Err(PyErr::fetch(obj.py()));
        }
        Ok(Self { view })
    }

    pub fn len(&self) -> usize {
        self.view.len as usize
    }

    pub fn as_ptr(&self) -> *mut u8 {
        self.view.buf.cast()
    }

    pub fn as_slice(&self) -> &[u8] {
        if self.len() == 0 {
            return &[];
        }
        // SAFETY: a successful PyObject_GetBuffer with PyBUF_SIMPLE/WRITABLE describes `len`
        // contiguous bytes at `buf`, valid until the view is released in Drop.
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.len()) }
    }
}

impl Drop for BufferView {
    fn drop(&mut self) {
        // SAFETY: the view was filled by a successful PyObject_GetBuffer and is released once;
        // views are only made and dropped on threads holding the GIL.
        unsafe { ffi::PyBuffer_Release(&mut self.view) };
    }
}

/// Queued outgoing bytes: `bytes` objects are kept by reference (they cannot change), other
/// buffers are copied when written, as asyncio's guarantee about later mutation requires.
pub enum Chunk {
    Shared(Py<PyBytes>),
    Owned(Vec<u8>),
}

impl Chunk {
    pub fn bytes<'a>(&'a self, py: Python<'a>) -> &'a [u8] {
        match self {
            Chunk::Shared(bytes) => bytes.as_bytes(py),
            Chunk::Owned(vec) => vec,
        }
    }
}

extern "C" {
    /// CPython's resize of a `bytes` object nobody else holds yet (exported on every version
    /// we support; pyo3 does not bind it).
    fn _PyBytes_Resize(bytes: *mut *mut ffi::PyObject, size: ffi::Py_ssize_t) -> c_int;
}

/// Runs `read` (a system call returning a byte count or an errno) straight into a new `bytes`
/// of `capacity`, shrunk in place to what arrived (no copy; empty at end of stream).
pub fn read_into_new_bytes(
    py: Python<'_>,
    capacity: usize,
    read: impl FnOnce(&mut [u8]) -> Result<usize, c_int>,
) -> Result<Bound<'_, PyBytes>, c_int> {
    // SAFETY: a NULL source asks CPython for an uninitialised bytes object of that size.
    let mut obj =
        unsafe { ffi::PyBytes_FromStringAndSize(std::ptr::null(), capacity as ffi::Py_ssize_t) };
    if obj.is_null() {
        // SAFETY: the MemoryError is reported as ENOMEM instead.
        unsafe { ffi::PyErr_Clear() };
        return Err(libc::ENOMEM);
    }
    // SAFETY: `obj` is a fresh bytes object with `capacity` writable bytes that only we hold;
    // `read` writes at most that many.
    let n = read(unsafe {
        std::slice::from_raw_parts_mut(ffi::PyBytes_AsString(obj).cast::<u8>(), capacity)
    });
    let n = match n {
        Ok(n) => n.min(capacity),
        Err(errno) => {
            // SAFETY: we own the only reference.
            unsafe { ffi::Py_DecRef(obj) };
            return Err(errno);
        }
    };
    // SAFETY: `obj` is ours alone, as _PyBytes_Resize requires; on failure CPython releases
    // it and sets it to NULL.
    if n < capacity && unsafe { _PyBytes_Resize(&mut obj, n as ffi::Py_ssize_t) } < 0 {
        // SAFETY: the MemoryError is reported as ENOMEM instead.
        unsafe { ffi::PyErr_Clear() };
        return Err(libc::ENOMEM);
    }
    // SAFETY: `obj` is a valid bytes object whose reference we own.
    Ok(unsafe { Bound::from_owned_ptr(py, obj).cast_into_unchecked() })
}
