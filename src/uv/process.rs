//! `uv_process_t`: a child started with `uv_spawn`, its exit reported by libuv (which reaps only
//! its own children, by pid; see `child_exit` for how it learns of their exits).

use std::cell::Cell;
use std::ffi::CString;
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::raw::{c_char, c_int, c_uint};

use pyo3::Python;

use super::child_exit::{exit_pidfd, keeping_sigchld, reap_exited, reap_when_exited};
use super::close_fds::hidden_from_child;
use super::error::UvError;
use super::event_loop::{guard_callback, status, UvLoop};
use super::handle::{data_of, loop_of, Handle, LoopClose};
use super::sys;

/// Where a process handle's exit goes. Runs on the loop's thread with the GIL held.
pub trait ProcessEvents: LoopClose {
    /// The child exited with `status`, or was killed by signal `signal` (non-zero).
    fn exited(&self, py: Python<'_>, status: i64, signal: c_int);
    /// The child exited but its status was taken by another `waitpid` of this process.
    fn status_lost(&self, py: Python<'_>);
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
    /// Popen's `close_fds`: the child gets no descriptor above 2 but those `stdio` passes as
    /// themselves (see `close_fds`).
    pub close_fds: bool,
}

pub struct Process<D: ProcessEvents> {
    /// Where exits are watched through pidfds: libuv polls the child's (closed before `handle`).
    exit_poll: Option<Handle<sys::uv_poll_t, ExitPoll>>,
    /// Closed in Drop, with SIGCHLD's disposition kept (see `child_exit`).
    handle: ManuallyDrop<Handle<sys::uv_process_t, ProcessState<D>>>,
}

/// The process handle's state.
struct ProcessState<D> {
    events: D,
    /// Whether libuv reported the exit.
    exited: Cell<bool>,
}

impl<D: LoopClose> LoopClose for ProcessState<D> {
    fn close_at_loop_close(&self, py: Python<'_>) {
        self.events.close_at_loop_close(py);
    }
}

/// The exit poll's state: the child's pidfd (closed with the poll handle) and its process handle,
/// which outlives the poll handle.
struct ExitPoll {
    _pidfd: OwnedFd,
    process: *mut sys::uv_process_t,
}

// SAFETY: the pointer is used only on the loop's thread with the GIL held, like every handle
// (see `Handle`'s Send).
unsafe impl Send for ExitPoll {}

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
        let spawn = || {
            keeping_sigchld(|| {
                let state = ProcessState {
                    events: data,
                    exited: Cell::new(false),
                };
                Handle::new_owned(uv_loop, state, |uv_loop, raw| {
                    // SAFETY: `raw` is a zeroed uv_process_t in stable memory; every pointer in
                    // the options stays valid for the call (libuv copies what it keeps).
                    spawned = unsafe { sys::uv_spawn(uv_loop, raw, &raw_options) };
                    0
                })
            })
        };
        let handle = if options.close_fds {
            let passed = |fd: c_int| matches!(options.stdio.get(fd as usize), Some(Stdio::Inherit(same)) if *same == fd);
            hidden_from_child(passed, spawn)??
        } else {
            spawn()?
        };
        let mut process = Self {
            exit_poll: None,
            handle: ManuallyDrop::new(handle),
        };
        UvError::check(spawned)?;
        match process.watch_exit(uv_loop) {
            Ok(exit_poll) => process.exit_poll = exit_poll,
            Err(err) => {
                // Its exit could go unnoticed: the child is not kept.
                let pid = process.pid();
                let _ = process.kill(libc::SIGKILL); // it may have exited already
                drop(process);
                reap_when_exited(pid);
                return Err(err);
            }
        }
        Ok(process)
    }

    /// Where exits are watched through pidfds: a poll handle on the child's.
    fn watch_exit(
        &self,
        uv_loop: &UvLoop,
    ) -> Result<Option<Handle<sys::uv_poll_t, ExitPoll>>, UvError> {
        let Some(pidfd) = exit_pidfd(self.pid())? else {
            return Ok(None);
        };
        let fd = pidfd.as_raw_fd();
        let state = ExitPoll {
            _pidfd: pidfd,
            process: self.handle.as_ptr(),
        };
        let poll = Handle::new(uv_loop, state, |uv_loop, raw| {
            // SAFETY: `raw` is a zeroed uv_poll_t in stable memory; the pidfd lives as long as
            // the handle (it is closed with the handle's state).
            unsafe { sys::uv_poll_init(uv_loop, raw, fd) }
        })?;
        let readable = sys::uv_poll_event_UV_READABLE as c_int;
        // SAFETY: an open poll handle on a descriptor it owns.
        status(unsafe { sys::uv_poll_start(poll.as_ptr(), readable, Some(child_exited::<D>)) })?;
        Ok(Some(poll))
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
        drop(self.exit_poll.take());
        // SAFETY: the handle is dropped here only, once.
        keeping_sigchld(|| unsafe { ManuallyDrop::drop(&mut self.handle) });
    }
}

