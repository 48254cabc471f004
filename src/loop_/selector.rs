//! The set of `add_reader`/`add_writer` fds, sock_* operations and write pipes watched for their
//! reader going away: an OS poller of its own (see `poller`), which is one member of libuv's
//! loop (a `uv_poll_t` on the poller's fd, see `uv::poll`).
//!
//! asyncio registers a watched fd with its selector at once and lets the kernel forget it when
//! it is closed; libuv defers registration to its next poll and aborts the process if the fd was
//! closed meanwhile, and its `uv_poll_t` makes the fd non-blocking. So user fds never go to
//! libuv: they live in this set, which libuv watches as a whole. Registration errors surface
//! immediately (PermissionError for regular files under epoll, OSError(EBADF) for closed fds),
//! and readiness is reported as asyncio's selector of the system reports it.
//!
//! sock_* operations register here too, without Handle objects: their readiness goes to the
//! ready queue as a `Ready::SockOp` entry, in the place asyncio would put their reader/writer
//! handle.

use std::collections::HashMap;
use std::io;
use std::os::fd::RawFd;

use pyo3::prelude::*;

use super::poller::{Event, Poller};
pub use super::poller::{Interest, READABLE, WRITABLE};

use crate::handles::Handle;
use crate::transports::{SockOp, StreamCore};

/// One watched fd, like a `selectors.SelectorKey` with `(reader, writer)` as data.
struct Key {
    /// The object passed to add_reader/add_writer, kept alive as asyncio's selector keeps it.
    fileobj: Py<PyAny>,
    reader: Option<Py<Handle>>,
    writer: Option<Py<Handle>>,
    /// What the kernel watches the fd for: more than `interest()` while a removed side waits
    /// for the next poll to be dropped (see `Selector::narrowed`).
    registered: Interest,
}

impl Key {
    fn interest(&self) -> Interest {
        (if self.reader.is_some() { READABLE } else { 0 })
            | (if self.writer.is_some() { WRITABLE } else { 0 })
    }
}

/// A watched fd's reader, writer and file object, as `Selector::drain` hands them back.
pub type DrainedKey = (Option<Py<Handle>>, Option<Py<Handle>>, Py<PyAny>);

pub struct Selector {
    poller: Poller,
    keys: HashMap<RawFd, Key>,
    /// sock_* operations (a reading and a writing one per fd), registered one-shot: each wait
    /// re-arms the fd with one system call, and an fd stays in the set (disarmed) between
    /// operations instead of leaving and rejoining it.
    sock_ops: HashMap<RawFd, SockSlots>,
    /// Write pipes whose reading end going away is watched (asyncio's reader on a write pipe).
    peer_watches: HashMap<RawFd, Py<StreamCore>>,
    events: Vec<Event>,
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
        Ok(Self {
            poller: Poller::new()?,
            keys: HashMap::new(),
            sock_ops: HashMap::new(),
            peer_watches: HashMap::new(),
            events: Vec::new(),
            narrowed: Vec::new(),
        })
    }

    /// The poller's own descriptor: readable when a registration has events (libuv watches it
    /// for the loop).
    pub fn fd(&self) -> RawFd {
        self.poller.fd()
    }

    /// In a forked child: moves every registration to a new poller, so that changes no longer
    /// reach the one shared with the parent (epoll) or one the child lost (kqueue).
    pub fn rebuild_after_fork(&mut self) -> io::Result<()> {
        self.poller = Poller::new()?;
        let keys: Vec<(RawFd, Interest)> = self
            .keys
            .iter()
            .map(|(fd, key)| (*fd, key.interest()))
            .collect();
        // An fd closed since it was registered is simply not watched any more, as the kernel
        // would have dropped it from the old set.
        for (fd, interest) in keys {
            let _ = self.poller.add(fd, interest, false);
            if let Some(key) = self.keys.get_mut(&fd) {
                key.registered = interest;
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
            let _ = self.poller.add(fd, interest, true);
        }
        let watches: Vec<RawFd> = self.peer_watches.keys().copied().collect();
        for fd in watches {
            let _ = self.poller.add(fd, READABLE, false);
        }
        Ok(())
    }

    /// What is ready now (a look, never a wait), in asyncio's order.
    pub fn poll_now(&mut self, py: Python<'_>) -> Collected {
        self.apply_narrowed();
        let mut events = std::mem::take(&mut self.events);
        events.clear();
        let capacity = self.keys.len() + self.sock_ops.len() + self.peer_watches.len();
        self.poller.ready(capacity, &mut events);
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
                        registered: READABLE,
                    },
                    Side::Writer => Key {
                        fileobj,
                        reader: None,
                        writer: Some(handle),
                        registered: WRITABLE,
                    },
                };
                self.evict_sock_op(fd);
                self.poller.add(fd, key.registered, false)?;
                self.keys.insert(fd, key);
                Ok(None)
            }
            Some(key) => {
                let slot = match side {
                    Side::Reader => &mut key.reader,
                    Side::Writer => &mut key.writer,
                };
                let old = slot.replace(handle);
                let events = key.interest();
                let registered = key.registered;
                // As selectors' modify(): the key keeps the object it was registered with, which
                // is how a socket closed since is still found (`fd_of`).
                drop(fileobj);
                if events & !registered == 0 {
                    // The kernel still watches for this side (removed since the last wait).
                    return Ok(old);
                }
                if let Err(err) = self.poller.modify(fd, registered, events, false) {
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
        let events = key.interest();
        if events == 0 {
            let registered = key.registered;
            let key = self.keys.remove(&fd);
            // The fd may already be closed (then the kernel dropped it from the set): ignored,
            // as asyncio's selector ignores it.
            self.poller.delete(fd, registered);
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
            let events = key.interest();
            if events != key.registered {
                let registered = std::mem::replace(&mut key.registered, events);
                // The fd may already be closed (then the kernel dropped it): ignored.
                let _ = self.poller.modify(fd, registered, events, false);
            }
        }
    }

    /// What the events of a wait mean, in asyncio's order (per fd: reader, then writer); the
    /// buffer goes back for the next wait.
    fn collect(&mut self, events: Vec<Event>, py: Python<'_>) -> Collected {
        let mut found = Collected::default();
        for event in &events {
            let Event {
                fd,
                readable,
                writable,
            } = *event;
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
                self.poller.delete(fd, READABLE);
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
        let before = slots.interest();
        let side = if interest & READABLE != 0 {
            &mut slots.reader
        } else {
            &mut slots.writer
        };
        let replaced = side.replace(op.clone_ref(py));
        let wanted = slots.interest();
        let armed = if known {
            // Still registered, unless the fd was closed (and maybe reused) since.
            match self.poller.modify(fd, before, wanted, true) {
                Err(err) if err.raw_os_error() == Some(libc::ENOENT) => {
                    self.poller.add(fd, wanted, true)
                }
                other => other,
            }
        } else {
            self.poller.add(fd, wanted, true)
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
        self.poller.add(fd, READABLE, false)?;
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
                self.poller.delete(fd, READABLE);
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
            self.poller.delete(fd, READABLE | WRITABLE);
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
}
