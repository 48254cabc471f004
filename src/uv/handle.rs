//! Ownership of libuv handles.
//!
//! A `Handle<H, D>` owns one heap allocation holding the libuv struct `H` followed by the Rust state
//! `D` its callbacks use. The allocation is released only by libuv's close callback, after the last
//! callback for the handle has run; `close` (or `Drop`) is the single path there, so a handle is
//! closed exactly once and never freed while libuv still knows it.

use std::os::raw::c_int;
use std::ptr::NonNull;

use super::error::UvError;
use super::event_loop::{guard_callback, UvLoop};
use super::sys;

/// libuv handle structs: every one begins with the fields of `uv_handle_t`.
///
/// # Safety
/// Implementors must be `uv_*_t` handle types whose first member is the `uv_handle_t` header, so
/// a pointer to one is a valid `*mut uv_handle_t`, and for which all-zero bytes is a valid
/// pre-`init` state.
pub unsafe trait HandleType {}

// SAFETY: these are libuv handle structs; each starts with the uv_handle_t header (UV_HANDLE_FIELDS)
// and is plain C data for which zeroed memory is a valid pre-init value.
unsafe impl HandleType for sys::uv_timer_t {}
// SAFETY: as above.
unsafe impl HandleType for sys::uv_async_t {}
// SAFETY: as above.
unsafe impl HandleType for sys::uv_prepare_t {}
// SAFETY: as above.
unsafe impl HandleType for sys::uv_poll_t {}
// SAFETY: as above.
unsafe impl HandleType for sys::uv_tcp_t {}
// SAFETY: as above.
unsafe impl HandleType for sys::uv_pipe_t {}
// SAFETY: as above.
unsafe impl HandleType for sys::uv_udp_t {}
// SAFETY: as above.
unsafe impl HandleType for sys::uv_process_t {}

/// The allocation: libuv's struct first, so a `*mut H` (or `*mut uv_handle_t`) from a callback
/// is also a pointer to the whole box.
#[repr(C)]
struct HandleBox<H, D> {
    raw: H,
    data: D,
}

pub struct Handle<H: HandleType, D> {
    ptr: NonNull<HandleBox<H, D>>,
}

// SAFETY: the handle is only used by the thread that holds the GIL (see crate::gil); libuv itself
// does not require handles to stay on the thread that created them, only serialised use.
unsafe impl<H: HandleType, D: Send> Send for Handle<H, D> {}
// SAFETY: shared access is serialised by the GIL like every other piece of loop state.
unsafe impl<H: HandleType, D: Send> Sync for Handle<H, D> {}

impl<H: HandleType, D> Handle<H, D> {
    /// Allocates the handle and runs libuv's `init` on it.
    pub fn new(
        uv_loop: &UvLoop,
        data: D,
        init: impl FnOnce(*mut sys::uv_loop_t, *mut H) -> c_int,
    ) -> Result<Self, UvError> {
        let boxed = Box::new(HandleBox {
            // SAFETY: HandleType guarantees all-zero bytes are a valid value of H before init.
            raw: unsafe { std::mem::zeroed::<H>() },
            data,
        });
        let ptr = NonNull::from(Box::leak(boxed));
        // SAFETY: `ptr` is a live, exclusively owned allocation; `raw` is its first field.
        let raw = unsafe { &raw mut (*ptr.as_ptr()).raw };
        let status = init(uv_loop.as_ptr(), raw);
        if status < 0 {
            // The init functions used here fail before registering the handle with the loop, so
            // libuv holds no pointer to it and the allocation can go straight back.
            // SAFETY: `ptr` came from Box::leak above and libuv does not know it.
            drop(unsafe { Box::from_raw(ptr.as_ptr()) });
            return Err(UvError(status));
        }
        Ok(Self { ptr })
    }

    pub fn as_ptr(&self) -> *mut H {
        // SAFETY: the allocation lives until the close callback, which runs after `close`.
        unsafe { &raw mut (*self.ptr.as_ptr()).raw }
    }

    pub fn as_handle_ptr(&self) -> *mut sys::uv_handle_t {
        self.as_ptr().cast()
    }

    /// The Rust state next to the libuv struct.
    pub fn data(&self) -> &D {
        // SAFETY: the allocation lives as long as `self` (it is freed only after `close`, which
        // takes `self`), and `data` is only ever borrowed shared.
        unsafe { &(*self.ptr.as_ptr()).data }
    }

    /// The Rust state of the handle a libuv callback was given.
    ///
    /// # Safety
    /// `raw` must point to the libuv struct of a live `Handle<H, D>` (a callback's argument, before
    /// the handle's close callback has run), and the returned reference must not outlive the
    /// callback.
    pub unsafe fn data_of<'a>(raw: *mut H) -> &'a D {
        // SAFETY: per the contract, `raw` is the first field of a live HandleBox<H, D>.
        unsafe { &(*raw.cast::<HandleBox<H, D>>()).data }
    }

    /// Whether the handle is active (started), in libuv's sense.
    pub fn is_active(&self) -> bool {
        // SAFETY: an initialised, not yet closed handle.
        unsafe { sys::uv_is_active(self.as_handle_ptr()) != 0 }
    }

    /// Stops the handle from keeping the loop alive on its own.
    pub fn unref(&self) {
        // SAFETY: an initialised, not yet closed handle.
        unsafe { sys::uv_unref(self.as_handle_ptr()) };
    }
}

impl<H: HandleType, D> Drop for Handle<H, D> {
    fn drop(&mut self) {
        let raw = self.as_handle_ptr();
        // SAFETY: the handle was initialised and is closed only here, by its one owner; the
        // close callback frees the box exactly once.
        unsafe { sys::uv_close(raw, Some(close_cb::<H, D>)) };
    }
}

unsafe extern "C" fn close_cb<H: HandleType, D>(raw: *mut sys::uv_handle_t) {
    // SAFETY: libuv calls this once per handle, on the loop thread, with the pointer passed to
    // uv_close, which is the start of a HandleBox<H, D> leaked by Handle::new.
    unsafe {
        guard_callback((*raw).loop_, |_py| {
            drop(Box::from_raw(raw.cast::<HandleBox<H, D>>()));
        });
    }
}
