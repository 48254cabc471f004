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

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::fd::IntoRawFd;
    use std::rc::Rc;

    use super::*;
    use crate::uv::{run_until, with_python, Recorder, RecordingStream, Seen};
    use pyo3::Python;

    impl ListenEvents for Recorder {
        fn connection(&self, _py: Python<'_>, status: c_int) {
            self.note(format!("connection {status}"));
        }
    }

    #[test]
    fn listen_accept_read_write_shutdown_close() {
        with_python(|py| {
            let uv = UvLoop::new().expect("loop"); // ok: cfg(test) only
            let server = std::net::TcpListener::bind("127.0.0.1:0").expect("bind"); // ok: cfg(test) only
            let address = server.local_addr().expect("address"); // ok: cfg(test) only
            let listening = Rc::new(Seen::default());
            let listener = open_listener(&uv, server.into_raw_fd(), Recorder(listening.clone()))
                .expect("open listener"); // ok: cfg(test) only
            listener.listen(16).expect("listen"); // ok: cfg(test) only
            let mut client = std::net::TcpStream::connect(address).expect("connect"); // ok: cfg(test) only
            assert!(run_until(py, &uv, || !listening.events.borrow().is_empty()));
            assert_eq!(listening.events.borrow()[0], "connection 0");

            let seen = Rc::new(Seen::default());
            let conn = RecordingStream::new(seen.clone());
            let stream = listener.accept(&uv, conn).expect("accept"); // ok: cfg(test) only
            set_nodelay(&stream).expect("nodelay"); // ok: cfg(test) only
            stream.read_start().expect("read"); // ok: cfg(test) only
            client.write_all(b"ping").expect("client write"); // ok: cfg(test) only
            assert!(run_until(py, &uv, || seen
                .events
                .borrow()
                .iter()
                .any(|e| e == "read ping")));

            // At once, then through a request that keeps its bytes until the callback.
            assert_eq!(
                stream
                    .try_write(&[crate::uv::stream::buf(b"po")])
                    .expect("try"), // ok: cfg(test) only
                2
            );
            let rest: Vec<u8> = b"ng".to_vec();
            let bufs = [crate::uv::stream::buf(&rest)];
            stream.write(&bufs, rest.clone()).expect("write"); // ok: cfg(test) only
            stream.shutdown().expect("shutdown"); // ok: cfg(test) only
            assert!(run_until(py, &uv, || seen
                .events
                .borrow()
                .iter()
                .any(|e| e == "shut down 0")));
            assert!(seen.events.borrow().iter().any(|e| e == "written 0"));
            let mut answer = String::new();
            client.read_to_string(&mut answer).expect("client read"); // ok: cfg(test) only
            assert_eq!(answer, "pong");
            drop(client);
            assert!(run_until(py, &uv, || seen
                .events
                .borrow()
                .iter()
                .any(|e| e == "eof")));

            drop(stream);
            drop(listener);
            assert!(run_until(py, &uv, || seen.dropped.get() && listening.dropped.get()));
            assert_eq!(uv.open_handles(), 0);
            uv.close(py);
            assert!(uv.closed_cleanly());
        });
    }

    #[test]
    fn the_loop_closes_what_its_owners_left_open() {
        with_python(|py| {
            let uv = UvLoop::new().expect("loop"); // ok: cfg(test) only
            let server = std::net::TcpListener::bind("127.0.0.1:0").expect("bind"); // ok: cfg(test) only
            let seen = Rc::new(Seen::default());
            let listener =
                open_listener(&uv, server.into_raw_fd(), Recorder(seen.clone())).expect("open"); // ok: cfg(test) only
            uv.close_owned_handles(py);
            assert_eq!(seen.events.borrow().as_slice(), ["closed by the loop"]);
            // The recorder does not close the handle itself: its owner does.
            drop(listener);
            uv.close(py);
            assert!(seen.dropped.get());
            assert!(uv.closed_cleanly());
        });
    }
}
