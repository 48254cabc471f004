//! Safe wrappers over the parts of libuv the loop uses.
//!
//! Every `uv_*_t` lives in its own heap allocation owned by exactly one Rust value; libuv's close
//! callback is the only place that frees it (see `handle`). Callbacks reach the Rust state through
//! the handle allocation itself, never through a pointer to something that could move.

pub mod async_handle;
pub mod child_exit;
pub mod close_fds;
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

/// Test helpers: runs `uv` until `done()` (or gives up after a few seconds).
#[cfg(test)]
pub fn run_until(
    py: pyo3::Python<'_>,
    uv: &event_loop::UvLoop,
    mut done: impl FnMut() -> bool,
) -> bool {
    let started = std::time::Instant::now();
    while !done() {
        if started.elapsed() > std::time::Duration::from_secs(5) {
            return false;
        }
        uv.run(py, event_loop::RUN_NOWAIT).expect("run"); // ok: cfg(test) only
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    true
}

/// Test helper: what a test handle's state saw, and whether the state was dropped.
#[cfg(test)]
#[derive(Default)]
pub struct Seen {
    pub events: std::cell::RefCell<Vec<String>>,
    pub dropped: std::cell::Cell<bool>,
}

/// Test helper: a handle's state that records into a shared `Seen` and notes its drop.
#[cfg(test)]
pub struct Recorder(pub std::rc::Rc<Seen>);

#[cfg(test)]
impl Recorder {
    pub fn note(&self, event: impl Into<String>) {
        self.0.events.borrow_mut().push(event.into());
    }
}

#[cfg(test)]
impl Drop for Recorder {
    fn drop(&mut self) {
        self.0.dropped.set(true);
    }
}

#[cfg(test)]
impl handle::LoopClose for Recorder {
    fn close_at_loop_close(&self, _py: pyo3::Python<'_>) {
        self.note("closed by the loop");
    }
}

/// Test helper: a stream's state that reads into a buffer of its own and records what happens.
#[cfg(test)]
pub struct RecordingStream {
    record: Recorder,
    buffer: std::cell::RefCell<Vec<u8>>,
}

#[cfg(test)]
impl RecordingStream {
    pub fn new(seen: std::rc::Rc<Seen>) -> Self {
        Self {
            record: Recorder(seen),
            buffer: Default::default(),
        }
    }
}

#[cfg(test)]
impl handle::LoopClose for RecordingStream {
    fn close_at_loop_close(&self, py: pyo3::Python<'_>) {
        self.record.close_at_loop_close(py);
    }
}

#[cfg(test)]
impl stream::StreamEvents for RecordingStream {
    fn alloc(&self, _py: pyo3::Python<'_>) -> (*mut u8, usize) {
        let mut buffer = self.buffer.borrow_mut();
        buffer.resize(64, 0);
        (buffer.as_mut_ptr(), buffer.len())
    }
    fn read(&self, _py: pyo3::Python<'_>, nread: isize) {
        if nread > 0 {
            let data = self.buffer.borrow()[..nread as usize].to_vec();
            self.record
                .note(format!("read {}", String::from_utf8_lossy(&data)));
        } else if nread == sys::uv_errno_t_UV_EOF as isize {
            self.record.note("eof");
        }
    }
    fn written(&self, _py: pyo3::Python<'_>, status: std::os::raw::c_int) {
        self.record.note(format!("written {status}"));
    }
    fn shut_down(&self, _py: pyo3::Python<'_>, status: std::os::raw::c_int) {
        self.record.note(format!("shut down {status}"));
    }
}
