//! The OS poller behind the fd watchers' set (see `selector`): epoll on Linux, kqueue on macOS
//! and the BSDs. Both register a descriptor at once (so that a closed or unwatchable one fails
//! there, as asyncio's selectors fail), forget it by themselves when it is closed, and have a
//! descriptor of their own that libuv watches. Readiness is reported as each of asyncio's
//! selectors reports it on that system.

#[cfg(any(target_os = "linux", target_os = "android"))]
mod epoll;
#[cfg(any(target_os = "linux", target_os = "android"))]
pub use epoll::Poller;

#[cfg(any(
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly"
))]
mod kqueue;
#[cfg(any(
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly"
))]
pub use kqueue::Poller;

#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly"
)))]
compile_error!("the fd watchers need epoll or kqueue: this system has neither");

use std::os::fd::RawFd;

/// Readiness of a watched descriptor: `READABLE` and/or `WRITABLE`.
pub type Interest = u32;
pub const READABLE: Interest = 1;
pub const WRITABLE: Interest = 2;

/// What a poll found on one descriptor.
#[derive(Clone, Copy)]
pub struct Event {
    pub fd: RawFd,
    pub readable: bool,
    pub writable: bool,
}
