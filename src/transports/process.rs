//! Child processes started with `uv_spawn` (see `uvloop._subprocess`, which decides what it can
//! express and wires the result into asyncio's subprocess transport).
//!
//! A `ChildProcess` owns the libuv process handle until the child's exit is reported; libuv reaps
//! the child (by its pid, so never anyone else's) and the exit goes to `on_exit(returncode)`,
//! scheduled with `call_soon` as asyncio's child watchers schedule it.

use std::ffi::CString;
use std::os::raw::c_int;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use pyo3::PyTypeInfo;

use crate::gil::{GilCell, GilRefCell};
use crate::loop_::Loop;
use crate::uv::child_exit;
use crate::uv::error::UvError;
use crate::uv::handle::LoopClose;
use crate::uv::process::{Process, ProcessEvents, SpawnOptions, Stdio};

#[pyclass(frozen, module = "uvloop.loop", name = "ChildProcess")]
pub struct ChildProcess {
    event_loop: Py<Loop>,
    /// None once the exit was reported (or the loop closed).
    process: GilRefCell<Option<Process<ChildOwner>>>,
    pid: GilCell<c_int>,
    /// Called with the return code when the child has exited.
    on_exit: GilRefCell<Option<Py<PyAny>>>,
    returncode: GilCell<Option<i64>>,
}

/// What the process handle's callback holds: the child, alive until its exit.
pub struct ChildOwner(Py<ChildProcess>);

impl LoopClose for ChildOwner {
    fn close_at_loop_close(&self, py: Python<'_>) {
        // The loop closes with the child running: libuv stops watching it, and it is reaped
        // once it exits, so that it does not stay a zombie.
        let this = self.0.get();
        if let Some(process) = this.process.take(py) {
            let pid = process.pid();
            drop(process);
            child_exit::reap_when_exited(pid);
        }
        drop(this.on_exit.take(py));
    }
}

impl ProcessEvents for ChildOwner {
    fn exited(&self, py: Python<'_>, status: i64, signal: c_int) {
        let this = self.0.get();
        // asyncio's returncode: minus the signal for a killed child.
        let returncode = if signal != 0 {
            -i64::from(signal)
        } else {
            status
        };
        this.returncode.set(py, Some(returncode));
        // The handle closes now; libuv has reaped the child.
        let process = this.process.take(py);
        drop(process);
        let Some(on_exit) = this.on_exit.take(py) else {
            return;
        };
        let event_loop = this.event_loop.bind(py);
        let result = if event_loop.get().io_inline(py) {
            // Inside a blocking poll: run now (see `Loop::io_inline`), reported as a handle's
            // failure would be.
            match on_exit.bind(py).call1((returncode,)) {
                Err(err)
                    if err.is_instance_of::<pyo3::exceptions::PyKeyboardInterrupt>(py)
                        || err.is_instance_of::<pyo3::exceptions::PySystemExit>(py) =>
                {
                    event_loop.get().escape(py, err);
                    Ok(())
                }
                Err(err) => crate::python::report_protocol_callback_error(
                    py,
                    event_loop.as_any(),
                    on_exit.bind(py),
                    err,
                ),
                Ok(_) => Ok(()),
            }
        } else {
            event_loop
                .call_method1(pyo3::intern!(py, "call_soon"), (on_exit, returncode))
                .map(drop)
        };
        if let Err(err) = result {
            // Scheduling fails only on a closed loop, which nobody is waiting on any more.
            err.write_unraisable(py, Some(self.0.bind(py).as_any()));
        }
    }

    fn status_lost(&self, py: Python<'_>) {
        // What asyncio's child watchers say and report when waitpid finds the child gone.
        let pid = self.0.get().pid.get(py);
        let logged = py.import("asyncio.log").and_then(|log| {
            log.getattr("logger")?.call_method1(
                "warning",
                (
                    "child process pid %d exit status already read:  will report returncode 255",
                    pid,
                ),
            )
        });
        if let Err(err) = logged {
            err.write_unraisable(py, Some(self.0.bind(py).as_any()));
        }
        self.exited(py, 255, 0);
    }
}

/// An OS string argument (str or bytes, as the subprocess module takes them) for C.
fn c_string(arg: &Bound<'_, PyAny>) -> PyResult<CString> {
    let py = arg.py();
    let bytes = if let Ok(bytes) = arg.cast::<PyBytes>() {
        bytes.clone()
    } else {
        py.import("os")?
            .call_method1(pyo3::intern!(py, "fsencode"), (arg,))?
            .cast_into::<PyBytes>()?
    };
    CString::new(bytes.as_bytes()).map_err(|_| PyValueError::new_err("embedded null byte"))
}

