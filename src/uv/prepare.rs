//! `uv_prepare_t`: runs right before libuv polls; the loop's hands the GIL over there when the poll
//! will block (see `event_loop::release_gil_before_poll`).

use super::error::UvError;
use super::event_loop::{release_gil_before_poll, status, UvLoop};
use super::handle::Handle;
use super::sys;

pub struct GilHandOff {
    _handle: Handle<sys::uv_prepare_t, ()>,
}

impl GilHandOff {
    /// Started at once; it does not keep the loop alive by itself.
    pub fn new(uv_loop: &UvLoop) -> Result<Self, UvError> {
        let handle = Handle::new(uv_loop, (), |uv_loop, raw| {
            // SAFETY: `raw` is a zeroed uv_prepare_t in stable memory owned by the new handle.
            unsafe { sys::uv_prepare_init(uv_loop, raw) }
        })?;
        // SAFETY: the handle is open; the callback only touches the LoopBox of its own loop.
        status(unsafe { sys::uv_prepare_start(handle.as_ptr(), Some(release_gil_before_poll)) })?;
        handle.unref();
        Ok(Self { _handle: handle })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uv::event_loop::RUN_NOWAIT;

    #[test]
    fn runs_and_closes_without_keeping_the_loop_alive() {
        crate::uv::with_python(|py| {
            let uv = UvLoop::new().expect("loop"); // ok: cfg(test) only
            let hand_off = GilHandOff::new(&uv).expect("prepare"); // ok: cfg(test) only
            uv.run(py, RUN_NOWAIT).expect("run"); // ok: cfg(test) only
            assert_eq!(uv.open_handles(), 1);
            drop(hand_off);
            uv.close(py);
            assert!(uv.closed_cleanly());
        });
    }
}
