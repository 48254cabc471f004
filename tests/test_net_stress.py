"""Stress and lifetime edge cases of servers, connections, fd watchers and sock_* operations.

The regression net for moving the loop's I/O onto libuv handles: storms of accepts, connections
reset before the server accepts them, thousands of short connections (descriptors and libuv
handles must not pile up), servers closed under live connections, watched fds closed behind the
loop's back, and hundreds of concurrent (some cancelled) sock_recv calls.

The specification is asyncio's selector loop (selector_events.py: `_accept_connection`,
`_accept_connection2`, `_SelectorSocketTransport`, `add_reader`, `_sock_recv`,
`_sock_read_done`; base_events.py: `Server.close`, `close_clients`, `abort_clients`,
`wait_closed`; selectors.py: `EpollSelector`). Only what asyncio guarantees is asserted: where
the kernel's timing decides (a reset connection accepted or dropped at accept), the tests check
invariants, not counts.
"""

import asyncio
import errno
import fcntl
import os
import select
import signal
import socket
import struct
import sys
import termios

import pytest

from conftest import run
from net_protocols import (
    QUIET,
    FlowRecorder,
    Recorder,
    ServerSide,
    close_server,
    fill_until_paused,
    squash,
    tcp_server,
)

LINGER_RESET = struct.pack("ii", 1, 0)


def record_errors(loop):
    """Installs an exception handler that records every context it is called with."""
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    return contexts


def open_fd_count():
    return len(os.listdir("/proc/self/fd"))


class EchoRecorder(Recorder):
    """A Recorder that also echoes what it receives (and, as Recorder, closes on EOF)."""

    def data_received(self, data):
        super().data_received(data)
        self.transport.write(data)


def assert_lifecycle(proto):
    """One connection_made first, one connection_lost last, nothing else around them."""
    assert proto.events[0] == "made", proto.events
    assert proto.events[-1] == "lost", proto.events
    assert proto.events.count("made") == 1, proto.events
    assert proto.events.count("lost") == 1, proto.events


async def wait_for_condition(predicate, timeout=5, step=0.001):
    """Polls `predicate` in real time (for kernel state no callback reports)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition never became true"
        await asyncio.sleep(step)


def unread_bytes(sock):
    """Bytes waiting in `sock`'s kernel receive queue."""
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]


# --- 1. accept storm ------------------------------------------------------------------------

STORM = 500


def test_accept_storm_tcp(loop):
    """500 clients connect at once to an echo server: each gets its own message back, every
    server-side protocol is made and lost once, the exception handler is never called."""

    async def main():
        contexts = record_errors(loop)
        factory = ServerSide(cls=EchoRecorder)
        server, addr = await tcp_server(loop, factory, backlog=STORM)

        async def client(i):
            tr, pr = await loop.create_connection(Recorder, *addr)
            msg = b"storm client %d" % i
            tr.write(msg)
            got = await pr.received(len(msg))
            tr.close()
            assert await pr.lost is None
            assert pr.events[0] == "made" and pr.events[-1] == "lost"
            return got

        got = await asyncio.gather(*(client(i) for i in range(STORM)))
        assert got == [b"storm client %d" % i for i in range(STORM)]
        assert len(factory.protocols) == STORM
        await factory.all_lost()
        for proto in factory.protocols:
            assert_lifecycle(proto)
            assert squash(proto.events) == ["made", "data", "eof", "lost"]
            assert proto.lost.result() is None
        assert sorted(bytes(p.data) for p in factory.protocols) == sorted(got)
        server.close()
        assert not server.is_serving()
        await server.wait_closed()
        assert contexts == []

    run(loop, main(), timeout=20)


def test_accept_storm_unix(loop, tmp_path):
    """The same storm on a Unix socket server, the clients using streams
    (open_unix_connection)."""

    path = str(tmp_path / "storm.sock")

    async def main():
        contexts = record_errors(loop)
        factory = ServerSide(cls=EchoRecorder)
        server = await loop.create_unix_server(factory, path, backlog=STORM)

        async def client(i):
            reader, writer = await asyncio.open_unix_connection(path)
            msg = b"unix storm client %d" % i
            writer.write(msg)
            got = await reader.readexactly(len(msg))
            writer.close()
            await writer.wait_closed()
            return got

        got = await asyncio.gather(*(client(i) for i in range(STORM)))
        assert got == [b"unix storm client %d" % i for i in range(STORM)]
        assert len(factory.protocols) == STORM
        await factory.all_lost()
        for proto in factory.protocols:
            assert_lifecycle(proto)
            assert proto.lost.result() is None
        server.close()
        await server.wait_closed()
        assert contexts == []

    run(loop, main(), timeout=20)


