//! Transports: the per-read and per-write halves of asyncio's transports, natively.

mod buffer;
mod stream;
mod syscall;
mod write_queue;

pub use stream::StreamTransport;
