//! `Handle` and `TimerHandle`: callbacks scheduled on the loop, as asyncio's `events.Handle` and
//! `events.TimerHandle` describe them.

use std::os::raw::c_int;

use pyo3::exceptions::{PyKeyboardInterrupt, PySystemExit};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::pyclass::CompareOp;
use pyo3::types::{PyBool, PyFloat, PyTuple};

use crate::gil::{GilCell, GilRefCell};
use crate::loop_::Loop;
use crate::python;

/// The callable and its positional arguments; dropped when the handle is cancelled, so a
/// cancelled handle keeps nothing alive (as asyncio's does).
struct Call {
    callback: Py<PyAny>,
    args: Py<PyTuple>,
}

#[pyclass(frozen, subclass, weakref, module = "uvloop.loop", name = "Handle")]
pub struct Handle {
    call: GilRefCell<Option<Call>>,
    context: Py<PyAny>,
    /// The context is a copy this handle made and nobody else has seen: kept out of the cyclic
    /// GC like the handle itself (see `untrack_context`).
    context_untracked: GilCell<bool>,
    event_loop: Py<Loop>,
    cancelled: GilCell<bool>,
    /// `format_helpers.extract_stack()` at creation, in debug mode only.
    source_traceback: Option<Py<PyAny>>,
    /// The repr kept at cancellation in debug mode, when the callback is gone.
    repr: GilRefCell<Option<Py<PyAny>>>,
    cross_thread: GilCell<CrossThread>,
}

/// Whether a handle from `call_soon_threadsafe` is running, and on which thread: a `cancel()`
/// from another thread waits for the run to end, so that once it returns the callback is neither
/// running nor going to run (asyncio's `_ThreadSafeHandle` guarantee from 3.14 on).
#[derive(Clone, Copy, PartialEq)]
enum CrossThread {
    /// An ordinary handle: cancelled from the loop's thread only.
    No,
    Idle,
    /// Running on the thread with this `pthread_self()` (cheaper to read than
    /// `std::thread::current()`, which the loop would pay on every such handle it runs).
    RunningOn(usize),
}

/// The calling thread's identity while it lives.
fn current_thread() -> usize {
    // SAFETY: no preconditions; returns the calling thread's handle.
    unsafe { libc::pthread_self() as usize }
}

/// What running a handle did, for the loop.
pub enum Outcome {
    Done,
    /// KeyboardInterrupt or SystemExit: asyncio lets these out of `run_forever`.
    Escape(PyErr),
}

impl Handle {
    pub fn new(
        py: Python<'_>,
        callback: Py<PyAny>,
        args: Py<PyTuple>,
        context: Option<Py<PyAny>>,
        event_loop: Py<Loop>,
        debug: bool,
    ) -> PyResult<Self> {
        let (context, context_untracked) = match context {
            Some(context) => (context, false),
            None => (untrack_context(copy_current_context(py)?), true),
        };
        let source_traceback = if debug {
            Some(python::extract_stack(py)?)
        } else {
            None
        };
        Ok(Self {
            call: GilRefCell::new(Some(Call { callback, args })),
            context,
            context_untracked: GilCell::new(context_untracked),
            event_loop,
            cancelled: GilCell::new(false),
            source_traceback,
            repr: GilRefCell::new(None),
            cross_thread: GilCell::new(CrossThread::No),
        })
    }

    /// The context, for someone else to hold: back under the GC first.
    fn shared_context(&self, py: Python<'_>) -> Py<PyAny> {
        if self.context_untracked.get(py) {
            self.context_untracked.set(py, false);
            track_context(&self.context);
        }
        self.context.clone_ref(py)
    }

    /// Made by `call_soon_threadsafe`: may be cancelled from another thread while it runs.
    pub fn mark_thread_safe(&self, py: Python<'_>) {
        self.cross_thread.set(py, CrossThread::Idle);
    }

    pub fn is_cancelled(&self, py: Python<'_>) -> bool {
        self.cancelled.get(py)
    }

    pub fn event_loop(&self) -> &Py<Loop> {
        &self.event_loop
    }

    /// Marks the handle cancelled and drops the callback (after keeping its repr in debug mode).
    pub fn cancel_handle(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        this.wait_for_other_thread_run(py);
        if this.cancelled.get(py) {
            return Ok(());
        }
        this.cancelled.set(py, true);
        if this.event_loop.get().debug(py) {
            let repr = python::handle_repr(py, slf.as_any())?;
            this.repr.replace(py, Some(repr));
        }
        let call = this.call.take(py);
        drop(call);
        Ok(())
    }

