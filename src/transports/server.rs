//! Servers, natively: a `ServerListener` per listening socket (`uv_listen`; each connection
//! accepted with `uv_accept` into a new stream handle and its transport made in Rust), and the
//! `ServerClients` of a `uvloop._server.Server` (asyncio's Server with its connection accounting
//! native, so that nothing in Python runs per connection but the protocol factory).

use std::os::raw::c_int;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PySet;

use super::private_fd;
use super::stream::{Kind, StreamCore, StreamEvent};
use crate::gil::{GilCell, GilRefCell};
use crate::loop_::Loop;
use crate::python;
use crate::uv::error::UvError;
use crate::uv::handle::LoopClose;
use crate::uv::stream::{ListenEvents, Listener};
use crate::uv::{pipe, tcp};

/// The open connections of a server (asyncio's `Server._clients`, or its `_active_count` before
/// 3.13), and the server's `_wakeup()` once it is closed and they are gone.
#[pyclass(frozen, module = "uvloop.loop", name = "ServerClients")]
pub struct ServerClients {
    /// The `uvloop._server.Server`.
    server: Py<PyAny>,
    /// Each core knows its index here (`StreamCore::server_slot`), for O(1) removal.
    cores: GilRefCell<Vec<Py<StreamCore>>>,
    /// close() was called: the last detach wakes the waiters of wait_closed().
    closed: GilCell<bool>,
}

impl ServerClients {
    pub fn attach(slf: &Bound<'_, Self>, core: &Bound<'_, StreamCore>) {
        let py = slf.py();
        let mut cores = slf.get().cores.borrow_mut(py);
        core.get()
            .set_server(py, Some((slf.clone().unbind(), cores.len())));
        cores.push(core.clone().unbind());
    }

    /// `core`'s connection is gone (its slot was `slot`).
    pub fn detach(
        slf: &Bound<'_, Self>,
        core: &Bound<'_, StreamCore>,
        slot: usize,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let (removed, empty) = {
            let mut cores = this.cores.borrow_mut(py);
            let owned = cores.get(slot).is_some_and(|c| c.as_ptr() == core.as_ptr());
            let removed = owned.then(|| cores.swap_remove(slot));
            if let Some(moved) = cores.get(slot) {
                if owned {
                    moved.get().move_server_slot(py, slot);
                }
            }
            (removed, cores.is_empty())
        };
        let was_there = removed.is_some();
        drop(removed);
        if was_there && empty && this.closed.get(py) {
            this.server
                .bind(py)
                .call_method0(pyo3::intern!(py, "_wakeup"))?;
        }
        Ok(())
    }
}

#[pymethods]
impl ServerClients {
    #[new]
    fn new(server: Py<PyAny>) -> Self {
        Self {
            server,
            cores: GilRefCell::new(Vec::new()),
            closed: GilCell::new(false),
        }
    }

    fn __len__(&self, py: Python<'_>) -> usize {
        self.cores.borrow(py).len()
    }

    /// The transports of the open connections.
    fn copy<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PySet>> {
        let cores: Vec<Py<StreamCore>> = self
            .cores
            .borrow(py)
            .iter()
            .map(|c| c.clone_ref(py))
            .collect();
        let set = PySet::empty(py)?;
        for core in cores {
            if let Some(transport) = core.get().transport(py) {
                set.add(transport)?;
            }
        }
        Ok(set)
    }

    /// Server.close() was called.
    fn _server_closed(&self, py: Python<'_>) {
        self.closed.set(py, true);
    }

