//! The libuv loop, and the GIL hand-off around its waits.
//!
//! The event loop polls for I/O only by running libuv. The GIL is held while libuv runs callbacks
//! and is handed over once per iteration, only when libuv is about to block in the kernel: the
//! prepare callback releases it right before the poll (`release_gil_before_poll`), and the first
//! callback afterwards takes it back (`guard_callback`), or `run` does when none ran.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::os::raw::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::{self, NonNull};
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
    /// Thread-pool requests whose after-work callback has not run yet.
    work: RefCell<Vec<*mut sys::uv_work_t>>,
}

pub struct UvLoop {
    /// The LoopBox, from `Box::into_raw`: freed by `Drop` once libuv let go of it, or handed to
    /// the orphanage. Never used once `closed` is set, except by `close` itself.
    inner: NonNull<LoopBox>,
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
        !self.closed.get() && self.inner().waiting.load(Ordering::Acquire)
    }

    pub fn new() -> Result<Self, UvError> {
        let mut inner = Box::new(LoopBox {
            // SAFETY: uv_loop_t is plain C data; uv_loop_init initialises it in place.
            raw: unsafe { std::mem::zeroed() },
            released: Cell::new(ptr::null_mut()),
            panic: Cell::new(None),
            may_block: Cell::new(false),
            waiting: AtomicBool::new(false),
            work: RefCell::new(Vec::new()),
        });
        // SAFETY: `raw` sits in a Box, so its address never changes after init, as libuv requires
        // (the loop keeps pointers into itself).
        UvError::check(unsafe { sys::uv_loop_init(&raw mut inner.raw) })?;
        inner.raw.data = (&raw const *inner).cast_mut().cast::<c_void>();
        Ok(Self {
            inner: NonNull::from(Box::leak(inner)),
            closed: Cell::new(false),
            freeable: Cell::new(false),
        })
    }

    pub fn as_ptr(&self) -> *mut sys::uv_loop_t {
        // SAFETY: the box is live (see `inner`); only the address of its first field is taken.
        unsafe { &raw mut (*self.inner.as_ptr()).raw }
    }

    /// Runs one libuv iteration; with `RUN_ONCE` it may block, with the GIL released meanwhile.
    /// A panic caught in a callback is handed back as `Err`.
    pub fn run(&self, _py: Python<'_>, mode: RunMode) -> Result<(), Box<dyn Any + Send>> {
        if self.closed.get() {
            return Ok(());
        }
        let inner = self.inner();
        inner.may_block.set(mode == RUN_ONCE);
        // SAFETY: the loop is initialised and not closed (callers check `is_closed` state), and
        // this thread holds the GIL, which callbacks rely on.
        unsafe { sys::uv_run(self.as_ptr(), mode) };
        inner.may_block.set(false);
        inner.reacquire_gil();
        match inner.panic.take() {
            Some(payload) => Err(payload),
            None => Ok(()),
        }
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

    /// Closes the loop: runs it until every close callback has run, cancels thread-pool requests
    /// that have not started, and waits for running ones at most `CLOSE_WAIT_FOR_WORK`. Owners
    /// must have closed their handles first; if one is still open, libuv refuses to close and the
    /// loop's memory is leaked, never freed under libuv's feet. A loop whose requests are still
    /// running is handed to the orphanage, which finishes closing it later (`reap_orphans`).
    pub fn close(&self, py: Python<'_>) {
        if self.closed.get() {
            return;
        }
        let inner = self.inner();
        self.closed.set(true);
        for request in inner.work.borrow().iter() {
            // SAFETY: a request of this loop whose after-work callback has not run yet (it
            // untracks itself there); uv_cancel fails harmlessly on one already running.
            unsafe { sys::uv_cancel(request.cast()) };
        }
        let started = std::time::Instant::now();
        loop {
            if inner.is_done() {
                break;
            }
            if inner.raw.closing_handles.is_null() && started.elapsed() > CLOSE_WAIT_FOR_WORK {
                // The orphanage owns the box from here (`freeable` stays false).
                orphanage().push(Orphan(self.inner));
                return;
            }
            // A panic in a close callback has nobody to go to here; closing goes on regardless.
            let _ = inner.run_nowait(py);
            if !inner.is_done() && inner.raw.closing_handles.is_null() {
                // Only thread-pool requests left: let them finish (they may need the GIL).
                py.detach(|| std::thread::sleep(std::time::Duration::from_micros(200)));
            }
        }
        // SAFETY: valid loop; uv_loop_close fails (and changes nothing) if a handle is still open.
        self.freeable
            .set(unsafe { sys::uv_loop_close(self.as_ptr()) } == 0);
        reap_orphans(py);
    }

    fn inner(&self) -> &LoopBox {
        // SAFETY: the box stays allocated while `self` lives unless it went to the orphanage, and
        // callers only use it before `close` (or within it).
        unsafe { self.inner.as_ref() }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.get()
    }

    /// Makes the running `uv_run` return after the current callback.
    pub fn stop(&self) {
        if !self.closed.get() {
            // SAFETY: valid, initialised loop.
            unsafe { sys::uv_stop(self.as_ptr()) };
        }
    }

    /// Closed, with every handle closed first (libuv let go of the loop).
    pub fn closed_cleanly(&self) -> bool {
        self.closed.get() && self.freeable.get()
    }

    /// Asks the owner of every handle made with `Handle::new_owned` that is still open to close
    /// it (transports, servers, processes the program did not close before the loop).
    pub fn close_owned_handles(&self, py: Python<'_>) {
        if self.closed.get() {
            return;
        }
        unsafe extern "C" fn close_one(handle: *mut sys::uv_handle_t, arg: *mut c_void) {
            // SAFETY: uv_walk passes live handles of this loop, all made through `Handle`, and
            // the `arg` given below; the GIL is held by the thread walking.
            unsafe {
                let py = Python::assume_attached();
                let _ = arg;
                super::handle::close_if_owned(handle, py);
            }
        }
        // SAFETY: valid loop; closing a handle during the walk only marks it closing.
        unsafe { sys::uv_walk(self.as_ptr(), Some(close_one), ptr::null_mut()) };
        let _ = py;
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
            drop(unsafe { Box::from_raw(self.inner.as_ptr()) });
        }
    }
}

