"""Differential fixtures: every behaviour test runs on stock asyncio and on uvloop.

`loop` is a fresh, not running loop of the kind under test, closed after the test. Every test
is also checked for leaked file descriptors (libuv handles and sockets all own one), and on our
loop for libuv handles that close() failed to close.
"""

import asyncio
import gc
import os

import pytest
from hypothesis import HealthCheck, settings

import uvloop

# Property-based tests (test_fuzz_api.py): a short search in `make test`, a long one in
# `make fuzz` (HYPOTHESIS_PROFILE=long).
settings.register_profile(
    "short", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "long", max_examples=5000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "short"))

# libuv opens a process-wide pipe (its signal lock) with the first loop; open it before any
# test counts descriptors.
uvloop.new_event_loop().close()

LOOP_KINDS = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


@pytest.fixture(params=sorted(LOOP_KINDS))
def loop_kind(request):
    """"asyncio" or "uvloop"; only for the few assertions that must differ."""
    return request.param


@pytest.fixture
def new_loop(loop_kind):
    """Factory of loops of the kind under test; all closed after the test."""
    made = []

    def make():
        loop = LOOP_KINDS[loop_kind]()
        made.append(loop)
        return loop

    yield make
    for loop in made:
        if not loop.is_closed():
            loop.close()
        if loop_kind == "uvloop":
            # close() closed every libuv handle the test left (transports and servers left open
            # included), so libuv let go of its loop.
            assert loop._closed_cleanly(), "libuv handles left open after close()"


@pytest.fixture
def loop(new_loop):
    loop = new_loop()
    asyncio.set_event_loop(None)
    yield loop


def run(loop, coro, timeout=10):
    """Runs `coro` on `loop`, failing instead of hanging past `timeout` seconds."""
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))


def _open_fds():
    return set(os.listdir("/proc/self/fd"))


@pytest.fixture(autouse=True)
def no_leaked_fds(request):
    if "allow_fd_leak" in request.keywords:
        yield
        return
    before = _open_fds()
    yield
    gc.collect()
    leaked = {
        fd: os.readlink(f"/proc/self/fd/{fd}")
        for fd in _open_fds() - before
        if os.path.exists(f"/proc/self/fd/{fd}")
    }
    assert not leaked, f"file descriptors leaked by the test: {leaked}"


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "allow_fd_leak: the test keeps descriptors open on purpose"
    )
