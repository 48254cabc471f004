//! The epoll set of `add_reader`/`add_writer` fds, sock_* operations and native transports: one
//! member of libuv's loop (a `uv_poll_t` on the set's own fd, see `uv::poll`).
//!
//! asyncio registers a watched fd with epoll at once and lets the kernel forget it when it is
//! closed; libuv defers registration to its next poll and aborts the process if the fd was closed
//! meanwhile, and its `uv_poll_t` makes the fd non-blocking. So user fds never go to libuv: they
//! live in this set, which libuv watches as a whole. Registration errors surface immediately
//! (PermissionError for regular files, OSError(EBADF) for closed fds), and readiness is reported
//! the way asyncio's `EpollSelector` reports it (an error or hang-up wakes both the reader and the
//! writer).
//!
//! sock_* operations register here too, without Handle objects: their readiness goes to the
//! ready queue as a `Ready::SockOp` entry, in the place asyncio would put their reader/writer
//! handle.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use pyo3::prelude::*;

use crate::handles::Handle;
use crate::transports::{SockOp, StreamCore};

/// One watched fd, like a `selectors.SelectorKey` with `(reader, writer)` as data.
struct Key {
    /// The object passed to add_reader/add_writer, kept alive as asyncio's selector keeps it.
    fileobj: Py<PyAny>,
    reader: Option<Py<Handle>>,
    writer: Option<Py<Handle>>,
    /// The epoll events the kernel has for the fd: more than `epoll_events()` while a removed
    /// side waits for the next poll to be dropped (see `Selector::narrowed`).
    registered: u32,
}

impl Key {
    fn epoll_events(&self) -> u32 {
        let mut events = 0;
        if self.reader.is_some() {
            events |= libc::EPOLLIN as u32;
        }
        if self.writer.is_some() {
            events |= libc::EPOLLOUT as u32;
        }
        events
    }
}

/// A watched fd's reader, writer and file object, as `Selector::drain` hands them back.
pub type DrainedKey = (Option<Py<Handle>>, Option<Py<Handle>>, Py<PyAny>);

/// What a sock_* operation waits for on its fd: `READABLE` or `WRITABLE`.
pub type Interest = u32;
pub const READABLE: Interest = 1;
pub const WRITABLE: Interest = 2;

pub struct Selector {
    epoll: OwnedFd,
    keys: HashMap<RawFd, Key>,
    /// sock_* operations (a reading and a writing one per fd), registered one-shot: each wait
    /// re-arms the fd with one epoll_ctl, and an fd stays in the set (disarmed) between
    /// operations instead of leaving and rejoining it.
    sock_ops: HashMap<RawFd, SockSlots>,
    /// Write pipes whose reading end going away is watched (asyncio's reader on a write pipe).
    peer_watches: HashMap<RawFd, Py<StreamCore>>,
    events: Vec<libc::epoll_event>,
    /// Keys that lost a side since the last wait. The kernel learns of it just before the next
    /// wait, so that a writer removed and added back in between (a transport whose queue
    /// drained, then got more) costs no system call.
    narrowed: Vec<RawFd>,
}

/// The sock_* operations waiting on one fd.
#[derive(Default)]
struct SockSlots {
    reader: Option<Py<SockOp>>,
    writer: Option<Py<SockOp>>,
}

impl SockSlots {
    fn interest(&self) -> Interest {
        (if self.reader.is_some() { READABLE } else { 0 })
            | (if self.writer.is_some() { WRITABLE } else { 0 })
    }

    fn ops(&self) -> impl Iterator<Item = &Py<SockOp>> {
        self.reader.iter().chain(self.writer.iter())
    }
}

/// What one poll found: handles to run, native transports to notify, and the add_reader sides
/// whose handle had been cancelled (to be removed).
#[derive(Default)]
pub struct Collected {
    pub handles: Vec<Py<Handle>>,
    pub sock_ops: Vec<Py<SockOp>>,
    /// Write pipes whose reader went away.
    pub peers_closed: Vec<Py<StreamCore>>,
    pub cancelled: Vec<(RawFd, Side)>,
}

/// Which side of a key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Reader,
    Writer,
}

