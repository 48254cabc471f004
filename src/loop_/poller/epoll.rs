//! epoll (Linux).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::{Event, Interest, READABLE, WRITABLE};

pub struct Poller {
    epoll: OwnedFd,
    events: Vec<libc::epoll_event>,
}

fn epoll_events(interest: Interest, oneshot: bool) -> u32 {
    let mut events = 0;
    if interest & READABLE != 0 {
        events |= libc::EPOLLIN as u32;
    }
    if interest & WRITABLE != 0 {
        events |= libc::EPOLLOUT as u32;
    }
    if oneshot {
        events |= libc::EPOLLONESHOT as u32;
    }
    events
}

impl Poller {
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain syscall; the result is checked before use.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            // SAFETY: `fd` is a freshly created descriptor owned by nobody else.
            epoll: unsafe { OwnedFd::from_raw_fd(fd) },
            events: Vec::new(),
        })
    }

    /// Readable when a registration has events.
    pub fn fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }

    fn ctl(&self, op: i32, fd: RawFd, events: u32) -> io::Result<()> {
        let mut event = libc::epoll_event {
            events,
            u64: fd as u64,
        };
        // SAFETY: valid epoll fd and a valid event struct; errors are reported through errno.
        if unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), op, fd, &mut event) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Starts watching `fd` (level-triggered, or armed once with `oneshot`).
    pub fn add(&self, fd: RawFd, interest: Interest, oneshot: bool) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, epoll_events(interest, oneshot))
    }

    /// Changes what `fd` is watched for (from `_old`); ENOENT if it is not watched.
    pub fn modify(
        &self,
        fd: RawFd,
        _old: Interest,
        new: Interest,
        oneshot: bool,
    ) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, epoll_events(new, oneshot))
    }

    /// Stops watching `fd` (errors, as for a descriptor closed since, are ignored: the kernel
    /// dropped it already).
    pub fn delete(&self, fd: RawFd, _old: Interest) {
        let _ = self.ctl(libc::EPOLL_CTL_DEL, fd, 0);
    }

    /// What is ready now, at most `capacity` descriptors (a look, never a wait). As
    /// `selectors.EpollSelector`: an error or hang-up counts as both readable and writable.
    pub fn ready(&mut self, capacity: usize, found: &mut Vec<Event>) {
        let capacity = capacity.max(1);
        self.events.clear();
        self.events.reserve(capacity);
        // SAFETY: the buffer has room for `capacity` events; epoll_wait writes at most that many
        // and returns how many it wrote.
        let n = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                self.events.as_mut_ptr(),
                capacity as i32,
                0,
            )
        };
        // SAFETY: epoll_wait initialised the first `n` entries (none on error, e.g. EINTR).
        unsafe { self.events.set_len(n.max(0) as usize) };
        found.extend(self.events.iter().map(|event| {
            let bits = event.events;
            Event {
                fd: event.u64 as RawFd,
                readable: bits & !(libc::EPOLLOUT as u32) != 0,
                writable: bits & !(libc::EPOLLIN as u32) != 0,
            }
        }));
    }
}
