//! Running the loop: asyncio's `_run_once` on top of libuv, and what surrounds it.
//!
//! One iteration: drop cancelled timers at the head of the heap, let libuv poll for I/O
//! (blocking only when nothing is ready), move expired timers to the ready queue, then run exactly
//! the callbacks that were ready when the batch started.

use std::any::Any;

use pyo3::panic::PanicException;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::{selector, InlineIo, Loop, Ready};
use crate::clock;
use crate::handles::{self, Handle, Outcome};
use crate::python;
use crate::transports::{SockOp, StreamCore, StreamEvent, UdpCore};
use crate::uv::event_loop::{RUN_NOWAIT, RUN_ONCE};

/// While callbacks keep the ready queue busy, libuv is asked for I/O at most this often; each
/// poll is a system call, and asyncio's order of I/O against ready callbacks is unaffected (I/O
/// found by a poll still joins the end of the queue).
const POLL_INTERVAL: f64 = 50e-6;
/// At most this many busy iterations without timers pass between two readings of the clock (a
/// measurable part of a short iteration); fewer when iterations are slow, so that the poll
/// interval is kept.
const CLOCK_READ_EVERY: u32 = 8;

/// asyncio's `_MIN_SCHEDULED_TIMER_HANDLES` and `_MIN_CANCELLED_TIMER_HANDLES_FRACTION`.
const MIN_SCHEDULED_TIMER_HANDLES: usize = 100;
const MIN_CANCELLED_TIMER_HANDLES_FRACTION: f64 = 0.5;

/// `time.get_clock_info('monotonic').resolution` on Linux.
const CLOCK_RESOLUTION: f64 = 1e-9;

/// asyncio's `MAXIMUM_SELECT_TIMEOUT`, in milliseconds.
const MAXIMUM_WAIT_MS: u64 = 24 * 3600 * 1000;

pub fn run_forever(slf: &Bound<'_, Loop>) -> PyResult<()> {
    let py = slf.py();
    let this = slf.get();
    let result = loop {
        if let Err(err) = run_once(slf) {
            break Err(err);
        }
        if this.stopping.get(py) {
            break Ok(());
        }
    };
    this.stopping.set(py, false);
    result
}

fn run_once(slf: &Bound<'_, Loop>) -> PyResult<()> {
    let py = slf.py();
    let this = slf.get();
    purge_cancelled_timers(this, py);
    let has_timers = this.timers.borrow(py).len() > 0;
    let mut now = None;
    if this.ready.borrow(py).is_empty() && !this.stopping.get(py) {
        poll(slf, true)?;
        let after = clock::monotonic();
        this.last_poll.set(py, after);
        this.last_clock_read.set(py, after);
        this.busy_iterations.set(py, 0);
        now = Some(after);
    } else {
        let busy = this.busy_iterations.get(py) + 1;
        if has_timers || busy >= this.clock_read_every.get(py) {
            let read = clock::monotonic();
            adapt_clock_reads(this, py, read, busy);
            if read - this.last_poll.get(py) >= POLL_INTERVAL {
                poll(slf, false)?;
                this.last_poll.set(py, read);
            } else {
                now = Some(read);
            }
        } else {
            this.busy_iterations.set(py, busy);
        }
    }
    if has_timers {
        expire_timers(this, py, now.unwrap_or_else(clock::monotonic));
    }
    run_ready(slf)
}

/// Sets how many busy iterations may pass before the clock is read again: as many as fit in half
/// the poll interval at the pace of the last ones, at least one and at most CLOCK_READ_EVERY.
fn adapt_clock_reads(this: &Loop, py: Python<'_>, now: f64, iterations: u32) {
    let per_iteration = (now - this.last_clock_read.get(py)) / f64::from(iterations);
    let fit = (POLL_INTERVAL / 2.0 / per_iteration).floor();
    let every = if fit >= f64::from(CLOCK_READ_EVERY) {
        CLOCK_READ_EVERY
    } else if fit >= 1.0 {
        fit as u32
    } else {
        1
    };
    this.clock_read_every.set(py, every);
    this.last_clock_read.set(py, now);
    this.busy_iterations.set(py, 0);
}

