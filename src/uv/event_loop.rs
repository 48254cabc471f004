//! The libuv loop, and the GIL hand-off around waits.
//!
//! The event loop waits in its own epoll set (see `loop_::selector`) with the GIL released
//! (`wait_without_gil`); libuv's epoll fd is a member of that set, and libuv itself is only run
//! without blocking. When a `uv_run` may block (the loop's `close()` waiting for close callbacks
//! and thread-pool requests), the prepare callback releases the GIL right before libuv's wait
//! (`release_gil_before_poll`) and the first callback afterwards takes it back
//! (`guard_callback`), so that pool threads needing the GIL can finish.

use std::any::Any;
use std::cell::Cell;
use std::mem::ManuallyDrop;
use std::os::raw::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::ffi;
use pyo3::Python;

use super::error::UvError;
use super::sys;

/// libuv's loop struct plus what callbacks need to find their way back (repr(C), `raw` first:
/// `uv_loop_t.data` points at this struct).
#[repr(C)]
struct LoopBox {
    raw: sys::uv_loop_t,
    /// The Python thread state saved while the GIL is released around the wait, else null.
    released: Cell<*mut ffi::PyThreadState>,
    /// A panic caught in a callback, re-raised by the owner after `uv_run` returns.
    panic: Cell<Option<Box<dyn Any + Send>>>,
    /// Set while the current `uv_run` may block, so the prepare callback releases the GIL.
    may_block: Cell<bool>,
    /// True from just before the GIL is released for a blocking wait until it is taken back:
    /// other threads (which can only look while they hold the GIL) need to wake the loop only
    /// then, since otherwise it checks its queue before it blocks again.
    waiting: AtomicBool,
}

pub struct UvLoop {
    inner: ManuallyDrop<Box<LoopBox>>,
    closed: Cell<bool>,
    /// False if uv_loop_close refused: libuv may still point into the box, so it is leaked.
    freeable: Cell<bool>,
}

// SAFETY: the loop is only driven by the thread holding the GIL (see crate::gil); the one call
// allowed from other threads, uv_async_send, is thread-safe by libuv's contract.
unsafe impl Send for UvLoop {}
// SAFETY: as above.
unsafe impl Sync for UvLoop {}

pub type RunMode = sys::uv_run_mode;
pub const RUN_ONCE: RunMode = sys::uv_run_mode_UV_RUN_ONCE;
pub const RUN_NOWAIT: RunMode = sys::uv_run_mode_UV_RUN_NOWAIT;

impl UvLoop {
    /// Whether the loop thread is (or is about to be) blocked in its wait with the GIL released.
    pub fn is_waiting(&self) -> bool {
        self.inner.waiting.load(Ordering::Acquire)
    }

    pub fn new() -> Result<Self, UvError> {
        let mut inner = Box::new(LoopBox {
            // SAFETY: uv_loop_t is plain C data; uv_loop_init initialises it in place.
            raw: unsafe { std::mem::zeroed() },
            released: Cell::new(ptr::null_mut()),
            panic: Cell::new(None),
            may_block: Cell::new(false),
            waiting: AtomicBool::new(false),
        });
        // SAFETY: `raw` sits in a Box, so its address never changes after init, as libuv requires
        // (the loop keeps pointers into itself).
        UvError::check(unsafe { sys::uv_loop_init(&raw mut inner.raw) })?;
        inner.raw.data = (&raw const *inner).cast_mut().cast::<c_void>();
        Ok(Self {
            inner: ManuallyDrop::new(inner),
            closed: Cell::new(false),
            freeable: Cell::new(false),
        })
    }

    pub fn as_ptr(&self) -> *mut sys::uv_loop_t {
        (&raw const self.inner.raw).cast_mut()
    }

