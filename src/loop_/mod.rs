//! The native core of the event loop: the `uvloop.loop.Loop` base class.
//!
//! Python's `uvloop.Loop` derives from this class and from `asyncio.AbstractEventLoop`; the
//! per-callback paths (scheduling, timers, running handles, fd watchers) live here, the per-run
//! paths (run_forever's set-up, executors, signals, exception handlers) in Python.

mod fastcall;
mod poller;
mod run;
mod selector;
mod timer_heap;

use std::collections::VecDeque;
use std::os::raw::c_int;

use pyo3::exceptions::{PyAttributeError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyFloat, PyInt, PyTuple};
use pyo3::PyClassInitializer;

use crate::clock;
use crate::gil::{GilCell, GilRefCell};
use crate::handles::{self, Handle, TimerHandle};
use crate::python;
use crate::transports::{DatagramEvent, SockOp, StreamCore, StreamEvent, UdpCore};
use crate::uv::async_handle::Wakeup;
use crate::uv::error::os_error;
use crate::uv::event_loop::UvLoop;
use crate::uv::poll::ReadablePoll;
use crate::uv::prepare::GilHandOff;
use crate::uv::timer::Timer;

pub use run::panic_to_pyerr;
use selector::{Interest, Selector, Side};
pub use selector::{READABLE, WRITABLE};

/// An entry of the ready queue.
pub enum Ready {
    Call(Py<Handle>),
    /// A sock_* operation's fd is ready (asyncio would queue its reader/writer handle here).
    SockOp(Py<SockOp>),
    /// Something for a datagram transport.
    Datagram(Py<UdpCore>, DatagramEvent),
    /// Something for a stream transport (asyncio would queue its reader/writer handle, or a
    /// `call_soon` of the transport, here).
    Stream(Py<StreamCore>, StreamEvent),
}

// Every call_soon pushes one entry and every iteration pops them: keep entries small (a PyErr
// inline once made them 80 bytes, 6% of a call_soon batch's time).
const _: () = assert!(std::mem::size_of::<Ready>() <= 32);
use timer_heap::TimerHeap;

/// The libuv handles every loop has: the wake-up for other threads, the hook that hands the GIL
/// over while libuv blocks, the watch on the fd watchers' epoll set, and the one timer armed for
/// the earliest deadline of the loop's timer heap.
struct InternalHandles {
    wakeup: Wakeup,
    _gil: GilHandOff,
    fd_watchers: ReadablePoll,
    timer: Timer,
}

impl InternalHandles {
    /// How many libuv handles these are (for `_open_libuv_handles`).
    const COUNT: usize = 4;

    fn new(uv: &UvLoop, selector: &Selector) -> PyResult<Self> {
        Ok(Self {
            wakeup: Wakeup::new(uv)?,
            _gil: GilHandOff::new(uv)?,
            fd_watchers: ReadablePoll::new(uv, selector.fd())?,
            timer: Timer::new(uv)?,
        })
    }
}

#[pyclass(frozen, subclass, weakref, module = "uvloop.loop", name = "Loop")]
pub struct Loop {
    /// Callbacks to run in the next iteration, in order.
    ready: GilRefCell<VecDeque<Ready>>,
    timers: GilRefCell<TimerHeap<Py<TimerHandle>>>,
    /// Cancelled timers still in the heap, as asyncio's `_timer_cancelled_count`.
    timer_cancelled_count: GilCell<usize>,
    closed: GilCell<bool>,
    stopping: GilCell<bool>,
    /// `threading.get_ident()` of the thread running the loop, None when not running.
    thread_id: GilCell<Option<u64>>,
    debug: GilCell<bool>,
    slow_callback_duration: GilCell<f64>,
    /// The handle being run, kept in debug mode for the default exception handler.
    current_handle: GilRefCell<Option<Py<Handle>>>,
    task_factory: GilRefCell<Option<Py<PyAny>>>,
    /// A KeyboardInterrupt/SystemExit (or panic) raised inside a libuv callback, re-raised by
    /// the running `run_forever` once libuv returns.
    pending_error: GilRefCell<Option<PyErr>>,
    /// How many times libuv has been run: a transport that read in this poll waits for the next
    /// one (see `read_once_per_poll`).
    polls: GilCell<u64>,
    /// Whether I/O found by the current poll runs at once (see `io_inline`).
    io_inline: GilCell<InlineIo>,
    /// When libuv last polled for I/O (see `run::POLL_INTERVAL`).
    last_poll: GilCell<f64>,
    /// Iterations run without blocking since the clock was last read (see `run::run_once`).
    busy_iterations: GilCell<u32>,
    /// How many busy iterations may pass between two readings of the clock (see `run::run_once`).
    clock_read_every: GilCell<u32>,
    /// When the clock was last read for the busy-poll check.
    last_clock_read: GilCell<f64>,
    /// The cores of open stream and datagram transports, indexed by fd.
    transports: GilRefCell<Vec<Option<Py<PyAny>>>>,
    /// The epoll set of watched fds and sock_* operations. None once the loop is closed.
    selector: GilRefCell<Option<Selector>>,
    /// None once the loop is closed.
    internal: GilRefCell<Option<InternalHandles>>,
    /// Declared last: dropped after every handle above, so their close callbacks still have a
    /// loop to run on.
    uv: UvLoop,
}

