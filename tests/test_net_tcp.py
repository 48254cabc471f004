"""TCP at the protocol level: servers, connections and the socket transport.

The specification is asyncio's selector loop: base_events.py (`create_server`,
`create_connection`, `_connect_sock`, `connect_accepted_socket`, `Server`, `_set_nodelay`),
selector_events.py (`_accept_connection`, `_SelectorTransport`, `_SelectorSocketTransport`)
and transports.py (`_FlowControlMixin`: write buffer limits, pause/resume_writing).

Only loopback addresses are used. Everything a test waits for is a future resolved by a
protocol callback; the few "nothing happens" checks watch for a short real time (QUIET).
"""

import asyncio
import errno
import hashlib
import random
import resource
import socket
import struct
import sys

import pytest

from conftest import run
from net_protocols import (
    HIGH,
    LOW,
    QUIET,
    BufRecorder,
    Echo,
    FlowRecorder,
    Recorder,
    ServerSide,
    assert_flow_events,
    bound_not_listening,
    close_server,
    fill_until_paused,
    needs_ipv6,
    squash,
    tcp_server,
)


# --- create_server and the Server object ------------------------------------------------------


def test_create_server_port_zero(loop):
    """A server on 127.0.0.1 port 0 gets one listening socket on a real port, serving."""

    async def main():
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        try:
            assert isinstance(server, asyncio.AbstractServer)
            assert server.get_loop() is loop
            assert server.is_serving()
            socks = server.sockets
            assert isinstance(socks, tuple)
            assert len(socks) == 1
            sock = socks[0]
            assert sock.family == socket.AF_INET
            assert sock.type == socket.SOCK_STREAM
            host, port = sock.getsockname()
            assert host == "127.0.0.1"
            assert port != 0
            assert sock.fileno() >= 0
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        finally:
            server.close()
        assert not server.is_serving()
        assert server.sockets == ()
        await server.wait_closed()
        # A second close is harmless.
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_server_accepts_and_connection_made_before_create_connection_returns(loop):
    """create_connection returns once connection_made ran; the server side gets its own."""

    async def main():
        factory = ServerSide()
        server, addr = await tcp_server(loop, factory)
        tr, pr = await loop.create_connection(Recorder, *addr)
        assert pr.events == ["made"]
        assert pr.transport is tr
        sproto = await factory.first()
        assert sproto.events == ["made"]
        tr.close()
        assert await pr.lost is None
        assert await sproto.lost is None
        await close_server(server)

    run(loop, main())


@needs_ipv6
def test_create_server_host_list_binds_each_host_once(loop):
    """A host sequence binds one socket per address; a repeated host is bound once."""

    async def main():
        factory = ServerSide()
        server = await loop.create_server(factory, ["127.0.0.1", "::1", "127.0.0.1"], 0)
        try:
            socks = server.sockets
            assert sorted(s.family for s in socks) == sorted(
                [socket.AF_INET, socket.AF_INET6]
            )
            v6 = next(s for s in socks if s.family == socket.AF_INET6)
            assert v6.getsockname()[0] == "::1"
            assert v6.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
            # Both accept connections.
            for s in socks:
                host, port = s.getsockname()[:2]
                tr, pr = await loop.create_connection(Recorder, host, port)
                assert tr.get_extra_info("peername")[:2] == (host, port)
                tr.close()
                await pr.lost
            await factory.all_lost()
        finally:
            await close_server(server)

    run(loop, main())


def test_create_server_family_filter(loop):
    """family= restricts the addresses bound; an impossible family is a gaierror."""

    async def main():
        server = await loop.create_server(
            asyncio.Protocol, "localhost", 0, family=socket.AF_INET
        )
        assert [s.family for s in server.sockets] == [socket.AF_INET]
        await close_server(server)

        with pytest.raises(socket.gaierror) as info:
            await loop.create_server(
                asyncio.Protocol, "127.0.0.1", 0, family=socket.AF_INET6
            )
        try:
            socket.getaddrinfo(
                "127.0.0.1", 0, socket.AF_INET6, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
            )
        except socket.gaierror as exc:
            assert info.value.errno == exc.errno

    run(loop, main())


def test_create_server_reuse_address(loop):
    """SO_REUSEADDR is set by default on POSIX, and not with reuse_address=False."""

    async def main():
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        sock = server.sockets[0]
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) != 0
        await close_server(server)

        server = await loop.create_server(
            asyncio.Protocol, "127.0.0.1", 0, reuse_address=False
        )
        sock = server.sockets[0]
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 0
        await close_server(server)

    run(loop, main())


@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="no SO_REUSEPORT")
def test_create_server_reuse_port(loop):
    """reuse_port=True sets SO_REUSEPORT: two servers share one port; without it, EADDRINUSE."""

    async def main():
        s1 = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0, reuse_port=True)
        port = s1.sockets[0].getsockname()[1]
        assert s1.sockets[0].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) != 0
        s2 = await loop.create_server(
            asyncio.Protocol, "127.0.0.1", port, reuse_port=True
        )
        assert s2.sockets[0].getsockname()[1] == port
        with pytest.raises(OSError) as info:
            await loop.create_server(asyncio.Protocol, "127.0.0.1", port)
        assert info.value.errno == errno.EADDRINUSE
        await close_server(s1)
        await close_server(s2)

    run(loop, main())


def test_create_server_port_in_use(loop):
    """Binding a port another socket listens on raises OSError(EADDRINUSE)."""

    async def main():
        with socket.socket() as other:
            other.bind(("127.0.0.1", 0))
            other.listen()
            port = other.getsockname()[1]
            with pytest.raises(OSError) as info:
                await loop.create_server(asyncio.Protocol, "127.0.0.1", port)
            assert info.value.errno == errno.EADDRINUSE

    run(loop, main())


def test_create_server_backlog(loop):
    """An explicit backlog is accepted and the server serves with it."""

    async def main():
        factory = ServerSide()
        server, addr = await tcp_server(loop, factory, backlog=5)
        tr, pr = await loop.create_connection(Recorder, *addr)
        await factory.first()
        tr.close()
        await pr.lost
        await factory.all_lost()
        await close_server(server)

    run(loop, main())