    /// Runs one libuv iteration; with `RUN_ONCE` it may block, with the GIL released meanwhile.
    /// A panic caught in a callback is handed back as `Err`.
    pub fn run(&self, _py: Python<'_>, mode: RunMode) -> Result<(), Box<dyn Any + Send>> {
        if self.closed.get() {
            return Ok(());
        }
        self.inner.may_block.set(mode == RUN_ONCE);
        // SAFETY: the loop is initialised and not closed (callers check `is_closed` state), and
        // this thread holds the GIL, which callbacks rely on.
        unsafe { sys::uv_run(self.as_ptr(), mode) };
        self.inner.may_block.set(false);
        self.inner.reacquire_gil();
        match self.inner.panic.take() {
            Some(payload) => Err(payload),
            None => Ok(()),
        }
    }

    /// libuv's epoll fd: readable when libuv has I/O (wake-ups, thread-pool completions) to run.
    pub fn backend_fd(&self) -> c_int {
        // SAFETY: valid, initialised loop.
        unsafe { sys::uv_backend_fd(self.as_ptr()) }
    }

    /// How long libuv could wait: 0 when it has work to run now (or fd changes to apply), -1
    /// when it has no deadline.
    pub fn backend_timeout(&self) -> c_int {
        if self.closed.get() {
            return -1;
        }
        // SAFETY: valid, initialised loop; the call only reads loop state.
        unsafe { sys::uv_backend_timeout(self.as_ptr()) }
    }

    /// Runs `wait` with the GIL released, marked as waiting so that other threads wake the
    /// loop (see `is_waiting`).
    pub fn wait_without_gil<R>(&self, _py: Python<'_>, wait: impl FnOnce() -> R) -> R {
        self.inner.waiting.store(true, Ordering::Release);
        // SAFETY: this thread holds the GIL (the token proves it); `wait` touches no Python
        // state, and the GIL is restored before returning.
        let tstate = unsafe { ffi::PyEval_SaveThread() };
        let result = wait();
        // SAFETY: `tstate` came from PyEval_SaveThread on this thread just above.
        unsafe { ffi::PyEval_RestoreThread(tstate) };
        self.inner.waiting.store(false, Ordering::Release);
        result
    }

    /// In a forked child: gives libuv fresh kernel state (its epoll set is shared with the
    /// parent until then).
    pub fn after_fork(&self) -> Result<(), UvError> {
        if self.closed.get() {
            return Ok(());
        }
        // SAFETY: valid, initialised loop, called in the child on the thread that forked.
        UvError::check(unsafe { sys::uv_loop_fork(self.as_ptr()) }).map(drop)
    }

    /// Runs the loop until every close callback (and any request still in libuv's thread pool)
    /// has finished, then closes the loop itself. Owners must have closed their handles first; if
    /// one is still open, libuv refuses to close and the loop's memory is leaked, never freed
    /// under libuv's feet.
    pub fn close(&self, py: Python<'_>) {
        if self.closed.get() {
            return;
        }
        loop {
            let raw = &self.inner.raw;
            // SAFETY: reading the request counter of a valid loop; `count` is the union's only
            // member libuv uses on Unix.
            let requests = unsafe { raw.active_reqs.count } > 0;
            if raw.closing_handles.is_null() && !requests {
                break;
            }
            // A panic in a close callback has nobody to go to here; closing goes on regardless.
            let _ = self.run(py, RUN_ONCE);
        }
        self.closed.set(true);
        // SAFETY: valid loop; uv_loop_close fails (and changes nothing) if a handle is still open.
        self.freeable
            .set(unsafe { sys::uv_loop_close(self.as_ptr()) } == 0);
    }

    pub fn is_closed(&self) -> bool {
        self.closed.get()
    }

    /// How many libuv handles are open (not closing); 0 once the loop is closed.
    pub fn open_handles(&self) -> usize {
        if self.closed.get() {
            return 0;
        }
        unsafe extern "C" fn count(handle: *mut sys::uv_handle_t, arg: *mut c_void) {
            // SAFETY: uv_walk passes live handles and the `arg` given below, a usize counter.
            unsafe {
                if sys::uv_is_closing(handle) == 0 {
                    *arg.cast::<usize>() += 1;
                }
            }
        }
        let mut open = 0usize;
        // SAFETY: valid loop; the callback only reads handle state and bumps the counter, which
        // outlives the call.
        unsafe { sys::uv_walk(self.as_ptr(), Some(count), (&raw mut open).cast()) };
        open
    }
}