# --- 2. connections reset before they are accepted -------------------------------------------


def connect_and_reset(addr):
    """A plain non-blocking client that connects, waits for the handshake, and resets the
    connection (SO_LINGER 0 close) before the server had a chance to accept it."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setblocking(False)
        err = s.connect_ex(addr)
        if err == errno.EINPROGRESS:
            poller = select.poll()
            poller.register(s, select.POLLOUT)
            assert poller.poll(5000), "the handshake never completed"
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        assert err == 0, os.strerror(err)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
    finally:
        s.close()


def test_reset_before_accept_interleaved_with_normal_clients(loop):
    """200 connections reset while waiting in the accept queue, interleaved with normal echo
    clients: every normal client is served, the server keeps serving, each accepted connection
    gets exactly one connection_lost (None or an OSError such as ConnectionResetError), and the
    exception handler is never called (asyncio drops ECONNABORTED at accept silently and does not
    report resets)."""

    resets = 200
    rounds = 20

    async def main():
        contexts = record_errors(loop)
        factory = ServerSide(cls=EchoRecorder)
        server, addr = await tcp_server(loop, factory, backlog=256)

        async def normal(i):
            tr, pr = await loop.create_connection(Recorder, *addr)
            msg = b"normal %d" % i
            tr.write(msg)
            got = await pr.received(len(msg))
            tr.close()
            assert await pr.lost is None
            return got

        results = []
        n = 0
        for r in range(rounds):
            tasks = []
            for k in range(resets // rounds):
                # Resets with the loop blocked (the server cannot accept them in between)...
                connect_and_reset(addr)
                if k % 3 == 0:
                    tasks.append(loop.create_task(normal(n)))
                    n += 1
                if k % 4 == 0:
                    # ... and with the loop running the accepts and the normal clients.
                    await asyncio.sleep(0)
            results += await asyncio.gather(*tasks)
        assert results == [b"normal %d" % i for i in range(n)]

        # The accept queue is FIFO: once this last client is served, every reset connection
        # before it was accepted or dropped.
        assert server.is_serving()
        assert await normal(n) == b"normal %d" % n
        n += 1
        await asyncio.sleep(QUIET)
        await factory.all_lost()
        # Nothing more comes in late.
        await asyncio.sleep(QUIET)
        protocols = factory.protocols
        assert n <= len(protocols) <= n + resets
        for proto in protocols:
            await proto.lost
            assert_lifecycle(proto)
            exc = proto.lost.result()
            assert exc is None or isinstance(exc, OSError), repr(exc)
        served = [bytes(p.data) for p in protocols if p.data]
        assert sorted(served) == sorted(b"normal %d" % i for i in range(n))
        assert contexts == []
        await close_server(server)

    run(loop, main(), timeout=20)


# --- 3. ten thousand short connections -------------------------------------------------------


class Tally:
    """Counts connection_made/connection_lost over every server-side protocol of a server."""

    def __init__(self):
        self.made = 0
        self.lost = 0
        self.lost_errors = []
        self._waiter = None

    def on_lost(self, exc):
        self.lost += 1
        if exc is not None:
            self.lost_errors.append(exc)
        if self._waiter is not None and self.lost >= self._waiter[0]:
            if not self._waiter[1].done():
                self._waiter[1].set_result(None)

    async def wait_lost(self, n):
        if self.lost < n:
            self._waiter = (n, asyncio.get_running_loop().create_future())
            await self._waiter[1]


REPLY = b"hello and goodbye"


class ReplyAndClose(asyncio.Protocol):
    """Writes REPLY and closes as soon as it is connected."""

    def __init__(self, tally):
        self.tally = tally
        self.state = "new"

    def connection_made(self, transport):
        assert self.state == "new"
        self.state = "made"
        self.tally.made += 1
        transport.write(REPLY)
        transport.close()

    def data_received(self, data):
        raise AssertionError("the client sends nothing")

    def connection_lost(self, exc):
        assert self.state == "made"
        self.state = "lost"
        self.tally.on_lost(exc)


class Collect(asyncio.Protocol):
    """Client side: collects everything until connection_lost."""

    def __init__(self):
        self.data = bytearray()
        self.eof = False
        self.lost = asyncio.get_running_loop().create_future()

    def data_received(self, data):
        self.data += data

    def eof_received(self):
        self.eof = True

    def connection_lost(self, exc):
        self.lost.set_result(exc)


def test_ten_thousand_short_connections(loop, loop_kind):
    """10,000 connections, 100 at a time, each served a short reply by a server that closes at
    once: every client gets the reply and EOF, the server sees 10,000 connection_made and as many
    connection_lost, the process's descriptors return to their level after every batch, and on
    our loop the libuv handles return to their count from before the server once it is closed."""

    total = 10_000
    batch = 100

    async def main():
        contexts = record_errors(loop)
        if loop_kind == "uvloop":
            handles_before = loop._open_libuv_handles()
        tally = Tally()
        server, addr = await tcp_server(loop, lambda: ReplyAndClose(tally), backlog=batch)
        if loop_kind == "uvloop":
            handles_serving = loop._open_libuv_handles()
        fds_serving = open_fd_count()

        async def client():
            tr, pr = await loop.create_connection(Collect, *addr)
            exc = await pr.lost
            return bytes(pr.data), pr.eof, exc

        done = 0
        while done < total:
            results = await asyncio.gather(*(client() for _ in range(batch)))
            assert results == [(REPLY, True, None)] * batch
            done += batch
            await tally.wait_lost(done)
            assert tally.made == tally.lost == done
            # Every connection of the batch is gone: so are its descriptors (a few may be
            # open briefly for other reasons, never one per connection).
            assert open_fd_count() <= fds_serving + 4, (done, open_fd_count(), fds_serving)
            if loop_kind == "uvloop":
                assert loop._open_libuv_handles() <= handles_serving + 2, done
        assert tally.made == tally.lost == total
        assert tally.lost_errors == []
        await close_server(server)
        if loop_kind == "uvloop":
            assert loop._open_libuv_handles() == handles_before
        assert contexts == []

    run(loop, main(), timeout=60)


# --- 4. closing a server under live connections ----------------------------------------------


def test_server_close_with_live_connections(loop):
    """close() stops accepting but leaves 50 live connections working; wait_closed returns once
    they have all ended (from 3.12.1 on; at once before); the clients whose server side closes
    see EOF, the server sides whose client closes see EOF, everyone connection_lost(None)."""

    n = 50

    async def main():
        contexts = record_errors(loop)
        factory = ServerSide(cls=EchoRecorder)
        server, addr = await tcp_server(loop, factory)
        clients = [await loop.create_connection(Recorder, *addr) for _ in range(n)]
        sprotos = await factory.count(n)
        server.close()
        assert not server.is_serving()
        with pytest.raises(ConnectionRefusedError):
            await loop.create_connection(Recorder, *addr)

        # Every accepted connection still works.
        for i, (tr, pr) in enumerate(clients):
            tr.write(b"still here %d" % i)
        for i, (tr, pr) in enumerate(clients):
            msg = b"still here %d" % i
            assert await pr.received(len(msg)) == msg

        waiter = loop.create_task(server.wait_closed())
        await asyncio.sleep(QUIET)
        assert waiter.done() == (sys.version_info < (3, 12, 1))

        # Half closed by the client, half by the server side.
        by_client = {id(pr) for tr, pr in clients[: n // 2]}
        for tr, pr in clients[: n // 2]:
            tr.close()
        # Server-side protocol of each remaining client, matched by the client's address.
        by_sockname = {p.transport.get_extra_info("peername"): p for p in sprotos}
        for tr, pr in clients[n // 2 :]:
            by_sockname[tr.get_extra_info("sockname")].transport.close()
        await asyncio.wait_for(waiter, 5)
        for tr, pr in clients:
            assert await pr.lost is None
            if id(pr) in by_client:
                assert pr.events == ["made", "data", "lost"]
            else:
                assert pr.events == ["made", "data", "eof", "lost"]
        for proto in sprotos:
            assert await proto.lost is None
            assert_lifecycle(proto)
        eof_seen = sum(1 for p in sprotos if "eof" in p.events)
        assert eof_seen == n // 2
        assert contexts == []

    run(loop, main())


needs_close_clients = pytest.mark.skipif(
    sys.version_info < (3, 13), reason="Server.close_clients/abort_clients are new in 3.13"
)


@needs_close_clients
def test_server_close_clients_flushes_then_wait_closed(loop):
    """close_clients() closes every accepted transport: buffered data is still flushed before the
    FIN, and wait_closed waits for that; 10 connections with a full write buffer (their clients
    paused), 40 idle ones."""

    n_busy, n_idle = 10, 40

    async def main():
        contexts = record_errors(loop)
        factory = ServerSide(cls=FlowRecorder)
        server, addr = await tcp_server(loop, factory)
        clients = [await loop.create_connection(Recorder, *addr) for _ in range(n_busy + n_idle)]
        sprotos = await factory.count(n_busy + n_idle)
        by_peer = {p.transport.get_extra_info("peername"): p for p in sprotos}
        pairs = [(tr, pr, by_peer[tr.get_extra_info("sockname")]) for tr, pr in clients]
        busy, idle = pairs[:n_busy], pairs[n_busy:]
        written = {}
        for tr, pr, sp in busy:
            tr.pause_reading()
            written[id(pr)] = await fill_until_paused(sp, sp.transport)
            assert sp.transport.get_write_buffer_size() > 0

        server.close()
        server.close_clients()
        for tr, pr, sp in pairs:
            assert sp.transport.is_closing()
        for tr, pr, sp in idle:
            assert await sp.lost is None
            assert await pr.lost is None
            assert pr.events == ["made", "eof", "lost"]
        waiter = loop.create_task(server.wait_closed())
        await asyncio.sleep(QUIET)
        assert not waiter.done()  # the busy transports still flush
        for tr, pr, sp in busy:
            assert not sp.lost.done()
            tr.resume_reading()
        for tr, pr, sp in busy:
            assert await pr.lost is None
            assert len(pr.data) == written[id(pr)]
            assert set(pr.data) == {ord("x")}
            assert pr.events[-2:] == ["eof", "lost"]
            assert await sp.lost is None
        await asyncio.wait_for(waiter, 5)
        assert contexts == []

    run(loop, main(), timeout=20)


@needs_close_clients
def test_server_abort_clients_eof_or_reset(loop):
    """abort_clients() aborts every accepted transport (connection_lost(None) on the server
    side, buffered data dropped); wait_closed returns without the clients doing anything. A
    client sees EOF if its server side had nothing unread, a reset
    (connection_lost(ConnectionResetError), no EOF) if it had, and less than was written if the
    server side's write buffer was not empty."""

    n = 10

    async def main():
        contexts = record_errors(loop)
        factory = ServerSide(cls=FlowRecorder)
        server, addr = await tcp_server(loop, factory)
        clients = [await loop.create_connection(Recorder, *addr) for _ in range(3 * n)]
        sprotos = await factory.count(3 * n)
        by_peer = {p.transport.get_extra_info("peername"): p for p in sprotos}
        pairs = [(tr, pr, by_peer[tr.get_extra_info("sockname")]) for tr, pr in clients]
        idle, unread, buffered = pairs[:n], pairs[n : 2 * n], pairs[2 * n :]

        for tr, pr, sp in unread:
            sp.transport.pause_reading()
            tr.write(b"never read")
        for tr, pr, sp in unread:
            sock = sp.transport.get_extra_info("socket")
            await wait_for_condition(lambda: unread_bytes(sock) == len(b"never read"))
        written = {}
        for tr, pr, sp in buffered:
            tr.pause_reading()
            written[id(pr)] = await fill_until_paused(sp, sp.transport)

        server.close()
        server.abort_clients()
        for tr, pr, sp in pairs:
            assert await sp.lost is None
            assert_lifecycle(sp)
        await asyncio.wait_for(server.wait_closed(), 5)

        for tr, pr, sp in idle:
            assert await pr.lost is None
            assert pr.events == ["made", "eof", "lost"]
        for tr, pr, sp in unread:
            assert isinstance(await pr.lost, ConnectionResetError)
            assert pr.events == ["made", "lost"]
        for tr, pr, sp in buffered:
            tr.resume_reading()
        for tr, pr, sp in buffered:
            assert await pr.lost is None
            assert pr.events[-2:] == ["eof", "lost"]
            assert 0 < len(pr.data) < written[id(pr)]
        assert contexts == []

    run(loop, main(), timeout=20)