def test_create_server_argument_errors(loop):
    """host/port with sock, neither, a datagram sock, or ssl=True are rejected."""

    async def main():
        with socket.socket() as s:
            with pytest.raises(ValueError):
                await loop.create_server(asyncio.Protocol, "127.0.0.1", 0, sock=s)
        with pytest.raises(ValueError):
            await loop.create_server(asyncio.Protocol)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            with pytest.raises(ValueError):
                await loop.create_server(asyncio.Protocol, sock=s)
        with pytest.raises(TypeError):
            await loop.create_server(asyncio.Protocol, "127.0.0.1", 0, ssl=True)

    run(loop, main())


def test_start_serving_false_then_start_serving(loop):
    """start_serving=False binds without listening (connects are refused) until start_serving()."""

    async def main():
        factory = ServerSide()
        server = await loop.create_server(factory, "127.0.0.1", 0, start_serving=False)
        addr = server.sockets[0].getsockname()
        assert not server.is_serving()
        with pytest.raises(ConnectionRefusedError):
            await loop.create_connection(Recorder, *addr)

        await server.start_serving()
        assert server.is_serving()
        await server.start_serving()  # a second call does nothing
        assert server.is_serving()

        tr, pr = await loop.create_connection(Recorder, *addr)
        await factory.first()
        tr.close()
        await pr.lost
        await factory.all_lost()
        await close_server(server)

    run(loop, main())


def test_serve_forever_cancelled_closes_server(loop):
    """serve_forever serves until cancelled, then closes the server and re-raises."""

    async def main():
        factory = ServerSide()
        server = await loop.create_server(factory, "127.0.0.1", 0, start_serving=False)
        addr = server.sockets[0].getsockname()
        task = loop.create_task(server.serve_forever())
        await asyncio.sleep(0)
        assert server.is_serving()
        with pytest.raises(RuntimeError):
            await server.serve_forever()  # already being awaited

        tr, pr = await loop.create_connection(Recorder, *addr)
        await factory.first()
        tr.close()
        await pr.lost
        await factory.all_lost()

        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not server.is_serving()
        assert server.sockets == ()
        with pytest.raises(RuntimeError):
            await server.serve_forever()  # closed
        with pytest.raises(ConnectionRefusedError):
            await loop.create_connection(Recorder, *addr)

    run(loop, main())


def test_server_close_stops_serving(loop):
    """close() stops serving at once: new connections to the port are refused."""

    async def main():
        server, addr = await tcp_server(loop, asyncio.Protocol)
        server.close()
        await server.wait_closed()
        with pytest.raises(ConnectionRefusedError):
            await loop.create_connection(Recorder, *addr)

    run(loop, main())


def test_create_server_sock(loop):
    """sock= serves on a socket bound by the caller; the Server owns and closes it."""

    async def main():
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        addr = sock.getsockname()
        factory = ServerSide()
        server = await loop.create_server(factory, sock=sock)
        assert [s.getsockname() for s in server.sockets] == [addr]
        assert sock.gettimeout() == 0  # made non-blocking
        tr, pr = await loop.create_connection(Recorder, *addr)
        sproto = await factory.first()
        tr.write(b"via sock=")
        assert await sproto.received(9) == b"via sock="
        tr.close()
        await pr.lost
        await factory.all_lost()
        await close_server(server)
        assert sock.fileno() == -1

    run(loop, main())


def test_server_async_with(loop):
    """`async with server` closes it on exit."""

    async def main():
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        async with server as entered:
            assert entered is server
            assert server.is_serving()
        assert not server.is_serving()
        assert server.sockets == ()

    run(loop, main())


def test_server_close_keeps_client_connections(loop):
    """Closing a server leaves its accepted connections working; wait_closed waits for them
    from 3.12.1 on (before, it returned at once)."""

    async def main():
        factory = ServerSide(cls=Recorder)
        server, addr = await tcp_server(loop, factory)
        tr, pr = await loop.create_connection(Recorder, *addr)
        sproto = await factory.first()
        server.close()
        assert not server.is_serving()

        # The accepted connection still works both ways.
        tr.write(b"ping")
        assert await sproto.received(4) == b"ping"
        sproto.transport.write(b"pong")
        assert await pr.received(4) == b"pong"

        waiter = loop.create_task(server.wait_closed())
        await asyncio.sleep(QUIET)
        if sys.version_info >= (3, 12, 1):
            assert not waiter.done()
        else:
            assert waiter.done()
        tr.close()
        await pr.lost
        await sproto.lost
        await waiter

    run(loop, main())


@pytest.mark.skipif(sys.version_info < (3, 13), reason="close_clients is new in 3.13")
def test_server_close_clients(loop):
    """close_clients() closes every accepted transport (the clients see EOF)."""

    async def main():
        factory = ServerSide()
        server, addr = await tcp_server(loop, factory)
        clients = [await loop.create_connection(Recorder, *addr) for _ in range(3)]
        await factory.count(3)
        server.close()
        server.close_clients()
        for sproto in factory.protocols:
            assert await sproto.lost is None
        for tr, pr in clients:
            await pr.eof
            assert await pr.lost is None
        await server.wait_closed()

    run(loop, main())


@pytest.mark.skipif(sys.version_info < (3, 13), reason="abort_clients is new in 3.13")
def test_server_abort_clients(loop):
    """abort_clients() aborts every accepted transport: connection_lost(None) on the server."""

    async def main():
        factory = ServerSide(cls=FlowRecorder)
        server, addr = await tcp_server(loop, factory)
        tr, pr = await loop.create_connection(Recorder, *addr)
        sproto = await factory.first()
        sproto.transport.pause_reading()
        server.close()
        server.abort_clients()
        assert sproto.transport.is_closing()
        assert await sproto.lost is None
        exc = await pr.lost
        assert exc is None or isinstance(exc, OSError)
        tr.close()
        await server.wait_closed()

    run(loop, main())


# --- create_connection -----------------------------------------------------------------------


def test_create_connection_local_addr(loop):
    """local_addr binds the client socket before connecting."""

    async def main():
        factory = ServerSide()
        server, addr = await tcp_server(loop, factory)
        tr, pr = await loop.create_connection(
            Recorder, *addr, local_addr=("127.0.0.1", 0)
        )
        sockname = tr.get_extra_info("sockname")
        assert sockname[0] == "127.0.0.1"
        sproto = await factory.first()
        assert sproto.transport.get_extra_info("peername") == sockname
        tr.close()
        await pr.lost
        await factory.all_lost()
        await close_server(server)

    run(loop, main())