unsafe extern "C" fn exit_cb<D: ProcessEvents>(
    raw: *mut sys::uv_process_t,
    status: i64,
    signal: c_int,
) {
    // SAFETY: libuv passes one of our spawned process handles, whose data is a ProcessState<D>.
    unsafe {
        guard_callback(loop_of(raw), |py| {
            let state = data_of::<_, ProcessState<D>>(raw);
            state.exited.set(true);
            state.events.exited(py, status, signal);
        });
    }
}

/// Whether `pid` is still an unreaped child of this process.
fn is_child(pid: c_int) -> bool {
    // SAFETY: siginfo_t is plain C data, filled in by the kernel.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
    // SAFETY: waitid on one pid with a valid siginfo; WNOWAIT leaves the child as it is.
    unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, flags) == 0 }
}

/// The child's pidfd is readable: it has exited, and libuv reaps it.
unsafe extern "C" fn child_exited<D: ProcessEvents>(
    raw: *mut sys::uv_poll_t,
    _status: c_int,
    _events: c_int,
) {
    // SAFETY: libuv passes the live poll handle of an ExitPoll, whose process handle is open (it
    // closes after the poll handle) and stays allocated until its close callback, which runs
    // after this one even if the exit callback below closes it.
    unsafe {
        let uv_loop = loop_of(raw);
        guard_callback(uv_loop, |py| {
            // A pidfd stays readable once its process exited: one callback is enough.
            sys::uv_poll_stop(raw);
            let process = data_of::<_, ExitPoll>(raw).process;
            reap_exited(uv_loop);
            let state = data_of::<_, ProcessState<D>>(process);
            if state.exited.get() {
                return;
            }
            if is_child(sys::uv_process_get_pid(process)) {
                // Not reaped after all (not expected of a readable pidfd): watch on.
                let readable = sys::uv_poll_event_UV_READABLE as c_int;
                sys::uv_poll_start(raw, readable, Some(child_exited::<D>));
            } else {
                // libuv's waitpid found no child: another waitpid of this process took it.
                state.exited.set(true);
                state.events.status_lost(py);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::*;
    use crate::uv::{run_until, with_python, Recorder, Seen};

    impl ProcessEvents for Recorder {
        fn exited(&self, _py: Python<'_>, status: i64, signal: c_int) {
            self.note(format!("exited {status} {signal}"));
        }

        fn status_lost(&self, _py: Python<'_>) {
            self.note("status lost".to_string());
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
            close_fds: true,
        }
    }

    /// A new loop and a child running `script` whose events `Seen` records.
    fn spawned(script: &str) -> (UvLoop, Rc<Seen>, Process<Recorder>) {
        let uv = UvLoop::new().expect("loop"); // ok: cfg(test) only
        let seen = Rc::new(Seen::default());
        let process = Process::spawn(&uv, &shell(script), Recorder(seen.clone())).expect("spawn"); // ok: cfg(test) only
        (uv, seen, process)
    }

    #[test]
    fn spawn_exit_close() {
        with_python(|py| {
            let (uv, seen, process) = spawned("exit 3");
            assert!(process.pid() > 0);
            assert!(run_until(py, &uv, || !seen.events.borrow().is_empty()));
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
            let (uv, seen, process) = spawned("sleep 30");
            process.kill(libc::SIGKILL).expect("kill"); // ok: cfg(test) only
            assert!(run_until(py, &uv, || !seen.events.borrow().is_empty()));
            assert_eq!(seen.events.borrow().as_slice(), ["exited 0 9"]);
            drop(process);
            uv.close(py);
            assert!(uv.closed_cleanly());
        });
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn an_exit_status_taken_elsewhere_is_reported_lost() {
        with_python(|py| {
            let (uv, seen, process) = spawned("exit 0");
            let pid = process.pid();
            // SAFETY: waits for this test's own child, as a stray os.waitpid would.
            let reaped = unsafe { libc::waitpid(pid, &mut 0, 0) };
            assert_eq!(reaped, pid);
            assert!(run_until(py, &uv, || !seen.events.borrow().is_empty()));
            assert_eq!(seen.events.borrow().as_slice(), ["status lost"]);
            drop(process);
            assert!(run_until(py, &uv, || seen.dropped.get()));
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