impl Drop for UvLoop {
    fn drop(&mut self) {
        if !self.closed.get() {
            // SAFETY: dropping a pyclass happens with the GIL held.
            let py = unsafe { Python::assume_attached() };
            self.close(py);
        }
        if self.freeable.get() {
            // SAFETY: the loop is closed and libuv holds no pointer into the box any more.
            unsafe { ManuallyDrop::drop(&mut self.inner) };
        }
    }
}

impl LoopBox {
    fn reacquire_gil(&self) {
        let tstate = self.released.replace(ptr::null_mut());
        if !tstate.is_null() {
            // SAFETY: `tstate` was returned by PyEval_SaveThread on this thread (release_gil) and
            // the GIL has not been re-taken since.
            unsafe { ffi::PyEval_RestoreThread(tstate) };
            self.waiting.store(false, Ordering::Release);
        }
    }

    /// Releases the GIL when the coming poll will block.
    fn release_gil_if_blocking(&self) {
        if !self.may_block.get() || !self.released.get().is_null() {
            return;
        }
        // uv_backend_timeout answers 0 whenever fd changes are waiting to reach epoll (as on a
        // loop's first poll), although the poll may then block: release the GIL in that case too.
        let watcher_queue = &raw const self.raw.watcher_queue;
        // SAFETY: valid loop; reads a field and calls a function that only reads loop state.
        let changes_pending = unsafe { (*watcher_queue).next.cast_const() != watcher_queue };
        // SAFETY: as above.
        if !changes_pending && unsafe { sys::uv_backend_timeout(&raw const self.raw) } == 0 {
            return;
        }
        self.waiting.store(true, Ordering::Release);
        // SAFETY: this thread holds the GIL (callbacks run inside `run`, which is called with the
        // GIL), and nothing touches Python until reacquire_gil, which every callback calls first.
        self.released.set(unsafe { ffi::PyEval_SaveThread() });
    }
}

/// Runs a libuv callback body: takes the GIL back if the wait released it, and keeps panics from
/// unwinding into C (the payload is re-raised by `UvLoop::run`'s caller).
///
/// # Safety
/// `uv_loop` must be a loop created by `UvLoop::new`, and the call must come from a libuv callback
/// on the thread running that loop.
pub unsafe fn guard_callback<R>(
    uv_loop: *mut sys::uv_loop_t,
    body: impl FnOnce(Python<'_>) -> R,
) -> Option<R> {
    // SAFETY: `data` was set to the enclosing LoopBox by UvLoop::new, and the box outlives uv_run.
    let inner = unsafe { &*(*uv_loop).data.cast::<LoopBox>() };
    inner.reacquire_gil();
    // SAFETY: the GIL is held by this thread again (it was held when uv_run started and has just
    // been re-taken if the wait released it).
    let py = unsafe { Python::assume_attached() };
    match catch_unwind(AssertUnwindSafe(|| body(py))) {
        Ok(value) => Some(value),
        Err(payload) => {
            inner.panic.set(Some(payload));
            // SAFETY: valid loop; stop makes uv_run return so the panic is reported promptly.
            unsafe { sys::uv_stop(uv_loop) };
            None
        }
    }
}

/// The prepare callback that hands the GIL over for the blocking poll.
///
/// # Safety
/// Only installed on a prepare handle of a loop created by `UvLoop::new`.
pub unsafe extern "C" fn release_gil_before_poll(handle: *mut sys::uv_prepare_t) {
    // SAFETY: libuv passes a live prepare handle whose loop is a LoopBox-backed loop.
    let inner = unsafe { &*(*(*handle).loop_).data.cast::<LoopBox>() };
    inner.release_gil_if_blocking();
}

pub fn status(code: c_int) -> Result<(), UvError> {
    UvError::check(code).map(|_| ())
}
