//! `uv_udp_t`: UDP sockets made elsewhere (the socket module makes, binds and connects them, as
//! asyncio does); libuv owns the descriptor from `open` on.

use std::os::raw::{c_int, c_uint};

use pyo3::Python;

use super::error::UvError;
use super::event_loop::{guard_callback, status, UvLoop};
use super::handle::{data_of, loop_of, Handle, LoopClose};
use super::sys;

/// Where a UDP handle's callbacks go. Each runs on the loop's thread with the GIL held.
pub trait UdpEvents: LoopClose {
    /// Memory for the next datagram (see `StreamEvents::alloc`).
    fn alloc(&self, py: Python<'_>) -> (*mut u8, usize);
    /// A datagram of `nread` bytes from `addr` (null with 0 bytes: nothing this time), or a
    /// negative libuv error.
    fn received(&self, py: Python<'_>, nread: isize, addr: *const libc::sockaddr);
    /// A `send` request finished.
    fn sent(&self, py: Python<'_>, status: c_int);
}

pub struct Udp<D: UdpEvents> {
    handle: Handle<sys::uv_udp_t, D>,
}

/// A `uv_udp_send_t` with the datagram it sends.
#[repr(C)]
struct SendRequest<K> {
    raw: sys::uv_udp_send_t,
    _keep: K,
}

impl<D: UdpEvents> Udp<D> {
    /// A bound (and maybe connected) datagram socket `fd` (on failure the caller keeps it).
    pub fn open(uv_loop: &UvLoop, fd: c_int, data: D) -> Result<Self, UvError> {
        let handle = Handle::new_owned(uv_loop, data, |uv_loop, raw| {
            // SAFETY: `raw` is a zeroed uv_udp_t in stable memory owned by the new handle.
            unsafe { sys::uv_udp_init(uv_loop, raw) }
        })?;
        // SAFETY: an initialised UDP handle; no flags, so the socket's options stay as they are
        // (uv_udp_open would set SO_REUSEADDR).
        status(unsafe { sys::uv_udp_open_ex(handle.as_ptr(), fd, 0) })?;
        Ok(Self { handle })
    }

    /// The descriptor libuv owns (and closes when the handle closes).
    pub fn fileno(&self) -> Result<c_int, UvError> {
        let mut fd: sys::uv_os_fd_t = -1;
        // SAFETY: an open handle and a valid out-pointer.
        status(unsafe { sys::uv_fileno(self.handle.as_handle_ptr(), &mut fd) })?;
        Ok(fd)
    }

    pub fn recv_start(&self) -> Result<(), UvError> {
        // SAFETY: an open UDP handle whose data is a D.
        status(unsafe {
            sys::uv_udp_recv_start(
                self.handle.as_ptr(),
                Some(alloc_cb::<D>),
                Some(recv_cb::<D>),
            )
        })
    }

    pub fn recv_stop(&self) {
        // SAFETY: an open UDP handle.
        unsafe { sys::uv_udp_recv_stop(self.handle.as_ptr()) };
    }

    /// Queues `data` (owned by `keep` until the callback) for `addr`; `D::sent` is told.
    pub fn send<K>(
        &self,
        data: &[u8],
        addr: Option<&SocketAddress>,
        keep: K,
    ) -> Result<(), UvError> {
        let request = Box::into_raw(Box::new(SendRequest {
            // SAFETY: uv_udp_send_t is plain C data; uv_udp_send initialises it.
            raw: unsafe { std::mem::zeroed() },
            _keep: keep,
        }));
        let buf = super::stream::buf(data);
        let addr = addr.map_or(std::ptr::null(), SocketAddress::as_ptr);
        // SAFETY: an open UDP handle; libuv copies the buffer descriptor and the address, and the
        // bytes live in the request until its callback.
        let result = unsafe {
            sys::uv_udp_send(
                &raw mut (*request).raw,
                self.handle.as_ptr(),
                &buf,
                1,
                addr.cast(),
                Some(send_cb::<D, K>),
            )
        };
        if result < 0 {
            // SAFETY: refused, so libuv holds no pointer to it.
            drop(unsafe { Box::from_raw(request) });
            return Err(UvError(result));
        }
        Ok(())
    }

    /// Bytes and datagrams queued in libuv's send requests.
    pub fn send_queue(&self) -> (usize, usize) {
        let raw = self.handle.as_ptr();
        // SAFETY: an open UDP handle.
        unsafe {
            (
                sys::uv_udp_get_send_queue_size(raw),
                sys::uv_udp_get_send_queue_count(raw),
            )
        }
    }
}

/// An IPv4 or IPv6 address to send to.
#[derive(Clone, Copy)]
pub enum SocketAddress {
    V4(libc::sockaddr_in),
    V6(libc::sockaddr_in6),
}

impl SocketAddress {
    pub fn as_ptr(&self) -> *const libc::sockaddr {
        match self {
            SocketAddress::V4(sin) => (sin as *const libc::sockaddr_in).cast(),
            SocketAddress::V6(sin6) => (sin6 as *const libc::sockaddr_in6).cast(),
        }
    }

    /// The size of the address `as_ptr` points at.
    pub fn len(&self) -> libc::socklen_t {
        let size = match self {
            SocketAddress::V4(_) => std::mem::size_of::<libc::sockaddr_in>(),
            SocketAddress::V6(_) => std::mem::size_of::<libc::sockaddr_in6>(),
        };
        size as libc::socklen_t
    }
}

unsafe extern "C" fn alloc_cb<D: UdpEvents>(
    raw: *mut sys::uv_handle_t,
    _suggested: usize,
    buf: *mut sys::uv_buf_t,
) {
    // SAFETY: libuv passes one of our open UDP handles (data is a D) and a valid out-pointer.
    unsafe {
        let answer = guard_callback(loop_of(raw), |py| data_of::<_, D>(raw).alloc(py));
        let (base, len) = answer.unwrap_or((std::ptr::null_mut(), 0));
        (*buf).base = base.cast();
        (*buf).len = len;
    }
}

unsafe extern "C" fn recv_cb<D: UdpEvents>(
    raw: *mut sys::uv_udp_t,
    nread: isize,
    _buf: *const sys::uv_buf_t,
    addr: *const sys::sockaddr,
    _flags: c_uint,
) {
    // SAFETY: libuv passes one of our open UDP handles, whose data is a D; `addr` is null or
    // valid for the callback.
    unsafe {
        guard_callback(loop_of(raw), |py| {
            data_of::<_, D>(raw).received(py, nread, addr.cast())
        });
    }
}

unsafe extern "C" fn send_cb<D: UdpEvents, K>(raw: *mut sys::uv_udp_send_t, result: c_int) {
    // SAFETY: `raw` is the first field of a SendRequest<K> leaked by `send`; libuv calls this
    // once, before the handle's close callback, so the handle's data is still a live D.
    unsafe {
        let request = Box::from_raw(raw.cast::<SendRequest<K>>());
        let handle = (*raw).handle;
        guard_callback(loop_of(handle), |py| {
            drop(request);
            data_of::<_, D>(handle).sent(py, result);
        });
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::IntoRawFd;
    use std::rc::Rc;

    use super::*;
    use crate::uv::{run_until, with_python, Recorder, Seen};

    struct Datagrams {
        record: Recorder,
        buffer: std::cell::RefCell<Vec<u8>>,
    }

    impl LoopClose for Datagrams {
        fn close_at_loop_close(&self, py: Python<'_>) {
            self.record.close_at_loop_close(py);
        }
    }

    impl UdpEvents for Datagrams {
        fn alloc(&self, _py: Python<'_>) -> (*mut u8, usize) {
            let mut buffer = self.buffer.borrow_mut();
            buffer.resize(64, 0);
            (buffer.as_mut_ptr(), buffer.len())
        }
        fn received(&self, _py: Python<'_>, nread: isize, addr: *const libc::sockaddr) {
            if nread > 0 && !addr.is_null() {
                let data = self.buffer.borrow()[..nread as usize].to_vec();
                self.record
                    .note(format!("datagram {}", String::from_utf8_lossy(&data)));
            }
        }
        fn sent(&self, _py: Python<'_>, status: c_int) {
            self.record.note(format!("sent {status}"));
        }
    }

    #[test]
    fn open_receive_send_close() {
        with_python(|py| {
            let uv = UvLoop::new().expect("loop"); // ok: cfg(test) only
            let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind"); // ok: cfg(test) only
            let address = socket.local_addr().expect("address"); // ok: cfg(test) only
            let peer = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind peer"); // ok: cfg(test) only
            let peer_address = peer.local_addr().expect("peer address"); // ok: cfg(test) only
            let peer_address = match peer_address {
                std::net::SocketAddr::V4(v4) => v4,
                std::net::SocketAddr::V6(_) => unreachable!("bound to IPv4"),
            };
            let seen = Rc::new(Seen::default());
            let udp = Udp::open(
                &uv,
                socket.into_raw_fd(),
                Datagrams {
                    record: Recorder(seen.clone()),
                    buffer: Default::default(),
                },
            )
            .expect("open"); // ok: cfg(test) only
            udp.recv_start().expect("receive"); // ok: cfg(test) only
            peer.send_to(b"ping", address).expect("send"); // ok: cfg(test) only
            assert!(run_until(py, &uv, || seen
                .events
                .borrow()
                .iter()
                .any(|e| e == "datagram ping")));
            // SAFETY: sockaddr_in is plain C data.
            let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = peer_address.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(peer_address.ip().octets());
            let target = SocketAddress::V4(sin);
            udp.send(b"pong", Some(&target), ()).expect("send"); // ok: cfg(test) only
            udp.send(b"again", Some(&target), ()).expect("send"); // ok: cfg(test) only
            assert!(run_until(py, &uv, || seen
                .events
                .borrow()
                .iter()
                .filter(|e| *e == "sent 0")
                .count()
                == 2));
            let mut answer = [0u8; 16];
            let (n, _) = peer.recv_from(&mut answer).expect("receive"); // ok: cfg(test) only
            assert_eq!(&answer[..n], b"pong");
            let (n, _) = peer.recv_from(&mut answer).expect("receive"); // ok: cfg(test) only
            assert_eq!(&answer[..n], b"again");
            assert_eq!(udp.send_queue(), (0, 0));
            udp.recv_stop();
            drop(udp);
            assert!(run_until(py, &uv, || seen.dropped.get()));
            uv.close(py);
            assert!(uv.closed_cleanly());
        });
    }
}
