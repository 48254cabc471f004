//! `uv_stream_t`: what TCP connections and pipes share (reading, writing, shutting down).
//!
//! A `Stream<D>` owns a TCP or pipe handle (see `tcp`, `pipe`) whose callbacks go to `D`, a
//! `StreamEvents`. Writes first try the system call at once (`try_write`); what it does not take
//! goes into a `uv_write` request that owns (a reference to) its buffers until its callback.

use std::os::raw::{c_char, c_int};

use pyo3::Python;

use super::error::UvError;
use super::event_loop::{guard_callback, status};
use super::handle::{data_of, loop_of, Handle, HandleType, LoopClose};
use super::sys;

/// Where a stream's callbacks go. Each runs on the loop's thread with the GIL held.
pub trait StreamEvents: LoopClose {
    /// Memory for the next read: a pointer to `len` bytes the callee keeps valid until `read`.
    /// A length of 0 declines the read (then `read` gets `UV_ENOBUFS` and the data stays in the
    /// kernel). The memory may be uninitialised; libuv only writes into it.
    fn alloc(&self, py: Python<'_>) -> (*mut u8, usize);
    /// `nread` bytes arrived in the memory of the last `alloc` (0: none this time, like EAGAIN),
    /// or a negative libuv error (`UV_EOF` at end of stream).
    fn read(&self, py: Python<'_>, nread: isize);
    /// A `write` request finished (`status` < 0: it failed, or was cancelled by closing).
    fn written(&self, py: Python<'_>, status: c_int);
    /// The `shutdown` request finished.
    fn shut_down(&self, py: Python<'_>, status: c_int);
}

/// A connected TCP or pipe handle.
pub enum Stream<D: StreamEvents> {
    Tcp(Handle<sys::uv_tcp_t, D>),
    Pipe(Handle<sys::uv_pipe_t, D>),
}

/// A `uv_write_t` with what its buffers point into.
#[repr(C)]
struct WriteRequest<K> {
    /// First, so the request pointer libuv hands back is a pointer to the whole struct.
    raw: sys::uv_write_t,
    _keep: K,
}

/// A buffer for libuv, pointing into memory the caller keeps alive (and unchanged) for as long
/// as libuv may read it.
pub fn buf(data: &[u8]) -> sys::uv_buf_t {
    sys::uv_buf_t {
        base: data.as_ptr().cast::<c_char>().cast_mut(),
        len: data.len(),
    }
}

impl<D: StreamEvents> Stream<D> {
    pub fn as_stream_ptr(&self) -> *mut sys::uv_stream_t {
        match self {
            Stream::Tcp(handle) => handle.as_stream_ptr(),
            Stream::Pipe(handle) => handle.as_stream_ptr(),
        }
    }

    pub fn data(&self) -> &D {
        match self {
            Stream::Tcp(handle) => handle.data(),
            Stream::Pipe(handle) => handle.data(),
        }
    }

    /// The descriptor libuv owns (and closes when the handle closes).
    pub fn fileno(&self) -> Result<c_int, UvError> {
        let mut fd: sys::uv_os_fd_t = -1;
        // SAFETY: an open handle and a valid out-pointer.
        status(unsafe { sys::uv_fileno(self.as_stream_ptr().cast(), &mut fd) })?;
        Ok(fd)
    }

    pub fn read_start(&self) -> Result<(), UvError> {
        // SAFETY: an open stream whose data is a D (the callbacks' contract).
        status(unsafe {
            sys::uv_read_start(
                self.as_stream_ptr(),
                Some(alloc_cb::<D>),
                Some(read_cb::<D>),
            )
        })
    }

    pub fn read_stop(&self) {
        // SAFETY: an open stream; stopping a stream that is not reading does nothing.
        unsafe { sys::uv_read_stop(self.as_stream_ptr()) };
    }

    /// Writes what the socket takes now without waiting: the byte count (0 when it would block).
    pub fn try_write(&self, bufs: &[sys::uv_buf_t]) -> Result<usize, UvError> {
        // SAFETY: an open stream; the buffers point into memory the caller holds for the call.
        let n = unsafe { sys::uv_try_write(self.as_stream_ptr(), bufs.as_ptr(), bufs.len() as _) };
        match n {
            sys::uv_errno_t_UV_EAGAIN => Ok(0),
            n => UvError::check(n).map(|n| n as usize),
        }
    }

    /// Queues a write of `bufs`, which point into `keep`; `D::written` is told when it is done.
    pub fn write<K>(&self, bufs: &[sys::uv_buf_t], keep: K) -> Result<(), UvError> {
        let request = Box::into_raw(Box::new(WriteRequest {
            // SAFETY: uv_write_t is plain C data; uv_write initialises it.
            raw: unsafe { std::mem::zeroed() },
            _keep: keep,
        }));
        // SAFETY: an open stream; libuv copies the buffer descriptors, and the memory they point
        // into is owned by the request until its callback.
        let result = unsafe {
            sys::uv_write(
                &raw mut (*request).raw,
                self.as_stream_ptr(),
                bufs.as_ptr(),
                bufs.len() as _,
                Some(write_cb::<D, K>),
            )
        };
        if result < 0 {
            // SAFETY: libuv refused the request, so it holds no pointer to it.
            drop(unsafe { Box::from_raw(request) });
            return Err(UvError(result));
        }
        Ok(())
    }

    /// Shuts the write side down once the queued writes are done; `D::shut_down` is told.
    pub fn shutdown(&self) -> Result<(), UvError> {
        // SAFETY: uv_shutdown_t is plain C data; uv_shutdown initialises it.
        let request: *mut sys::uv_shutdown_t =
            Box::into_raw(Box::new(unsafe { std::mem::zeroed() }));
        // SAFETY: an open stream; the request is ours until its callback frees it.
        let result =
            unsafe { sys::uv_shutdown(request, self.as_stream_ptr(), Some(shutdown_cb::<D>)) };
        if result < 0 {
            // SAFETY: refused, so libuv holds no pointer to it.
            drop(unsafe { Box::from_raw(request) });
            return Err(UvError(result));
        }
        Ok(())
    }

    /// Bytes queued in libuv's write requests and not yet written.
    pub fn write_queue_size(&self) -> usize {
        // SAFETY: an open stream.
        unsafe { sys::uv_stream_get_write_queue_size(self.as_stream_ptr()) }
    }
}

unsafe extern "C" fn alloc_cb<D: StreamEvents>(
    raw: *mut sys::uv_handle_t,
    _suggested: usize,
    buf: *mut sys::uv_buf_t,
) {
    // SAFETY: libuv passes one of our open stream handles (data is a D) and a valid out-pointer.
    unsafe {
        let answer = guard_callback(loop_of(raw), |py| data_of::<_, D>(raw).alloc(py));
        let (base, len) = answer.unwrap_or((std::ptr::null_mut(), 0));
        (*buf).base = base.cast();
        (*buf).len = len;
    }
}

unsafe extern "C" fn read_cb<D: StreamEvents>(
    raw: *mut sys::uv_stream_t,
    nread: isize,
    _buf: *const sys::uv_buf_t,
) {
    // SAFETY: libuv passes one of our open stream handles, whose data is a D.
    unsafe {
        guard_callback(loop_of(raw), |py| data_of::<_, D>(raw).read(py, nread));
    }
}

unsafe extern "C" fn write_cb<D: StreamEvents, K>(raw: *mut sys::uv_write_t, result: c_int) {
    // SAFETY: `raw` is the first field of a WriteRequest<K> leaked by `write`; libuv calls this
    // once, before the stream's close callback, so the stream's data is still a live D.
    unsafe {
        let request = Box::from_raw(raw.cast::<WriteRequest<K>>());
        let stream = (*raw).handle;
        guard_callback(loop_of(stream), |py| {
            // The buffers go first (with the GIL held), then the owner hears of it.
            drop(request);
            data_of::<_, D>(stream).written(py, result);
        });
    }
}

unsafe extern "C" fn shutdown_cb<D: StreamEvents>(raw: *mut sys::uv_shutdown_t, result: c_int) {
    // SAFETY: `raw` was leaked by `shutdown`; libuv calls this once, before the stream's close
    // callback.
    unsafe {
        let stream = (*raw).handle;
        drop(Box::from_raw(raw));
        guard_callback(loop_of(stream), |py| {
            data_of::<_, D>(stream).shut_down(py, result)
        });
    }
}

/// Where a listening handle's callback goes.
pub trait ListenEvents: LoopClose {
    /// A connection is waiting to be accepted (`status` < 0: accepting failed).
    fn connection(&self, py: Python<'_>, status: c_int);
}

/// Starts listening on an open, bound stream handle.
pub fn listen<H: HandleType, D: ListenEvents>(
    handle: &Handle<H, D>,
    backlog: c_int,
) -> Result<(), UvError> {
    // SAFETY: an open stream handle (H is uv_tcp_t or uv_pipe_t) whose data is a D.
    status(unsafe { sys::uv_listen(handle.as_stream_ptr(), backlog, Some(connection_cb::<D>)) })
}

unsafe extern "C" fn connection_cb<D: ListenEvents>(raw: *mut sys::uv_stream_t, result: c_int) {
    // SAFETY: libuv passes one of our listening handles, whose data is a D.
    unsafe {
        guard_callback(loop_of(raw), |py| {
            data_of::<_, D>(raw).connection(py, result)
        });
    }
}

/// A listening TCP or pipe handle.
pub enum Listener<D: ListenEvents> {
    Tcp(Handle<sys::uv_tcp_t, D>),
    Pipe(Handle<sys::uv_pipe_t, D>),
}

impl<D: ListenEvents> Listener<D> {
    pub fn as_stream_ptr(&self) -> *mut sys::uv_stream_t {
        match self {
            Listener::Tcp(handle) => handle.as_stream_ptr(),
            Listener::Pipe(handle) => handle.as_stream_ptr(),
        }
    }

    pub fn listen(&self, backlog: c_int) -> Result<(), UvError> {
        match self {
            Listener::Tcp(handle) => listen(handle, backlog),
            Listener::Pipe(handle) => listen(handle, backlog),
        }
    }

    /// Accepts the waiting connection into a new stream handle of the same kind with `data`.
    pub fn accept<E: StreamEvents>(
        &self,
        uv_loop: &super::event_loop::UvLoop,
        data: E,
    ) -> Result<Stream<E>, UvError> {
        let stream = match self {
            Listener::Tcp(_) => Stream::Tcp(super::tcp::init(uv_loop, data)?),
            Listener::Pipe(_) => Stream::Pipe(super::pipe::init(uv_loop, data)?),
        };
        // SAFETY: both handles are open streams of the same kind on the same loop.
        status(unsafe { sys::uv_accept(self.as_stream_ptr(), stream.as_stream_ptr()) })?;
        Ok(stream)
    }
}
