"""5. websockets' asyncio server and client on our loop (apps/scenarios.py): text, a 1 MiB
binary message, ping/pong, ten concurrent clients and a close initiated by the server with a
code and reason."""

import pytest

pytest.importorskip("websockets.asyncio.server")

from integration_support import check  # noqa: E402,F401  (the fixture)


@pytest.mark.timeout(60)
def test_websockets_server_and_client(check):
    baseline, ours = check("websockets_client_server")
    assert ours["checks"] == {
        "text": "hello", "binary": True, "many": [f"client {i}" for i in range(10)],
        "server_close": [4001, "bye"],
    }
    tags = {entry[0] for entry in ours["loops"]}
    assert {"websockets main", "websockets handler", "websockets handler (reported)"} <= tags
