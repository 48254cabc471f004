//! `uv_process_t`: a child started with `uv_spawn`, its exit reported by libuv (which reaps only
//! its own children, by pid; see `child_exit` for how it learns of their exits).

use std::ffi::CString;
use std::mem::ManuallyDrop;
use std::os::raw::{c_char, c_int, c_uint};

use pyo3::Python;

use super::child_exit::keeping_sigchld;
use super::error::UvError;
use super::event_loop::{guard_callback, UvLoop};
use super::handle::{data_of, loop_of, Handle, LoopClose};
use super::sys;

/// Where a process handle's exit goes. Runs on the loop's thread with the GIL held.
pub trait ProcessEvents: LoopClose {
    /// The child exited with `status`, or was killed by signal `signal` (non-zero).
    fn exited(&self, py: Python<'_>, status: i64, signal: c_int);
}

/// What the child's descriptor `fd` is.
#[derive(Clone, Copy)]
pub enum Stdio {
    /// The parent's descriptor of this number (dup2'ed onto `fd` in the child).
    Inherit(c_int),
    /// Nothing set up (0 to 2 become /dev/null; others are left as they are).
    Ignore,
}

/// What `uv_spawn` is given.
pub struct SpawnOptions {
    pub file: CString,
    pub args: Vec<CString>,
    /// None: the parent's environment.
    pub env: Option<Vec<CString>>,
    pub cwd: Option<CString>,
    /// The child's descriptors 0, 1, 2, ... in order.
    pub stdio: Vec<Stdio>,
    /// A new session (setsid).
    pub detached: bool,
}

pub struct Process<D: ProcessEvents> {
    /// Closed in Drop, with SIGCHLD's disposition kept (see `child_exit`).
    handle: ManuallyDrop<Handle<sys::uv_process_t, D>>,
}

/// A NULL-terminated array of pointers into `strings`, for `char**` arguments.
fn pointers(strings: &[CString]) -> Vec<*mut c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr().cast_mut())
        .chain(std::iter::once(std::ptr::null_mut()))
        .collect()
}

impl<D: ProcessEvents> Process<D> {
    /// Starts the child. libuv closes nothing of the parent's: the caller closes its copies of
    /// the descriptors it handed over once this returned.
    pub fn spawn(uv_loop: &UvLoop, options: &SpawnOptions, data: D) -> Result<Self, UvError> {
        let mut args = pointers(&options.args);
        let mut env = options.env.as_deref().map(pointers);
        let mut stdio: Vec<sys::uv_stdio_container_t> = options
            .stdio
            .iter()
            .map(|stdio| match *stdio {
                Stdio::Inherit(fd) => sys::uv_stdio_container_t {
                    flags: sys::uv_stdio_flags_UV_INHERIT_FD,
                    data: sys::uv_stdio_container_s__bindgen_ty_1 { fd },
                },
                Stdio::Ignore => sys::uv_stdio_container_t {
                    flags: sys::uv_stdio_flags_UV_IGNORE,
                    data: sys::uv_stdio_container_s__bindgen_ty_1 { fd: -1 },
                },
            })
            .collect();
        let mut flags: c_uint = 0;
        if options.detached {
            flags |= sys::uv_process_flags_UV_PROCESS_DETACHED;
        }
        let raw_options = sys::uv_process_options_t {
            exit_cb: Some(exit_cb::<D>),
            file: options.file.as_ptr(),
            args: args.as_mut_ptr(),
            env: env
                .as_mut()
                .map_or(std::ptr::null_mut(), |env| env.as_mut_ptr()),
            cwd: options
                .cwd
                .as_ref()
                .map_or(std::ptr::null(), |cwd| cwd.as_ptr()),
            flags,
            stdio_count: stdio.len() as c_int,
            stdio: stdio.as_mut_ptr(),
            uid: 0,
            gid: 0,
        };
        let mut spawned = 0;
        // uv_spawn initialises the handle whether or not it succeeds, so it counts as the
        // handle's init (which never fails) and a failure closes the handle.
        let handle = keeping_sigchld(|| {
            Handle::new_owned(uv_loop, data, |uv_loop, raw| {
                // SAFETY: `raw` is a zeroed uv_process_t in stable memory; every pointer in the
                // options stays valid for the call (libuv copies what it keeps).
                spawned = unsafe { sys::uv_spawn(uv_loop, raw, &raw_options) };
                0
            })
        })?;
        let process = Self {
            handle: ManuallyDrop::new(handle),
        };
        UvError::check(spawned)?;
        Ok(process)
    }

