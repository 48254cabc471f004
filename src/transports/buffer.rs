//! The bytes of Python objects, as system calls need them.

use std::mem::MaybeUninit;
use std::os::raw::c_int;
use std::ptr::NonNull;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// A buffer-protocol view of an object, released when dropped.
pub struct BufferView {
    view: ffi::Py_buffer,
}

// SAFETY: a view is only made, used and released by the thread holding the GIL (it lives in loop
// or transport state, which the GIL serialises; see crate::gil).
unsafe impl Send for BufferView {}

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
    /// A copy of `data`, or MemoryError when it cannot be allocated (Rust's own allocation
    /// failure would abort the process).
    pub fn copy_of(data: &[u8]) -> PyResult<Chunk> {
        let mut copy = Vec::new();
        copy.try_reserve_exact(data.len())
            .map_err(|_| pyo3::exceptions::PyMemoryError::new_err(()))?;
        copy.extend_from_slice(data);
        Ok(Chunk::Owned(copy))
    }

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

/// A `bytes` object of `capacity` uninitialised bytes that only we hold, for a read to land in,
/// then shrunk in place to what arrived (no copy). Released if dropped unfinished.
pub struct NewBytes {
    obj: NonNull<ffi::PyObject>,
    capacity: usize,
}

// SAFETY: as BufferView: only touched by the thread holding the GIL.
unsafe impl Send for NewBytes {}

impl NewBytes {
    /// Err(ENOMEM) when CPython cannot allocate it.
    pub fn new(_py: Python<'_>, capacity: usize) -> Result<Self, c_int> {
        // SAFETY: GIL held; a NULL source asks CPython for an uninitialised bytes object.
        let obj = unsafe {
            ffi::PyBytes_FromStringAndSize(std::ptr::null(), capacity as ffi::Py_ssize_t)
        };
        match NonNull::new(obj) {
            Some(obj) => Ok(Self { obj, capacity }),
            None => {
                // SAFETY: GIL held; the MemoryError is reported as ENOMEM instead.
                unsafe { ffi::PyErr_Clear() };
                Err(libc::ENOMEM)
            }
        }
    }

    /// Where the read goes: `capacity` bytes, possibly uninitialised (never read through here).
    pub fn as_mut_ptr(&self) -> *mut u8 {
        // SAFETY: a live bytes object we hold.
        unsafe { ffi::PyBytes_AsString(self.obj.as_ptr()).cast() }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The object with its first `len` bytes (which the read initialised) and no more.
    pub fn finish(self, py: Python<'_>, len: usize) -> Result<Bound<'_, PyBytes>, c_int> {
        let mut obj = self.obj.as_ptr();
        std::mem::forget(self);
        let len = len.min(isize::MAX as usize);
        // SAFETY: `obj` is ours alone, as _PyBytes_Resize requires; on failure CPython releases
        // it and sets it to NULL. A shorter length never reallocates more than it had.
        if unsafe { _PyBytes_Resize(&mut obj, len as ffi::Py_ssize_t) } < 0 {
            // SAFETY: GIL held; the MemoryError is reported as ENOMEM instead.
            unsafe { ffi::PyErr_Clear() };
            return Err(libc::ENOMEM);
        }
        // SAFETY: `obj` is a valid bytes object whose reference we own.
        Ok(unsafe { Bound::from_owned_ptr(py, obj).cast_into_unchecked() })
    }
}

impl Drop for NewBytes {
    fn drop(&mut self) {
        // SAFETY: we own the only reference; objects are only dropped with the GIL held (the
        // owner is loop state, touched under the GIL).
        unsafe { ffi::Py_DecRef(self.obj.as_ptr()) };
    }
}

/// Runs `read` (a system call returning a byte count or an errno) straight into a new `bytes`
/// of `capacity`, shrunk to what arrived (empty at end of stream).
pub fn read_into_new_bytes(
    py: Python<'_>,
    capacity: usize,
    read: impl FnOnce(*mut u8, usize) -> Result<usize, c_int>,
) -> Result<Bound<'_, PyBytes>, c_int> {
    let bytes = NewBytes::new(py, capacity)?;
    let n = read(bytes.as_mut_ptr(), capacity)?;
    bytes.finish(py, n.min(capacity))
}

/// The size of the loop thread's read buffer: asyncio's `max_size` of one socket read.
pub const READ_BUFFER_SIZE: usize = 256 * 1024;

thread_local! {
    /// Short reads land here first, then are copied once into an exact-size `bytes`.
    static READ_BUFFER: Box<[MaybeUninit<u8>]> = Box::new_uninit_slice(READ_BUFFER_SIZE);
}

/// The loop thread's read buffer: READ_BUFFER_SIZE bytes, possibly uninitialised, for a read to
/// land in before `copy_from_read_buffer` takes what it initialised.
pub fn read_buffer() -> *mut u8 {
    READ_BUFFER.with(|buffer| buffer.as_ptr().cast_mut().cast())
}

/// A `bytes` with the first `len` bytes of the read buffer, which a read has just initialised.
pub fn copy_from_read_buffer(py: Python<'_>, len: usize) -> Bound<'_, PyBytes> {
    let len = len.min(READ_BUFFER_SIZE);
    // SAFETY: the buffer has READ_BUFFER_SIZE bytes and the caller's read initialised the first
    // `len`; nothing else writes it while we copy (this thread is the only user).
    PyBytes::new(py, unsafe {
        std::slice::from_raw_parts(read_buffer(), len)
    })
}
