//! The loop's OS-specific modules, compiled on their own so that `cargo check --target` can
//! type-check them for systems these machines cannot build the whole extension for (libuv's
//! bindings and CPython's need the target's headers): the fd watchers' poller, the clock, the
//! socket system calls and the descriptor listing of subprocesses' `close_fds`.

#[path = "../../src/loop_/poller/mod.rs"]
pub mod poller;

#[path = "../../src/clock.rs"]
pub mod clock;

#[path = "../../src/transports/syscall.rs"]
pub mod syscall;

#[path = "../../src/uv/close_fds.rs"]
pub mod close_fds;
