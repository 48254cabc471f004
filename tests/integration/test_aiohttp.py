"""5. aiohttp client and server on our loop (apps/scenarios.py): a streaming response, a
3 MiB FileResponse (loop.sendfile), a streamed upload, 20 concurrent requests and a websocket, fetched by an aiohttp ClientSession;
once with AppRunner under `uvloop.run()`, once through `web.run_app()` after
`uvloop.install()`, stopped by SIGTERM through run_app's signal handler.
"""

import pytest

pytest.importorskip("aiohttp")

from integration_support import check  # noqa: E402,F401  (the fixture)


CLIENT = {
    "file": True, "streamed": True, "echo": True, "statuses": [200], "ws": ["hello", True],
}


@pytest.mark.timeout(60)
def test_aiohttp_client_and_server(check):
    baseline, ours = check("aiohttp_client_server")
    assert ours["checks"]["client"] == CLIENT
    tags = {entry[0] for entry in ours["loops"]}
    assert {"aiohttp handler", "aiohttp streaming handler", "aiohttp ws handler (reported)",
            "aiohttp client"} <= tags


@pytest.mark.timeout(60)
def test_aiohttp_run_app_stopped_by_sigterm(check):
    baseline, ours = check("aiohttp_run_app")
    assert ours["checks"]["client"] == CLIENT
    assert ours["checks"]["events"] == ["startup", "shutdown", "cleanup"]