def test_create_connection_local_addr_in_use(loop):
    """A local_addr already taken fails with OSError(EADDRINUSE)."""

    async def main():
        server, addr = await tcp_server(loop, asyncio.Protocol)
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            with pytest.raises(OSError) as info:
                await loop.create_connection(
                    Recorder, *addr, local_addr=taken.getsockname()
                )
            assert info.value.errno == errno.EADDRINUSE
        await close_server(server)

    run(loop, main())


def test_create_connection_hostname(loop):
    """A host name is resolved ("localhost")."""

    async def main():
        factory = ServerSide()
        server, addr = await tcp_server(loop, factory)
        tr, pr = await loop.create_connection(
            Recorder, "localhost", addr[1], family=socket.AF_INET
        )
        assert tr.get_extra_info("peername") == addr
        tr.close()
        await pr.lost
        await factory.first()
        await factory.all_lost()
        await close_server(server)

    run(loop, main())


@needs_ipv6
def test_create_connection_ipv6(loop):
    """A connection over ::1 echoes; peername is the 4-tuple of AF_INET6."""

    async def main():
        factory = ServerSide(cls=Echo)
        server, addr = await tcp_server(loop, factory, host="::1")
        tr, pr = await loop.create_connection(Recorder, *addr)
        peer = tr.get_extra_info("peername")
        assert len(peer) == 4 and peer[:2] == addr
        assert tr.get_extra_info("socket").family == socket.AF_INET6
        tr.write(b"six")
        assert await pr.received(3) == b"six"
        tr.close()
        await pr.lost
        await factory.all_lost()
        await close_server(server)

    run(loop, main())


def test_create_connection_sock(loop):
    """sock= wraps a socket connected by the caller, and makes it non-blocking."""

    async def main():
        factory = ServerSide()
        server, addr = await tcp_server(loop, factory)
        sock = socket.socket()
        sock.setblocking(False)
        await loop.sock_connect(sock, addr)
        sock.setblocking(True)
        tr, pr = await loop.create_connection(Recorder, sock=sock)
        assert sock.gettimeout() == 0
        assert tr.get_extra_info("socket").fileno() == sock.fileno()
        assert tr.get_extra_info("peername") == addr
        sproto = await factory.first()
        tr.write(b"abc")
        assert await sproto.received(3) == b"abc"
        tr.close()
        await pr.lost
        assert sock.fileno() == -1  # the transport closed it
        await factory.all_lost()
        await close_server(server)

    run(loop, main())


def test_create_connection_argument_errors(loop):
    """host with sock, neither host nor sock, a datagram sock: ValueError."""

    async def main():
        with socket.socket() as s:
            with pytest.raises(ValueError):
                await loop.create_connection(Recorder, "127.0.0.1", 1, sock=s)
        with pytest.raises(ValueError):
            await loop.create_connection(Recorder)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            with pytest.raises(ValueError):
                await loop.create_connection(Recorder, sock=s)
        with pytest.raises(ValueError):
            await loop.create_connection(
                Recorder, "127.0.0.1", 1, server_hostname="x"
            )

    run(loop, main())


def test_create_connection_refused(loop):
    """Connecting to a port nobody listens on raises ConnectionRefusedError."""

    async def main():
        with bound_not_listening() as s:
            with pytest.raises(ConnectionRefusedError) as info:
                await loop.create_connection(Recorder, *s.getsockname())
            assert info.value.errno == errno.ECONNREFUSED

    run(loop, main())


def test_create_connection_refused_happy_eyeballs(loop):
    """happy_eyeballs_delay and interleave connect, and fail as without them."""

    async def main():
        factory = ServerSide(cls=Echo)
        server, addr = await tcp_server(loop, factory)
        tr, pr = await loop.create_connection(
            Recorder, *addr, happy_eyeballs_delay=0.25, interleave=1
        )
        tr.write(b"he")
        assert await pr.received(2) == b"he"
        tr.close()
        await pr.lost
        await factory.all_lost()
        await close_server(server)

        with bound_not_listening() as s:
            with pytest.raises(ConnectionRefusedError):
                await loop.create_connection(
                    Recorder, *s.getsockname(), happy_eyeballs_delay=0.25
                )

    run(loop, main())


@pytest.mark.skipif(sys.version_info < (3, 12), reason="all_errors is new in 3.12")
def test_create_connection_all_errors(loop):
    """all_errors=True raises an ExceptionGroup of every attempt's error."""

    async def main():
        with bound_not_listening() as s:
            with pytest.raises(ExceptionGroup) as info:  # noqa: F821 (3.11+)
                await loop.create_connection(
                    Recorder, *s.getsockname(), all_errors=True
                )
            excs = info.value.exceptions
            assert len(excs) == 1
            assert isinstance(excs[0], ConnectionRefusedError)

    run(loop, main())


def test_create_connection_wrong_family(loop):
    """An IPv4 literal with family=AF_INET6 fails name resolution (socket.gaierror)."""

    async def main():
        with pytest.raises(socket.gaierror):
            await loop.create_connection(
                Recorder, "127.0.0.1", 80, family=socket.AF_INET6
            )

    run(loop, main())


