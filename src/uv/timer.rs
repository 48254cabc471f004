//! `uv_timer_t`: the one libuv timer of a loop, armed for the earliest deadline of the loop's own
//! timer heap so that libuv's poll wakes up in time. Its callback does nothing: the loop looks at
//! its heap once `uv_run` returns.

use super::error::UvError;
use super::event_loop::UvLoop;
use super::handle::Handle;
use super::sys;

pub struct Timer {
    handle: Handle<sys::uv_timer_t, ()>,
}

unsafe extern "C" fn wake_only(_raw: *mut sys::uv_timer_t) {}

impl Timer {
    pub fn new(uv_loop: &UvLoop) -> Result<Self, UvError> {
        let handle = Handle::new(uv_loop, (), |uv_loop, raw| {
            // SAFETY: `raw` is a zeroed uv_timer_t in stable memory owned by the new handle.
            unsafe { sys::uv_timer_init(uv_loop, raw) }
        })?;
        Ok(Self { handle })
    }

    /// Fires once, `timeout_ms` after the loop's current time (refreshed first: libuv only
    /// updates it once per iteration).
    pub fn start(&self, timeout_ms: u64) -> Result<(), UvError> {
        let raw = self.handle.as_ptr();
        // SAFETY: an open timer of an open loop, used on the loop's thread.
        let status = unsafe {
            sys::uv_update_time((*raw).loop_);
            sys::uv_timer_start(raw, Some(wake_only), timeout_ms, 0)
        };
        UvError::check(status).map(drop)
    }

    pub fn stop(&self) {
        if self.handle.is_active() {
            // SAFETY: an open timer; stopping cannot fail.
            unsafe { sys::uv_timer_stop(self.handle.as_ptr()) };
        }
    }

    #[cfg(test)]
    fn is_active(&self) -> bool {
        self.handle.is_active()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uv::event_loop::RUN_ONCE;

    #[test]
    fn fires_and_closes() {
        crate::uv::with_python(|py| {
            let uv = UvLoop::new().expect("loop"); // ok: cfg(test) only
            let timer = Timer::new(&uv).expect("timer"); // ok: cfg(test) only
            timer.start(1).expect("start"); // ok: cfg(test) only
            assert!(timer.is_active());
            uv.run(py, RUN_ONCE).expect("run"); // ok: cfg(test) only
                                                // One-shot: done after firing.
            assert!(!timer.is_active());
            timer.start(10_000).expect("restart"); // ok: cfg(test) only
            timer.stop();
            assert!(!timer.is_active());
            drop(timer);
            assert_eq!(uv.open_handles(), 0);
            uv.close(py);
            assert!(uv.is_closed());
        });
    }
}