impl LoopBox {
    /// No handle is closing and no request is pending.
    fn is_done(&self) -> bool {
        // SAFETY: reading the request counter of a valid loop; `count` is the union's only member
        // libuv uses on Unix.
        let requests = unsafe { self.raw.active_reqs.count };
        self.raw.closing_handles.is_null() && requests == 0
    }

    /// One non-blocking iteration of a loop that is being closed.
    fn run_nowait(&self, _py: Python<'_>) -> Result<(), Box<dyn Any + Send>> {
        let raw = (&raw const self.raw).cast_mut();
        // SAFETY: the loop is initialised and not closed; this thread holds the GIL, which
        // callbacks rely on, and nothing else runs this loop.
        unsafe { sys::uv_run(raw, RUN_NOWAIT) };
        match self.panic.take() {
            Some(payload) => Err(payload),
            None => Ok(()),
        }
    }

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

/// Registers a thread-pool request of `uv_loop`, so that closing the loop can cancel it.
pub fn track_work(uv_loop: &UvLoop, request: *mut sys::uv_work_t) {
    uv_loop.inner().work.borrow_mut().push(request);
}

/// Forgets a request whose after-work callback is running.
///
/// # Safety
/// `request` must be a request of a loop created by `UvLoop::new`, inside its after-work callback.
pub unsafe fn untrack_work(request: *mut sys::uv_work_t) {
    // SAFETY: the request's loop is a LoopBox-backed loop (the contract), alive while its
    // callbacks run.
    let inner = unsafe { &*(*(*request).loop_).data.cast::<LoopBox>() };
    let mut work = inner.work.borrow_mut();
    if let Some(index) = work.iter().position(|tracked| *tracked == request) {
        work.swap_remove(index);
    }
}

/// How long `close()` waits for thread-pool requests that are already running.
const CLOSE_WAIT_FOR_WORK: std::time::Duration = std::time::Duration::from_millis(50);

/// A closed loop whose thread-pool requests were still running: its memory (and descriptors) must
/// stay until their after-work callbacks have run. Owns the box (from `Box::into_raw`).
struct Orphan(NonNull<LoopBox>);

// SAFETY: orphans are only touched under the orphanage's mutex by a thread holding the GIL.
unsafe impl Send for Orphan {}

fn orphanage() -> std::sync::MutexGuard<'static, Vec<Orphan>> {
    static ORPHANS: std::sync::Mutex<Vec<Orphan>> = std::sync::Mutex::new(Vec::new());
    ORPHANS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Finishes closing the orphaned loops whose requests are done (without waiting for the others).
pub fn reap_orphans(py: Python<'_>) {
    let mut orphans = std::mem::take(&mut *orphanage());
    orphans.retain(|Orphan(inner)| {
        // SAFETY: the orphanage owns the live box.
        let boxed = unsafe { inner.as_ref() };
        let _ = boxed.run_nowait(py);
        if !boxed.is_done() {
            return true;
        }
        let raw = (&raw const boxed.raw).cast_mut();
        // SAFETY: every handle of the loop is closed and no request is pending, so libuv lets go
        // of the loop; if it still refuses, the box is kept.
        if unsafe { sys::uv_loop_close(raw) } != 0 {
            return true;
        }
        // SAFETY: libuv holds no pointer into the box any more; it came from Box::into_raw.
        drop(unsafe { Box::from_raw(inner.as_ptr()) });
        false
    });
    orphanage().extend(orphans);
}