@pytest.fixture
def full_backlog():
    """An address whose listener never accepts and whose accept queue is full: a
    connect to it stays pending."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    addr = listener.getsockname()
    fillers = []
    for _ in range(2):
        f = socket.socket()
        f.setblocking(False)
        f.connect_ex(addr)
        fillers.append(f)
    yield addr
    for f in fillers:
        f.close()
    listener.close()


def test_create_connection_wait_for_timeout(loop, full_backlog):
    """wait_for around a connect that cannot complete times out and leaks nothing."""

    async def main():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(loop.create_connection(Recorder, *full_backlog), 0.3)

    run(loop, main())


def test_create_connection_cancelled(loop, full_backlog):
    """Cancelling a pending connect raises CancelledError and leaks nothing."""

    async def main():
        task = loop.create_task(loop.create_connection(Recorder, *full_backlog))
        await asyncio.sleep(QUIET)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(loop, main())


def test_connect_accepted_socket(loop):
    """connect_accepted_socket wraps a socket accepted by the caller."""

    async def main():
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            client = socket.create_connection(listener.getsockname())
            conn, _ = listener.accept()
        client.setblocking(False)
        tr, pr = await loop.connect_accepted_socket(Recorder, conn)
        assert pr.events == ["made"]
        assert conn.gettimeout() == 0
        assert tr.get_extra_info("peername") == client.getsockname()
        await loop.sock_sendall(client, b"hello")
        assert await pr.received(5) == b"hello"
        tr.write(b"back")
        assert await loop.sock_recv(client, 10) == b"back"
        client.close()
        await pr.eof
        assert await pr.lost is None
        assert squash(pr.events) == ["made", "data", "eof", "lost"]

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            with pytest.raises(ValueError):
                await loop.connect_accepted_socket(Recorder, s)

    run(loop, main())


# --- the transport -----------------------------------------------------------------------------


async def connected_pair(loop, server_cls=Recorder, client_cls=Recorder, **server_kwargs):
    """(server, client transport, client protocol, server protocol)."""
    factory = ServerSide(cls=server_cls, **server_kwargs)
    server, addr = await tcp_server(loop, factory)
    tr, pr = await loop.create_connection(client_cls, *addr)
    sproto = await factory.first()
    return server, tr, pr, sproto


async def teardown(server, tr, pr, sproto):
    tr.close()
    sproto.transport.close()
    await pr.lost
    await sproto.lost
    await close_server(server)


def test_transport_types(loop):
    """Both ends are asyncio.Transport (read and write) objects; get_protocol is the protocol."""

    async def main():
        server, tr, pr, sproto = await connected_pair(loop)
        for t, p in ((tr, pr), (sproto.transport, sproto)):
            assert isinstance(t, asyncio.Transport)
            assert isinstance(t, asyncio.ReadTransport)
            assert isinstance(t, asyncio.WriteTransport)
            assert t.get_protocol() is p
            assert not t.is_closing()
            assert t.is_reading()
            assert t.can_write_eof() is True
        await teardown(server, tr, pr, sproto)

    run(loop, main())


def test_get_extra_info(loop):
    """socket, sockname and peername on both ends; unknown keys give the default."""

    async def main():
        server, tr, pr, sproto = await connected_pair(loop)
        saddr = server.sockets[0].getsockname()
        st = sproto.transport
        sockname = tr.get_extra_info("sockname")
        assert sockname[0] == "127.0.0.1"
        assert tr.get_extra_info("peername") == saddr
        assert st.get_extra_info("sockname") == saddr
        assert st.get_extra_info("peername") == sockname
        for t in (tr, st):
            sock = t.get_extra_info("socket")
            assert sock.family == socket.AF_INET
            assert sock.type == socket.SOCK_STREAM
            assert sock.fileno() >= 0
            assert sock.getsockname() == t.get_extra_info("sockname")
            assert sock.getpeername() == t.get_extra_info("peername")
            assert t.get_extra_info("no such key") is None
            assert t.get_extra_info("no such key", "dflt") == "dflt"
            assert t.get_extra_info("peercert") is None
            assert t.get_extra_info("sslcontext") is None
        await teardown(server, tr, pr, sproto)

    run(loop, main())


def test_tcp_nodelay_on_both_ends(loop):
    """Nagle is disabled on the client's and the server's transport sockets."""

    async def main():
        server, tr, pr, sproto = await connected_pair(loop)
        for t in (tr, sproto.transport):
            sock = t.get_extra_info("socket")
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        await teardown(server, tr, pr, sproto)

    run(loop, main())


def test_tcp_nodelay_on_a_socket_made_with_proto_0(loop, loop_kind):
    """A TCP socket made without IPPROTO_TCP is still TCP: our transports disable Nagle on it,
    asyncio's skip it (its check looks at sock.proto)."""

    async def main():
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        server = await loop.create_server(asyncio.Protocol, sock=listener)
        client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        client.setblocking(False)
        await loop.sock_connect(client, listener.getsockname())
        transport, _ = await loop.create_connection(asyncio.Protocol, sock=client)
        nodelay = client.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        transport.close()
        server.close()
        await server.wait_closed()
        await asyncio.sleep(0)
        return nodelay

    nodelay = run(loop, main())
    assert (nodelay != 0) == (loop_kind == "uvloop")


def test_write_buffer_limits(loop):
    """Defaults are (16384, 65536); high alone sets low = high // 4, low alone high = 4 * low;
    high < low or a negative limit is a ValueError."""

    async def main():
        server, tr, pr, sproto = await connected_pair(loop)
        assert tr.get_write_buffer_limits() == (LOW, HIGH)
        assert sproto.transport.get_write_buffer_limits() == (LOW, HIGH)
        assert tr.get_write_buffer_size() == 0
        tr.set_write_buffer_limits(high=100)
        assert tr.get_write_buffer_limits() == (25, 100)
        tr.set_write_buffer_limits(low=100)
        assert tr.get_write_buffer_limits() == (100, 400)
        tr.set_write_buffer_limits(high=1000, low=10)
        assert tr.get_write_buffer_limits() == (10, 1000)
        tr.set_write_buffer_limits(0, 0)
        assert tr.get_write_buffer_limits() == (0, 0)
        tr.set_write_buffer_limits()
        assert tr.get_write_buffer_limits() == (LOW, HIGH)
        for kwargs in ({"high": 10, "low": 20}, {"low": -1}, {"high": -1}, {"high": 5, "low": -1}):
            with pytest.raises(ValueError):
                tr.set_write_buffer_limits(**kwargs)
        assert tr.get_write_buffer_limits() == (LOW, HIGH)
        await teardown(server, tr, pr, sproto)

    run(loop, main())


def test_callback_order_and_eof_closes(loop):
    """connection_made, data_received..., eof_received, connection_lost(None), each once;
    eof_received returning None closes the transport."""

    async def main():
        server, tr, pr, sproto = await connected_pair(loop)
        payload = bytes(range(256)) * 100
        tr.write(payload[:1000])
        tr.writelines([payload[1000:2000], bytearray(payload[2000:3000])])
        tr.write(memoryview(payload)[3000:])
        tr.write_eof()
        assert await sproto.lost is None
        assert bytes(sproto.data) == payload
        assert squash(sproto.events) == ["made", "data", "eof", "lost"]
        assert sproto.transport.is_closing()
        # The server closed after EOF: the client sees EOF too, then loses the connection.
        assert await pr.lost is None
        assert pr.events == ["made", "eof", "lost"]
        assert tr.is_closing()
        await close_server(server)

    run(loop, main())