    fn __traverse__(&self, visit: pyo3::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        // SAFETY: tp_traverse runs with the GIL held by the collector.
        let py = unsafe { Python::assume_attached() };
        visit.call(&self.server)?;
        if let Some(cores) = self.cores.try_borrow(py) {
            for core in cores.iter() {
                visit.call(core)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        // SAFETY: tp_clear runs with the GIL held by the collector.
        let py = unsafe { Python::assume_attached() };
        drop(std::mem::take(&mut *self.cores.borrow_mut(py)));
    }
}

/// A listening socket of a server, on a libuv handle.
#[pyclass(frozen, module = "uvloop.loop", name = "ServerListener")]
pub struct ServerListener {
    event_loop: Py<Loop>,
    listener: GilRefCell<Option<Listener<ListenerOwner>>>,
    /// Called once per connection, in a copy of `context`.
    protocol_factory: Py<PyAny>,
    /// The context the server started serving in.
    context: Py<PyAny>,
    clients: Py<ServerClients>,
    /// The socket object the server was given (detached when libuv closes the descriptor).
    sock: Py<PyAny>,
    tcp: bool,
}

/// What the listening handle's callbacks hold: the listener, alive while the handle is open.
pub struct ListenerOwner(Py<ServerListener>);

impl LoopClose for ListenerOwner {
    fn close_at_loop_close(&self, py: Python<'_>) {
        self.0.get().close_handle(py);
    }
}

impl ListenEvents for ListenerOwner {
    fn connection(&self, py: Python<'_>, status: c_int) {
        ServerListener::on_connection(self.0.bind(py), status);
    }
}

impl ServerListener {
    fn close_handle(&self, py: Python<'_>) {
        let Some(listener) = self.listener.take(py) else {
            return;
        };
        drop(listener);
    }

    fn on_connection(slf: &Bound<'_, Self>, status: c_int) {
        let py = slf.py();
        let this = slf.get();
        if let Err(err) = Self::accept(slf, status) {
            let reported =
                python::report_accept_error(py, this.event_loop.bind(py), this.sock.bind(py), err);
            if let Err(err) = reported {
                if err.is_instance_of::<pyo3::exceptions::PyKeyboardInterrupt>(py)
                    || err.is_instance_of::<pyo3::exceptions::PySystemExit>(py)
                {
                    this.event_loop.get().escape(py, err);
                } else {
                    err.write_unraisable(py, Some(slf.as_any()));
                }
            }
        }
    }

    /// Accepts the waiting connection into a new transport's stream; its protocol is made when
    /// the `Accepted` event runs (at once, or in the queue: see `StreamCore::deliver`).
    fn accept(slf: &Bound<'_, Self>, status: c_int) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        UvError::check(status)?;
        // asyncio runs the protocol factory in a task per connection: a copy of the context.
        // SAFETY: GIL held; `context` is a live contextvars.Context; a new reference or NULL.
        let context = unsafe {
            Bound::from_owned_ptr_or_err(py, ffi::PyContext_Copy(this.context.as_ptr()))?
        };
        let core = Bound::new(
            py,
            StreamCore::new(
                this.event_loop.clone_ref(py),
                Kind::Socket,
                None,
                context.unbind(),
                -1,
                this.tcp,
            )?,
        )?;
        let stream = {
            let listener = this.listener.borrow(py);
            let Some(listener) = listener.as_ref() else {
                return Ok(());
            };
            listener.accept(this.event_loop.get().uv(), StreamCore::owner(&core))?
        };
        // Linux: inherited from the listening socket (see `new`).
        #[cfg(not(target_os = "linux"))]
        if this.tcp {
            tcp::set_nodelay(&stream)?;
        }
        let fd = stream.fileno()?;
        core.get().set_fd(py, fd);
        core.get().set_stream(py, stream);
        StreamCore::deliver(&core, StreamEvent::Accepted(slf.clone().unbind()));
        Ok(())
    }

    /// The `Accepted` event of a new connection: protocol, transport, accounting, then
    /// connection_made and reading queued, as asyncio's transport queues them.
    pub fn connection_accepted(
        slf: &Bound<'_, Self>,
        core: &Bound<'_, StreamCore>,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let protocol = match this.protocol_factory.bind(py).call0() {
            Ok(protocol) => protocol,
            Err(err) => {
                StreamCore::abandon(core);
                if err.is_instance_of::<pyo3::exceptions::PyKeyboardInterrupt>(py)
                    || err.is_instance_of::<pyo3::exceptions::PySystemExit>(py)
                {
                    return Err(err);
                }
                if this.event_loop.get().debug(py) {
                    python::report_connection_setup_error(py, this.event_loop.bind(py), err)?;
                }
                return Ok(());
            }
        };
        core.get().set_protocol(&protocol)?;
        let transport = super::socket_transport::new_transport(py, core)?;
        core.get().set_transport(py, transport.unbind());
        ServerClients::attach(this.clients.bind(py), core);
        this.event_loop
            .get()
            .remember_transport(py, core.get().fd(py), core.as_any());
        StreamCore::queue(core, StreamEvent::ConnectionMade);
        Ok(())
    }
}

#[pymethods]
impl ServerListener {
    /// Listens on `sock` (bound; the server made it non-blocking) for `protocol_factory`.
    #[new]
    #[pyo3(signature = (event_loop, sock, protocol_factory, clients, context, backlog))]
    fn new(
        event_loop: &Bound<'_, Loop>,
        sock: &Bound<'_, PyAny>,
        protocol_factory: Py<PyAny>,
        clients: Py<ServerClients>,
        context: Py<PyAny>,
        backlog: c_int,
    ) -> PyResult<Py<Self>> {
        let py = event_loop.py();
        event_loop.get().check_open(py)?;
        let fd: c_int = sock.call_method0(pyo3::intern!(py, "fileno"))?.extract()?;
        let family: c_int = sock.getattr(pyo3::intern!(py, "family"))?.extract()?;
        let tcp = family == libc::AF_INET || family == libc::AF_INET6;
        let this = Py::new(
            py,
            Self {
                event_loop: event_loop.clone().unbind(),
                listener: GilRefCell::new(None),
                protocol_factory,
                context,
                clients,
                sock: sock.clone().unbind(),
                tcp,
            },
        )?;
        let owner = ListenerOwner(this.clone_ref(py));
        let uv = event_loop.get().uv();
        // The server closes the socket object; libuv's duplicate goes with the handle.
        let listener = private_fd::with_duplicate(fd, |duplicate| {
            if tcp {
                tcp::open_listener(uv, duplicate, owner)
            } else {
                pipe::open_listener(uv, duplicate, owner)
            }
        })?;
        // TCP_NODELAY for every connection (see the README); on Linux accepted sockets inherit
        // it, which saves a system call per connection.
        let listening =
            tcp::set_listener_nodelay(&listener).and_then(|()| listener.listen(backlog));
        drop(this.get().listener.replace(py, Some(listener)));
        if let Err(err) = listening {
            this.get().close_handle(py);
            return Err(err.into());
        }
        Ok(this)
    }

    /// Stops listening; libuv closes its duplicate of the descriptor.
    fn close(&self, py: Python<'_>) {
        self.close_handle(py);
    }

    fn __traverse__(&self, visit: pyo3::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        visit.call(&self.event_loop)?;
        visit.call(&self.protocol_factory)?;
        visit.call(&self.context)?;
        visit.call(&self.clients)?;
        visit.call(&self.sock)?;
        Ok(())
    }
}
