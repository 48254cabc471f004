//! Popen's `close_fds` for children started with `uv_spawn`.
//!
//! Popen's child closes every descriptor above 2 that it was not asked to pass on; libuv's child
//! closes none, so it inherits each one that is not close-on-exec. For the moment of the spawn,
//! the parent's inheritable descriptors that the child must not get are therefore made
//! close-on-exec, and put back afterwards. (Python opens its descriptors non-inheritable: the
//! ones found here are the program's choice, `os.set_inheritable`, or what it was started with.)

use std::io;
use std::os::raw::c_int;
use std::sync::Mutex;

/// Where the process's open descriptors are listed (on macOS /dev/fd lists them all; on the BSDs
/// only with fdescfs mounted).
#[cfg(target_os = "linux")]
const FD_DIR: &str = "/proc/self/fd";
#[cfg(not(target_os = "linux"))]
const FD_DIR: &str = "/dev/fd";

/// One spawn at a time among threads: a spawn that listed the descriptors while another had one
/// of them hidden would take it for close-on-exec, and its child would inherit it once put back.
static SPAWN_LOCK: Mutex<()> = Mutex::new(());

/// Runs `spawn` with every inheritable descriptor above 2 for which `passed` is false made
/// close-on-exec, then makes them inheritable again.
pub fn hidden_from_child<R>(
    passed: impl Fn(c_int) -> bool,
    spawn: impl FnOnce() -> R,
) -> io::Result<R> {
    let _lock = SPAWN_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let hidden = inheritable_fds(passed)?;
    for &fd in &hidden {
        set_close_on_exec(fd, true);
    }
    let result = spawn();
    for &fd in &hidden {
        set_close_on_exec(fd, false);
    }
    Ok(result)
}

/// The open descriptors above 2, not `passed`, that a child would inherit.
fn inheritable_fds(passed: impl Fn(c_int) -> bool) -> io::Result<Vec<c_int>> {
    Ok(listed_fds()?
        .into_iter()
        .filter(|&fd| fd > 2 && !passed(fd))
        .filter(|&fd| {
            // SAFETY: F_GETFD only reads the descriptor's flags; a closed one gives -1.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
            flags >= 0 && flags & libc::FD_CLOEXEC == 0
        })
        .collect())
}

/// The process's open descriptors (about 0.5 µs each on Linux, where the kernel makes a
/// directory entry for each).
fn listed_fds() -> io::Result<Vec<c_int>> {
    // The listing's own descriptor is among them, closed by the time they are looked at.
    Ok(std::fs::read_dir(FD_DIR)?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect())
}

fn set_close_on_exec(fd: c_int, on: bool) {
    let flags = if on { libc::FD_CLOEXEC } else { 0 };
    // SAFETY: sets the descriptor flags of a descriptor that was open when listed (FD_CLOEXEC is
    // the only one); were it closed meanwhile by another thread, the call fails harmlessly.
    unsafe { libc::fcntl(fd, libc::F_SETFD, flags) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close_on_exec(fd: c_int) -> bool {
        // SAFETY: reads the flags of a descriptor this test owns.
        unsafe { libc::fcntl(fd, libc::F_GETFD) & libc::FD_CLOEXEC != 0 }
    }

    #[test]
    fn hides_inheritable_descriptors_but_the_passed_ones_for_the_spawn() {
        let mut fds = [0; 2];
        // SAFETY: a pipe into a two-element array; both ends are closed below.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let [passed, other] = fds;
        let during = hidden_from_child(
            |fd| fd == passed,
            || (close_on_exec(passed), close_on_exec(other)),
        );
        assert_eq!(during.ok(), Some((false, true)));
        assert!(!close_on_exec(passed));
        assert!(!close_on_exec(other));
        // SAFETY: closes the pipe made above, once.
        unsafe {
            libc::close(passed);
            libc::close(other);
        }
    }

    #[test]
    fn finds_a_descriptor_far_above_the_others() {
        let far = 900;
        // SAFETY: duplicates stdin onto a descriptor number nothing else in the tests uses.
        assert_eq!(unsafe { libc::dup2(0, far) }, far);
        let found = listed_fds().expect("open descriptors"); // ok: cfg(test) only
                                                             // SAFETY: closes the duplicate made above, once.
        unsafe { libc::close(far) };
        assert!(found.contains(&far));
        assert!(found.contains(&0));
        assert!(!listed_fds().expect("open descriptors").contains(&far)); // ok: cfg(test) only
    }
}
