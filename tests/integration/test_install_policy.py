"""1. `uvloop.install()` and the event loop policy, as programs use them.

Each in a subprocess (apps/scenarios.py), so the policy does not leak into other tests, and
each also on stock asyncio through the same entry point, for the differential log check.
"""

import asyncio
import sys

import pytest

from integration_support import check  # noqa: F401  (the fixture)

needs_policies = pytest.mark.skipif(
    not hasattr(asyncio, "set_event_loop_policy"),
    reason=f"asyncio of Python {sys.version_info[0]}.{sys.version_info[1]} has no event loop "
    "policies",
)

EXPECTED = {
    "echo": True, "timer": "timer", "threadsafe": "thread", "executor": 6,
    "subprocess": [0, "CHILD"], "agen": 0,
}


@needs_policies
@pytest.mark.timeout(60)
def test_install_then_asyncio_run(check):
    """`uvloop.install(); asyncio.run(main())`: main, the server callback and the policy left
    installed are ours; streams, timers, call_soon_threadsafe, executor, subprocess work."""
    baseline, ours = check("install_asyncio_run")
    assert ours["checks"]["result"] == EXPECTED
    assert ["the event loop policy after asyncio.run", "EventLoopPolicy", True] in ours["loops"]


@needs_policies
@pytest.mark.timeout(60)
def test_policy_then_asyncio_run(check):
    """`asyncio.set_event_loop_policy(uvloop.EventLoopPolicy()); asyncio.run(main())`."""
    baseline, ours = check("policy_asyncio_run")
    assert ours["checks"]["result"] == EXPECTED


@needs_policies
@pytest.mark.timeout(60)
def test_policy_then_new_event_loop(check):
    """The policy, then `asyncio.new_event_loop()` (a uvloop.Loop), set as the current loop and
    run with run_until_complete / shutdown_asyncgens / shutdown_default_executor."""
    baseline, ours = check("policy_new_event_loop")
    assert ours["checks"]["result"] == EXPECTED
    assert ["asyncio.new_event_loop()", "uvloop.Loop", True] in ours["loops"]