def test_eof_received_true_keeps_writing_open(loop):
    """eof_received returning True half-closes: the side that got EOF still writes."""

    async def main():
        server, tr, pr, sproto = await connected_pair(loop, eof_result=True)
        tr.write(b"request")
        tr.write_eof()
        await sproto.eof
        assert bytes(sproto.data) == b"request"
        st = sproto.transport
        assert not st.is_closing()
        st.write(b"response after eof")
        assert await pr.received(18) == b"response after eof"
        assert not pr.eof.done()
        st.close()
        await pr.eof
        assert await pr.lost is None
        assert await sproto.lost is None
        assert squash(sproto.events) == ["made", "data", "eof", "lost"]
        assert squash(pr.events) == ["made", "data", "eof", "lost"]
        await close_server(server)

    run(loop, main())


def test_eof_received_false_closes(loop):
    """eof_received returning False closes the transport like None."""

    async def main():
        server, tr, pr, sproto = await connected_pair(loop, eof_result=False)
        tr.write_eof()
        await sproto.eof
        assert sproto.transport.is_closing()
        assert await sproto.lost is None
        await pr.eof
        await pr.lost
        await close_server(server)

    run(loop, main())


def test_write_eof_rules(loop):
    """write() after write_eof() is a RuntimeError; a repeated write_eof() does nothing."""

    async def main():
        server, tr, pr, sproto = await connected_pair(loop, eof_result=True)
        tr.write_eof()
        tr.write_eof()
        with pytest.raises(RuntimeError):
            tr.write(b"late")
        assert not tr.is_closing()
        await sproto.eof
        sproto.transport.write(b"still readable")
        assert await pr.received(14) == b"still readable"
        await teardown(server, tr, pr, sproto)

    run(loop, main())


def test_write_argument_types(loop):
    """write() takes bytes-like objects only; an empty write does nothing."""

    async def main():
        server, tr, pr, sproto = await connected_pair(loop)
        for bad in ("text", 42, None, [b"x"]):
            with pytest.raises(TypeError):
                tr.write(bad)
        tr.write(b"")
        tr.write(bytearray(b"ab"))
        tr.write(memoryview(b"cd"))
        tr.write(b"ef")
        assert await sproto.received(6) == b"abcdef"
        await teardown(server, tr, pr, sproto)

    run(loop, main())


def test_close_flushes_buffer_before_connection_lost(loop):
    """close() with data still buffered sends it all, then connection_lost(None)."""

    async def main():
        server, tr, pr, sproto = await connected_pair(loop, server_cls=FlowRecorder)
        st = sproto.transport
        st.pause_reading()
        payload = random.Random(1).randbytes(16 * 1024 * 1024)
        tr.write(payload)
        tr.close()
        assert tr.is_closing()
        assert not tr.is_reading()
        await asyncio.sleep(QUIET)
        if tr.get_write_buffer_size():
            assert not pr.lost.done()
        st.resume_reading()
        await sproto.eof
        assert bytes(sproto.data) == payload
        assert await pr.lost is None
        assert await sproto.lost is None
        await close_server(server)

    run(loop, main())


def test_close_is_idempotent_and_lost_is_scheduled(loop):
    """close() twice calls connection_lost once, and not from inside close()."""

    async def main():
        server, tr, pr, sproto = await connected_pair(loop)
        tr.close()
        assert pr.events == ["made"]
        tr.close()
        assert await pr.lost is None
        tr.close()
        await asyncio.sleep(QUIET)
        assert pr.events.count("lost") == 1
        await sproto.lost
        await close_server(server)

    run(loop, main())


def test_pause_resume_reading(loop):
    """pause_reading stops data_received until resume_reading; both are idempotent."""

    async def main():
        server, tr, pr, sproto = await connected_pair(loop)
        assert tr.is_reading()
        tr.pause_reading()
        tr.pause_reading()
        assert not tr.is_reading()
        sproto.transport.write(b"while paused")
        await asyncio.sleep(QUIET)
        assert pr.events == ["made"]
        tr.resume_reading()
        tr.resume_reading()
        assert tr.is_reading()
        assert await pr.received(12) == b"while paused"
        await teardown(server, tr, pr, sproto)
        assert not tr.is_reading()
        # After close, pause/resume are no-ops.
        tr.pause_reading()
        tr.resume_reading()
        assert not tr.is_reading()

    run(loop, main())


@pytest.mark.skipif(
    sys.version_info < (3, 11),
    reason="asyncio before 3.11 starts reading after connection_made even when paused there",
)
def test_pause_reading_in_connection_made(loop):
    """A transport paused in connection_made delivers nothing until resumed, EOF included."""

    class PausingProto(Recorder):
        def connection_made(self, transport):
            super().connection_made(transport)
            transport.pause_reading()

    async def main():
        server, tr, pr, sproto = await connected_pair(loop, server_cls=PausingProto)
        st = sproto.transport
        assert not st.is_reading()
        tr.write(b"early")
        tr.write_eof()
        await asyncio.sleep(QUIET)
        assert sproto.events == ["made"]
        st.resume_reading()
        await sproto.lost
        assert bytes(sproto.data) == b"early"
        assert squash(sproto.events) == ["made", "data", "eof", "lost"]
        await pr.lost
        await close_server(server)

    run(loop, main())


def test_pause_reading_inside_data_received(loop):
    """pause_reading called from data_received stops further delivery at once."""

    class OneShot(Recorder):
        def data_received(self, data):
            super().data_received(data)
            self.transport.pause_reading()

    async def main():
        server, tr, pr, sproto = await connected_pair(loop, client_cls=OneShot)
        st = sproto.transport
        st.write(b"first")
        await pr.received(1)
        n = len(pr.data)
        st.write(b"second")
        await asyncio.sleep(QUIET)
        assert len(pr.data) == n
        assert pr.events.count("data") == 1
        while len(pr.data) < 11:
            tr.resume_reading()
            await pr.received(len(pr.data) + 1)
        assert bytes(pr.data) == b"firstsecond"
        await teardown(server, tr, pr, sproto)

    run(loop, main())


def test_small_write_is_sent_at_once(loop):
    """A small write on an idle transport goes straight to the socket: nothing is left in
    the write buffer when write() returns."""

    async def main():
        server, tr, pr, sproto = await connected_pair(loop)
        tr.write(b"immediate")
        assert tr.get_write_buffer_size() == 0
        tr.writelines([b"also ", b"immediate"])
        assert tr.get_write_buffer_size() == 0
        assert await sproto.received(23) == b"immediatealso immediate"
        await teardown(server, tr, pr, sproto)

    run(loop, main())