# --- 5. fd watchers on closed and reused descriptors ------------------------------------------


def high_fd(sock):
    """`sock` moved to a descriptor number >= HIGH_FD (the original closed).

    A loop opens descriptors of its own lazily (uvloop its signal wake-up socket pair at the
    first run): a test that closes a descriptor and later gives its number to a new socket must
    use a number the loop never takes, the lowest free ones being what the kernel hands out.
    """
    fd = fcntl.fcntl(sock.fileno(), fcntl.F_DUPFD_CLOEXEC, HIGH_FD)
    sock.close()
    return socket.socket(fileno=fd)


HIGH_FD = 900


def reuse_number(sock, fd):
    """`sock` moved to descriptor number `fd`, which must be free (the original closed)."""
    if sock.fileno() == fd:
        return sock
    os.fstat(sock.fileno())
    with pytest.raises(OSError):
        os.fstat(fd)  # not in use: dup2 would silently close whatever has it
    os.dup2(sock.fileno(), fd, inheritable=False)
    sock.close()
    return socket.socket(fileno=fd)


def test_watch_closed_fd_number(loop):
    """add_writer/add_reader on the number of a socket closed just before: OSError(EBADF) from
    epoll, nothing registered, the loop unharmed."""
    sock = socket.socket()
    fd = sock.fileno()
    sock.close()
    calls = []
    for add, remove in (
        (loop.add_writer, loop.remove_writer),
        (loop.add_reader, loop.remove_reader),
    ):
        with pytest.raises(OSError) as info:
            add(fd, calls.append, "fired")
        assert type(info.value) is OSError
        assert info.value.errno == errno.EBADF
        assert info.value.strerror == os.strerror(errno.EBADF)
        assert remove(fd) is False
    run(loop, asyncio.sleep(QUIET))
    assert calls == []
    # The loop still watches descriptors.
    a, b = socket.socketpair()
    try:
        fut = loop.create_future()
        loop.add_reader(a, lambda: fut.done() or fut.set_result(a.recv(10)))
        b.send(b"fine")
        assert run(loop, fut, timeout=5) == b"fine"
        assert loop.remove_reader(a) is True
    finally:
        a.close()
        b.close()


