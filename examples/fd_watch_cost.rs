//! What the two designs for `add_reader`/`add_writer` cost per wait, measured on this machine.
//!
//!     cargo run --release --example fd_watch_cost
//!
//! A watched fd must never abort the process when it is closed behind libuv's back. The two
//! candidate designs, each timed over one wait as `sock_recv` makes it (watch the fd, its peer
//! writes a byte, the loop polls, the callback reads the byte and stops watching):
//!
//! - `uv_poll per fd`: one `uv_poll_t` per watched fd, started and stopped; the guard that keeps
//!   a closed fd from reaching libuv's `epoll_ctl` (which aborts on EBADF) is an `fcntl(F_GETFD)`
//!   on each fd started since the last `uv_run`, since Python code between `add_reader` and the
//!   poll may close it. (Timed only; the guard is not enough: an fd closed while watched and
//!   reused keeps libuv's cached registration, which the kernel dropped, so the new file is never
//!   polled; and `uv_poll_init` makes the fd non-blocking.)
//! - `own poller as a member` (the loop's design): an epoll set of the loop's own, itself watched
//!   by one `uv_poll_t`; `add_reader` is an `epoll_ctl` whose error is raised to the caller, and a
//!   poll that finds the set readable takes its events with a zero-timeout `epoll_wait`.
//!
//! Also timed: an fd that stays watched and is ready on every poll (a busy `add_reader`), where
//! the member design pays one more system call per poll than libuv's own watcher.

use std::os::raw::{c_int, c_void};
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use libuv_sys2 as sys;

const ROUNDS: u32 = 200_000;

fn socketpair() -> (c_int, c_int) {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid out-array of two ints.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    assert_eq!(rc, 0, "socketpair");
    (fds[0], fds[1])
}

fn poke(fd: c_int) {
    // SAFETY: writes one byte from a valid static buffer.
    assert_eq!(unsafe { libc::write(fd, b"x".as_ptr().cast(), 1) }, 1);
}

fn drain(fd: c_int) {
    let mut byte = 0u8;
    // SAFETY: reads at most one byte into a valid local.
    let n = unsafe { libc::read(fd, (&mut byte as *mut u8).cast(), 1) };
    assert_eq!(n, 1);
}

fn fd_is_open(fd: c_int) -> bool {
    // SAFETY: F_GETFD only inspects the descriptor table.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

struct Uv(*mut sys::uv_loop_t);

impl Uv {
    fn new() -> Self {
        let uv = Box::into_raw(Box::new(std::mem::MaybeUninit::<sys::uv_loop_t>::uninit()));
        // SAFETY: `uv` points to writable memory for one uv_loop_t, initialised here.
        assert_eq!(unsafe { sys::uv_loop_init(uv.cast()) }, 0);
        Uv(uv.cast())
    }

    fn run_once(&self) {
        // SAFETY: the loop is initialised and only used on this thread.
        unsafe { sys::uv_run(self.0, sys::uv_run_mode_UV_RUN_ONCE) };
    }
}

impl Drop for Uv {
    fn drop(&mut self) {
        // SAFETY: every handle was closed and its close callback run before the loop is dropped.
        unsafe {
            sys::uv_run(self.0, sys::uv_run_mode_UV_RUN_DEFAULT);
            sys::uv_loop_close(self.0);
            drop(Box::from_raw(
                self.0.cast::<std::mem::MaybeUninit<sys::uv_loop_t>>(),
            ));
        }
    }
}

/// A `uv_poll_t` in stable memory whose callback reads one byte from its fd and stops it.
struct Poll(*mut sys::uv_poll_t);

extern "C" fn read_and_stop(handle: *mut sys::uv_poll_t, _status: c_int, _events: c_int) {
    // SAFETY: libuv passes the started handle; its `data` is the fd set by Poll::new.
    unsafe {
        drain((*handle).data as usize as c_int);
        sys::uv_poll_stop(handle);
    }
}

extern "C" fn read_only(handle: *mut sys::uv_poll_t, _status: c_int, _events: c_int) {
    // SAFETY: libuv passes the started handle; its `data` is the fd set by Poll::new.
    drain(unsafe { (*handle).data } as usize as c_int);
}

extern "C" fn free_poll(handle: *mut sys::uv_handle_t) {
    // SAFETY: the handle was allocated by Poll::new and libuv is done with it.
    drop(unsafe { Box::from_raw(handle.cast::<std::mem::MaybeUninit<sys::uv_poll_t>>()) });
}

impl Poll {
    fn new(uv: &Uv, fd: c_int) -> Self {
        let handle = Box::into_raw(Box::new(std::mem::MaybeUninit::<sys::uv_poll_t>::uninit()));
        // SAFETY: `handle` is writable memory for one uv_poll_t; `fd` is an open socket.
        unsafe {
            assert_eq!(sys::uv_poll_init(uv.0, handle.cast(), fd), 0);
            (*handle.cast::<sys::uv_poll_t>()).data = fd as usize as *mut c_void;
        }
        Poll(handle.cast())
    }

    fn start_reading(&self, callback: sys::uv_poll_cb) {
        // SAFETY: the handle is initialised and open.
        unsafe { sys::uv_poll_start(self.0, sys::uv_poll_event_UV_READABLE as c_int, callback) };
    }
}

impl Drop for Poll {
    fn drop(&mut self) {
        // SAFETY: closed once; `free_poll` frees it after libuv's last use.
        unsafe { sys::uv_close(self.0.cast(), Some(free_poll)) };
    }
}

/// The loop's design: an epoll set of our own, watched through one uv_poll_t.
struct MemberPoller {
    epoll: c_int,
    member: Poll,
}

/// Whether the member's callback stops watching each fd it found ready.
static UNWATCH: AtomicBool = AtomicBool::new(true);

extern "C" fn take_member_events(handle: *mut sys::uv_poll_t, _status: c_int, _events: c_int) {
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 64];
    // SAFETY: `data` is the epoll fd set by MemberPoller::new; `events` is a valid array.
    unsafe {
        let epoll = (*handle).data as usize as c_int;
        let n = libc::epoll_wait(epoll, events.as_mut_ptr(), 64, 0);
        for event in &events[..n.max(0) as usize] {
            let fd = event.u64 as c_int;
            drain(fd);
            if UNWATCH.load(Ordering::Relaxed) {
                libc::epoll_ctl(epoll, libc::EPOLL_CTL_DEL, fd, ptr::null_mut());
            }
        }
    }
}

