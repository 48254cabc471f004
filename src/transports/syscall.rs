//! The socket system calls of the data path, with EINTR retried and errors as errno values.

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

/// `send` of `data`; MSG_NOSIGNAL so that a closed peer is an EPIPE error, never SIGPIPE.
pub fn send(fd: c_int, data: &[u8]) -> Result<usize, c_int> {
    // SAFETY: `data` is a valid slice for the duration of the call.
    retry(|| unsafe { libc::send(fd, data.as_ptr().cast(), data.len(), libc::MSG_NOSIGNAL) })
}

/// One vectored send of the buffers in `iovecs`.
pub fn sendmsg(fd: c_int, iovecs: &[libc::iovec]) -> Result<usize, c_int> {
    // SAFETY: msghdr is plain C data; zeroed means no address, no control data, no flags.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iovecs.as_ptr().cast_mut();
    msg.msg_iovlen = iovecs.len() as _;
    // SAFETY: every iovec points into a buffer the caller keeps alive across the call, and the
    // kernel only reads them.
    retry(|| unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL) })
}

/// `shutdown(fd, SHUT_WR)`.
pub fn shutdown_write(fd: c_int) -> Result<(), c_int> {
    // SAFETY: plain system call on a descriptor number.
    retry(|| unsafe { libc::shutdown(fd, libc::SHUT_WR) } as isize).map(drop)
}