impl Selector {
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain syscall; the result is checked before use.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            // SAFETY: `fd` is a freshly created descriptor owned by nobody else.
            epoll: unsafe { OwnedFd::from_raw_fd(fd) },
            keys: HashMap::new(),
            sock_ops: HashMap::new(),
            peer_watches: HashMap::new(),
            events: Vec::new(),
            narrowed: Vec::new(),
        })
    }

    /// The epoll set's own descriptor: readable when a registration has events (libuv watches
    /// it for the loop).
    pub fn fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }

    /// In a forked child: moves every registration to a new epoll set, so that changes no
    /// longer reach the set shared with the parent.
    pub fn rebuild_after_fork(&mut self) -> io::Result<()> {
        let fresh = Self::new()?;
        self.epoll = fresh.epoll;
        let keys: Vec<(RawFd, u32)> = self
            .keys
            .iter()
            .map(|(fd, key)| (*fd, key.epoll_events()))
            .collect();
        // An fd closed since it was registered is simply not watched any more, as the kernel
        // would have dropped it from the old set.
        for (fd, events) in keys {
            let _ = self.ctl(libc::EPOLL_CTL_ADD, fd, events);
            if let Some(key) = self.keys.get_mut(&fd) {
                key.registered = events;
            }
        }
        // Waiting sock operations are armed again in the new set; idle fds rejoin on use.
        self.sock_ops.retain(|_, slots| slots.interest() != 0);
        let waiting: Vec<(RawFd, Interest)> = self
            .sock_ops
            .iter()
            .map(|(fd, slots)| (*fd, slots.interest()))
            .collect();
        for (fd, interest) in waiting {
            let events = interest_events(interest) | libc::EPOLLONESHOT as u32;
            let _ = self.ctl(libc::EPOLL_CTL_ADD, fd, events);
        }
        Ok(())
    }

    /// What is ready now (a look, never a wait), in asyncio's order.
    pub fn poll_now(&mut self, py: Python<'_>) -> Collected {
        self.apply_narrowed();
        let mut events = std::mem::take(&mut self.events);
        events.clear();
        let capacity = (self.keys.len() + self.sock_ops.len() + self.peer_watches.len()).max(1);
        events.reserve(capacity);
        // SAFETY: the buffer has room for `capacity` events; epoll_wait writes at most that many
        // and returns how many it wrote.
        let n = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                events.as_mut_ptr(),
                capacity as i32,
                0,
            )
        };
        // SAFETY: epoll_wait initialised the first `n` entries (none on error, e.g. EINTR).
        unsafe { events.set_len(n.max(0) as usize) };
        self.collect(events, py)
    }

    /// Installs `handle` on one side of `fd`, returning the handle it replaces (to be cancelled by
    /// the caller, outside any borrow).
    pub fn add(
        &mut self,
        fd: RawFd,
        fileobj: Py<PyAny>,
        side: Side,
        handle: Py<Handle>,
    ) -> io::Result<Option<Py<Handle>>> {
        match self.keys.get_mut(&fd) {
            None => {
                let key = match side {
                    Side::Reader => Key {
                        fileobj,
                        reader: Some(handle),
                        writer: None,
                        registered: libc::EPOLLIN as u32,
                    },
                    Side::Writer => Key {
                        fileobj,
                        reader: None,
                        writer: Some(handle),
                        registered: libc::EPOLLOUT as u32,
                    },
                };
                self.evict_sock_op(fd);
                self.ctl(libc::EPOLL_CTL_ADD, fd, key.registered)?;
                self.keys.insert(fd, key);
                Ok(None)
            }
            Some(key) => {
                let slot = match side {
                    Side::Reader => &mut key.reader,
                    Side::Writer => &mut key.writer,
                };
                let old = slot.replace(handle);
                let events = key.epoll_events();
                let registered = key.registered;
                // As selectors' modify(): the key keeps the object it was registered with, which
                // is how a socket closed since is still found (`fd_of`).
                drop(fileobj);
                if events & !registered == 0 {
                    // The kernel still watches for this side (removed since the last wait).
                    return Ok(old);
                }
                if let Err(err) = self.ctl(libc::EPOLL_CTL_MOD, fd, events) {
                    // Leave the key as it was; the new handle is dropped, the old one stays.
                    if let Some(key) = self.keys.get_mut(&fd) {
                        let slot = match side {
                            Side::Reader => &mut key.reader,
                            Side::Writer => &mut key.writer,
                        };
                        *slot = old;
                    }
                    return Err(err);
                }
                if let Some(key) = self.keys.get_mut(&fd) {
                    key.registered = events;
                }
                Ok(old)
            }
        }
    }

    /// Removes one side of `fd`; returns the removed handle (to be cancelled by the caller) and
    /// the key's file object when the whole key went away (to be dropped outside the borrow).
    pub fn remove(&mut self, fd: RawFd, side: Side) -> (Option<Py<Handle>>, Option<Py<PyAny>>) {
        let Some(key) = self.keys.get_mut(&fd) else {
            return (None, None);
        };
        let removed = match side {
            Side::Reader => key.reader.take(),
            Side::Writer => key.writer.take(),
        };
        let events = key.epoll_events();
        if events == 0 {
            let key = self.keys.remove(&fd);
            // The fd may already be closed (then the kernel dropped it from the set): ignored,
            // as asyncio's selector ignores it.
            let _ = self.ctl(libc::EPOLL_CTL_DEL, fd, 0);
            (removed, key.map(|k| k.fileobj))
        } else {
            if events != key.registered {
                self.narrowed.push(fd);
            }
            (removed, None)
        }
    }

    /// Tells the kernel about the sides removed since the last wait (none of which may wake
    /// it: the collected events of such a side would find no handle, but a level-triggered
    /// writable fd would end every wait at once).
    fn apply_narrowed(&mut self) {
        for fd in std::mem::take(&mut self.narrowed) {
            let Some(key) = self.keys.get_mut(&fd) else {
                continue;
            };
            let events = key.epoll_events();
            if events != key.registered {
                key.registered = events;
                // The fd may already be closed (then the kernel dropped it): ignored.
                let _ = self.ctl(libc::EPOLL_CTL_MOD, fd, events);
            }
        }
    }

    /// What the events of a wait mean, in asyncio's order (per fd: reader, then writer); the
    /// buffer goes back for the next wait.
    fn collect(&mut self, events: Vec<libc::epoll_event>, py: Python<'_>) -> Collected {
        let mut found = Collected::default();
        for event in &events {
            let fd = event.u64 as RawFd;
            let bits = event.events;
            // EpollSelector: anything but EPOLLIN counts as writable, anything but EPOLLOUT as
            // readable.
            let readable = bits & !(libc::EPOLLOUT as u32) != 0;
            let writable = bits & !(libc::EPOLLIN as u32) != 0;
            if let Some(slots) = self.sock_ops.get(&fd) {
                // One-shot: the fd is disarmed now, so every waiting operation retries (and
                // re-arms if it still cannot proceed).
                for op in slots.ops() {
                    found.sock_ops.push(op.clone_ref(py));
                }
                continue;
            }
            if let Some(core) = self.peer_watches.remove(&fd) {
                // Once: the transport closes.
                let _ = self.ctl(libc::EPOLL_CTL_DEL, fd, 0);
                found.peers_closed.push(core);
                continue;
            }
            let Some(key) = self.keys.get(&fd) else {
                continue;
            };
            for (side, wanted, slot) in [
                (Side::Reader, readable, &key.reader),
                (Side::Writer, writable, &key.writer),
            ] {
                if let (true, Some(handle)) = (wanted, slot) {
                    if handle.get().is_cancelled(py) {
                        found.cancelled.push((fd, side));
                    } else {
                        found.handles.push(handle.clone_ref(py));
                    }
                }
            }
        }
        self.events = events;
        found
    }

    /// Arms `fd` once for `op`, waiting for `interest` (READABLE or WRITABLE) together with the
    /// fd's other waiting operation; returns an operation of the same side it replaces.
    pub fn arm_sock_op(
        &mut self,
        fd: RawFd,
        op: &Py<SockOp>,
        interest: Interest,
        py: Python<'_>,
    ) -> io::Result<Option<Py<SockOp>>> {
        if self.keys.contains_key(&fd) {
            return Err(io::Error::from_raw_os_error(libc::EEXIST));
        }
        let known = self.sock_ops.contains_key(&fd);
        let slots = self.sock_ops.entry(fd).or_default();
        let side = if interest & READABLE != 0 {
            &mut slots.reader
        } else {
            &mut slots.writer
        };
        let replaced = side.replace(op.clone_ref(py));
        let events = interest_events(slots.interest()) | libc::EPOLLONESHOT as u32;
        let armed = if known {
            // Still registered, unless the fd was closed (and maybe reused) since.
            match self.ctl(libc::EPOLL_CTL_MOD, fd, events) {
                Err(err) if err.raw_os_error() == Some(libc::ENOENT) => {
                    self.ctl(libc::EPOLL_CTL_ADD, fd, events)
                }
                other => other,
            }
        } else {
            self.ctl(libc::EPOLL_CTL_ADD, fd, events)
        };
        if let Err(err) = armed {
            self.disarm_sock_op(fd, op);
            return Err(err);
        }
        Ok(replaced.filter(|old| old.as_ptr() != op.as_ptr()))
    }

    /// Watches the write pipe `fd` (libuv's descriptor of `core`) for its reading end going away
    /// (an error or hang-up; readability on a socket).
    pub fn watch_peer_close(&mut self, fd: RawFd, core: Py<StreamCore>) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, libc::EPOLLIN as u32)?;
        drop(self.peer_watches.insert(fd, core));
        Ok(())
    }

    /// Stops watching `fd` for `core` (before libuv closes it); the watch is returned for
    /// dropping outside the borrow.
    pub fn unwatch_peer_close(
        &mut self,
        fd: RawFd,
        core: &Py<StreamCore>,
    ) -> Option<Py<StreamCore>> {
        match self.peer_watches.get(&fd) {
            Some(watched) if watched.as_ptr() == core.as_ptr() => {
                let _ = self.ctl(libc::EPOLL_CTL_DEL, fd, 0);
                self.peer_watches.remove(&fd)
            }
            _ => None,
        }
    }

    pub fn peer_watches(&self) -> impl Iterator<Item = &Py<StreamCore>> {
        self.peer_watches.values()
    }

    /// `op` is done: the fd stays registered (disarmed) for the next operation.
    pub fn disarm_sock_op(&mut self, fd: RawFd, op: &Py<SockOp>) -> Option<Py<SockOp>> {
        let slots = self.sock_ops.get_mut(&fd)?;
        for side in [&mut slots.reader, &mut slots.writer] {
            if side
                .as_ref()
                .is_some_and(|current| current.as_ptr() == op.as_ptr())
            {
                return side.take();
            }
        }
        None
    }

    /// Another registration takes the fd over from sock operations (as a new reader replaces
    /// asyncio's sock_recv reader).
    fn evict_sock_op(&mut self, fd: RawFd) {
        if self.sock_ops.remove(&fd).is_some() {
            // Not registered any more if the fd was closed since: ignored.
            let _ = self.ctl(libc::EPOLL_CTL_DEL, fd, 0);
        }
    }

    /// Empties the set, handing back every handle and file object for dropping outside a borrow.
    pub fn drain(&mut self) -> (Vec<DrainedKey>, Vec<Py<SockOp>>, Vec<Py<StreamCore>>) {
        let keys = self
            .keys
            .drain()
            .map(|(_, key)| (key.reader, key.writer, key.fileobj))
            .collect();
        let ops = self
            .sock_ops
            .drain()
            .flat_map(|(_, slots)| slots.reader.into_iter().chain(slots.writer))
            .collect();
        let watches = self.peer_watches.drain().map(|(_, core)| core).collect();
        (keys, ops, watches)
    }

    pub fn sock_ops(&self) -> impl Iterator<Item = &Py<SockOp>> {
        self.sock_ops.values().flat_map(SockSlots::ops)
    }

    /// `selectors.EVENT_READ` (1) and/or `EVENT_WRITE` (2) for the sides watched on `fd`.
    pub fn watched_events(&self, fd: RawFd) -> u32 {
        self.keys.get(&fd).map_or(0, |key| {
            u32::from(key.reader.is_some()) | u32::from(key.writer.is_some()) << 1
        })
    }

    pub fn handles(&self) -> impl Iterator<Item = &Py<Handle>> {
        self.keys
            .values()
            .flat_map(|key| key.reader.iter().chain(key.writer.iter()))
    }

    /// The fd under which `fileobj` (the very object) was registered.
    pub fn fd_of(&self, fileobj: &Bound<'_, PyAny>) -> Option<RawFd> {
        self.keys
            .iter()
            .find(|(_, key)| key.fileobj.as_ptr() == fileobj.as_ptr())
            .map(|(fd, _)| *fd)
    }

    pub fn fileobjs(&self) -> impl Iterator<Item = &Py<PyAny>> {
        self.keys.values().map(|key| &key.fileobj)
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
}

/// The epoll events for a sock_* operation's interest.
fn interest_events(interest: Interest) -> u32 {
    let mut events = 0;
    if interest & READABLE != 0 {
        events |= libc::EPOLLIN as u32;
    }
    if interest & WRITABLE != 0 {
        events |= libc::EPOLLOUT as u32;
    }
    events
}
