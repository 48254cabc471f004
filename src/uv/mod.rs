//! Safe wrappers over the parts of libuv the loop uses.
//!
//! Every `uv_*_t` lives in its own heap allocation owned by exactly one Rust value; libuv's close
//! callback is the only place that frees it (see `handle`). Callbacks reach the Rust state through
//! the handle allocation itself, never through a pointer to something that could move.

pub mod error;
pub mod event_loop;
pub mod handle;
pub mod work;

pub use libuv_sys2 as sys;