def test_watch_closed_socket_object(loop):
    """add_writer/add_reader (and removal) of a closed socket object, whose fileno() is -1:
    ValueError("Invalid file descriptor: -1")."""
    sock = socket.socket()
    sock.close()
    assert sock.fileno() == -1
    for method in ("add_writer", "add_reader"):
        with pytest.raises(ValueError, match="^Invalid file descriptor: -1$"):
            getattr(loop, method)(sock, lambda: None)
    for method in ("remove_writer", "remove_reader"):
        with pytest.raises(ValueError, match="^Invalid file descriptor: -1$"):
            getattr(loop, method)(sock)
    run(loop, asyncio.sleep(0))


@pytest.mark.parametrize("side", ["reader", "writer"])
@pytest.mark.parametrize("warm", [False, True], ids=["fresh-loop", "ran-before"])
def test_watched_fd_closed_behind_the_loops_back(loop, side, warm):
    """A watched fd closed without remove_*: the loop keeps running (the kernel dropped it from
    epoll), remove_* still answers True then False, and a new socket given the same number is
    watched and fires. Registered and closed before the loop's first run, or on a loop that
    ran before."""
    add = getattr(loop, f"add_{side}")
    remove = getattr(loop, f"remove_{side}")
    if warm:
        run(loop, asyncio.sleep(0))
    a, b = socket.socketpair()
    a = high_fd(a)
    fd = a.detach()
    b.close()
    calls = []
    # Ready at once (EOF for the reader, buffer space for the writer), but closed before the
    # loop ever polls it.
    add(fd, calls.append, "old")
    os.close(fd)
    for _ in range(5):
        run(loop, asyncio.sleep(0))
    run(loop, asyncio.sleep(QUIET))
    assert calls == []
    assert remove(fd) is True
    assert remove(fd) is False

    c, d = socket.socketpair()
    try:
        c = reuse_number(c, fd)
        c.setblocking(False)
        fut = loop.create_future()

        def fired():
            data = c.recv(10) if side == "reader" else "writable"
            if not fut.done():
                fut.set_result(data)

        add(fd, fired)
        d.send(b"new")
        assert run(loop, fut, timeout=5) == (b"new" if side == "reader" else "writable")
        assert calls == []
        assert remove(fd) is True
    finally:
        c.close()
        d.close()


