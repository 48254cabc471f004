//! kqueue (macOS and the BSDs). Written to the same contract as the epoll poller; these
//! machines run Linux only, so this module is type-checked for macOS and FreeBSD by `make test`
//! (the `portability` crate) but not run (see the README).

// kevent's field types differ between macOS and the BSDs, hence casts that are no-ops on some.
#![allow(clippy::unnecessary_cast)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::{Event, Interest, READABLE, WRITABLE};

pub struct Poller {
    kqueue: OwnedFd,
    events: Vec<libc::kevent>,
}

fn change(fd: RawFd, filter: i16, flags: u16) -> libc::kevent {
    // SAFETY: kevent is plain C data; zeroed means no filter flags, data or user data.
    let mut event: libc::kevent = unsafe { std::mem::zeroed() };
    event.ident = fd as _;
    event.filter = filter as _;
    event.flags = flags as _;
    event
}

impl Poller {
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain syscall; the result is checked before use.
        let fd = unsafe { libc::kqueue() };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a freshly created descriptor owned by nobody else.
        let kqueue = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: plain fcntl on our own descriptor.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        Ok(Self {
            kqueue,
            events: Vec::new(),
        })
    }

    /// Readable when a registration has events.
    pub fn fd(&self) -> RawFd {
        self.kqueue.as_raw_fd()
    }

    fn apply(&self, changes: &[libc::kevent]) -> io::Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        // SAFETY: valid kqueue and change list; with no room for events, a failed change makes
        // kevent fail with its errno.
        let n = unsafe {
            libc::kevent(
                self.kqueue.as_raw_fd(),
                changes.as_ptr(),
                changes.len() as _,
                std::ptr::null_mut(),
                0,
                std::ptr::null(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn filters(fd: RawFd, interest: Interest, flags: u16) -> Vec<libc::kevent> {
        let mut changes = Vec::with_capacity(2);
        if interest & READABLE != 0 {
            changes.push(change(fd, libc::EVFILT_READ as i16, flags));
        }
        if interest & WRITABLE != 0 {
            changes.push(change(fd, libc::EVFILT_WRITE as i16, flags));
        }
        changes
    }

    fn add_flags(oneshot: bool) -> u16 {
        let mut flags = libc::EV_ADD as u16;
        if oneshot {
            flags |= libc::EV_ONESHOT as u16;
        }
        flags
    }

    /// Starts watching `fd` (level-triggered, or armed once with `oneshot`).
    pub fn add(&self, fd: RawFd, interest: Interest, oneshot: bool) -> io::Result<()> {
        self.apply(&Self::filters(fd, interest, Self::add_flags(oneshot)))
    }

    /// Changes what `fd` is watched for, from `old` to `new` (a filter of `old` that fired once
    /// is gone already: its removal may fail, harmlessly).
    pub fn modify(&self, fd: RawFd, old: Interest, new: Interest, oneshot: bool) -> io::Result<()> {
        self.apply(&Self::filters(fd, new, Self::add_flags(oneshot)))?;
        self.delete(fd, old & !new);
        Ok(())
    }

    /// Stops watching `fd` (errors, as for a descriptor closed since, are ignored: the kernel
    /// dropped it already).
    pub fn delete(&self, fd: RawFd, old: Interest) {
        for event in Self::filters(fd, old, libc::EV_DELETE as u16) {
            let _ = self.apply(&[event]);
        }
    }

    /// What is ready now, at most `capacity` events (a look, never a wait). As
    /// `selectors.KqueueSelector`: readable or writable by filter.
    pub fn ready(&mut self, capacity: usize, found: &mut Vec<Event>) {
        let capacity = capacity.max(1) * 2;
        self.events.clear();
        self.events.reserve(capacity);
        let timeout = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: the buffer has room for `capacity` events; kevent writes at most that many and
        // returns how many it wrote.
        let n = unsafe {
            libc::kevent(
                self.kqueue.as_raw_fd(),
                std::ptr::null(),
                0,
                self.events.as_mut_ptr(),
                capacity as _,
                &timeout,
            )
        };
        // SAFETY: kevent initialised the first `n` entries (none on error, e.g. EINTR).
        unsafe { self.events.set_len(n.max(0) as usize) };
        found.extend(self.events.iter().map(|event| Event {
            fd: event.ident as RawFd,
            readable: event.filter == libc::EVFILT_READ as _,
            writable: event.filter == libc::EVFILT_WRITE as _,
        }));
    }
}