/// Whether a transport's I/O callbacks run inside the poll that found the I/O.
///
/// asyncio queues the handles of everything one poll found, in order, after what was ready
/// before, and runs them before whatever they schedule. When the ready queue is empty as the I/O
/// of a blocking poll starts coming in, running each transport callback at once, inside the
/// poll, keeps exactly that order (what they schedule still waits for the next batch), costs no
/// queueing, and lets the buffer of a read be reused by the next. Otherwise (a busy loop's
/// poll, or callbacks another thread queued during the wait) I/O goes to the queue.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum InlineIo {
    /// Queue I/O (no poll, or a non-blocking one).
    Off,
    /// A blocking poll: decided by the first I/O that comes in.
    Undecided,
    /// Run I/O at once, for the rest of this poll.
    On,
}

/// Adds the methods written by hand (see `fastcall`) to the Loop type.
pub fn install_fast_methods(py: Python<'_>) -> PyResult<()> {
    fastcall::install(py)
}

impl Loop {
    pub fn debug(&self, py: Python<'_>) -> bool {
        self.debug.get(py)
    }

    /// `call_soon(callback, *args, context=context)`; Python reaches it through `fastcall`.
    pub fn call_soon_impl(
        slf: &Bound<'_, Self>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<Handle>> {
        Self::schedule_soon(slf, callback, args, context, "call_soon")
    }

    /// `call_soon_threadsafe(callback, *args, context=context)`, reached through `fastcall`.
    pub fn call_soon_threadsafe_impl(
        slf: &Bound<'_, Self>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<Handle>> {
        let py = slf.py();
        let this = slf.get();
        let handle = Self::schedule_soon(slf, callback, args, context, "call_soon_threadsafe")?;
        // Before the loop can run it: the loop thread waits for the GIL this thread holds.
        handle.get().mark_thread_safe(py);
        // The GIL serialises this with the loop thread, which only reads the queue while holding
        // it; a loop that is not in its blocking wait sees the handle before it waits again.
        if this.uv.is_waiting() {
            this.wake(py);
        }
        Ok(handle)
    }

    /// The part call_soon and call_soon_threadsafe share: checks, the handle, the queue.
    fn schedule_soon(
        slf: &Bound<'_, Self>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
        method: &str,
    ) -> PyResult<Py<Handle>> {
        let py = slf.py();
        let this = slf.get();
        this.check_closed(py)?;
        if this.debug.get(py) {
            // Only call_soon belongs to the loop's thread.
            if method == "call_soon" {
                this.check_thread(py)?;
            }
            python::check_callback(py, &callback, method)?;
        }
        let handle = Py::new(py, Self::new_handle(slf, callback, args, context)?)?;
        handles::untrack(&handle);
        this.schedule(py, handle.clone_ref(py));
        Ok(handle)
    }

    fn check_closed(&self, py: Python<'_>) -> PyResult<()> {
        if self.closed.get(py) {
            return Err(PyRuntimeError::new_err("Event loop is closed"));
        }
        Ok(())
    }

    /// asyncio's debug-mode `_check_thread`.
    fn check_thread(&self, py: Python<'_>) -> PyResult<()> {
        if let Some(owner) = self.thread_id.get(py) {
            // SAFETY: plain C call with no preconditions.
            let current = unsafe { ffi::PyThread_get_thread_ident() };
            if current != owner {
                return Err(PyRuntimeError::new_err(
                    "Non-thread-safe operation invoked on an event loop other than the current one",
                ));
            }
        }
        Ok(())
    }