/// Runs libuv once: with `block`, and nothing ready, until I/O, a wake-up from another thread, a
/// signal, or the earliest timer's deadline (the GIL released while libuv waits); otherwise just a
/// look. Then queues what the fd watchers' epoll set has ready.
fn poll(slf: &Bound<'_, Loop>, block: bool) -> PyResult<()> {
    let py = slf.py();
    let this = slf.get();
    if this.uv.is_closed() {
        return Ok(());
    }
    let block = block && this.ready.borrow(py).is_empty() && arm_timer(this, py)?;
    let mode = if block { RUN_ONCE } else { RUN_NOWAIT };
    if block {
        this.io_inline.set(py, InlineIo::Undecided);
    }
    this.polls.set(py, this.polls.get(py).wrapping_add(1));
    let ran = this.uv.run(py, mode);
    this.io_inline.set(py, InlineIo::Off);
    if let Err(payload) = ran {
        return Err(panic_to_pyerr(payload));
    }
    let watchers_ready = this
        .internal
        .borrow(py)
        .as_ref()
        .is_some_and(|internal| internal.fd_watchers.take_readable());
    if watchers_ready {
        let found = match this.selector.borrow_mut(py).as_mut() {
            Some(selector) => selector.poll_now(py),
            None => return Ok(()),
        };
        queue_io(this, py, found);
    }
    if let Some(err) = this.pending_error.take(py) {
        return Err(err);
    }
    if block {
        // A signal that arrived during the wait: its Python-level handler runs now (the default
        // SIGINT handler raises KeyboardInterrupt here, as it does out of asyncio's select()).
        py.check_signals()?;
    }
    Ok(())
}

/// Arms the libuv timer for the earliest deadline of the heap (rounded up: waking a little late
/// is harmless, waking early costs a spin), or stops it when there is none. False when a timer
/// is due already, so the poll must not block.
fn arm_timer(this: &Loop, py: Python<'_>) -> PyResult<bool> {
    let internal = this.internal.borrow(py);
    let Some(internal) = internal.as_ref() else {
        return Ok(false);
    };
    let earliest = this.timers.borrow(py).peek().map(|(when, _)| when);
    let Some(when) = earliest else {
        internal.timer.stop();
        return Ok(true);
    };
    let millis = ((when - clock::monotonic()) * 1000.0).ceil();
    // Written so that a NaN deadline counts as due, as asyncio's comparisons treat it.
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    if !(millis > 0.0) {
        return Ok(false);
    }
    internal.timer.start((millis as u64).min(MAXIMUM_WAIT_MS))?;
    Ok(true)
}

pub fn panic_to_pyerr(payload: Box<dyn Any + Send>) -> PyErr {
    let message = if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "panic in a libuv callback".to_owned()
    };
    PanicException::new_err(message)
}

/// asyncio's clean-up of cancelled timers: a full rebuild when they are more than half of many,
/// otherwise just the ones at the head.
fn purge_cancelled_timers(this: &Loop, py: Python<'_>) {
    let cancelled = this.timer_cancelled_count.get(py);
    if cancelled == 0 {
        return;
    }
    let mut removed = Vec::new();
    {
        let mut timers = this.timers.borrow_mut(py);
        let count = timers.len();
        if count > MIN_SCHEDULED_TIMER_HANDLES
            && cancelled as f64 / count as f64 > MIN_CANCELLED_TIMER_HANDLES_FRACTION
        {
            timers.retain_and_heapify(
                |timer| !timer.bind(py).as_super().get().is_cancelled(py),
                |timer| removed.push(timer),
            );
            this.timer_cancelled_count.set(py, 0);
        } else {
            while let Some((_, head)) = timers.peek() {
                if !head.bind(py).as_super().get().is_cancelled(py) {
                    break;
                }
                let count = this.timer_cancelled_count.get(py);
                this.timer_cancelled_count.set(py, count.saturating_sub(1));
                if let Some((_, timer)) = timers.pop() {
                    removed.push(timer);
                }
            }
        }
    }
    // Released here, outside the borrow: a finalizer may call back into the loop.
    for timer in removed {
        timer.get().set_scheduled(py, false);
        handles::release(timer);
    }
}

/// Moves every timer whose deadline has come to the ready queue (cancelled ones too; they are
/// skipped when their turn comes, as in asyncio).
fn expire_timers(this: &Loop, py: Python<'_>, now: f64) {
    let end_time = now + CLOCK_RESOLUTION;
    loop {
        let expired = {
            let mut timers = this.timers.borrow_mut(py);
            match timers.peek() {
                // Written as asyncio writes it, so a NaN deadline counts as due.
                #[allow(clippy::neg_cmp_op_on_partial_ord)]
                Some((when, _)) if !(when >= end_time) => timers.pop(),
                _ => None,
            }
        };
        let Some((_, timer)) = expired else {
            break;
        };
        timer.get().set_scheduled(py, false);
        let handle = timer.into_bound(py).into_super().unbind();
        this.schedule(py, handle);
    }
}