def test_write_in_connection_made(loop):
    """A server that writes a greeting from connection_made: the client gets it first."""

    class Greeter(Recorder):
        def connection_made(self, transport):
            super().connection_made(transport)
            transport.write(b"welcome\n")

    async def main():
        server, tr, pr, sproto = await connected_pair(loop, server_cls=Greeter)
        assert await pr.received(8) == b"welcome\n"
        await teardown(server, tr, pr, sproto)

    run(loop, main())


def test_close_inside_data_received(loop):
    """close() from data_received: no more data is delivered, connection_lost(None) follows;
    the peer sees EOF."""

    class CloseOnData(Recorder):
        def data_received(self, data):
            super().data_received(data)
            self.transport.close()

    async def main():
        server, tr, pr, sproto = await connected_pair(loop, server_cls=CloseOnData)
        tr.write(b"first")
        assert await sproto.lost is None
        tr.write(b"second")
        exc = await pr.lost
        assert exc is None or isinstance(exc, OSError)
        assert sproto.events == ["made", "data", "lost"]
        assert bytes(sproto.data) == b"first"
        await close_server(server)

    run(loop, main())


def test_abort_inside_data_received(loop):
    """abort() from data_received: connection_lost(None) follows, the peer's connection ends."""

    class AbortOnData(Recorder):
        def data_received(self, data):
            super().data_received(data)
            self.transport.abort()

    async def main():
        server, tr, pr, sproto = await connected_pair(loop, server_cls=AbortOnData)
        tr.write(b"x")
        assert await sproto.lost is None
        assert sproto.events == ["made", "data", "lost"]
        exc = await pr.lost
        assert exc is None or isinstance(exc, OSError)
        await close_server(server)

    run(loop, main())


def test_write_eof_waits_for_buffered_data(loop):
    """write_eof() with data still buffered shuts down only after sending it all; the
    transport stays open for reading."""

    async def main():
        server, tr, pr, sproto = await connected_pair(
            loop, server_cls=FlowRecorder, client_cls=FlowRecorder, eof_result=True
        )
        st = sproto.transport
        st.pause_reading()
        total = await fill_until_paused(pr, tr)
        tr.write_eof()
        assert not tr.is_closing()
        assert tr.get_write_buffer_size() > 0
        st.resume_reading()
        await sproto.eof
        assert len(sproto.data) == total
        assert tr.get_write_buffer_size() == 0
        st.write(b"reply after eof")
        assert await pr.received(15) == b"reply after eof"
        await teardown(server, tr, pr, sproto)

    run(loop, main())


def test_set_protocol_switches_delivery(loop):
    """After set_protocol, data goes to the new protocol; get_protocol returns it."""

    async def main():
        server, tr, pr, sproto = await connected_pair(loop)
        sproto.transport.write(b"one")
        assert await pr.received(3) == b"one"
        other = Recorder()
        tr.set_protocol(other)
        assert tr.get_protocol() is other
        sproto.transport.write(b"two")
        assert await other.received(3) == b"two"
        assert bytes(pr.data) == b"one"
        sproto.transport.close()
        assert await other.lost is None
        assert squash(other.events) == ["data", "eof", "lost"]
        assert not pr.lost.done()
        await sproto.lost
        await close_server(server)

    run(loop, main())


def test_set_protocol_to_buffered_protocol(loop):
    """A transport switched to a BufferedProtocol reads through get_buffer/buffer_updated."""

    async def main():
        server, tr, pr, sproto = await connected_pair(loop)
        other = BufRecorder(16)
        tr.set_protocol(other)
        sproto.transport.write(b"to the buffered protocol")
        sproto.transport.close()
        assert await other.lost is None
        assert bytes(other.data) == b"to the buffered protocol"
        await sproto.lost
        await close_server(server)

    run(loop, main())


def test_buffered_protocol_small_buffer(loop):
    """A BufferedProtocol with a 7-byte buffer gets the stream byte-exact, in many chunks."""

    async def main():
        factory = ServerSide(cls=BufRecorder, size=7)
        server, addr = await tcp_server(loop, factory)
        tr, pr = await loop.create_connection(Recorder, *addr)
        payload = random.Random(7).randbytes(100_000)
        tr.write(payload)
        tr.write_eof()
        sproto = await factory.first()
        assert await sproto.lost is None
        assert bytes(sproto.data) == payload
        assert len(sproto.chunks) >= len(payload) // 7
        assert all(isinstance(h, int) for h in sproto.hints)
        ev = sproto.events
        assert ev[0] == "made" and ev[-2:] == ["eof", "lost"]
        assert ev.count("updated") == len(sproto.chunks)
        await pr.lost
        await close_server(server)

    run(loop, main())


def test_buffered_protocol_large_buffer(loop):
    """A BufferedProtocol with a big buffer gets 2 MiB byte-exact."""

    async def main():
        factory = ServerSide(cls=BufRecorder, size=1024 * 1024)
        server, addr = await tcp_server(loop, factory)
        tr, pr = await loop.create_connection(Recorder, *addr)
        payload = random.Random(8).randbytes(2 * 1024 * 1024)
        tr.write(payload)
        tr.close()
        await pr.lost
        sproto = await factory.first()
        assert await sproto.lost is None
        assert bytes(sproto.data) == payload
        await close_server(server)

    run(loop, main())


def test_buffered_protocol_empty_buffer_is_fatal(loop):
    """get_buffer returning an empty buffer is a fatal error (exception handler, closed)."""

    class EmptyBuf(BufRecorder):
        def get_buffer(self, sizehint):
            return bytearray()

    async def main():
        contexts = []
        loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
        factory = ServerSide(cls=EmptyBuf)
        server, addr = await tcp_server(loop, factory)
        tr, pr = await loop.create_connection(Recorder, *addr)
        tr.write(b"data")
        await pr.lost
        sproto = await factory.first()
        exc = await sproto.lost
        assert isinstance(exc, RuntimeError)
        assert len(contexts) == 1
        assert "Fatal error" in contexts[0]["message"]
        assert contexts[0]["exception"] is exc
        await close_server(server)

    run(loop, main())