    fn new_handle(
        slf: &Bound<'_, Self>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Handle> {
        let py = slf.py();
        Handle::new(
            py,
            callback.unbind(),
            args.unbind(),
            context.map(Bound::unbind),
            slf.clone().unbind(),
            slf.get().debug.get(py),
        )
    }

    fn schedule(&self, py: Python<'_>, handle: Py<Handle>) {
        self.ready.borrow_mut(py).push_back(Ready::Call(handle));
    }

    /// Arms `fd` once for a sock_* operation (see `Selector::arm_sock_op`).
    pub fn arm_sock_op(
        &self,
        py: Python<'_>,
        fd: c_int,
        op: &Py<SockOp>,
        interest: Interest,
    ) -> PyResult<()> {
        self.check_closed(py)?;
        let replaced = match self.selector.borrow_mut(py).as_mut() {
            Some(selector) => selector
                .arm_sock_op(fd, op, interest, py)
                .map_err(os_error)?,
            None => None,
        };
        drop(replaced);
        Ok(())
    }

    /// A sock_* operation finished: its fd stays registered, disarmed.
    pub fn disarm_sock_op(&self, py: Python<'_>, fd: c_int, op: &Py<SockOp>) {
        let removed = match self.selector.borrow_mut(py).as_mut() {
            Some(selector) => selector.disarm_sock_op(fd, op),
            None => None,
        };
        drop(removed);
    }

    /// Whether an I/O callback may run its transport's callback now (see `InlineIo`).
    pub fn io_inline(&self, py: Python<'_>) -> bool {
        if self
            .pending_error
            .try_borrow(py)
            .is_none_or(|err| err.is_some())
        {
            // Something is leaving run_forever: the rest waits in the queue.
            return false;
        }
        match self.io_inline.get(py) {
            InlineIo::On => true,
            InlineIo::Off => false,
            InlineIo::Undecided => {
                let inline = self.ready.borrow(py).is_empty();
                self.io_inline
                    .set(py, if inline { InlineIo::On } else { InlineIo::Off });
                inline
            }
        }
    }

    /// Whether an endpoint whose last read happened in poll `last` may read again now (one read
    /// per poll, as asyncio reads once per readiness, and as libuv would not stop by itself:
    /// it reads datagrams until the socket is empty, one failing system call more each time).
    pub fn read_once_per_poll(&self, py: Python<'_>, last: &GilCell<u64>) -> bool {
        let now = self.polls.get(py);
        if last.get(py) == now {
            return false;
        }
        last.set(py, now);
        true
    }

    /// A KeyboardInterrupt or SystemExit inside a libuv callback: libuv stops, and the running
    /// `run_forever` raises it once `uv_run` returns.
    pub fn escape(&self, py: Python<'_>, err: PyErr) {
        let previous = self.pending_error.replace(py, Some(err));
        drop(previous);
        self.uv.stop();
    }

    pub fn push_ready(&self, py: Python<'_>, entry: Ready) {
        self.ready.borrow_mut(py).push_back(entry);
    }

    pub fn uv(&self) -> &UvLoop {
        &self.uv
    }

    /// RuntimeError("Event loop is closed") on a closed loop.
    pub fn check_open(&self, py: Python<'_>) -> PyResult<()> {
        self.check_closed(py)
    }

    /// Notes which transport owns `fd` (add_reader and sock_* refuse it, as asyncio does).
    pub fn remember_transport(&self, py: Python<'_>, fd: c_int, core: &Bound<'_, PyAny>) {
        let Ok(index) = usize::try_from(fd) else {
            return;
        };
        let old = {
            let mut transports = self.transports.borrow_mut(py);
            if transports.len() <= index {
                transports.resize_with(index + 1, || None);
            }
            transports[index].replace(core.clone().unbind())
        };
        drop(old);
    }

    /// Watches write pipe `fd` for its reading end going away (a `PeerClosed` event then).
    pub fn watch_peer_close(
        &self,
        py: Python<'_>,
        fd: c_int,
        core: &Bound<'_, StreamCore>,
    ) -> PyResult<()> {
        self.check_closed(py)?;
        match self.selector.borrow_mut(py).as_mut() {
            Some(selector) => selector
                .watch_peer_close(fd, core.clone().unbind())
                .map_err(os_error),
            None => Ok(()),
        }
    }

