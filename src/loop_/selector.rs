//! `add_reader`/`add_writer` watchers: an epoll set of our own, nested in libuv.
//!
//! asyncio registers a watched fd with epoll at once and lets the kernel forget it when it is
//! closed; libuv defers registration to its next poll and aborts the process if the fd was closed
//! meanwhile. So user fds never go to libuv: they live in this epoll set, whose own fd is the one
//! thing libuv watches. Registration errors surface immediately (PermissionError for regular
//! files, OSError(EBADF) for closed fds), and readiness is reported the way asyncio's
//! `EpollSelector` reports it (an error or hang-up wakes both the reader and the writer).

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use pyo3::prelude::*;

use crate::handles::Handle;

/// One watched fd, like a `selectors.SelectorKey` with `(reader, writer)` as data.
struct Key {
    /// The object passed to add_reader/add_writer, kept alive as asyncio's selector keeps it.
    fileobj: Py<PyAny>,
    reader: Option<Py<Handle>>,
    writer: Option<Py<Handle>>,
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

pub struct Selector {
    epoll: OwnedFd,
    keys: HashMap<RawFd, Key>,
    events: Vec<libc::epoll_event>,
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
            events: Vec::new(),
        })
    }

    /// The epoll fd libuv watches for us.
    pub fn fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
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
                    },
                    Side::Writer => Key {
                        fileobj,
                        reader: None,
                        writer: Some(handle),
                    },
                };
                self.ctl(libc::EPOLL_CTL_ADD, fd, key.epoll_events())?;
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
                // As selectors' modify(): the key keeps the object it was registered with, which
                // is how a socket closed since is still found (`fd_of`).
                drop(fileobj);
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
            let _ = self.ctl(libc::EPOLL_CTL_MOD, fd, events);
            (removed, None)
        }
    }

    /// Polls without blocking and returns the handles to run, in asyncio's order (per fd:
    /// reader, then writer), plus the sides whose handle was cancelled (to be removed).
    pub fn collect(&mut self, py: Python<'_>) -> (Vec<Py<Handle>>, Vec<(RawFd, Side)>) {
        let mut ready = Vec::new();
        let mut cancelled = Vec::new();
        let capacity = self.keys.len().max(1);
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
        if n <= 0 {
            return (ready, cancelled);
        }
        // SAFETY: epoll_wait initialised the first `n` entries.
        unsafe { self.events.set_len(n as usize) };
        for event in &self.events {
            let fd = event.u64 as RawFd;
            let bits = event.events;
            let Some(key) = self.keys.get(&fd) else {
                continue;
            };
            // EpollSelector: anything but EPOLLIN counts as writable, anything but EPOLLOUT as
            // readable.
            let readable = bits & !(libc::EPOLLOUT as u32) != 0;
            let writable = bits & !(libc::EPOLLIN as u32) != 0;
            for (side, wanted, slot) in [
                (Side::Reader, readable, &key.reader),
                (Side::Writer, writable, &key.writer),
            ] {
                if let (true, Some(handle)) = (wanted, slot) {
                    if handle.get().is_cancelled(py) {
                        cancelled.push((fd, side));
                    } else {
                        ready.push(handle.clone_ref(py));
                    }
                }
            }
        }
        (ready, cancelled)
    }

    /// Empties the set, handing back every handle and file object for dropping outside a borrow.
    pub fn drain(&mut self) -> Vec<DrainedKey> {
        self.keys
            .drain()
            .map(|(_, key)| (key.reader, key.writer, key.fileobj))
            .collect()
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