/// Runs the callbacks that are ready now; those they schedule wait for the next iteration.
fn run_ready(slf: &Bound<'_, Loop>) -> PyResult<()> {
    let py = slf.py();
    let this = slf.get();
    let batch = this.ready.borrow(py).len();
    for _ in 0..batch {
        let Some(entry) = this.ready.borrow_mut(py).pop_front() else {
            break;
        };
        let outcome = match entry {
            Ready::Call(handle) => run_handle(this, handle.into_bound(py)),
            Ready::SockOp(op) => SockOp::on_ready(op.bind(py)),
            Ready::Stream(core, event) => StreamCore::run_event(core.bind(py), event),
            Ready::Datagram(core, event) => UdpCore::run_event(core.bind(py), event),
        };
        if let Outcome::Escape(err) = outcome {
            return Err(err);
        }
    }
    Ok(())
}

fn run_handle(this: &Loop, handle: Bound<'_, Handle>) -> Outcome {
    if handle.get().is_cancelled(handle.py()) {
        handles::release(handle.unbind());
        return Outcome::Done;
    }
    let outcome = if this.debug.get(handle.py()) {
        run_timed(this, &handle)
    } else {
        Handle::run(&handle)
    };
    handles::release(handle.unbind());
    outcome
}

/// Debug mode: remember the running handle and warn about slow callbacks.
fn run_timed(this: &Loop, handle: &Bound<'_, Handle>) -> Outcome {
    let py = handle.py();
    let previous = this
        .current_handle
        .replace(py, Some(handle.clone().unbind()));
    drop(previous);
    let started = clock::monotonic();
    let mut outcome = Handle::run(handle);
    let elapsed = clock::monotonic() - started;
    if matches!(outcome, Outcome::Done) && elapsed >= this.slow_callback_duration.get(py) {
        if let Err(err) = python::warn_slow_callback(py, handle.as_any(), elapsed) {
            outcome = Outcome::Escape(err);
        }
    }
    drop(this.current_handle.take(py));
    outcome
}

/// Queues what a poll found, where asyncio's `_process_events` would, and forgets the sides
/// whose handle was cancelled.
fn queue_io(this: &Loop, py: Python<'_>, found: selector::Collected) {
    {
        let mut ready = this.ready.borrow_mut(py);
        ready.extend(found.handles.into_iter().map(Ready::Call));
        ready.extend(found.sock_ops.into_iter().map(Ready::SockOp));
        ready.extend(
            found
                .peers_closed
                .into_iter()
                .map(|core| Ready::Stream(core, StreamEvent::PeerClosed)),
        );
    }
    for (fd, side) in found.cancelled {
        let removed = match this.selector.borrow_mut(py).as_mut() {
            Some(selector) => selector.remove(fd, side),
            None => (None, None),
        };
        drop(removed);
    }
}

