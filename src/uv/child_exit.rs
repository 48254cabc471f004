//! How the exits of children started with `uv_spawn` are noticed, without libuv's SIGCHLD handler.
//!
//! On Linux, libuv learns of exits from a SIGCHLD handler it installs with `sigaction` in
//! `uv_spawn` and resets to SIG_DFL when the loop's last process handle closes. Either replaces
//! whatever the program had there (a handler from `loop.add_signal_handler(SIGCHLD, ...)` or
//! `signal.signal`), and a handler the program installs later replaces libuv's, whose children
//! then never exit as far as it knows. So the disposition of SIGCHLD is put back as it was around
//! both calls, and each child's exit is watched through a pidfd instead (by the loop's fd
//! watchers, see `uvloop._subprocess`), which then has libuv reap its exited children and report
//! them as it would have from its handler.
//!
//! Without pidfds (Linux before 5.3) libuv's handler stays. On macOS and the BSDs libuv watches
//! exits through kqueue and uses no signal.

use super::event_loop::UvLoop;

#[cfg(target_os = "linux")]
mod imp {
    use std::sync::{Mutex, OnceLock};

    use super::super::sys;
    use super::UvLoop;

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
                libc::close(fd as libc::c_int);
            }
            true
        })
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

    pub fn reap_exited(uv_loop: &UvLoop) {
        if uv_loop.is_closed() {
            return;
        }
        // SAFETY: a live loop, on its own thread (the caller holds the GIL, which serialises
        // the loop's use); libuv runs the exit callbacks of the children it reaps, as it does
        // from its SIGCHLD handler's callback.
        unsafe { uv__wait_children(uv_loop.as_ptr()) };
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::UvLoop;

    pub fn watched_by_pidfd() -> bool {
        false
    }

    pub fn keeping_sigchld<R>(libuv_call: impl FnOnce() -> R) -> R {
        libuv_call()
    }

    pub fn reap_exited(_uv_loop: &UvLoop) {}
}

/// Whether children's exits must be watched through pidfds (and libuv asked to reap them with
/// `reap_exited`), libuv's own SIGCHLD handler being kept out of the way.
pub fn watched_by_pidfd() -> bool {
    imp::watched_by_pidfd()
}

/// Runs a libuv call that may install or remove libuv's SIGCHLD handler (`uv_spawn`, closing a
/// process handle), then puts SIGCHLD's disposition back as it was.
pub fn keeping_sigchld<R>(libuv_call: impl FnOnce() -> R) -> R {
    imp::keeping_sigchld(libuv_call)
}

/// Has libuv reap the loop's exited children and run their exit callbacks.
pub fn reap_exited(uv_loop: &UvLoop) {
    imp::reap_exited(uv_loop)
}
