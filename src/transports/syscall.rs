//! The socket and pipe system calls of the data path, with EINTR retried and errors as errno values.

use std::os::raw::c_int;

fn errno() -> c_int {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// Runs `call` until it is not interrupted by a signal.
fn retry(mut call: impl FnMut() -> isize) -> Result<usize, c_int> {
    loop {
        let n = call();
        if n >= 0 {
            return Ok(n as usize);
        }
        match errno() {
            libc::EINTR => continue,
            libc::EWOULDBLOCK => return Err(libc::EAGAIN),
            err => return Err(err),
        }
    }
}

/// `recv` into `buf`: Ok(0) at end of stream.
pub fn recv(fd: c_int, buf: *mut u8, len: usize) -> Result<usize, c_int> {
    // SAFETY: the caller passes `len` writable bytes at `buf`; recv writes at most that many.
    retry(|| unsafe { libc::recv(fd, buf.cast(), len, 0) })
}

/// `read` into `buf` (pipes and other descriptors that are not sockets): Ok(0) at end of file.
pub fn read(fd: c_int, buf: *mut u8, len: usize) -> Result<usize, c_int> {
    // SAFETY: the caller passes `len` writable bytes at `buf`; read writes at most that many.
    retry(|| unsafe { libc::read(fd, buf.cast(), len) })
}

/// Flags of every send: a closed peer is an EPIPE error, never SIGPIPE, where the system has
/// MSG_NOSIGNAL (macOS has not; there CPython's start-up ignores SIGPIPE, as everywhere).
#[cfg(not(any(target_os = "macos", target_os = "ios")))]
const SEND_FLAGS: c_int = libc::MSG_NOSIGNAL;
#[cfg(any(target_os = "macos", target_os = "ios"))]
const SEND_FLAGS: c_int = 0;

/// `send` of `data`.
pub fn send(fd: c_int, data: &[u8]) -> Result<usize, c_int> {
    // SAFETY: `data` is a valid slice for the duration of the call.
    retry(|| unsafe { libc::send(fd, data.as_ptr().cast(), data.len(), SEND_FLAGS) })
}

/// `sendto` of `data` to the `len`-byte address at `addr`.
///
/// # Safety
/// `addr` must point at `len` readable bytes of a socket address for the duration of the call.
pub unsafe fn sendto(
    fd: c_int,
    data: &[u8],
    addr: *const libc::sockaddr,
    len: libc::socklen_t,
) -> Result<usize, c_int> {
    // SAFETY: `data` is a valid slice; the address is valid by the caller's contract.
    retry(|| unsafe { libc::sendto(fd, data.as_ptr().cast(), data.len(), SEND_FLAGS, addr, len) })
}

/// `recvfrom` into the `len` writable bytes at `buf`, with the sender's address in `storage`.
pub fn recvfrom(
    fd: c_int,
    buf: *mut u8,
    len: usize,
    storage: &mut libc::sockaddr_storage,
    storage_len: &mut libc::socklen_t,
) -> Result<usize, c_int> {
    // SAFETY: the caller passes `len` writable bytes at `buf`; the address storage is valid for
    // its size.
    retry(|| unsafe {
        libc::recvfrom(
            fd,
            buf.cast(),
            len,
            0,
            (storage as *mut libc::sockaddr_storage).cast(),
            storage_len,
        )
    })
}
