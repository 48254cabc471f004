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
