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
/// It holds where the last search found the highest open descriptor (see `open_fds`).
static SPAWNING: Mutex<usize> = Mutex::new(0);

/// Runs `spawn` with every inheritable descriptor above 2 for which `passed` is false made
/// close-on-exec, then makes them inheritable again.
pub fn hidden_from_child<R>(
    passed: impl Fn(c_int) -> bool,
    spawn: impl FnOnce() -> R,
) -> io::Result<R> {
    let mut window_hint = SPAWNING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let hidden = inheritable_fds(&mut window_hint, passed)?;
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
fn inheritable_fds(
    window_hint: &mut usize,
    passed: impl Fn(c_int) -> bool,
) -> io::Result<Vec<c_int>> {
    Ok(open_fds(window_hint)?
        .into_iter()
        .filter(|&fd| fd > 2 && !passed(fd))
        .filter(|&fd| {
            // SAFETY: F_GETFD only reads the descriptor's flags; a closed one gives -1.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
            flags >= 0 && flags & libc::FD_CLOEXEC == 0
        })
        .collect())
}

/// The process's open descriptors.
///
/// Listing /proc/self/fd costs about 0.5 µs per open descriptor (the kernel makes a directory
/// entry for each), 5 ms per spawn in a server holding 10,000 connections. Linux 6.2 and later
/// give the directory's size as the number of open descriptors, so they are found with one
/// `poll` instead (POLLNVAL answers a closed one, about 11 ns per slot) over a window from 0 that
/// holds that many: as wide as where the last search found the highest one (`window_hint`), or
/// the count plus some, grown until it holds them all. The listing is the fallback.
#[cfg(target_os = "linux")]
fn open_fds(window_hint: &mut usize) -> io::Result<Vec<c_int>> {
    let count = std::fs::metadata(FD_DIR)?.len() as usize;
    // SAFETY: rlimit is plain C data, filled in by the kernel.
    let mut limit: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: reads this process's descriptor limit into `limit`.
    let read = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    if count == 0 || read != 0 {
        return listed_fds(); // a kernel before 6.2
    }
    // poll takes at most that many slots (and the kernel's nr_open, 2^20 by default).
    let most = limit.rlim_cur.min(1 << 20) as usize;
    let mut window = (count + 64).max(*window_hint).min(most);
    loop {
        let mut slots: Vec<libc::pollfd> = (0..window as c_int)
            .map(|fd| libc::pollfd {
                fd,
                events: 0,
                revents: 0,
            })
            .collect();
        // SAFETY: `slots` holds `window` initialised pollfd structs; a zero timeout only looks.
        if unsafe { libc::poll(slots.as_mut_ptr(), window as libc::nfds_t, 0) } < 0 {
            return listed_fds();
        }
        let open: Vec<c_int> = slots
            .iter()
            .filter(|slot| slot.revents & libc::POLLNVAL == 0)
            .map(|slot| slot.fd)
            .collect();
        if open.len() >= count {
            *window_hint = open.last().map_or(0, |&fd| fd as usize + 1);
            return Ok(open);
        }
        if window == most {
            return listed_fds(); // another thread closed some meanwhile
        }
        window = window.saturating_mul(8).min(most);
    }
}

#[cfg(not(target_os = "linux"))]
fn open_fds(_window_hint: &mut usize) -> io::Result<Vec<c_int>> {
    listed_fds()
}

/// The process's open descriptors, as listed in FD_DIR.
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
        let mut window_hint = 0;
        let found = open_fds(&mut window_hint);
        let listed = listed_fds();
        // SAFETY: closes the duplicate made above, once.
        unsafe { libc::close(far) };
        let found = found.expect("open descriptors"); // ok: cfg(test) only
        assert!(found.contains(&far) && found.contains(&0));
        assert!(listed.expect("listed descriptors").contains(&far)); // ok: cfg(test) only
        let after = open_fds(&mut window_hint).expect("open descriptors"); // ok: cfg(test) only
        assert!(!after.contains(&far) && after.contains(&0));
    }
}