    pub fn unwatch_peer_close(&self, py: Python<'_>, fd: c_int, core: &Bound<'_, StreamCore>) {
        let removed = match self.selector.borrow_mut(py).as_mut() {
            Some(selector) => selector.unwatch_peer_close(fd, core.as_unbound()),
            None => None,
        };
        drop(removed);
    }

    /// `core` let go of `fd` (unless another transport took it since).
    pub fn forget_transport(&self, py: Python<'_>, fd: c_int, core: &Bound<'_, PyAny>) {
        let Ok(index) = usize::try_from(fd) else {
            return;
        };
        let removed = {
            let mut transports = self.transports.borrow_mut(py);
            match transports.get_mut(index) {
                Some(slot) if slot.as_ref().is_some_and(|o| o.as_ptr() == core.as_ptr()) => {
                    slot.take()
                }
                _ => None,
            }
        };
        drop(removed);
    }

    fn wake(&self, py: Python<'_>) {
        if let Some(internal) = &*self.internal.borrow(py) {
            internal.wakeup.send();
        }
    }

    /// Called by `TimerHandle.cancel` before it marks itself cancelled.
    pub fn timer_handle_cancelled(&self, py: Python<'_>, timer: &TimerHandle) {
        if timer.is_scheduled(py) {
            let count = self.timer_cancelled_count.get(py);
            self.timer_cancelled_count.set(py, count + 1);
        }
    }

    fn schedule_timer(
        slf: &Bound<'_, Self>,
        when: f64,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<TimerHandle>> {
        let py = slf.py();
        let this = slf.get();
        this.check_closed(py)?;
        if this.debug.get(py) {
            this.check_thread(py)?;
            python::check_callback(py, &callback, "call_at")?;
        }
        let handle = Self::new_handle(slf, callback, args, context)?;
        let init = PyClassInitializer::from(handle).add_subclass(TimerHandle::new(when));
        let timer = Py::new(py, init)?;
        handles::untrack(&timer);
        this.timers.borrow_mut(py).push(when, timer.clone_ref(py));
        Ok(timer)
    }

    /// `int(fileobj.fileno())` for objects that are not ints, with asyncio's error.
    fn fileno_of<'py>(fileobj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let py = fileobj.py();
        if fileobj.is_instance_of::<PyInt>() {
            return Ok(fileobj.clone());
        }
        let fileno = fileobj
            .call_method0(pyo3::intern!(py, "fileno"))
            .and_then(|fileno| py.get_type::<PyInt>().call1((fileno,)));
        match fileno {
            Err(err)
                if err.is_instance_of::<PyAttributeError>(py)
                    || err.is_instance_of::<PyTypeError>(py)
                    || err.is_instance_of::<PyValueError>(py) =>
            {
                Err(PyValueError::new_err(format!(
                    "Invalid file object: {}",
                    fileobj.repr()?
                )))
            }
            result => result,
        }
    }

    /// Converts what add_reader & co. accept to an fd, as `selectors._fileobj_to_fd` does.
    fn fileobj_to_fd(fileobj: &Bound<'_, PyAny>) -> PyResult<c_int> {
        let fd = Self::fileno_of(fileobj)?;
        if fd.lt(0)? {
            return Err(PyValueError::new_err(format!(
                "Invalid file descriptor: {fd}"
            )));
        }
        fd.extract()
    }

    fn add_watcher(
        slf: &Bound<'_, Self>,
        fileobj: &Bound<'_, PyAny>,
        side: Side,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
    ) -> PyResult<Py<Handle>> {
        let py = slf.py();
        let this = slf.get();
        // asyncio's order: a file object's fileno() first, then the closed check, then the fd.
        Self::fileno_of(fileobj)?;
        this.check_closed(py)?;
        let fd = this.lookup_fd(py, fileobj)?;
        let handle = Py::new(py, Self::new_handle(slf, callback, args, None)?)?;
        let replaced = {
            let mut selector = this.selector.borrow_mut(py);
            let Some(selector) = selector.as_mut() else {
                return Err(PyRuntimeError::new_err("Event loop is closed"));
            };
            selector
                .add(fd, fileobj.clone().unbind(), side, handle.clone_ref(py))
                .map_err(os_error)?
        };
        if let Some(old) = replaced {
            Handle::cancel_handle(old.bind(py))?;
        }
        Ok(handle)
    }