    /// A thread-safe handle running on another thread: wait, GIL released, until that run ends.
    fn wait_for_other_thread_run(&self, py: Python<'_>) {
        while let CrossThread::RunningOn(thread) = self.cross_thread.get(py) {
            if thread == current_thread() {
                return;
            }
            py.detach(|| std::thread::sleep(std::time::Duration::from_micros(50)));
        }
    }

    /// Calls the callback inside its context. Exceptions other than KeyboardInterrupt and
    /// SystemExit go to the loop's exception handler, as asyncio's `Handle._run` does.
    pub fn run(slf: &Bound<'_, Self>) -> Outcome {
        let this = slf.get();
        let py = slf.py();
        if this.cross_thread.get(py) == CrossThread::No {
            return Self::run_call(slf);
        }
        this.cross_thread
            .set(py, CrossThread::RunningOn(current_thread()));
        let outcome = Self::run_call(slf);
        this.cross_thread.set(py, CrossThread::Idle);
        outcome
    }

    fn run_call(slf: &Bound<'_, Self>) -> Outcome {
        let py = slf.py();
        let this = slf.get();
        let (callback, args) = match &*this.call.borrow(py) {
            Some(call) => (call.callback.clone_ref(py), call.args.clone_ref(py)),
            None => return Outcome::Done,
        };
        match call_in_context(py, this.context.as_ptr(), &callback, &args) {
            Ok(()) => Outcome::Done,
            Err(err) => {
                if err.is_instance_of::<PyKeyboardInterrupt>(py)
                    || err.is_instance_of::<PySystemExit>(py)
                {
                    return Outcome::Escape(err);
                }
                match python::report_callback_error(py, slf.as_any(), &callback, &args, err) {
                    Ok(()) => Outcome::Done,
                    Err(err) => Outcome::Escape(err),
                }
            }
        }
    }

    /// What the handle references, for the GC: from its own `__traverse__`, or from the loop's
    /// for the loop-owned handles that are not tracked (see `untrack`).
    pub fn traverse_contents(
        &self,
        py: Python<'_>,
        visit: &pyo3::PyVisit<'_>,
    ) -> Result<(), pyo3::PyTraverseError> {
        if let Some(call) = self.call.try_borrow(py) {
            if let Some(call) = &*call {
                visit.call(&call.callback)?;
                visit.call(&call.args)?;
            }
        }
        visit.call(&self.context)?;
        visit.call(&self.event_loop)?;
        if let Some(tb) = &self.source_traceback {
            visit.call(tb)?;
        }
        Ok(())
    }
}

/// Takes a handle the loop just created, and owns alone, out of the cyclic GC.
///
/// One-shot handles (call_soon, call_later) are created by the million and, in a busy loop,
/// live just long enough to be promoted and traversed by every collection. While the loop owns
/// them, the loop's `__traverse__` reports their contents instead (`visit_owned`), so cycles
/// through them stay collectable; `release` puts back under the GC those that outlive the loop's
/// ownership.
pub fn untrack<T>(handle: &Py<T>) {
    // SAFETY: a live object of a pyclass (always a GC type), tracked by its tp_alloc; the
    // untracked state is valid for it: PyO3's tp_dealloc and tp_free untrack only if tracked.
    unsafe { ffi::PyObject_GC_UnTrack(handle.as_ptr().cast()) };
}

/// The loop is done with a handle: if someone else still holds it, the GC tracks it again.
pub fn release<T>(handle: Py<T>) {
    let ptr = handle.as_ptr();
    // SAFETY: `ptr` is a live object (we hold a reference). Tracking is only re-enabled for an
    // untracked object, as PyObject_GC_Track requires.
    unsafe {
        if ffi::Py_REFCNT(ptr) > 1 && ffi::PyObject_GC_IsTracked(ptr) == 0 {
            ffi::PyObject_GC_Track(ptr.cast());
        }
    }
    drop(handle);
}

