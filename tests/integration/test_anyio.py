"""5. anyio's asyncio backend on our loop (apps/scenarios.py): TCP streams
(create_tcp_listener / connect_tcp, by address and by name), Unix sockets, UDP, run_process,
open_process, to_thread and from_thread, cancel scopes and a signal receiver; entered three
ways: after `uvloop.install()`, with `backend_options={"use_uvloop": True}` and with
`backend_options={"loop_factory": uvloop.new_event_loop}`.
"""

import pytest

anyio = pytest.importorskip("anyio")

from integration_support import check  # noqa: E402,F401  (the fixture)


EXPECTED = {
    "tcp_small": "ping", "tcp_large": True, "tcp_localhost": "by name", "unix": "unix",
    "udp": "datagram", "run_process": [0, "RUN_PROCESS"], "open_process": ["cba", "zyx", 0],
    "to_thread": 6, "from_thread": 42, "move_on_after": True, "signal": "SIGUSR1",
}

ANYIO_MAJOR = int(anyio.__version__.split(".")[0]) if hasattr(anyio, "__version__") else 4


@pytest.mark.timeout(60)
def test_anyio_after_install(check):
    baseline, ours = check("anyio_install")
    assert ours["checks"]["result"] == EXPECTED


@pytest.mark.timeout(60)
def test_anyio_use_uvloop_option(check):
    baseline, ours = check("anyio_use_uvloop")
    assert ours["checks"]["result"] == EXPECTED


@pytest.mark.skipif(ANYIO_MAJOR < 4, reason="anyio before 4.0 has no loop_factory option")
@pytest.mark.timeout(60)
def test_anyio_loop_factory_option(check):
    baseline, ours = check("anyio_loop_factory")
    assert ours["checks"]["result"] == EXPECTED