    fn remove_watcher(
        slf: &Bound<'_, Self>,
        fileobj: &Bound<'_, PyAny>,
        side: Side,
    ) -> PyResult<bool> {
        let py = slf.py();
        let this = slf.get();
        Self::fileno_of(fileobj)?;
        if this.closed.get(py) {
            return Ok(false);
        }
        let fd = match this.lookup_fd(py, fileobj) {
            Ok(fd) => fd,
            // A number no fd can have is simply not registered (asyncio looks it up in a dict).
            Err(err) if err.is_instance_of::<pyo3::exceptions::PyOverflowError>(py) => {
                return Ok(false)
            }
            Err(err) => return Err(err),
        };
        let (removed, fileobj) = match this.selector.borrow_mut(py).as_mut() {
            Some(selector) => selector.remove(fd, side),
            None => (None, None),
        };
        drop(fileobj);
        match removed {
            Some(handle) => {
                Handle::cancel_handle(handle.bind(py))?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The fd of a watched object, as `selectors._BaseSelectorImpl._fileobj_lookup` finds it:
    /// a socket closed since it was registered is still found by identity.
    fn lookup_fd(&self, py: Python<'_>, fileobj: &Bound<'_, PyAny>) -> PyResult<c_int> {
        match Self::fileobj_to_fd(fileobj) {
            Ok(fd) => Ok(fd),
            Err(err) if err.is_instance_of::<PyValueError>(py) => {
                let registered = self
                    .selector
                    .borrow(py)
                    .as_ref()
                    .and_then(|selector| selector.fd_of(fileobj));
                registered.ok_or(err)
            }
            Err(err) => Err(err),
        }
    }
}

#[pymethods]
impl Loop {
    #[new]
    fn py_new(py: Python<'_>) -> PyResult<Self> {
        crate::uv::event_loop::reap_orphans(py);
        let uv = UvLoop::new()?;
        let selector = Selector::new().map_err(os_error)?;
        let internal = InternalHandles::new(&uv, &selector)?;
        Ok(Self {
            ready: GilRefCell::new(VecDeque::new()),
            timers: GilRefCell::new(TimerHeap::default()),
            timer_cancelled_count: GilCell::new(0),
            closed: GilCell::new(false),
            stopping: GilCell::new(false),
            thread_id: GilCell::new(None),
            debug: GilCell::new(false),
            slow_callback_duration: GilCell::new(0.1),
            current_handle: GilRefCell::new(None),
            task_factory: GilRefCell::new(None),
            pending_error: GilRefCell::new(None),
            polls: GilCell::new(0),
            io_inline: GilCell::new(InlineIo::Off),
            last_poll: GilCell::new(0.0),
            busy_iterations: GilCell::new(0),
            clock_read_every: GilCell::new(1),
            last_clock_read: GilCell::new(0.0),
            transports: GilRefCell::new(Vec::new()),
            selector: GilRefCell::new(Some(selector)),
            internal: GilRefCell::new(Some(internal)),
            uv,
        })
    }

    /// `time.monotonic()`.
    fn time(&self) -> f64 {
        clock::monotonic()
    }

    #[pyo3(signature = (delay, callback, *args, context=None))]
    fn call_later(
        slf: &Bound<'_, Self>,
        delay: &Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<TimerHandle>> {
        // 3.11.x checks this explicitly; before, the addition below raised the TypeError.
        #[cfg(Py_3_11)]
        if delay.is_none() {
            return Err(PyTypeError::new_err("delay must not be None"));
        }
        let now = clock::monotonic();
        let when =
            if delay.is_exact_instance_of::<PyFloat>() || delay.is_exact_instance_of::<PyInt>() {
                now + delay.extract::<f64>()?
            } else {
                // `self.time() + delay`, with Python's rules (and messages) for what adds to a float.
                PyFloat::new(slf.py(), now).add(delay)?.extract()?
            };
        Self::schedule_timer(slf, when, callback, args, context)
    }

    #[pyo3(signature = (when, callback, *args, context=None))]
    fn call_at(
        slf: &Bound<'_, Self>,
        when: &Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<TimerHandle>> {
        if when.is_none() {
            // A TypeError from 3.11.x (backported from 3.12); before, TimerHandle asserted it.
            #[cfg(Py_3_11)]
            return Err(PyTypeError::new_err("when cannot be None"));
            #[cfg(not(Py_3_11))]
            return Err(pyo3::exceptions::PyAssertionError::new_err(()));
        }
        let when: f64 = when.extract()?;
        Self::schedule_timer(slf, when, callback, args, context)
    }

    fn _timer_handle_cancelled(&self, py: Python<'_>, handle: &Bound<'_, TimerHandle>) {
        self.timer_handle_cancelled(py, handle.get());
    }

    /// `sock.recv(n)` if the socket has data (or an error) now, else a future for it.
    fn _sock_recv_or_wait(
        slf: &Bound<'_, Self>,
        sock: &Bound<'_, PyAny>,
        n: isize,
    ) -> PyResult<Py<PyAny>> {
        SockOp::recv(slf, sock, n)
    }

    /// `sock.recv_into(buf)` if the socket has data (or an error) now, else a future for it.
    fn _sock_recv_into_or_wait(
        slf: &Bound<'_, Self>,
        sock: &Bound<'_, PyAny>,
        buf: &Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        SockOp::recv_into(slf, sock, buf)
    }

    /// Sends `data`: None when the socket took it all now, else a future for the rest.
    fn _sock_sendall_or_wait(
        slf: &Bound<'_, Self>,
        sock: &Bound<'_, PyAny>,
        data: &Bound<'_, PyAny>,
    ) -> PyResult<Option<Py<PyAny>>> {
        SockOp::sendall(slf, sock, data)
    }

    /// A future for `func(*args)` called in libuv's thread pool (blocking library calls).
    #[pyo3(signature = (func, *args))]
    fn _run_in_pool(
        slf: &Bound<'_, Self>,
        func: Py<PyAny>,
        args: Py<PyTuple>,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        slf.get().check_closed(py)?;
        let future = Self::create_future(slf)?;
        crate::uv::work::queue(&slf.get().uv, func, args, future.clone_ref(py))?;
        Ok(future)
    }

    fn create_future(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let names = crate::kwnames!(py, "loop")?;
        Ok(python::vectorcall(python::future_type(py)?, &[slf.as_any()], Some(names))?.unbind())
    }

    #[cfg(not(Py_3_11))]
    #[pyo3(signature = (coro, *, name=None))]
    fn create_task(
        slf: &Bound<'_, Self>,
        coro: &Bound<'_, PyAny>,
        name: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        run::create_task(slf, coro, name, None, None)
    }

    #[cfg(all(Py_3_11, not(Py_3_12)))]
    #[pyo3(signature = (coro, *, name=None, context=None))]
    fn create_task(
        slf: &Bound<'_, Self>,
        coro: &Bound<'_, PyAny>,
        name: Option<&Bound<'_, PyAny>>,
        context: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        run::create_task(slf, coro, name, context, None)
    }

    #[cfg(all(Py_3_12, not(Py_3_14)))]
    #[pyo3(signature = (coro, *, name=None, context=None, eager_start=None))]
    fn create_task(
        slf: &Bound<'_, Self>,
        coro: &Bound<'_, PyAny>,
        name: Option<&Bound<'_, PyAny>>,
        context: Option<&Bound<'_, PyAny>>,
        eager_start: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        run::create_task(slf, coro, name, context, eager_start)
    }

    /// From 3.14 on, asyncio hands every keyword argument on to the task factory or to Task.
    #[cfg(Py_3_14)]
    #[pyo3(signature = (coro, **kwargs))]
    fn create_task(
        slf: &Bound<'_, Self>,
        coro: &Bound<'_, PyAny>,
        kwargs: Option<&Bound<'_, pyo3::types::PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        run::create_task_with_kwargs(slf, coro, kwargs)
    }

    fn set_task_factory(&self, py: Python<'_>, factory: Option<Bound<'_, PyAny>>) -> PyResult<()> {
        if let Some(factory) = &factory {
            if !factory.is_callable() {
                return Err(PyTypeError::new_err(
                    "task factory must be a callable or None",
                ));
            }
        }
        let old = self.task_factory.replace(py, factory.map(Bound::unbind));
        drop(old);
        Ok(())
    }

    fn get_task_factory(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.task_factory
            .borrow(py)
            .as_ref()
            .map(|f| f.clone_ref(py))
    }

    fn get_debug(&self, py: Python<'_>) -> bool {
        self.debug.get(py)
    }

    #[getter(_debug)]
    fn get_debug_attr(&self, py: Python<'_>) -> bool {
        self.debug.get(py)
    }

    #[setter(_debug)]
    fn set_debug_attr(&self, py: Python<'_>, enabled: &Bound<'_, PyAny>) -> PyResult<()> {
        self.debug.set(py, enabled.is_truthy()?);
        Ok(())
    }

    #[getter]
    fn get_slow_callback_duration(&self, py: Python<'_>) -> f64 {
        self.slow_callback_duration.get(py)
    }

    #[setter]
    fn set_slow_callback_duration(&self, py: Python<'_>, seconds: f64) {
        self.slow_callback_duration.set(py, seconds);
    }

    #[getter]
    fn _current_handle(&self, py: Python<'_>) -> Option<Py<Handle>> {
        self.current_handle
            .borrow(py)
            .as_ref()
            .map(|h| h.clone_ref(py))
    }

    fn is_running(&self, py: Python<'_>) -> bool {
        self.thread_id.get(py).is_some()
    }

    fn is_closed(&self, py: Python<'_>) -> bool {
        self.closed.get(py)
    }

    #[getter]
    fn _closed(&self, py: Python<'_>) -> bool {
        self.closed.get(py)
    }

    #[getter]
    fn _stopping(&self, py: Python<'_>) -> bool {
        self.stopping.get(py)
    }

    #[setter(_stopping)]
    fn set_stopping_attr(&self, py: Python<'_>, value: bool) {
        self.stopping.set(py, value);
    }

    #[getter]
    fn _thread_id(&self, py: Python<'_>) -> Option<u64> {
        self.thread_id.get(py)
    }

    #[setter(_thread_id)]
    fn set_thread_id_attr(&self, py: Python<'_>, value: Option<u64>) {
        self.thread_id.set(py, value);
    }

    fn stop(&self, py: Python<'_>) {
        self.stopping.set(py, true);
    }

    fn _check_closed(&self, py: Python<'_>) -> PyResult<()> {
        self.check_closed(py)
    }

    /// Wakes the loop from another thread (asyncio's name for it).
    fn _write_to_self(&self, py: Python<'_>) {
        self.wake(py);
    }

    /// Runs iterations until `stop()`; the body of `run_forever` once it is set up.
    fn _run(slf: &Bound<'_, Self>) -> PyResult<()> {
        run::run_forever(slf)
    }

    /// Called in a forked child for every live loop: the kernel objects the loop waits on are
    /// replaced by its own, so that closing or using the loop here leaves the parent's alone.
    fn _after_fork(&self, py: Python<'_>) -> PyResult<()> {
        if self.closed.get(py) {
            return Ok(());
        }
        self.uv.after_fork()?;
        // The watch on the old epoll set goes before the set's fd is replaced (closed).
        drop(self.internal.take(py));
        let mut selector = self.selector.borrow_mut(py);
        let Some(selector) = selector.as_mut() else {
            return Ok(());
        };
        selector.rebuild_after_fork().map_err(os_error)?;
        let internal = InternalHandles::new(&self.uv, selector)?;
        drop(self.internal.replace(py, Some(internal)));
        Ok(())
    }

    /// How many libuv handles are open beyond the loop's own (tests check that none leak).
    fn _open_libuv_handles(&self, py: Python<'_>) -> usize {
        let own = self
            .internal
            .borrow(py)
            .as_ref()
            .map_or(0, |_| InternalHandles::COUNT);
        self.uv.open_handles().saturating_sub(own)
    }

    /// Whether `close()` closed every libuv handle before closing the libuv loop (tests check it).
    fn _closed_cleanly(&self) -> bool {
        self.uv.closed_cleanly()
    }

    /// The native half of `close()`: drops queued work and releases every libuv resource.
    fn _close(&self, py: Python<'_>) {
        if self.closed.get(py) {
            return;
        }
        self.closed.set(py, true);
        run::release_all(self, py);
    }

    /// A handle for `callback(*args)` that is not scheduled (signal handlers reuse one).
    fn _new_handle(
        slf: &Bound<'_, Self>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
    ) -> PyResult<Py<Handle>> {
        Py::new(slf.py(), Self::new_handle(slf, callback, args, None)?)
    }

    /// Schedules an existing handle and wakes the loop (signal delivery).
    fn _add_callback_signalsafe(&self, py: Python<'_>, handle: Py<Handle>) {
        if !handle.get().is_cancelled(py) {
            self.schedule(py, handle);
        }
        self.wake(py);
    }

    /// asyncio's `_add_reader`: the public add_reader (in Python) first checks that no
    /// transport owns the fd. Returns the handle, which asyncio's sock_* methods keep.
    #[pyo3(signature = (fd, callback, *args))]
    fn _add_reader(
        slf: &Bound<'_, Self>,
        fd: &Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
    ) -> PyResult<Py<Handle>> {
        Self::add_watcher(slf, fd, Side::Reader, callback, args)
    }

    fn _remove_reader(slf: &Bound<'_, Self>, fd: &Bound<'_, PyAny>) -> PyResult<bool> {
        Self::remove_watcher(slf, fd, Side::Reader)
    }

    #[pyo3(signature = (fd, callback, *args))]
    fn _add_writer(
        slf: &Bound<'_, Self>,
        fd: &Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
    ) -> PyResult<Py<Handle>> {
        Self::add_watcher(slf, fd, Side::Writer, callback, args)
    }

    fn _remove_writer(slf: &Bound<'_, Self>, fd: &Bound<'_, PyAny>) -> PyResult<bool> {
        Self::remove_watcher(slf, fd, Side::Writer)
    }

    /// The stream transport that owns `fd`, if any (none while sendfile writes on it).
    fn _transport_of(&self, py: Python<'_>, fd: &Bound<'_, PyAny>) -> Option<Py<PyAny>> {
        // Any int: a number no fd can have is simply not a transport's.
        let fd: usize = fd.extract().ok()?;
        let core = self
            .transports
            .borrow(py)
            .get(fd)?
            .as_ref()
            .map(|c| c.clone_ref(py))?;
        let core = core.bind(py);
        if let Ok(stream) = core.cast::<StreamCore>() {
            if stream.get().sendfile_in_progress(py) {
                return None;
            }
            return stream.get().transport(py);
        }
        core.cast::<UdpCore>().ok()?.get().transport(py)
    }

    /// The selectors.EVENT_* mask watched on `fd` (0 when none), for the selector view that
    /// asyncio's transports consult in their repr.
    fn _watched_events(&self, py: Python<'_>, fd: c_int) -> u32 {
        match self.selector.borrow(py).as_ref() {
            Some(selector) => selector.watched_events(fd),
            None => 0,
        }
    }

    fn __traverse__(&self, visit: pyo3::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        // SAFETY: tp_traverse runs with the GIL held by the collector.
        let py = unsafe { Python::assume_attached() };
        if let Some(ready) = self.ready.try_borrow(py) {
            for entry in ready.iter() {
                match entry {
                    Ready::Call(handle) => handles::visit_owned(py, handle.bind(py), &visit)?,
                    Ready::SockOp(op) => visit.call(op)?,
                    Ready::Stream(core, event) => {
                        visit.call(core)?;
                        StreamCore::visit_event(event, &visit)?;
                    }
                    Ready::Datagram(core, event) => {
                        visit.call(core)?;
                        UdpCore::visit_event(event, &visit)?;
                    }
                }
            }
        }
        if let Some(timers) = self.timers.try_borrow(py) {
            for timer in timers.iter() {
                handles::visit_owned(py, timer.bind(py).as_super(), &visit)?;
            }
        }
        if let Some(selector) = self.selector.try_borrow(py) {
            if let Some(selector) = &*selector {
                for handle in selector.handles() {
                    visit.call(handle)?;
                }
                for fileobj in selector.fileobjs() {
                    visit.call(fileobj)?;
                }
                for op in selector.sock_ops() {
                    visit.call(op)?;
                }
                for core in selector.peer_watches() {
                    visit.call(core)?;
                }
            }
        }
        if let Some(transports) = self.transports.try_borrow(py) {
            for core in transports.iter().flatten() {
                visit.call(core)?;
            }
        }
        for cell in [&self.task_factory] {
            if let Some(obj) = cell.try_borrow(py) {
                if let Some(obj) = &*obj {
                    visit.call(obj)?;
                }
            }
        }
        if let Some(current) = self.current_handle.try_borrow(py) {
            if let Some(current) = &*current {
                visit.call(current)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        // SAFETY: tp_clear runs with the GIL held by the collector.
        let py = unsafe { Python::assume_attached() };
        run::drop_queued(self, py);
        drop(self.task_factory.take(py));
        drop(self.current_handle.take(py));
    }
}