/// The loop's GC traversal of a handle it holds: the handle itself when tracked, its contents
/// when the loop owns it untracked.
pub fn visit_owned(
    py: Python<'_>,
    handle: &Bound<'_, Handle>,
    visit: &pyo3::PyVisit<'_>,
) -> Result<(), pyo3::PyTraverseError> {
    // SAFETY: `handle` is a live object.
    if unsafe { ffi::PyObject_GC_IsTracked(handle.as_ptr()) } != 0 {
        visit.call(handle.as_unbound())
    } else {
        handle.get().traverse_contents(py, visit)
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // CPython's Context dealloc unlinks the object from the GC unconditionally, so a context
        // must be tracked again before its last reference can go; the handle's may be the last.
        // SAFETY: handles are dropped with the GIL held (tp_dealloc, or a failed construction
        // inside a Loop method).
        let py = unsafe { Python::assume_attached() };
        if self.context_untracked.get(py) {
            track_context(&self.context);
        }
    }
}

/// Takes a context copy that only its handle references out of the cyclic GC: contexts of
/// pending callbacks otherwise pile up in the older generations and are traversed by every
/// collection. Every path that shares or drops the context tracks it again (`track_context`),
/// and a context cannot reach Python code by another path: `PyContext_Enter` makes it current
/// without handing it out, and what keeps a reference meanwhile (a ContextVar token) is only a
/// reason more to track it before the handle lets go.
fn untrack_context(context: Py<PyAny>) -> Py<PyAny> {
    // SAFETY: a live, tracked context object fresh from PyContext_CopyCurrent.
    unsafe { ffi::PyObject_GC_UnTrack(context.as_ptr().cast()) };
    context
}

fn track_context(context: &Py<PyAny>) {
    // SAFETY: a live context object; tracked only when untracked, as PyObject_GC_Track requires.
    unsafe {
        if ffi::PyObject_GC_IsTracked(context.as_ptr()) == 0 {
            ffi::PyObject_GC_Track(context.as_ptr().cast());
        }
    }
}

/// `contextvars.copy_context()`.
pub fn copy_current_context(py: Python<'_>) -> PyResult<Py<PyAny>> {
    // SAFETY: GIL held; PyContext_CopyCurrent returns a new reference or NULL with an exception.
    unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyContext_CopyCurrent()) }.map(Bound::unbind)
}

/// `context.run(callback, *args)` without building the extra argument tuple.
fn call_in_context(
    py: Python<'_>,
    context: *mut ffi::PyObject,
    callback: &Py<PyAny>,
    args: &Py<PyTuple>,
) -> PyResult<()> {
    // SAFETY: GIL held; `context` is a live contextvars.Context (callers pass what
    // copy_current_context or the user gave; the latter is checked by PyContext_Enter, which fails
    // with TypeError for other objects). Enter and Exit are paired on every path.
    unsafe {
        if ffi::PyContext_Enter(context) < 0 {
            return Err(PyErr::fetch(py));
        }
        let args_ptr = args.as_ptr();
        let result = match ffi::PyTuple_GET_SIZE(args_ptr) {
            0 => ffi::PyObject_CallNoArgs(callback.as_ptr()),
            1 => ffi::PyObject_CallOneArg(callback.as_ptr(), ffi::PyTuple_GET_ITEM(args_ptr, 0)),
            _ => ffi::PyObject_Call(callback.as_ptr(), args_ptr, std::ptr::null_mut()),
        };
        let result = Bound::from_owned_ptr_or_err(py, result);
        let exited: c_int = ffi::PyContext_Exit(context);
        let result = result.map(drop);
        if exited < 0 {
            // Only possible if the callback left the context switched, which Python code cannot do.
            let exit_err = PyErr::fetch(py);
            return result.and(Err(exit_err));
        }
        result
    }
}

#[pymethods]
impl Handle {
    fn cancel(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::cancel_handle(slf)
    }

    fn cancelled(&self, py: Python<'_>) -> bool {
        self.cancelled.get(py)
    }

    fn get_context(&self, py: Python<'_>) -> Py<PyAny> {
        self.shared_context(py)
    }

    fn _run(slf: &Bound<'_, Self>) -> PyResult<()> {
        match Self::run(slf) {
            Outcome::Done => Ok(()),
            Outcome::Escape(err) => Err(err),
        }
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        if let Some(repr) = &*slf.get().repr.borrow(py) {
            return Ok(repr.clone_ref(py));
        }
        python::handle_repr(py, slf.as_any())
    }

    #[getter]
    fn _callback(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.call
            .borrow(py)
            .as_ref()
            .map(|c| c.callback.clone_ref(py))
    }

