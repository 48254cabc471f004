"""Property-based differential tests: random sequences of calls on the public loop and transport
API, run on stock asyncio and on uvloop, must give the same outcome for every call (its result,
or the type of the exception it raised) and never crash.

`make test` runs a short search (the "short" Hypothesis profile); `make fuzz` a long one
(HYPOTHESIS_PROFILE=long, see conftest.py).
"""

import asyncio
import math
import os
import socket
import time

from hypothesis import given, strategies as st

import uvloop

# How long ours lets a busy loop go without polling for I/O (POLL_INTERVAL in src/loop_/run.rs).
POLL_INTERVAL_WHILE_BUSY = 50e-6

LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


def outcome(call):
    """("ok", value) or ("raised", exception type name)."""
    try:
        return ("ok", call())
    except Exception as exc:  # every exception type is an outcome to compare
        return ("raised", type(exc).__name__)


def differential(scenario, ops):
    """Runs `scenario(loop, ops)` on both loops; their outcome lists must be equal."""
    results = {}
    for kind, make in LOOPS.items():
        loop = make()
        try:
            results[kind] = loop.run_until_complete(asyncio.wait_for(scenario(loop, ops), 10))
        finally:
            loop.close()
    assert results["uvloop"] == results["asyncio"], ops
    return results["uvloop"]


# Transports: write/writelines/write_eof/pause/resume/close/abort/set_protocol and flow control
# on a connected TCP stream whose peer reads everything.

data = st.one_of(
    st.binary(max_size=70_000),
    st.binary(max_size=64).map(bytearray),
    st.binary(max_size=64).map(memoryview),
    st.text(max_size=8),
    st.none(),
    st.integers(),
)


def _not_empty_buffer(item):
    return not (isinstance(item, (bytes, bytearray, memoryview)) and len(item) == 0)


transport_ops = st.lists(
    st.one_of(
        st.tuples(st.just("write"), data),
        # No empty buffers in writelines: asyncio 3.12's then never finishes closing the
        # transport (it keeps an empty memoryview queued), a flaw of its own.
        st.tuples(st.just("writelines"), st.lists(data.filter(_not_empty_buffer), max_size=4)),
        st.tuples(st.sampled_from([
            "write_eof", "can_write_eof", "pause_reading", "resume_reading", "is_reading",
            "close", "abort", "is_closing", "get_write_buffer_size", "set_protocol",
            "run_once",
        ])),
        st.tuples(
            st.just("set_write_buffer_limits"),
            st.one_of(st.none(), st.integers(-10, 100_000)),
            st.one_of(st.none(), st.integers(-10, 100_000)),
        ),
    ),
    max_size=12,
)


class Sink(asyncio.Protocol):
    def __init__(self):
        self.events = []

    def connection_made(self, transport):
        self.events.append("made")

    def data_received(self, data):
        pass

    def eof_received(self):
        self.events.append("eof")

    def pause_writing(self):
        self.events.append("pause_writing")

    def resume_writing(self):
        self.events.append("resume_writing")

    def connection_lost(self, exc):
        self.events.append(("lost", type(exc).__name__ if exc else None))


async def transport_scenario(loop, ops):
    server_side = []
    server = await loop.create_server(
        lambda: server_side.append(Sink()) or server_side[-1], "127.0.0.1", 0
    )
    port = server.sockets[0].getsockname()[1]
    transport, protocol = await loop.create_connection(Sink, "127.0.0.1", port)
    results = []
    for op, *args in ops:
        if op == "run_once":
            await asyncio.sleep(0)
            result = ("ok", None)
        elif op == "set_protocol":
            result = outcome(lambda: transport.set_protocol(protocol))
        elif op in ("write", "writelines", "set_write_buffer_limits"):
            result = outcome(lambda: getattr(transport, op)(*args))
            if op == "writelines" and result[0] == "raised":
                result = ("raised", "any")  # which element fails first is not specified
        else:
            result = outcome(getattr(transport, op))
        results.append((op, result))
    transport.close()
    for _ in range(5):
        await asyncio.sleep(0)
    server.close()
    await server.wait_closed()
    # Only what every loop must report: the connection ends exactly once.
    lost = [event for event in protocol.events if isinstance(event, tuple)]
    results.append(("lost once", len(lost)))
    return results


@given(transport_ops)
def test_transport_call_sequences(ops):
    differential(transport_scenario, ops)


# Scheduling: call_soon/call_later/call_at/cancel with odd arguments.

