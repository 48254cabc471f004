//! Safe wrappers over the parts of libuv the loop uses.
//!
//! Every `uv_*_t` lives in its own heap allocation owned by exactly one Rust value; libuv's close
//! callback is the only place that frees it (see `handle`). Callbacks reach the Rust state through
//! the handle allocation itself, never through a pointer to something that could move.

pub mod async_handle;
pub mod error;
pub mod event_loop;
pub mod handle;
pub mod pipe;
pub mod poll;
pub mod prepare;
pub mod process;
pub mod stream;
pub mod tcp;
pub mod timer;
pub mod udp;
pub mod work;

pub use libuv_sys2 as sys;

/// Runs a Rust test body attached to an interpreter (started on first use).
#[cfg(test)]
pub fn with_python<R>(body: impl FnOnce(pyo3::Python<'_>) -> R) -> R {
    pyo3::Python::initialize();
    pyo3::Python::attach(body)
}