def test_pause_and_resume_writing_at_watermarks(loop):
    """pause_writing once the buffer passes the high-water mark (the peer not reading),
    resume_writing once it drained to the low-water mark, and all the data arrives."""

    async def main():
        server, tr, pr, sproto = await connected_pair(
            loop, server_cls=FlowRecorder, client_cls=FlowRecorder
        )
        st = sproto.transport
        st.pause_reading()
        total = await fill_until_paused(pr, tr)
        assert_flow_events(pr.events, "pause")
        assert tr.get_write_buffer_size() > HIGH
        st.resume_reading()
        await pr.wait_resumed()
        assert_flow_events(pr.events, "resume")
        for what, size in pr.sizes:
            if what == "pause":
                assert size > HIGH
            else:
                assert size <= LOW
        await sproto.received(total)
        assert len(sproto.data) == total
        assert tr.get_write_buffer_size() == 0
        await teardown(server, tr, pr, sproto)

    run(loop, main())


def test_write_buffer_grows_by_whole_writes_while_peer_not_reading(loop):
    """Once data is buffered, each write adds exactly its size; the exact high-water mark
    does not pause (strictly greater does), and set_write_buffer_limits itself may pause."""

    async def main():
        server, tr, pr, sproto = await connected_pair(
            loop, server_cls=FlowRecorder, client_cls=FlowRecorder
        )
        st = sproto.transport
        st.pause_reading()
        tr.set_write_buffer_limits(high=1 << 40)
        chunk = b"y" * (256 * 1024)
        total = 0
        # Fill until the kernel stops taking data and the transport keeps some.
        while True:
            tr.write(chunk)
            total += len(chunk)
            assert total < 512 * 1024 * 1024
            if tr.get_write_buffer_size() > 0:
                await asyncio.sleep(QUIET)
                if tr.get_write_buffer_size() > 0:
                    break
        size = tr.get_write_buffer_size()
        for n in (1, 1000, 65536):
            tr.write(b"z" * n)
            total += n
            assert tr.get_write_buffer_size() == size + n
            size += n
        assert pr.events == ["made"]
        # Exactly at the high-water mark: not paused.
        tr.set_write_buffer_limits(high=size + 10, low=0)
        assert pr.events == ["made"]
        tr.write(b"0123456789")
        total += 10
        assert tr.get_write_buffer_size() == size + 10
        assert pr.events == ["made"]
        tr.write(b"!")
        total += 1
        assert pr.events == ["made", "pause"]
        assert pr.sizes == [("pause", size + 11)]
        st.resume_reading()
        await pr.wait_resumed()
        assert pr.sizes[-1] == ("resume", 0)
        await sproto.received(total)
        assert len(sproto.data) == total
        await teardown(server, tr, pr, sproto)

    run(loop, main())


def test_set_write_buffer_limits_pauses_immediately(loop):
    """Lowering the high-water mark below the buffered size calls pause_writing from
    set_write_buffer_limits itself."""

    async def main():
        server, tr, pr, sproto = await connected_pair(
            loop, server_cls=FlowRecorder, client_cls=FlowRecorder
        )
        sproto.transport.pause_reading()
        tr.set_write_buffer_limits(high=1 << 40)
        chunk = b"q" * (256 * 1024)
        total = 0
        while True:
            tr.write(chunk)
            total += len(chunk)
            assert total < 512 * 1024 * 1024
            if tr.get_write_buffer_size() > 0:
                await asyncio.sleep(QUIET)
                if tr.get_write_buffer_size() > 0:
                    break
        assert pr.events == ["made"]
        tr.set_write_buffer_limits(high=0)
        assert pr.events == ["made", "pause"]
        assert tr.get_write_buffer_limits() == (0, 0)
        sproto.transport.resume_reading()
        await pr.wait_resumed()
        assert pr.events == ["made", "pause", "resume"]
        await sproto.received(total)
        await teardown(server, tr, pr, sproto)

    run(loop, main())


def test_pause_writing_exception_goes_to_handler(loop):
    """An exception in pause_writing is reported to the exception handler; the transport
    keeps working."""

    class BadPause(FlowRecorder):
        def pause_writing(self):
            super().pause_writing()
            raise ZeroDivisionError("pause")

    async def main():
        contexts = []
        loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
        server, tr, pr, sproto = await connected_pair(
            loop, server_cls=FlowRecorder, client_cls=BadPause
        )
        tr.set_write_buffer_limits(high=0)
        sproto.transport.pause_reading()
        total = await fill_until_paused(pr, tr)
        assert len(contexts) == pr.events.count("pause") >= 1
        for ctx in contexts:
            assert ctx["message"] == "protocol.pause_writing() failed"
            assert isinstance(ctx["exception"], ZeroDivisionError)
            assert ctx["transport"] is tr
            assert ctx["protocol"] is pr
        sproto.transport.resume_reading()
        await pr.wait_resumed()
        await sproto.received(total)
        assert len(sproto.data) == total
        await teardown(server, tr, pr, sproto)

    run(loop, main())


def test_abort_with_data_queued(loop):
    """abort() drops the buffer at once and calls connection_lost(None) (later, once); the
    peer then sees EOF or a reset."""

    async def main():
        server, tr, pr, sproto = await connected_pair(
            loop, server_cls=FlowRecorder, client_cls=FlowRecorder
        )
        st = sproto.transport
        st.pause_reading()
        await fill_until_paused(pr, tr)
        assert tr.get_write_buffer_size() > 0
        tr.abort()
        assert tr.is_closing()
        assert tr.get_write_buffer_size() == 0
        assert "lost" not in pr.events
        tr.abort()
        tr.close()
        assert await pr.lost is None
        await asyncio.sleep(QUIET)
        assert pr.events.count("lost") == 1
        assert_flow_events(pr.events, "lost")
        st.resume_reading()
        exc = await sproto.lost
        if exc is None:
            assert "eof" in sproto.events
        else:
            assert isinstance(exc, OSError)
        await close_server(server)

    run(loop, main())


def test_peer_reset(loop):
    """A reset from the peer (SO_LINGER 0 close) ends in connection_lost(OSError), no EOF,
    and no call to the exception handler."""

    async def main():
        contexts = []
        loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
        factory = ServerSide()
        server, addr = await tcp_server(loop, factory)
        peer = socket.create_connection(addr)
        sproto = await factory.first()
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peer.close()
        exc = await sproto.lost
        assert isinstance(exc, OSError)
        assert isinstance(exc, ConnectionResetError)
        assert sproto.events == ["made", "lost"]
        assert contexts == []
        assert sproto.transport.is_closing()
        await close_server(server)

    run(loop, main())