# Not NaN: a NaN deadline breaks the order of asyncio's timer heap, after which its loop stops
# running timers (and ours, which keeps asyncio's order, does the same).
delays = st.one_of(
    st.floats(-1, 0.02), st.integers(-5, 0), st.just(math.inf), st.just(-math.inf), st.none(),
    st.text(max_size=2),
)
schedule_ops = st.lists(
    st.one_of(
        st.tuples(st.just("call_soon"), st.booleans()),
        st.tuples(st.just("call_later"), delays, st.booleans()),
        # call_at's deadline is not checked by asyncio: one that is not a number breaks its
        # timer heap later (asyncio's flaw), so only numbers here.
        st.tuples(st.just("call_at_offset"), st.floats(-1, 0.02), st.booleans()),
        st.tuples(st.just("cancel"), st.integers(0, 20)),
        st.tuples(st.just("run_once")),
    ),
    max_size=20,
)


async def schedule_scenario(loop, ops):
    handles, fired, results = [], [], []
    for index, (op, *args) in enumerate(ops):
        callback = (lambda i=index: fired.append(i)) if (args and args[-1]) else 42
        if op == "call_soon":
            result = outcome(lambda: loop.call_soon(callback))
        elif op == "call_later":
            result = outcome(lambda: loop.call_later(args[0], callback))
        elif op == "call_at_offset":
            result = outcome(lambda: loop.call_at(loop.time() + args[0], callback))
        elif op == "cancel":
            result = outcome(lambda: handles[args[0]].cancel()) if args[0] < len(handles) else ("ok", None)
        else:
            await asyncio.sleep(0)
            result = ("ok", None)
        if result[0] == "ok" and result[1] is not None:
            handles.append(result[1])
            result = ("ok", "handle")
        results.append((op, result))
    await asyncio.sleep(0.05)
    # Timers due at the same time may run in either order: compare what ran, not the order.
    results.append(("fired", sorted(fired)))
    return results


@given(schedule_ops)
def test_scheduling_call_sequences(ops):
    differential(schedule_scenario, ops)


# fd watchers on real, closed and reused descriptors.

watch_ops = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["add_reader", "add_writer", "remove_reader", "remove_writer"]),
                  st.sampled_from(["live", "closed", "negative", "object", "text"])),
        st.tuples(st.sampled_from(["close_live", "reopen", "make_readable", "run_once"])),
    ),
    max_size=15,
)


async def watch_scenario(loop, ops):
    results, fired = [], []
    live, peer = socket.socketpair()
    closed_fd = os.dup(live.fileno())
    os.close(closed_fd)
    targets = {
        "closed": closed_fd, "negative": -1, "object": live, "text": "3",
    }
    try:
        for op, *args in ops:
            if op in ("add_reader", "add_writer"):
                target = live.fileno() if args[0] == "live" else targets[args[0]]
                result = outcome(lambda: getattr(loop, op)(target, fired.append, op))
            elif op in ("remove_reader", "remove_writer"):
                target = live.fileno() if args[0] == "live" else targets[args[0]]
                result = outcome(lambda: getattr(loop, op)(target))
            elif op == "close_live":
                for remove in (loop.remove_reader, loop.remove_writer):
                    if live.fileno() >= 0:
                        remove(live.fileno())
                live.close()
                result = ("ok", None)
            elif op == "reopen":
                if live.fileno() < 0:
                    live, peer_new = socket.socketpair()
                    peer.close()
                    peer = peer_new
                    targets["object"] = live
                result = ("ok", None)
            elif op == "make_readable":
                result = outcome(lambda: peer.send(b"x"))
            else:
                # One iteration that polls on both loops: ours polls a busy loop at most every
                # 50 us (README, "Differences from asyncio"), asyncio on every iteration.
                time.sleep(POLL_INTERVAL_WHILE_BUSY * 4)
                await asyncio.sleep(0)
                result = ("ok", None)
            results.append((op, result))
        await asyncio.sleep(0.01)  # every loop has polled by now
    finally:
        if live.fileno() >= 0:
            loop.remove_reader(live.fileno())
            loop.remove_writer(live.fileno())
        live.close()
        peer.close()
    # How many times a callback ran depends on how often each loop polls: only whether.
    results.append(("fired kinds", sorted(set(fired))))
    return results


@given(watch_ops)
def test_fd_watcher_call_sequences(ops):
    differential(watch_scenario, ops)