    pub fn pid(&self) -> c_int {
        // SAFETY: a spawned process handle.
        unsafe { sys::uv_process_get_pid(self.handle.as_ptr()) }
    }

    /// Sends `signum` to the child (while it has not been reaped).
    pub fn kill(&self, signum: c_int) -> Result<(), UvError> {
        // SAFETY: a spawned process handle.
        UvError::check(unsafe { sys::uv_process_kill(self.handle.as_ptr(), signum) }).map(drop)
    }
}

impl<D: ProcessEvents> Drop for Process<D> {
    fn drop(&mut self) {
        // SAFETY: the handle is dropped here only, once.
        keeping_sigchld(|| unsafe { ManuallyDrop::drop(&mut self.handle) });
    }
}

unsafe extern "C" fn exit_cb<D: ProcessEvents>(
    raw: *mut sys::uv_process_t,
    status: i64,
    signal: c_int,
) {
    // SAFETY: libuv passes one of our spawned process handles, whose data is a D.
    unsafe {
        guard_callback(loop_of(raw), |py| {
            data_of::<_, D>(raw).exited(py, status, signal)
        });
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::*;
    use crate::uv::child_exit::reap_exited;
    use crate::uv::{run_until, with_python, Recorder, Seen};

    impl ProcessEvents for Recorder {
        fn exited(&self, _py: Python<'_>, status: i64, signal: c_int) {
            self.note(format!("exited {status} {signal}"));
        }
    }

    fn shell(script: &str) -> SpawnOptions {
        SpawnOptions {
            file: CString::new("/bin/sh").expect("c string"), // ok: cfg(test) only
            args: ["/bin/sh", "-c", script]
                .iter()
                .map(|arg| CString::new(*arg).expect("c string")) // ok: cfg(test) only
                .collect(),
            env: None,
            cwd: None,
            stdio: vec![Stdio::Ignore, Stdio::Ignore, Stdio::Inherit(2)],
            detached: false,
        }
    }

    #[test]
    fn spawn_exit_close() {
        with_python(|py| {
            let uv = UvLoop::new().expect("loop"); // ok: cfg(test) only
            let seen = Rc::new(Seen::default());
            let process =
                Process::spawn(&uv, &shell("exit 3"), Recorder(seen.clone())).expect("spawn"); // ok: cfg(test) only
            assert!(process.pid() > 0);
            // With libuv's SIGCHLD handler kept away (child_exit), exits are reaped on request.
            assert!(run_until(py, &uv, || {
                reap_exited(&uv);
                !seen.events.borrow().is_empty()
            }));
            assert_eq!(seen.events.borrow().as_slice(), ["exited 3 0"]);
            drop(process);
            assert!(run_until(py, &uv, || seen.dropped.get()));
            uv.close(py);
            assert!(uv.closed_cleanly());
        });
    }

    #[test]
    fn kill_reports_the_signal() {
        with_python(|py| {
            let uv = UvLoop::new().expect("loop"); // ok: cfg(test) only
            let seen = Rc::new(Seen::default());
            let process =
                Process::spawn(&uv, &shell("sleep 30"), Recorder(seen.clone())).expect("spawn"); // ok: cfg(test) only
            process.kill(libc::SIGKILL).expect("kill"); // ok: cfg(test) only
                                                        // With libuv's SIGCHLD handler kept away (child_exit), exits are reaped on request.
            assert!(run_until(py, &uv, || {
                reap_exited(&uv);
                !seen.events.borrow().is_empty()
            }));
            assert_eq!(seen.events.borrow().as_slice(), ["exited 0 9"]);
            drop(process);
            uv.close(py);
            assert!(uv.closed_cleanly());
        });
    }

    #[test]
    fn a_missing_program_fails_and_closes() {
        with_python(|py| {
            let uv = UvLoop::new().expect("loop"); // ok: cfg(test) only
            let seen = Rc::new(Seen::default());
            let mut options = shell("");
            options.file = CString::new("/nonexistent/program").expect("c string"); // ok: cfg(test) only
            let failed = Process::spawn(&uv, &options, Recorder(seen.clone()));
            assert_eq!(failed.err().map(UvError::errno), Some(libc::ENOENT));
            assert!(run_until(py, &uv, || seen.dropped.get()));
            uv.close(py);
            assert!(uv.closed_cleanly());
        });
    }
}