def test_watched_fd_closed_while_loop_polls(loop):
    """Closed from a coroutine while registered, the loop having polled it: no crash, no call
    of the stale reader, remove_reader answers True; its number, reused, is watched again."""
    a, b = socket.socketpair()
    fd = high_fd(a).detach()
    calls = []
    loop.add_reader(fd, calls.append, "stale")

    async def main():
        await asyncio.sleep(QUIET)  # polled while open (nothing to read)
        os.close(fd)
        b.close()  # would make the end readable (EOF), were it still open
        for _ in range(5):
            await asyncio.sleep(0)
        await asyncio.sleep(QUIET)

    run(loop, main())
    assert calls == []
    assert loop.remove_reader(fd) is True
    c, d = socket.socketpair()
    try:
        c = reuse_number(c, fd)
        fut = loop.create_future()
        loop.add_reader(fd, lambda: fut.done() or fut.set_result(c.recv(10)))
        d.send(b"reused")
        assert run(loop, fut, timeout=5) == b"reused"
        assert loop.remove_reader(fd) is True
    finally:
        c.close()
        d.close()


@pytest.fixture
def restore_signal_state():
    saved = signal.getsignal(signal.SIGUSR1)
    wakeup_fd = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(wakeup_fd)
    yield
    signal.signal(signal.SIGUSR1, saved)
    signal.set_wakeup_fd(wakeup_fd)


