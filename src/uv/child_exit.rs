//! How the exits of children started with `uv_spawn` are noticed, without libuv's SIGCHLD handler.
//!
//! On Linux, libuv learns of exits from a SIGCHLD handler it installs with `sigaction` in
//! `uv_spawn` and resets to SIG_DFL when the loop's last process handle closes. Either replaces
//! whatever the program had there (a handler from `loop.add_signal_handler(SIGCHLD, ...)` or
//! `signal.signal`), and a handler the program installs later replaces libuv's, whose children
//! then never exit as far as it knows. So the disposition of SIGCHLD is put back as it was around
//! both calls, and each child's exit is watched through a pidfd that libuv polls instead (see
//! `process`), which then has libuv reap its exited children and report them as it would have
//! from its handler.
//!
//! Without pidfds (Linux before 5.3) libuv's handler stays. On macOS and the BSDs libuv watches
//! exits through kqueue and uses no signal.

use std::os::fd::OwnedFd;
use std::os::raw::c_int;

use super::error::UvError;
use super::sys;

#[cfg(target_os = "linux")]
mod imp {
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::os::raw::c_int;
    use std::sync::{Mutex, OnceLock};

    use super::super::error::UvError;
    use super::super::sys;

    extern "C" {
        /// libuv's reaping of the loop's exited children (`src/unix/process.c`; linked in with
        /// the vendored libuv, whose version is pinned): a `waitpid(pid, WNOHANG)` for each of
        /// its process handles, then the exit callbacks of those that exited.
        fn uv__wait_children(uv_loop: *mut sys::uv_loop_t);
    }

    /// Serialises the save-and-restore of SIGCHLD's disposition between loops on several
    /// threads.
    static SIGCHLD_LOCK: Mutex<()> = Mutex::new(());

    pub fn watched_by_pidfd() -> bool {
        static WORKS: OnceLock<bool> = OnceLock::new();
        *WORKS.get_or_init(|| {
            // SAFETY: plain system calls; the descriptor, if any, is closed at once.
            unsafe {
                let fd = libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0);
                if fd < 0 {
                    return false;
                }
                libc::close(fd as c_int);
            }
            true
        })
    }

    pub fn exit_pidfd(pid: c_int) -> Result<Option<OwnedFd>, UvError> {
        if !watched_by_pidfd() {
            return Ok(None);
        }
        // SAFETY: pidfd_open takes a pid and no flags; it returns a new close-on-exec descriptor
        // or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        // SAFETY: a descriptor just made, owned by nobody else.
        Ok(Some(unsafe { OwnedFd::from_raw_fd(fd as c_int) }))
    }

    pub fn keeping_sigchld<R>(libuv_call: impl FnOnce() -> R) -> R {
        if !watched_by_pidfd() {
            return libuv_call();
        }
        let _lock = SIGCHLD_LOCK
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // SAFETY: sigaction is plain C data, filled in by the kernel below.
        let mut saved: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: reads SIGCHLD's disposition into `saved`.
        let read = unsafe { libc::sigaction(libc::SIGCHLD, std::ptr::null(), &mut saved) };
        let result = libuv_call();
        if read == 0 {
            // SAFETY: puts back exactly what was read above.
            unsafe { libc::sigaction(libc::SIGCHLD, &saved, std::ptr::null_mut()) };
        }
        result
    }

    /// # Safety
    /// `uv_loop` must be a live loop, used on this thread with the GIL held.
    pub unsafe fn reap_exited(uv_loop: *mut sys::uv_loop_t) {
        // SAFETY: per the contract; libuv runs the exit callbacks of the children it reaps, as
        // it does from its SIGCHLD handler's callback.
        unsafe { uv__wait_children(uv_loop) };
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::os::fd::OwnedFd;
    use std::os::raw::c_int;

    use super::super::error::UvError;
    use super::super::sys;

    pub fn watched_by_pidfd() -> bool {
        false
    }

    pub fn exit_pidfd(_pid: c_int) -> Result<Option<OwnedFd>, UvError> {
        Ok(None)
    }

    pub fn keeping_sigchld<R>(libuv_call: impl FnOnce() -> R) -> R {
        libuv_call()
    }

    /// # Safety
    /// Nothing to uphold: libuv reaps by itself here.
    pub unsafe fn reap_exited(_uv_loop: *mut sys::uv_loop_t) {}
}

/// Whether children's exits are watched through pidfds, libuv's own SIGCHLD handler being kept
/// out of the way.
pub fn watched_by_pidfd() -> bool {
    imp::watched_by_pidfd()
}

/// A pidfd for the child `pid` (readable once it has exited) when exits are watched that way.
pub fn exit_pidfd(pid: c_int) -> Result<Option<OwnedFd>, UvError> {
    imp::exit_pidfd(pid)
}

/// Runs a libuv call that may install or remove libuv's SIGCHLD handler (`uv_spawn`, closing a
/// process handle), then puts SIGCHLD's disposition back as it was.
pub fn keeping_sigchld<R>(libuv_call: impl FnOnce() -> R) -> R {
    imp::keeping_sigchld(libuv_call)
}

/// Has libuv reap the loop's exited children and run their exit callbacks.
///
/// # Safety
/// `uv_loop` must be a live loop, used on this thread with the GIL held.
pub unsafe fn reap_exited(uv_loop: *mut sys::uv_loop_t) {
    // SAFETY: per the contract.
    unsafe { imp::reap_exited(uv_loop) }
}

/// Reaps the child `pid` once it exits, for a process handle closed before that (the loop
/// closed): at once if it has exited, else from a thread waiting for it, as asyncio's child
/// watcher thread outlives its loop, so that it does not stay a zombie.
pub fn reap_when_exited(pid: c_int) {
    // SAFETY: waitpid on one pid with a valid status pointer.
    let reaped = unsafe { libc::waitpid(pid, &mut 0, libc::WNOHANG) };
    if reaped != 0 {
        return; // reaped now, or not a child (any more)
    }
    let waiter = std::thread::Builder::new()
        .name(format!("uvloop-reap-{pid}"))
        .spawn(move || {
            // SAFETY: as above, blocking until the child exits.
            while unsafe { libc::waitpid(pid, &mut 0, 0) } < 0
                && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
            {}
        });
    // Without a thread (none can be started) the child stays a zombie until this process exits.
    drop(waiter);
}
