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

    /// Sends `data` to `addr` (None: the connected peer) if the socket takes it now; Ok(false)
    /// when it would block.
    pub fn try_send(&self, data: &[u8], addr: Option<&SocketAddress>) -> Result<bool, UvError> {
        let buf = super::stream::buf(data);
        let addr = addr.map_or(std::ptr::null(), SocketAddress::as_ptr);
        // SAFETY: an open UDP handle; the buffer and the address are valid for the call.
        let sent = unsafe { sys::uv_udp_try_send(self.handle.as_ptr(), &buf, 1, addr.cast()) };
        match sent {
            sys::uv_errno_t_UV_EAGAIN => Ok(false),
            sent => UvError::check(sent).map(|_| true),
        }
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
    fn as_ptr(&self) -> *const libc::sockaddr {
        match self {
            SocketAddress::V4(sin) => (sin as *const libc::sockaddr_in).cast(),
            SocketAddress::V6(sin6) => (sin6 as *const libc::sockaddr_in6).cast(),
        }
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