@pytest.mark.parametrize("removed", [True, False], ids=["remove_reader", "left-registered"])
def test_stale_watched_fd_does_not_break_signal_handling(loop, restore_signal_state, removed):
    """A reader on the lowest free fd, closed behind the loop's back before its first run; then
    the loop runs (and opens whatever it opens), remove_reader(fd) is called or not: signal
    handlers added afterwards still run, as on asyncio, whose own descriptors all exist from the
    loop's creation and so can never take the stale number."""
    a, b = socket.socketpair()
    fd = a.detach()
    b.close()
    stale = []
    loop.add_reader(fd, stale.append, "stale")
    os.close(fd)
    run(loop, asyncio.sleep(QUIET))
    if removed:
        assert loop.remove_reader(fd) is True
    got = loop.create_future()
    loop.add_signal_handler(signal.SIGUSR1, lambda: got.done() or got.set_result("signal"))
    try:

        async def main():
            os.kill(os.getpid(), signal.SIGUSR1)
            return await got

        assert run(loop, main(), timeout=2) == "signal"
        assert stale == []
    finally:
        assert loop.remove_signal_handler(signal.SIGUSR1) is True


def test_add_reader_keeps_fd_blocking(loop):
    """add_reader/add_writer do not change the fd's blocking mode (asyncio's selector only
    registers it)."""
    a, b = socket.socketpair()
    try:
        fd = a.fileno()
        assert os.get_blocking(fd) is True
        fut = loop.create_future()
        loop.add_reader(fd, lambda: fut.done() or fut.set_result(a.recv(10)))
        assert os.get_blocking(fd) is True
        run(loop, asyncio.sleep(QUIET))
        assert os.get_blocking(fd) is True
        b.send(b"x")
        assert run(loop, fut, timeout=5) == b"x"
        assert os.get_blocking(fd) is True
        wfut = loop.create_future()
        loop.add_writer(a, lambda: wfut.done() or wfut.set_result(None))
        run(loop, wfut, timeout=5)
        assert os.get_blocking(fd) is True
        assert loop.remove_reader(fd) is True
        assert loop.remove_writer(fd) is True
        assert os.get_blocking(fd) is True
        assert a.gettimeout() is None
    finally:
        a.close()
        b.close()


