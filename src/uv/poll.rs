//! `uv_poll_t` on a descriptor the loop owns (its own poller's fd): libuv wakes up when it is
//! readable and the owner is told so after `uv_run` returns. User descriptors never get one: libuv
//! aborts the process when a watched descriptor is closed behind its back.

use std::cell::Cell;
use std::os::raw::c_int;

use super::error::UvError;
use super::event_loop::{status, UvLoop};
use super::handle::{data_of, Handle};
use super::sys;

pub struct ReadablePoll {
    handle: Handle<sys::uv_poll_t, Cell<bool>>,
}

unsafe extern "C" fn note_readable(raw: *mut sys::uv_poll_t, _status: c_int, _events: c_int) {
    // SAFETY: libuv passes the poll handle of a live ReadablePoll; the flag is a Cell only this
    // thread touches.
    unsafe { data_of::<_, Cell<bool>>(raw) }.set(true);
}

impl ReadablePoll {
    /// Watches `fd` (which the caller owns and keeps open while `self` lives) for readability.
    pub fn new(uv_loop: &UvLoop, fd: c_int) -> Result<Self, UvError> {
        let handle = Handle::new(uv_loop, Cell::new(false), |uv_loop, raw| {
            // SAFETY: `raw` is a zeroed uv_poll_t in stable memory owned by the new handle.
            unsafe { sys::uv_poll_init(uv_loop, raw, fd) }
        })?;
        let readable = sys::uv_poll_event_UV_READABLE as c_int;
        // SAFETY: the handle is open and `fd` stays open while it is.
        status(unsafe { sys::uv_poll_start(handle.as_ptr(), readable, Some(note_readable)) })?;
        Ok(Self { handle })
    }

    /// Whether libuv saw the descriptor readable since the last call.
    pub fn take_readable(&self) -> bool {
        self.handle.data().replace(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uv::event_loop::RUN_NOWAIT;

    #[test]
    fn reports_readability_once() {
        crate::uv::with_python(|py| {
            let uv = UvLoop::new().expect("loop"); // ok: cfg(test) only
            let mut fds = [0 as c_int; 2];
            // SAFETY: valid out-array for two descriptors.
            assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
            let poll = ReadablePoll::new(&uv, fds[0]).expect("poll"); // ok: cfg(test) only
            uv.run(py, RUN_NOWAIT).expect("run"); // ok: cfg(test) only
            assert!(!poll.take_readable());
            // SAFETY: writing one byte from a valid buffer to the pipe's write end.
            assert_eq!(unsafe { libc::write(fds[1], b"x".as_ptr().cast(), 1) }, 1);
            uv.run(py, RUN_NOWAIT).expect("run"); // ok: cfg(test) only
            assert!(poll.take_readable());
            assert!(!poll.take_readable());
            drop(poll);
            uv.close(py);
            // SAFETY: closing the pipe this test opened, after libuv let go of it.
            unsafe {
                libc::close(fds[0]);
                libc::close(fds[1]);
            }
        });
    }
}