fn c_strings(items: &Bound<'_, PyAny>) -> PyResult<Vec<CString>> {
    items.try_iter()?.map(|item| c_string(&item?)).collect()
}

#[pymethods]
impl ChildProcess {
    /// Starts `file` with `args` (argv, argv[0] included), `env` (a list of b"NAME=value", or
    /// None for the parent's), `cwd`, and `stdio`: the parent's descriptor for each of the
    /// child's descriptors 0, 1, 2, ... (-1: none). `on_exit(returncode)` is called soon after
    /// the child exits. With `close_fds` the child gets no other descriptor of the parent's, as
    /// with Popen's. The caller closes its copies of the descriptors once this returned.
    #[new]
    #[pyo3(signature = (event_loop, file, args, env, cwd, stdio, new_session, close_fds, on_exit))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        event_loop: &Bound<'_, Loop>,
        file: &Bound<'_, PyAny>,
        args: &Bound<'_, PyAny>,
        env: Option<&Bound<'_, PyAny>>,
        cwd: Option<&Bound<'_, PyAny>>,
        stdio: Vec<c_int>,
        new_session: bool,
        close_fds: bool,
        on_exit: Py<PyAny>,
    ) -> PyResult<Py<Self>> {
        let py = event_loop.py();
        event_loop.get().check_open(py)?;
        let options = SpawnOptions {
            file: c_string(file)?,
            args: c_strings(args)?,
            env: env.map(c_strings).transpose()?,
            cwd: cwd.map(c_string).transpose()?,
            stdio: stdio
                .iter()
                .map(|&fd| {
                    if fd < 0 {
                        Stdio::Ignore
                    } else {
                        Stdio::Inherit(fd)
                    }
                })
                .collect(),
            detached: new_session,
            close_fds,
        };
        let child = Py::new(
            py,
            Self {
                event_loop: event_loop.clone().unbind(),
                process: GilRefCell::new(None),
                pid: GilCell::new(0),
                on_exit: GilRefCell::new(Some(on_exit)),
                returncode: GilCell::new(None),
            },
        )?;
        let process = Process::spawn(
            event_loop.get().uv(),
            &options,
            ChildOwner(child.clone_ref(py)),
        )
        .map_err(|err| spawn_error(py, err, file))?;
        child.get().pid.set(py, process.pid());
        drop(child.get().process.replace(py, Some(process)));
        Ok(child)
    }

    #[getter]
    fn pid(&self, py: Python<'_>) -> c_int {
        self.pid.get(py)
    }

    #[getter]
    fn returncode(&self, py: Python<'_>) -> Option<i64> {
        self.returncode.get(py)
    }

    /// Whether children's exits are watched through pidfds, libuv's own SIGCHLD handler kept
    /// out of the way (see `crate::uv::child_exit`).
    #[staticmethod]
    fn exits_watched_by_pidfd() -> bool {
        child_exit::watched_by_pidfd()
    }

    /// Sends `signum` to the child, unless it has exited (then nothing happens, as with Popen).
    fn send_signal(&self, py: Python<'_>, signum: c_int) -> PyResult<()> {
        match self.process.borrow(py).as_ref().map(|p| p.kill(signum)) {
            None | Some(Ok(())) => Ok(()),
            Some(Err(err)) if err.errno() == libc::ESRCH => Ok(()),
            Some(Err(err)) => Err(err.into()),
        }
    }

    fn __traverse__(&self, visit: pyo3::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        // SAFETY: tp_traverse runs with the GIL held by the collector.
        let py = unsafe { Python::assume_attached() };
        visit.call(&self.event_loop)?;
        if let Some(on_exit) = self.on_exit.try_borrow(py) {
            if let Some(on_exit) = &*on_exit {
                visit.call(on_exit)?;
            }
        }
        Ok(())
    }
}

/// The subprocess module's exception for a child that could not be started: the OSError of
/// the errno, naming the program.
fn spawn_error(py: Python<'_>, err: UvError, file: &Bound<'_, PyAny>) -> PyErr {
    let errno = err.errno();
    // SAFETY: strerror returns a NUL-terminated string valid until the next call on this
    // thread; it is copied at once.
    let text = unsafe { std::ffi::CStr::from_ptr(libc::strerror(errno)) }
        .to_string_lossy()
        .into_owned();
    match pyo3::exceptions::PyOSError::type_object(py).call1((errno, text, file)) {
        Ok(exc) => PyErr::from_value(exc),
        Err(err) => err,
    }
}
