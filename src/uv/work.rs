//! Python calls run in libuv's thread pool, their result delivered to an asyncio future.
//!
//! Used for blocking library calls (name resolution) that must not stall the loop. The request
//! owns its callable, arguments and future until the after-work callback, which runs on the
//! loop's thread and is the only place that frees it.

use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::error::UvError;
use super::event_loop::{guard_callback, track_work, untrack_work, UvLoop};
use super::sys;

#[repr(C)]
struct Work {
    /// First, so the request pointer libuv hands back is a pointer to the whole struct.
    raw: sys::uv_work_t,
    call: Option<(Py<PyAny>, Py<PyTuple>)>,
    result: Option<PyResult<Py<PyAny>>>,
    future: Py<PyAny>,
}

/// Calls `func(*args)` on a pool thread and then settles `future` on the loop's thread (unless
/// it was cancelled meanwhile).
pub fn queue(
    uv_loop: &UvLoop,
    func: Py<PyAny>,
    args: Py<PyTuple>,
    future: Py<PyAny>,
) -> Result<(), UvError> {
    let work = Box::new(Work {
        // SAFETY: uv_work_t is plain C data; uv_queue_work initialises what it uses.
        raw: unsafe { std::mem::zeroed() },
        call: Some((func, args)),
        result: None,
        future,
    });
    let ptr = Box::into_raw(work);
    // SAFETY: `ptr` is a live, exclusively owned allocation whose first field is the request;
    // the loop is open (the caller checked) and this thread runs it.
    let status = unsafe {
        sys::uv_queue_work(
            uv_loop.as_ptr(),
            &raw mut (*ptr).raw,
            Some(run_in_pool),
            Some(after_run),
        )
    };
    if status < 0 {
        // SAFETY: libuv refused the request, so it holds no pointer to it.
        drop(unsafe { Box::from_raw(ptr) });
        return Err(UvError(status));
    }
    // SAFETY: `ptr` is live until its after-work callback, which untracks it first.
    track_work(uv_loop, unsafe { &raw mut (*ptr).raw });
    Ok(())
}

unsafe extern "C" fn run_in_pool(req: *mut sys::uv_work_t) {
    // SAFETY: `req` is the first field of a Work leaked by `queue`; until after_run, only this
    // pool thread touches it.
    let work = unsafe { &mut *req.cast::<Work>() };
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        Python::attach(|py| {
            if let Some((func, args)) = work.call.take() {
                let result = func.bind(py).call1(args.bind(py)).map(Bound::unbind);
                work.result = Some(result);
                drop((func, args));
            }
        })
    }));
    if outcome.is_err() {
        // The panic message was printed by the hook; the future gets an exception instead.
        work.result = Some(Err(pyo3::panic::PanicException::new_err(
            "panic in a thread-pool call",
        )));
    }
}

unsafe extern "C" fn after_run(req: *mut sys::uv_work_t, _status: std::os::raw::c_int) {
    // SAFETY: libuv calls this once per request of our loop, on the loop's thread.
    unsafe { untrack_work(req) };
    // SAFETY: libuv calls this once, on the loop thread, after run_in_pool finished (or the
    // request was cancelled); the Work is ours to free now.
    let work = unsafe { Box::from_raw(req.cast::<Work>()) };
    // SAFETY: the request belongs to a loop made by UvLoop::new and this is its thread.
    unsafe {
        guard_callback((*req).loop_, |py| settle(py, *work));
    }
}

fn settle(py: Python<'_>, work: Work) {
    let future = work.future.bind(py);
    if future
        .call_method0(pyo3::intern!(py, "done"))
        .and_then(|done| done.is_truthy())
        .unwrap_or(true)
    {
        return;
    }
    let outcome = match work.result {
        Some(Ok(value)) => future.call_method1(pyo3::intern!(py, "set_result"), (value,)),
        Some(Err(err)) => {
            future.call_method1(pyo3::intern!(py, "set_exception"), (err.into_value(py),))
        }
        None => future.call_method0(pyo3::intern!(py, "cancel")),
    };
    // Only fails if the future's loop is closed, which leaves nobody to tell.
    drop(outcome);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uv::run_until;

    #[test]
    fn runs_in_the_pool_and_settles_the_future() {
        crate::uv::with_python(|py| {
            let uv = UvLoop::new().expect("loop"); // ok: cfg(test) only
            let futures = py.import("concurrent.futures").expect("import"); // ok: cfg(test) only
            let future = futures.call_method0("Future").expect("future"); // ok: cfg(test) only
            let func = py
                .import("builtins")
                .expect("builtins") // ok: cfg(test) only
                .getattr("len")
                .expect("len"); // ok: cfg(test) only
            let args = PyTuple::new(py, ["four"]).expect("args"); // ok: cfg(test) only
            queue(&uv, func.unbind(), args.unbind(), future.clone().unbind()).expect("queue"); // ok: cfg(test) only
            assert!(run_until(py, &uv, || future
                .call_method0("done")
                .and_then(|d| d.is_truthy())
                .unwrap_or(false)));
            let result: usize = future
                .call_method0("result")
                .expect("result") // ok: cfg(test) only
                .extract()
                .expect("int"); // ok: cfg(test) only
            assert_eq!(result, 4);
            uv.close(py);
            assert!(uv.closed_cleanly());
        });
    }

    #[test]
    fn closing_cancels_what_has_not_started() {
        crate::uv::with_python(|py| {
            let uv = UvLoop::new().expect("loop"); // ok: cfg(test) only
            let futures = py.import("concurrent.futures").expect("import"); // ok: cfg(test) only
            let time = py.import("time").expect("time"); // ok: cfg(test) only
            let mut queued = Vec::new();
            // More sleeps than libuv's pool has threads (4): some cannot have started.
            for _ in 0..8 {
                let future = futures.call_method0("Future").expect("future"); // ok: cfg(test) only
                let args = PyTuple::new(py, [0.05]).expect("args"); // ok: cfg(test) only
                let sleep = time.getattr("sleep").expect("sleep").unbind(); // ok: cfg(test) only
                queue(&uv, sleep, args.unbind(), future.clone().unbind()).expect("queue"); // ok: cfg(test) only
                queued.push(future);
            }
            let started = std::time::Instant::now();
            uv.close(py);
            // Bounded: the running ones get a short while, then the loop is left to the
            // orphanage rather than waited for.
            assert!(started.elapsed() < std::time::Duration::from_secs(1));
            let cancelled = queued
                .iter()
                .filter(|f| {
                    f.call_method0("cancelled")
                        .and_then(|c| c.is_truthy())
                        .unwrap_or(false)
                })
                .count();
            assert!(cancelled > 0);
        });
    }
}
