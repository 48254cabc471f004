"""4. Tornado on our loop: `IOLoop.current()` wrapping it (AsyncIOMainLoop under asyncio.run
after `uvloop.install()`), Tornado's own `IOLoop()` made under the policy (AsyncIOLoop on
`asyncio.new_event_loop()`), HTTP handlers (tornado.web.Application), a PeriodicCallback
that fires at least 5 times, Tornado's AsyncHTTPClient fetching from the handlers and its
websocket client talking to a WebSocketHandler (apps/scenarios.py).
"""

import pytest

pytest.importorskip("tornado")

from integration_support import check  # noqa: E402,F401  (the fixture)


STREAM = "".join("chunk %02d\n" % i for i in range(10))


def check_tornado(ours):
    checks = ours["checks"]
    assert checks["periodic_fired_at_least_5"]
    assert checks["stream"] == STREAM
    assert checks["echo"] is True
    assert checks["several"] == [200] * 5
    assert checks["websocket"] == ["hello", True]
    assert checks["executor"] == 9
    tags = {entry[0] for entry in ours["loops"]}
    assert {"tornado handler", "tornado handler (reported)", "tornado PeriodicCallback",
            "tornado websocket handler"} <= tags
    periodic = [entry for entry in ours["loops"] if entry[0] == "tornado PeriodicCallback"]
    assert len(periodic) >= 5


@pytest.mark.timeout(60)
def test_tornado_after_install_asyncio_run(check):
    baseline, ours = check("tornado_asyncio_run")
    assert ours["checks"]["ioloop_class"] == "AsyncIOMainLoop"
    check_tornado(ours)


@pytest.mark.timeout(60)
def test_tornado_ioloop_run_sync_under_policy(check):
    baseline, ours = check("tornado_ioloop_run_sync")
    assert ours["checks"]["ioloop_class"] == "AsyncIOLoop"
    assert ["tornado IOLoop().asyncio_loop", "uvloop.Loop", True] in ours["loops"]
    check_tornado(ours)
