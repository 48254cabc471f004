//! `uv_async_t`: the one thing other threads may do to a loop, wake it up.

use super::error::UvError;
use super::event_loop::UvLoop;
use super::handle::Handle;
use super::sys;

pub struct Wakeup {
    handle: Handle<sys::uv_async_t, ()>,
}

unsafe extern "C" fn wake_only(_raw: *mut sys::uv_async_t) {}

impl Wakeup {
    pub fn new(uv_loop: &UvLoop) -> Result<Self, UvError> {
        let handle = Handle::new(uv_loop, (), |uv_loop, raw| {
            // SAFETY: `raw` is a zeroed uv_async_t in stable memory owned by the new handle.
            unsafe { sys::uv_async_init(uv_loop, raw, Some(wake_only)) }
        })?;
        Ok(Self { handle })
    }

    /// Makes the loop's current or next poll return. Callable from any thread.
    pub fn send(&self) {
        // SAFETY: the handle is open while `self` lives; uv_async_send is thread-safe.
        unsafe { sys::uv_async_send(self.handle.as_ptr()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uv::event_loop::RUN_ONCE;

    #[test]
    fn wakes_a_blocked_run_from_another_thread() {
        crate::uv::with_python(|py| {
            let uv = UvLoop::new().expect("loop"); // ok: cfg(test) only
            let wakeup = std::sync::Arc::new(Wakeup::new(&uv).expect("async")); // ok: cfg(test) only
            let sender = std::sync::Arc::clone(&wakeup);
            let thread = std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(20));
                sender.send();
            });
            // Blocks (the async handle keeps the loop alive) until the other thread sends.
            uv.run(py, RUN_ONCE).expect("run"); // ok: cfg(test) only
            thread.join().expect("join"); // ok: cfg(test) only
            drop(wakeup);
            uv.close(py);
        });
    }
}