    #[getter]
    fn _args(&self, py: Python<'_>) -> Option<Py<PyTuple>> {
        self.call.borrow(py).as_ref().map(|c| c.args.clone_ref(py))
    }

    #[getter]
    fn _cancelled(&self, py: Python<'_>) -> bool {
        self.cancelled.get(py)
    }

    #[getter]
    fn _loop(&self, py: Python<'_>) -> Py<Loop> {
        self.event_loop.clone_ref(py)
    }

    #[getter]
    fn _context(&self, py: Python<'_>) -> Py<PyAny> {
        self.shared_context(py)
    }

    #[getter]
    fn _source_traceback(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.source_traceback.as_ref().map(|tb| tb.clone_ref(py))
    }

    fn __traverse__(&self, visit: pyo3::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        // SAFETY: tp_traverse runs with the GIL held by the collector.
        let py = unsafe { Python::assume_attached() };
        self.traverse_contents(py, &visit)
    }

    fn __clear__(&self) {
        // SAFETY: tp_clear runs with the GIL held by the collector.
        let py = unsafe { Python::assume_attached() };
        let call = self.call.take(py);
        drop(call);
    }
}

#[pyclass(frozen, extends = Handle, module = "uvloop.loop", name = "TimerHandle")]
pub struct TimerHandle {
    when: f64,
    /// True while the timer sits in the loop's heap.
    scheduled: GilCell<bool>,
}

impl TimerHandle {
    pub fn new(when: f64) -> Self {
        Self {
            when,
            scheduled: GilCell::new(true),
        }
    }

    pub fn when_value(&self) -> f64 {
        self.when
    }

    pub fn set_scheduled(&self, py: Python<'_>, scheduled: bool) {
        self.scheduled.set(py, scheduled)
    }

    pub fn is_scheduled(&self, py: Python<'_>) -> bool {
        self.scheduled.get(py)
    }
}

#[pymethods]
impl TimerHandle {
    fn cancel(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let handle = slf.as_super();
        if !handle.get().cancelled.get(py) {
            handle
                .get()
                .event_loop
                .get()
                .timer_handle_cancelled(py, slf.get());
        }
        Handle::cancel_handle(handle)
    }

    fn when(&self) -> f64 {
        self.when
    }

    #[getter]
    fn _when(&self) -> f64 {
        self.when
    }

    #[getter]
    fn _scheduled(&self, py: Python<'_>) -> bool {
        self.scheduled.get(py)
    }

    /// `hash(when)`, as asyncio's TimerHandle hashes its deadline.
    fn __hash__(&self, py: Python<'_>) -> PyResult<isize> {
        PyFloat::new(py, self.when).hash()
    }

    fn __richcmp__(
        slf: &Bound<'_, Self>,
        other: &Bound<'_, PyAny>,
        op: CompareOp,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let Ok(other) = other.cast::<TimerHandle>() else {
            return Ok(py.NotImplemented());
        };
        let (a, b) = (slf.get().when, other.get().when);
        let result = match op {
            CompareOp::Lt => a < b,
            CompareOp::Gt => a > b,
            CompareOp::Le => a < b || timer_eq(slf, other)?,
            CompareOp::Ge => a > b || timer_eq(slf, other)?,
            CompareOp::Eq => timer_eq(slf, other)?,
            CompareOp::Ne => !timer_eq(slf, other)?,
        };
        Ok(PyBool::new(py, result).to_owned().into_any().unbind())
    }
}

/// asyncio's `TimerHandle.__eq__`: same deadline, callback, arguments and cancelled state.
fn timer_eq(a: &Bound<'_, TimerHandle>, b: &Bound<'_, TimerHandle>) -> PyResult<bool> {
    let py = a.py();
    if a.get().when != b.get().when {
        return Ok(false);
    }
    let (ha, hb) = (a.as_super().get(), b.as_super().get());
    if ha.cancelled.get(py) != hb.cancelled.get(py) {
        return Ok(false);
    }
    let pair = |h: &Handle| {
        h.call
            .borrow(py)
            .as_ref()
            .map(|c| (c.callback.clone_ref(py), c.args.clone_ref(py)))
    };
    match (pair(ha), pair(hb)) {
        (None, None) => Ok(true),
        (Some((ca, aa)), Some((cb, ab))) => {
            Ok(ca.bind(py).eq(cb.bind(py))? && aa.bind(py).eq(ab.bind(py))?)
        }
        _ => Ok(false),
    }
}
