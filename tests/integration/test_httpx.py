"""5. httpx.AsyncClient on our loop (apps/scenarios.py), against a plain asyncio-streams
HTTP/1.1 server (keep-alive, chunked) under the policy, and against an aiohttp server under
`uvloop.run()`: sequential and concurrent GETs, a 512 KiB POST, a streamed response."""

import pytest

pytest.importorskip("httpx")

from integration_support import check  # noqa: E402,F401  (the fixture)


@pytest.mark.timeout(60)
def test_httpx_against_plain_asyncio_server(check):
    baseline, ours = check("httpx_plain_asyncio_server")
    assert ours["checks"]["result"] == {
        "echo": True, "statuses": [200], "streamed": "".join(f"part {i};" for i in range(10)),
    }
    assert ours["checks"]["connections_at_least_2"]


@pytest.mark.timeout(60)
def test_httpx_against_aiohttp_server(check):
    pytest.importorskip("aiohttp")
    baseline, ours = check("httpx_aiohttp_server")
    assert ours["checks"]["result"] == {"echo": True, "statuses": [200], "streamed": True}
