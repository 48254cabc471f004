//! `uv_tcp_t`: TCP connections and listeners on sockets made elsewhere (the socket module makes
//! and binds them, as asyncio does; libuv owns the descriptor from `open` on).

use std::os::raw::c_int;

use super::error::UvError;
use super::event_loop::{status, UvLoop};
use super::handle::{Handle, LoopClose};
use super::stream::{ListenEvents, Listener, Stream, StreamEvents};
use super::sys;

/// A TCP handle with no socket yet.
pub fn init<D: LoopClose>(uv_loop: &UvLoop, data: D) -> Result<Handle<sys::uv_tcp_t, D>, UvError> {
    Handle::new_owned(uv_loop, data, |uv_loop, raw| {
        // SAFETY: `raw` is a zeroed uv_tcp_t in stable memory owned by the new handle.
        unsafe { sys::uv_tcp_init(uv_loop, raw) }
    })
}

/// A connected socket `fd` as a stream (libuv closes `fd` when the handle closes; on failure the
/// caller keeps it).
pub fn open<D: StreamEvents>(uv_loop: &UvLoop, fd: c_int, data: D) -> Result<Stream<D>, UvError> {
    let handle = init(uv_loop, data)?;
    // SAFETY: an initialised TCP handle; `fd` is a socket the caller hands over.
    status(unsafe { sys::uv_tcp_open(handle.as_ptr(), fd) })?;
    Ok(Stream::Tcp(handle))
}

/// A bound socket `fd` to listen on.
pub fn open_listener<D: ListenEvents>(
    uv_loop: &UvLoop,
    fd: c_int,
    data: D,
) -> Result<Listener<D>, UvError> {
    let handle = init(uv_loop, data)?;
    // SAFETY: an initialised TCP handle; `fd` is a bound socket the caller hands over.
    status(unsafe { sys::uv_tcp_open(handle.as_ptr(), fd) })?;
    Ok(Listener::Tcp(handle))
}

/// TCP_NODELAY on a listening TCP handle: Linux copies it to every connection accepted from it
/// (a no-op for pipes).
pub fn set_listener_nodelay<D: ListenEvents>(listener: &Listener<D>) -> Result<(), UvError> {
    match listener {
        // SAFETY: an open TCP handle.
        Listener::Tcp(handle) => status(unsafe { sys::uv_tcp_nodelay(handle.as_ptr(), 1) }),
        Listener::Pipe(_) => Ok(()),
    }
}

/// TCP_NODELAY on a TCP stream (a no-op for pipes).
pub fn set_nodelay<D: StreamEvents>(stream: &Stream<D>) -> Result<(), UvError> {
    match stream {
        // SAFETY: an open TCP handle.
        Stream::Tcp(handle) => status(unsafe { sys::uv_tcp_nodelay(handle.as_ptr(), 1) }),
        Stream::Pipe(_) => Ok(()),
    }
}