impl MemberPoller {
    fn new(uv: &Uv) -> Self {
        // SAFETY: plain syscall, checked.
        let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        assert!(epoll >= 0);
        let member = Poll::new(uv, epoll);
        // SAFETY: the handle is initialised and open.
        unsafe {
            sys::uv_poll_start(
                member.0,
                sys::uv_poll_event_UV_READABLE as c_int,
                Some(take_member_events),
            )
        };
        MemberPoller { epoll, member }
    }

    fn watch(&self, fd: c_int) {
        let mut event = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: fd as u64,
        };
        // SAFETY: valid epoll fd and event struct.
        let rc = unsafe { libc::epoll_ctl(self.epoll, libc::EPOLL_CTL_ADD, fd, &mut event) };
        assert_eq!(rc, 0);
    }
}

impl Drop for MemberPoller {
    fn drop(&mut self) {
        // SAFETY: the member handle is stopped before the fd it watches is closed.
        unsafe {
            sys::uv_poll_stop(self.member.0);
            libc::close(self.epoll);
        }
    }
}

/// ns per wait with one uv_poll_t per fd, `idle` other fds watched; with `keep`, the fd stays
/// watched and the guard has nothing to check.
fn per_fd_polls(idle: usize, keep: bool) -> f64 {
    let uv = Uv::new();
    let (ours, peer) = socketpair();
    let idle: Vec<(c_int, c_int)> = (0..idle).map(|_| socketpair()).collect();
    let idle_polls: Vec<Poll> = idle.iter().map(|&(fd, _)| Poll::new(&uv, fd)).collect();
    for poll in &idle_polls {
        poll.start_reading(Some(read_only));
    }
    let watched = Poll::new(&uv, ours);
    if keep {
        watched.start_reading(Some(read_only));
    }
    let started = Instant::now();
    for _ in 0..ROUNDS {
        if !keep {
            // The guard: an fd started since the last poll must still be open when libuv
            // registers it.
            assert!(fd_is_open(ours));
            watched.start_reading(Some(read_and_stop));
        }
        poke(peer);
        uv.run_once();
    }
    let elapsed = started.elapsed().as_nanos() as f64 / ROUNDS as f64;
    drop(watched);
    drop(idle_polls);
    drop(uv);
    close_pairs(&[(ours, peer)]);
    close_pairs(&idle);
    elapsed
}

/// ns per wait with the loop's own epoll set as one member of libuv's.
fn member_poller(idle: usize, keep: bool) -> f64 {
    UNWATCH.store(!keep, Ordering::Relaxed);
    let uv = Uv::new();
    let poller = MemberPoller::new(&uv);
    let (ours, peer) = socketpair();
    let idle: Vec<(c_int, c_int)> = (0..idle).map(|_| socketpair()).collect();
    for &(fd, _) in &idle {
        poller.watch(fd);
    }
    if keep {
        poller.watch(ours);
    }
    let started = Instant::now();
    for _ in 0..ROUNDS {
        if !keep {
            poller.watch(ours);
        }
        poke(peer);
        uv.run_once();
    }
    let elapsed = started.elapsed().as_nanos() as f64 / ROUNDS as f64;
    drop(poller);
    drop(uv);
    close_pairs(&[(ours, peer)]);
    close_pairs(&idle);
    elapsed
}

fn close_pairs(pairs: &[(c_int, c_int)]) {
    for &(a, b) in pairs {
        // SAFETY: each fd was opened by socketpair and is closed once.
        unsafe {
            libc::close(a);
            libc::close(b);
        }
    }
}

fn main() {
    println!("ns per wait: the peer writes a byte, uv_run(ONCE), the callback reads it");
    println!("({ROUNDS} waits per run, best of 5 runs)\n");
    println!(
        "{:<52} {:>14} {:>14}",
        "", "uv_poll per fd", "member poller"
    );
    type Measure = fn(usize, bool) -> f64;
    let best = |f: Measure, idle, keep| (0..5).map(|_| f(idle, keep)).fold(f64::INFINITY, f64::min);
    for (label, keep) in [
        ("watch, wait, unwatch (sock_recv)", false),
        ("stays watched (add_reader)", true),
    ] {
        for idle in [0, 1000] {
            let row = format!("{label}, {idle} idle fds watched");
            println!(
                "{row:<52} {:>14.0} {:>14.0}",
                best(per_fd_polls, idle, keep),
                best(member_poller, idle, keep)
            );
        }
    }
}
