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