def test_writes_after_close_are_ignored(loop, caplog):
    """Writes after close() are dropped silently; from the fifth on each logs a warning."""

    async def main():
        server, tr, pr, sproto = await connected_pair(loop)
        tr.close()
        caplog.clear()
        with caplog.at_level("WARNING", logger="asyncio"):
            for _ in range(4):
                tr.write(b"dropped")
            assert [r for r in caplog.records if r.name == "asyncio"] == []
            assert await pr.lost is None
            tr.write(b"dropped")
            recs = [r for r in caplog.records if r.name == "asyncio"]
            assert len(recs) == 1
            assert recs[0].levelname == "WARNING"
            assert recs[0].getMessage() == "socket.send() raised exception."
            tr.write(b"dropped")
            assert len([r for r in caplog.records if r.name == "asyncio"]) == 2
        await sproto.lost
        assert bytes(sproto.data) == b""
        await close_server(server)

    run(loop, main())


def test_writes_after_abort_are_ignored(loop):
    """Writes after abort() raise nothing and send nothing."""

    async def main():
        server, tr, pr, sproto = await connected_pair(loop)
        tr.abort()
        tr.write(b"dropped")
        assert await pr.lost is None
        tr.write(b"dropped")
        await sproto.lost
        assert bytes(sproto.data) == b""
        await close_server(server)

    run(loop, main())


def test_exception_in_data_received_is_fatal(loop):
    """An exception in data_received goes to the exception handler ('Fatal error ...'),
    and the transport is closed with connection_lost(that exception)."""

    class Boom(Recorder):
        def data_received(self, data):
            super().data_received(data)
            raise ValueError("boom")

    async def main():
        contexts = []
        loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
        server, tr, pr, sproto = await connected_pair(loop, server_cls=Boom)
        tr.write(b"trigger")
        exc = await sproto.lost
        assert isinstance(exc, ValueError) and str(exc) == "boom"
        assert squash(sproto.events) == ["made", "data", "lost"]
        assert len(contexts) == 1
        ctx = contexts[0]
        assert "Fatal error" in ctx["message"]
        assert ctx["exception"] is exc
        assert ctx["transport"] is sproto.transport
        assert ctx["protocol"] is sproto
        # The peer sees the connection end.
        exc = await pr.lost
        assert exc is None or isinstance(exc, OSError)
        await close_server(server)

    run(loop, main())


def test_exception_in_eof_received_is_fatal(loop):
    """An exception in eof_received is fatal too: handler called, connection_lost(exc)."""

    class Boom(Recorder):
        def eof_received(self):
            super().eof_received()
            raise KeyError("eof")

    async def main():
        contexts = []
        loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
        server, tr, pr, sproto = await connected_pair(loop, server_cls=Boom)
        tr.write_eof()
        exc = await sproto.lost
        assert isinstance(exc, KeyError)
        assert len(contexts) == 1
        assert "Fatal error" in contexts[0]["message"]
        assert contexts[0]["exception"] is exc
        await pr.lost
        await close_server(server)

    run(loop, main())


@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_server_protocol_factory_error(loop):
    """A protocol factory that raises does not stop the server: the next client is served."""

    calls = []

    echoes = ServerSide(cls=Echo)

    def factory():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("factory")
        return echoes()

    async def main():
        server, addr = await tcp_server(loop, factory)
        tr, pr = await loop.create_connection(Recorder, *addr)
        tr2, pr2 = await loop.create_connection(Recorder, *addr)
        tr2.write(b"ok")
        assert await pr2.received(2) == b"ok"
        tr.close()
        tr2.close()
        await pr.lost
        await pr2.lost
        assert server.is_serving()
        assert len(calls) == 2
        await echoes.all_lost()
        await close_server(server)

    run(loop, main())


# --- scale ---------------------------------------------------------------------------------------


@pytest.fixture
def many_fds():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4096
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        if new < 2500:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is too low")
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_thousand_concurrent_connections(loop, many_fds):
    """1000 clients at once, each one echo round trip, all byte-exact."""

    n = 1000

    async def main():
        factory = ServerSide(cls=Echo)
        server, addr = await tcp_server(loop, factory, backlog=n)

        async def client(i):
            tr, pr = await loop.create_connection(Recorder, *addr)
            msg = b"client %d" % i
            tr.write(msg)
            got = await pr.received(len(msg))
            tr.close()
            await pr.lost
            return got == msg

        results = await asyncio.gather(*(client(i) for i in range(n)))
        assert all(results)
        assert len(factory.protocols) == n
        await factory.all_lost()
        await close_server(server)

    run(loop, main(), timeout=30)


def test_large_transfer_with_random_flow_control(loop):
    """64 MiB through an echo server in random-size writes, the receiver pausing and
    resuming reading at random: everything comes back in order (sha256)."""

    size = 64 * 1024 * 1024
    rng = random.Random(20240611)
    payload = rng.randbytes(size)
    expected = hashlib.sha256(payload).hexdigest()

    class Receiver(FlowRecorder):
        def __init__(self):
            super().__init__()
            self.digest = hashlib.sha256()
            self.count = 0
            self.reading_paused = False
            self.violations = 0

        def data_received(self, data):
            if self.reading_paused:
                self.violations += 1
            self.digest.update(data)
            self.count += len(data)
            if rng.random() < 0.05:
                self.transport.pause_reading()
                self.reading_paused = True
                asyncio.get_running_loop().call_later(rng.random() * 0.002, self.resume)

        def resume(self):
            self.reading_paused = False
            self.transport.resume_reading()

        def eof_received(self):
            self.events.append("eof")
            self.eof.set_result(None)

    async def main():
        factory = ServerSide(cls=Echo)
        server, addr = await tcp_server(loop, factory)
        tr, pr = await loop.create_connection(Receiver, *addr)
        view = memoryview(payload)
        pos = 0
        while pos < size:
            if pr.paused:
                await pr.wait_resumed()
            n = rng.randint(1, 256 * 1024)
            tr.write(view[pos:pos + n])
            pos += n
            if rng.random() < 0.1:
                await asyncio.sleep(0)
        tr.write_eof()
        await pr.eof
        assert await pr.lost is None
        assert pr.violations == 0
        assert pr.count == size
        assert pr.digest.hexdigest() == expected
        await factory.all_lost()
        await close_server(server)

    run(loop, main(), timeout=60)