/// `loop.create_task()` before 3.14: asyncio's Task or the task factory's result.
#[cfg(not(Py_3_14))]
pub fn create_task(
    slf: &Bound<'_, Loop>,
    coro: &Bound<'_, PyAny>,
    name: Option<&Bound<'_, PyAny>>,
    context: Option<&Bound<'_, PyAny>>,
    eager_start: Option<&Bound<'_, PyAny>>,
) -> PyResult<Py<PyAny>> {
    let py = slf.py();
    let this = slf.get();
    this.check_closed(py)?;
    let name = name.filter(|name| !name.is_none());
    let factory = this
        .task_factory
        .borrow(py)
        .as_ref()
        .map(|f| f.clone_ref(py));
    let Some(factory) = factory else {
        let task_type = python::task_type(py)?;
        // The common shapes by vectorcall, the rest with a kwargs dict.
        let task = match (name, context, eager_start) {
            (None, None, None) => {
                let names = crate::kwnames!(py, "loop")?;
                python::vectorcall(task_type, &[coro, slf.as_any()], Some(names))?
            }
            (None, Some(context), None) => {
                let names = crate::kwnames!(py, "loop", "context")?;
                python::vectorcall(task_type, &[coro, slf.as_any(), context], Some(names))?
            }
            _ => {
                let kwargs = task_kwargs(py, context, eager_start)?;
                kwargs.set_item(pyo3::intern!(py, "loop"), slf)?;
                if let Some(name) = name {
                    kwargs.set_item(pyo3::intern!(py, "name"), name)?;
                }
                task_type.call((coro,), Some(&kwargs))?
            }
        };
        return Ok(task.unbind());
    };
    let kwargs = task_kwargs(py, context, eager_start)?;
    let kwargs = if kwargs.is_empty() {
        None
    } else {
        Some(&kwargs)
    };
    let task = factory.bind(py).call((slf, coro), kwargs)?;
    if let Some(name) = name {
        // asyncio's `_set_task_name`: tasks without set_name keep their own naming.
        match task.getattr(pyo3::intern!(py, "set_name")) {
            Ok(set_name) => {
                set_name.call1((name,))?;
            }
            Err(err) if err.is_instance_of::<pyo3::exceptions::PyAttributeError>(py) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(task.unbind())
}

/// 3.14's `loop.create_task(coro, **kwargs)`: `factory(loop, coro, **kwargs)`, else
/// `Task(coro, loop=loop, **kwargs)`.
#[cfg(Py_3_14)]
pub fn create_task_with_kwargs(
    slf: &Bound<'_, Loop>,
    coro: &Bound<'_, PyAny>,
    kwargs: Option<&Bound<'_, PyDict>>,
) -> PyResult<Py<PyAny>> {
    let py = slf.py();
    let this = slf.get();
    this.check_closed(py)?;
    let kwargs = kwargs.filter(|kwargs| !kwargs.is_empty());
    let factory = this
        .task_factory
        .borrow(py)
        .as_ref()
        .map(|f| f.clone_ref(py));
    if let Some(factory) = factory {
        return Ok(factory.bind(py).call((slf, coro), kwargs)?.unbind());
    }
    let task_type = python::task_type(py)?;
    let Some(kwargs) = kwargs else {
        let names = crate::kwnames!(py, "loop")?;
        return Ok(python::vectorcall(task_type, &[coro, slf.as_any()], Some(names))?.unbind());
    };
    let loop_key = pyo3::intern!(py, "loop");
    if kwargs.contains(loop_key)? {
        return Err(pyo3::exceptions::PyTypeError::new_err(
            "Task() got multiple values for keyword argument 'loop'",
        ));
    }
    let kwargs = kwargs.copy()?;
    kwargs.set_item(loop_key, slf)?;
    Ok(task_type.call((coro,), Some(&kwargs))?.unbind())
}

/// The keyword arguments a task factory and Task share.
#[cfg(not(Py_3_14))]
fn task_kwargs<'py>(
    py: Python<'py>,
    context: Option<&Bound<'py, PyAny>>,
    eager_start: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let kwargs = PyDict::new(py);
    if let Some(context) = context {
        kwargs.set_item(pyo3::intern!(py, "context"), context)?;
    }
    if let Some(eager_start) = eager_start {
        kwargs.set_item(pyo3::intern!(py, "eager_start"), eager_start)?;
    }
    Ok(kwargs)
}

/// Drops the ready queue and the timers (outside the borrows: finalizers may re-enter).
pub fn drop_queued(this: &Loop, py: Python<'_>) {
    let ready = this.ready.take(py);
    for entry in ready {
        match entry {
            Ready::Call(handle) => handles::release(handle),
            Ready::SockOp(op) => drop(op),
            Ready::Stream(core, event) => drop((core, event)),
            Ready::Datagram(core, event) => drop((core, event)),
        }
    }
    let timers: Vec<_> = this
        .timers
        .borrow_mut(py)
        .drain()
        .map(|(_, timer)| timer)
        .collect();
    this.timer_cancelled_count.set(py, 0);
    for timer in timers {
        timer.get().set_scheduled(py, false);
        handles::release(timer);
    }
}

/// `close()`: drops queued work and the fd watchers, closes every libuv handle (those of open
/// transports and servers through their owners) and the loop.
pub fn release_all(this: &Loop, py: Python<'_>) {
    drop_queued(this, py);
    this.uv.close_owned_handles(py);
    drop(this.transports.take(py));
    if let Some(mut selector) = this.selector.take(py) {
        let drained = selector.drain();
        drop(drained);
        drop(selector);
    }
    drop(this.internal.take(py));
    this.uv.close(py);
}