# --- 6. many concurrent sock_* operations ----------------------------------------------------

PAIRS = 200


@pytest.fixture
def socketpairs():
    pairs = []
    for _ in range(PAIRS):
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        pairs.append((a, b))
    yield pairs
    for a, b in pairs:
        a.close()
        b.close()


def test_many_pending_sock_recv(loop, socketpairs):
    """200 sock_recv waiting at once, then data on every pair: each gets its own data."""

    async def main():
        tasks = [loop.create_task(loop.sock_recv(a, 100)) for a, _ in socketpairs]
        await asyncio.sleep(QUIET)
        assert not any(t.done() for t in tasks)
        for i, (_, b) in enumerate(socketpairs):
            b.send(b"pair %d" % i)
        got = await asyncio.gather(*tasks)
        assert got == [b"pair %d" % i for i in range(PAIRS)]
        # Every pair is free for another round.
        tasks = [loop.create_task(loop.sock_recv(a, 100)) for a, _ in socketpairs]
        await asyncio.sleep(0)
        for i, (_, b) in enumerate(reversed(socketpairs)):
            b.send(b"again %d" % (PAIRS - 1 - i))
        assert await asyncio.gather(*tasks) == [b"again %d" % i for i in range(PAIRS)]

    run(loop, main())


def test_cancelled_sock_recv_leaves_data_for_the_next(loop, socketpairs):
    """Of 200 pending sock_recv, the 100 on even pairs are cancelled before any data: the other
    100 complete once the data comes, and a later sock_recv on each cancelled pair gets the data
    sent meanwhile (the cancelled call consumed nothing)."""

    async def main():
        contexts = record_errors(loop)
        tasks = [loop.create_task(loop.sock_recv(a, 100)) for a, _ in socketpairs]
        await asyncio.sleep(QUIET)
        assert not any(t.done() for t in tasks)
        cancelled = tasks[0::2]
        for t in cancelled:
            t.cancel()
        done = await asyncio.gather(*cancelled, return_exceptions=True)
        assert all(isinstance(r, asyncio.CancelledError) for r in done)
        for i, (_, b) in enumerate(socketpairs):
            b.send(b"pair %d" % i)
        got = await asyncio.gather(*tasks[1::2])
        assert got == [b"pair %d" % i for i in range(1, PAIRS, 2)]
        await asyncio.sleep(QUIET)
        # The data of the cancelled ones is still there, for a new sock_recv each.
        again = await asyncio.gather(*(loop.sock_recv(a, 100) for a, _ in socketpairs[0::2]))
        assert again == [b"pair %d" % i for i in range(0, PAIRS, 2)]
        # And the pairs all still work.
        tasks = [loop.create_task(loop.sock_recv(a, 100)) for a, _ in socketpairs]
        await asyncio.sleep(0)
        for _, b in socketpairs:
            b.send(b"last")
        assert await asyncio.gather(*tasks) == [b"last"] * PAIRS
        assert contexts == []

    run(loop, main())


def test_many_concurrent_sock_sendall_and_recv(loop, socketpairs):
    """200 sock_sendall of 256 KiB each (more than a socketpair buffers: they wait) while 200
    readers drain the other ends with sock_recv_into: every byte arrives, in order."""

    size = 256 * 1024

    async def main():
        payloads = [bytes([i % 251]) * size for i in range(PAIRS)]

        async def reader(sock):
            buf = bytearray(size)
            view = memoryview(buf)
            got = 0
            while got < size:
                n = await loop.sock_recv_into(sock, view[got:])
                assert n > 0
                got += n
            return bytes(buf)

        senders = [
            loop.create_task(loop.sock_sendall(a, p)) for (a, _), p in zip(socketpairs, payloads)
        ]
        await asyncio.sleep(0)
        readers = [loop.create_task(reader(b)) for _, b in socketpairs]
        assert await asyncio.gather(*senders) == [None] * PAIRS
        assert await asyncio.gather(*readers) == payloads

    run(loop, main(), timeout=20)
