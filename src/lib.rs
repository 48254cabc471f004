//! `uvloop.loop`: the native core of a drop-in replacement for asyncio's event loop.

mod clock;
mod gil;
mod handles;
mod loop_;
mod python;
mod transports;
mod uv;

use pyo3::prelude::*;

/// State is shared under the GIL (see `gil`), so the module declares that it needs it.
#[pymodule(gil_used = true)]
#[pyo3(name = "loop")]
fn uvloop_native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<loop_::Loop>()?;
    loop_::install_fast_methods(module.py())?;
    module.add_class::<handles::Handle>()?;
    module.add_class::<handles::TimerHandle>()?;
    module.add_class::<transports::StreamCore>()?;
    module.add_class::<transports::ServerClients>()?;
    module.add_class::<transports::ServerListener>()?;
    module.add_function(wrap_pyfunction!(transports::open_socket_transport, module)?)?;
    module.add_function(wrap_pyfunction!(
        transports::install_transport_class,
        module
    )?)?;
    module.add_function(wrap_pyfunction!(transports::open_pipe_transport, module)?)?;
    module.add_function(wrap_pyfunction!(transports::open_udp_transport, module)?)?;
    module.add_class::<transports::UdpCore>()?;
    module.add_class::<transports::ChildProcess>()?;
    module.add_class::<transports::SockOp>()?;
    module.add_class::<transports::DatagramCore>()?;
    Ok(())
}
