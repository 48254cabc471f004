"""Protocols and helpers shared by the networking tests (test_net_*.py).

Every protocol here records what the transport did to it, with futures for the moments a test
waits for, so that tests await events instead of sleeping.
"""

import asyncio
import socket

import pytest

QUIET = 0.05
HIGH = 64 * 1024
LOW = 16 * 1024


def _ipv6_loopback():
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback")


def assert_flow_events(events, last):
    """`events` is "made", then pause/resume alternating, ending with `last`."""
    assert events[0] == "made"
    flow = events[1:]
    assert flow and flow[-1] == last
    for i, e in enumerate(x for x in flow if x != "lost"):
        assert e == ("pause" if i % 2 == 0 else "resume"), events


def squash(events):
    """The event list with runs of "data" collapsed into one."""
    out = []
    for e in events:
        if e == "data" and out and out[-1] == "data":
            continue
        out.append(e)
    return out


class Recorder(asyncio.Protocol):
    """Records every callback; futures resolve on connection_made, eof_received, connection_lost."""

    def __init__(self, eof_result=None):
        loop = asyncio.get_running_loop()
        self.eof_result = eof_result
        self.events = []
        self.data = bytearray()
        self.transport = None
        self.made = loop.create_future()
        self.eof = loop.create_future()
        self.lost = loop.create_future()
        self._waiters = []

    def connection_made(self, transport):
        self.events.append("made")
        self.transport = transport
        self.made.set_result(transport)

    def data_received(self, data):
        assert type(data) is bytes
        assert data
        self.events.append("data")
        self.data += data
        self._wake()

    def eof_received(self):
        self.events.append("eof")
        self.eof.set_result(None)
        return self.eof_result

    def connection_lost(self, exc):
        self.events.append("lost")
        self.lost.set_result(exc)
        self._wake()

    def _wake(self):
        for n, fut in list(self._waiters):
            if (len(self.data) >= n or self.lost.done()) and not fut.done():
                fut.set_result(None)
                self._waiters.remove((n, fut))

    async def received(self, n):
        """Waits until at least `n` bytes arrived (or the connection is lost)."""
        if len(self.data) < n and not self.lost.done():
            fut = asyncio.get_running_loop().create_future()
            self._waiters.append((n, fut))
            await fut
        return bytes(self.data)


class FlowRecorder(Recorder):
    """A Recorder that also records pause_writing/resume_writing and the buffer size then."""

    def __init__(self, eof_result=None):
        super().__init__(eof_result)
        self.paused = False
        self.sizes = []
        self.resumed = None

    def pause_writing(self):
        assert not self.paused
        self.paused = True
        self.events.append("pause")
        self.sizes.append(("pause", self.transport.get_write_buffer_size()))

    def resume_writing(self):
        assert self.paused
        self.paused = False
        self.events.append("resume")
        self.sizes.append(("resume", self.transport.get_write_buffer_size()))
        if self.resumed is not None and not self.resumed.done():
            self.resumed.set_result(None)

    async def wait_resumed(self):
        if self.paused:
            self.resumed = asyncio.get_running_loop().create_future()
            await self.resumed


class Echo(asyncio.Protocol):
    """Echoes everything; closes (after flushing) on EOF; pauses reading while paused writing."""

    def __init__(self):
        loop = asyncio.get_running_loop()
        self.made = loop.create_future()
        self.lost = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport
        self.made.set_result(None)

    def connection_lost(self, exc):
        self.lost.set_result(exc)

    def data_received(self, data):
        self.transport.write(data)

    def pause_writing(self):
        self.transport.pause_reading()

    def resume_writing(self):
        self.transport.resume_reading()


class ServerSide:
    """A protocol factory that keeps every server-side protocol it makes."""

    def __init__(self, cls=Recorder, **kwargs):
        self.cls = cls
        self.kwargs = kwargs
        self.protocols = []
        self._waiter = None

    def __call__(self):
        proto = self.cls(**self.kwargs)
        self.protocols.append(proto)
        if self._waiter is not None and len(self.protocols) >= self._waiter[0]:
            if not self._waiter[1].done():
                self._waiter[1].set_result(None)
        return proto

    async def count(self, n):
        """The first `n` server-side protocols, once their connection_made ran."""
        if len(self.protocols) < n:
            self._waiter = (n, asyncio.get_running_loop().create_future())
            await self._waiter[1]
        for proto in self.protocols[:n]:
            await proto.made
        return self.protocols[:n]

    async def first(self):
        """The first server-side protocol, once its connection_made ran."""
        return (await self.count(1))[0]

    async def all_lost(self):
        for proto in self.protocols:
            await proto.lost


async def tcp_server(loop, factory, host="127.0.0.1", **kwargs):
    server = await loop.create_server(factory, host, 0, **kwargs)
    return server, server.sockets[0].getsockname()[:2]


async def close_server(server):
    server.close()
    await server.wait_closed()


def bound_not_listening(family=socket.AF_INET, host="127.0.0.1"):
    """A socket bound to a loopback port nobody listens on: connecting there is refused."""
    s = socket.socket(family, socket.SOCK_STREAM)
    s.bind((host, 0))
    return s


async def fill_until_paused(proto, transport, chunk=256 * 1024, limit=512 * 1024 * 1024):
    """Writes until the transport pauses the protocol and stays paused after the loop ran.

    The peer must not be reading. Returns the number of bytes written.
    """
    data = b"x" * chunk
    total = 0
    while True:
        transport.write(data)
        total += len(data)
        assert total < limit, "the transport never paused writing"
        if proto.paused:
            # Let the transport push what the kernel still takes, then check again.
            await asyncio.sleep(QUIET)
            if proto.paused:
                return total


class BufRecorder(asyncio.BufferedProtocol):
    """A BufferedProtocol that hands out a buffer of `size` bytes and records the order."""

    def __init__(self, size=7):
        loop = asyncio.get_running_loop()
        self.buf = bytearray(size)
        self.data = bytearray()
        self.events = []
        self.hints = []
        self.chunks = []
        self.made = loop.create_future()
        self.lost = loop.create_future()
        self.transport = None

    def connection_made(self, transport):
        self.events.append("made")
        self.transport = transport
        self.made.set_result(transport)

    def get_buffer(self, sizehint):
        self.events.append("get_buffer")
        self.hints.append(sizehint)
        return self.buf

    def buffer_updated(self, nbytes):
        assert self.events[-1] == "get_buffer"
        self.events.append("updated")
        assert 0 < nbytes <= len(self.buf)
        self.chunks.append(nbytes)
        self.data += self.buf[:nbytes]

    def eof_received(self):
        self.events.append("eof")

    def connection_lost(self, exc):
        self.events.append("lost")
        self.lost.set_result(exc)
