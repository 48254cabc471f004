//! `uv_pipe_t`: Unix-socket connections and listeners, and pipes (libuv owns the descriptor from
//! `open` on).

use std::os::raw::c_int;

use super::error::UvError;
use super::event_loop::{status, UvLoop};
use super::handle::{Handle, LoopClose};
use super::stream::{ListenEvents, Listener, Stream, StreamEvents};
use super::sys;

/// A pipe handle with no descriptor yet.
pub fn init<D: LoopClose>(uv_loop: &UvLoop, data: D) -> Result<Handle<sys::uv_pipe_t, D>, UvError> {
    Handle::new_owned(uv_loop, data, |uv_loop, raw| {
        // SAFETY: `raw` is a zeroed uv_pipe_t in stable memory owned by the new handle; no IPC.
        unsafe { sys::uv_pipe_init(uv_loop, raw, 0) }
    })
}

/// A connected Unix socket, or a pipe end, `fd` as a stream (libuv closes `fd` when the handle
/// closes; on failure the caller keeps it).
pub fn open<D: StreamEvents>(uv_loop: &UvLoop, fd: c_int, data: D) -> Result<Stream<D>, UvError> {
    let handle = init(uv_loop, data)?;
    // SAFETY: an initialised pipe handle; `fd` is a descriptor the caller hands over.
    status(unsafe { sys::uv_pipe_open(handle.as_ptr(), fd) })?;
    Ok(Stream::Pipe(handle))
}

/// A bound Unix socket `fd` to listen on.
pub fn open_listener<D: ListenEvents>(
    uv_loop: &UvLoop,
    fd: c_int,
    data: D,
) -> Result<Listener<D>, UvError> {
    let handle = init(uv_loop, data)?;
    // SAFETY: an initialised pipe handle; `fd` is a bound socket the caller hands over.
    status(unsafe { sys::uv_pipe_open(handle.as_ptr(), fd) })?;
    Ok(Listener::Pipe(handle))
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::fd::IntoRawFd;
    use std::rc::Rc;

    use super::*;
    use crate::uv::{run_until, with_python, RecordingStream, Seen};

    #[test]
    fn open_read_write_close() {
        with_python(|py| {
            let uv = UvLoop::new().expect("loop"); // ok: cfg(test) only
            let (ours, mut theirs) = std::os::unix::net::UnixStream::pair().expect("pair"); // ok: cfg(test) only
            let seen = Rc::new(Seen::default());
            let stream =
                open(&uv, ours.into_raw_fd(), RecordingStream::new(seen.clone())).expect("open"); // ok: cfg(test) only
            stream.read_start().expect("read"); // ok: cfg(test) only
            theirs.write_all(b"hello").expect("write"); // ok: cfg(test) only
            assert!(run_until(py, &uv, || seen
                .events
                .borrow()
                .iter()
                .any(|e| e == "read hello")));
            assert_eq!(
                stream
                    .try_write(&[crate::uv::stream::buf(b"back")])
                    .expect("try"), // ok: cfg(test) only
                4
            );
            let mut answer = [0u8; 4];
            theirs.read_exact(&mut answer).expect("read"); // ok: cfg(test) only
            assert_eq!(&answer, b"back");
            drop(theirs);
            assert!(run_until(py, &uv, || seen
                .events
                .borrow()
                .iter()
                .any(|e| e == "eof")));
            drop(stream);
            assert!(run_until(py, &uv, || seen.dropped.get()));
            uv.close(py);
            assert!(uv.closed_cleanly());
        });
    }

    #[test]
    fn a_failed_open_leaves_the_descriptor_to_the_caller() {
        with_python(|py| {
            let uv = UvLoop::new().expect("loop"); // ok: cfg(test) only
            let seen = Rc::new(Seen::default());
            assert!(open(&uv, -1, RecordingStream::new(seen.clone())).is_err());
            assert!(run_until(py, &uv, || seen.dropped.get()));
            uv.close(py);
            assert!(uv.closed_cleanly());
        });
    }
}
