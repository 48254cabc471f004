//! Ownership of libuv handles.
//!
//! A `Handle<H, D>` owns one heap allocation holding the libuv struct `H` followed by the Rust state
//! `D` its callbacks use; `handle->data` points at that state, so a callback finds it from any
//! pointer to the handle (`uv_stream_t*` for a TCP handle, say). The allocation is released only
//! by libuv's close callback, after the last callback for the handle has run; `Drop` is the single
//! path there, so a handle is closed exactly once and never freed while libuv still knows it.
//!
//! Handles owned by Python-visible objects (transports, servers, processes) may outlive the loop's
//! `close()`, which must close every handle first: they are made with `new_owned`, and the loop's
//! closing walk asks their state to close them (`LoopClose`).

use std::os::raw::c_int;
use std::ptr::NonNull;

use pyo3::Python;

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
// SAFETY: as above (uv_stream_t is the common head of uv_tcp_t and uv_pipe_t).
unsafe impl HandleType for sys::uv_stream_t {}
// SAFETY: as above.
unsafe impl HandleType for sys::uv_handle_t {}

/// State of a handle whose owner must close it when the loop closes.
pub trait LoopClose {
    /// Closes the handle through its owner (which then drops its `Handle`).
    fn close_at_loop_close(&self, py: Python<'_>);
}

/// What `handle->data` points at: how the loop's closing walk closes the handle (None: the loop
/// itself owns it), then the callbacks' state.
#[repr(C)]
struct Slot<D> {
    close_hook: Option<unsafe fn(*mut sys::uv_handle_t, Python<'_>)>,
    data: D,
}

/// The allocation: libuv's struct first, so the pointer libuv hands to the close callback is also
/// a pointer to the whole box.
#[repr(C)]
struct HandleBox<H, D> {
    raw: H,
    slot: Slot<D>,
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
        Self::with_hook(uv_loop, data, None, init)
    }

    /// A handle the loop's `close()` closes through `D` if its owner has not.
    pub fn new_owned(
        uv_loop: &UvLoop,
        data: D,
        init: impl FnOnce(*mut sys::uv_loop_t, *mut H) -> c_int,
    ) -> Result<Self, UvError>
    where
        D: LoopClose,
    {
        Self::with_hook(uv_loop, data, Some(close_through_owner::<D>), init)
    }

    fn with_hook(
        uv_loop: &UvLoop,
        data: D,
        close_hook: Option<unsafe fn(*mut sys::uv_handle_t, Python<'_>)>,
        init: impl FnOnce(*mut sys::uv_loop_t, *mut H) -> c_int,
    ) -> Result<Self, UvError> {
        let boxed = Box::new(HandleBox {
            // SAFETY: HandleType guarantees all-zero bytes are a valid value of H before init.
            raw: unsafe { std::mem::zeroed::<H>() },
            slot: Slot { close_hook, data },
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
        // SAFETY: init succeeded, so `raw` is an initialised handle whose `data` field is ours
        // (libuv's init functions clear it; it is set once, here).
        unsafe {
            (*raw.cast::<sys::uv_handle_t>()).data = (&raw mut (*ptr.as_ptr()).slot).cast();
        }
        Ok(Self { ptr })
    }

    pub fn as_ptr(&self) -> *mut H {
        // SAFETY: the allocation lives until the close callback, which runs after `Drop`.
        unsafe { &raw mut (*self.ptr.as_ptr()).raw }
    }

    pub fn as_handle_ptr(&self) -> *mut sys::uv_handle_t {
        self.as_ptr().cast()
    }

    pub fn as_stream_ptr(&self) -> *mut sys::uv_stream_t {
        self.as_ptr().cast()
    }

    /// The Rust state next to the libuv struct.
    pub fn data(&self) -> &D {
        // SAFETY: the allocation lives as long as `self` (it is freed only after `Drop`), and the
        // state is only ever borrowed shared.
        unsafe { &(*self.ptr.as_ptr()).slot.data }
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

/// The Rust state of the handle a libuv callback was given, whatever its pointer type.
///
/// # Safety
/// `raw` must point to a live handle made by a `Handle<_, D>` with this very `D` (a callback's
/// argument, before the handle's close callback has run), and the returned reference must not
/// outlive the callback.
pub unsafe fn data_of<'a, T: HandleType, D>(raw: *mut T) -> &'a D {
    // SAFETY: per the contract, `data` points at the Slot<D> of the handle's box.
    unsafe { &(*(*raw.cast::<sys::uv_handle_t>()).data.cast::<Slot<D>>()).data }
}

/// The loop a handle given to a callback belongs to.
///
/// # Safety
/// `raw` must point to a live, initialised libuv handle.
pub unsafe fn loop_of<T: HandleType>(raw: *mut T) -> *mut sys::uv_loop_t {
    // SAFETY: every handle struct starts with the uv_handle_t header (HandleType).
    unsafe { (*raw.cast::<sys::uv_handle_t>()).loop_ }
}

/// The loop's closing walk met an open handle: its state closes it.
///
/// # Safety
/// `raw` must be a live handle made by `Handle::new_owned` with this `D`.
unsafe fn close_through_owner<D: LoopClose>(raw: *mut sys::uv_handle_t, py: Python<'_>) {
    // SAFETY: per the contract.
    unsafe { data_of::<sys::uv_handle_t, D>(raw) }.close_at_loop_close(py);
}

/// For the loop's closing walk: asks the owner of an open handle made by `new_owned` to close it.
///
/// # Safety
/// `raw` must be a live handle of a loop whose handles all come from `Handle` (their `data` is
/// null or points at a `Slot`).
pub unsafe fn close_if_owned(raw: *mut sys::uv_handle_t, py: Python<'_>) {
    // SAFETY: per the contract; the hook is the first field of every Slot, whatever its D.
    unsafe {
        let slot = (*raw).data.cast::<Slot<()>>();
        if slot.is_null() || sys::uv_is_closing(raw) != 0 {
            return;
        }
        if let Some(hook) = (*slot).close_hook {
            hook(raw, py);
        }
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
