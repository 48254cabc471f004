"""Unix stream sockets at the protocol level: create_unix_server / create_unix_connection.

The specification is asyncio's unix loop (unix_events.py: `create_unix_connection`,
`create_unix_server` with its stale-socket removal and, from 3.13, `cleanup_socket` and
`_stop_serving`'s unlinking of the socket file) over the socket transport of
selector_events.py, which serves Unix sockets exactly like TCP ones (no TCP_NODELAY).
"""

import asyncio
import errno
import hashlib
import os
import random
import socket
import stat
import sys
import uuid

import pytest

from conftest import run
from net_protocols import (
    HIGH,
    LOW,
    QUIET,
    Echo,
    Recorder,
    ServerSide,
    close_server,
    squash,
)

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="abstract Unix names are Linux-only"
)


def is_socket_file(path):
    return stat.S_ISSOCK(os.stat(path).st_mode)


def abstract_name():
    return "\0uvloop-test-" + uuid.uuid4().hex


@pytest.fixture
def sock_path(tmp_path):
    return str(tmp_path / "server.sock")


async def unix_pair(loop, path, server_cls=Recorder, **server_kwargs):
    """(server, client transport, client protocol, server protocol) over a new Unix server."""
    factory = ServerSide(cls=server_cls, **server_kwargs)
    server = await loop.create_unix_server(factory, path)
    tr, pr = await loop.create_unix_connection(Recorder, path)
    sproto = await factory.first()
    return server, tr, pr, sproto


async def teardown(server, tr, pr, sproto):
    tr.close()
    sproto.transport.close()
    await pr.lost
    await sproto.lost
    await close_server(server)


def test_unix_server_and_connection(loop, sock_path):
    """The server binds a socket file; a client connects; data flows both ways."""

    async def main():
        server, tr, pr, sproto = await unix_pair(loop, sock_path)
        assert is_socket_file(sock_path)
        assert server.is_serving()
        (lsock,) = server.sockets
        assert lsock.family == socket.AF_UNIX
        assert lsock.type == socket.SOCK_STREAM
        assert lsock.getsockname() == sock_path
        assert pr.events == ["made"]
        assert isinstance(tr, asyncio.Transport)
        tr.write(b"to server")
        assert await sproto.received(9) == b"to server"
        sproto.transport.write(b"to client")
        assert await pr.received(9) == b"to client"
        await teardown(server, tr, pr, sproto)

    run(loop, main())


def test_unix_extra_info(loop, sock_path):
    """The client's peername is the path and its sockname ''; the server side mirrors it."""

    async def main():
        server, tr, pr, sproto = await unix_pair(loop, sock_path)
        st = sproto.transport
        assert tr.get_extra_info("peername") == sock_path
        assert tr.get_extra_info("sockname") == ""
        assert st.get_extra_info("sockname") == sock_path
        assert st.get_extra_info("peername") == ""
        for t in (tr, st):
            sock = t.get_extra_info("socket")
            assert sock.family == socket.AF_UNIX
            assert sock.type == socket.SOCK_STREAM
            assert sock.getsockname() == t.get_extra_info("sockname")
            assert t.get_extra_info("unknown", "d") == "d"
            assert t.get_write_buffer_limits() == (LOW, HIGH)
            assert t.can_write_eof()
        await teardown(server, tr, pr, sproto)

    run(loop, main())


def test_unix_callback_order_and_close_on_eof(loop, sock_path):
    """made, data..., eof, lost(None): eof_received returning None closes the server side."""

    async def main():
        server, tr, pr, sproto = await unix_pair(loop, sock_path)
        tr.write(b"a" * 100_000)
        tr.write_eof()
        assert await sproto.lost is None
        assert len(sproto.data) == 100_000
        assert squash(sproto.events) == ["made", "data", "eof", "lost"]
        assert await pr.lost is None
        assert pr.events == ["made", "eof", "lost"]
        await close_server(server)

    run(loop, main())


def test_unix_half_close(loop, sock_path):
    """write_eof on a Unix transport half-closes; eof_received returning True keeps the
    other direction open."""

    async def main():
        server, tr, pr, sproto = await unix_pair(loop, sock_path, eof_result=True)
        tr.write(b"question")
        tr.write_eof()
        await sproto.eof
        assert bytes(sproto.data) == b"question"
        st = sproto.transport
        assert not st.is_closing()
        st.write(b"answer")
        st.write_eof()
        await pr.eof
        assert bytes(pr.data) == b"answer"
        assert await pr.lost is None
        st.close()
        assert await sproto.lost is None
        await close_server(server)

    run(loop, main())


def test_unix_echo_checksum(loop, sock_path):
    """8 MiB through an echo server on a Unix socket, in random writes, byte-exact."""

    async def main():
        factory = ServerSide(cls=Echo)
        server = await loop.create_unix_server(factory, sock_path)
        tr, pr = await loop.create_unix_connection(Recorder, sock_path)
        rng = random.Random(99)
        payload = rng.randbytes(8 * 1024 * 1024)
        view = memoryview(payload)
        pos = 0
        while pos < len(payload):
            n = rng.randint(1, 100_000)
            tr.write(view[pos:pos + n])
            pos += n
        tr.write_eof()
        await pr.eof
        assert hashlib.sha256(pr.data).digest() == hashlib.sha256(payload).digest()
        assert await pr.lost is None
        await factory.all_lost()
        await close_server(server)

    run(loop, main())


def test_unix_server_close_socket_file(loop, sock_path):
    """Closing the server removes its socket file from 3.13 on; before, the file stays."""

    async def main():
        server = await loop.create_unix_server(asyncio.Protocol, sock_path)
        assert is_socket_file(sock_path)
        await close_server(server)
        if sys.version_info >= (3, 13):
            assert not os.path.exists(sock_path)
        else:
            assert is_socket_file(sock_path)

    run(loop, main())


@pytest.mark.skipif(sys.version_info < (3, 13), reason="cleanup_socket is new in 3.13")
def test_unix_server_cleanup_socket_false(loop, sock_path):
    """cleanup_socket=False leaves the socket file behind."""

    async def main():
        server = await loop.create_unix_server(
            asyncio.Protocol, sock_path, cleanup_socket=False
        )
        await close_server(server)
        assert is_socket_file(sock_path)

    run(loop, main())


@pytest.mark.skipif(sys.version_info < (3, 13), reason="socket file cleanup is new in 3.13")
def test_unix_server_cleanup_spares_replaced_file(loop, sock_path):
    """The cleanup removes only the file the server created: a file put in its place stays,
    and a file already gone is no error."""

    async def main():
        server = await loop.create_unix_server(asyncio.Protocol, sock_path)
        os.unlink(sock_path)
        with open(sock_path, "w") as f:
            f.write("not a socket")
        await close_server(server)
        assert os.path.isfile(sock_path)
        os.unlink(sock_path)

        server = await loop.create_unix_server(asyncio.Protocol, sock_path)
        os.unlink(sock_path)
        await close_server(server)
        assert not os.path.exists(sock_path)

    run(loop, main())


@pytest.mark.skipif(sys.version_info < (3, 13), reason="socket file cleanup is new in 3.13")
def test_unix_server_sock_cleanup(loop, sock_path):
    """From 3.13 the cleanup also covers a server made from a bound socket (sock=)."""

    async def main():
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(sock_path)
        server = await loop.create_unix_server(asyncio.Protocol, sock=sock)
        await close_server(server)
        assert not os.path.exists(sock_path)

    run(loop, main())


def test_unix_server_removes_stale_socket(loop, sock_path):
    """A socket file left by a dead server is removed and the path bound again."""

    async def main():
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(sock_path)
        stale.close()
        assert is_socket_file(sock_path)
        server, tr, pr, sproto = await unix_pair(loop, sock_path)
        tr.write(b"fresh")
        assert await sproto.received(5) == b"fresh"
        await teardown(server, tr, pr, sproto)

    run(loop, main())


def test_unix_server_takes_over_live_socket_path(loop, sock_path):
    """Any socket file at the path is removed, even one a live server listens on: the new
    server gets the new connections, the old one keeps its own."""

    async def main():
        old_factory = ServerSide()
        old = await loop.create_unix_server(old_factory, sock_path)
        tr1, pr1 = await loop.create_unix_connection(Recorder, sock_path)
        old_side = await old_factory.first()

        new_factory = ServerSide()
        new = await loop.create_unix_server(new_factory, sock_path)
        tr2, pr2 = await loop.create_unix_connection(Recorder, sock_path)
        new_side = await new_factory.first()
        assert len(old_factory.protocols) == 1

        tr1.write(b"old")
        tr2.write(b"new")
        assert await old_side.received(3) == b"old"
        assert await new_side.received(3) == b"new"
        for tr, pr in ((tr1, pr1), (tr2, pr2)):
            tr.close()
            await pr.lost
        await old_factory.all_lost()
        await new_factory.all_lost()
        await close_server(old)
        await close_server(new)

    run(loop, main())


def test_unix_server_path_is_regular_file(loop, sock_path):
    """A regular file at the path is not removed: OSError(EADDRINUSE) naming the path."""

    async def main():
        with open(sock_path, "w") as f:
            f.write("data")
        with pytest.raises(OSError) as info:
            await loop.create_unix_server(asyncio.Protocol, sock_path)
        assert info.value.errno == errno.EADDRINUSE
        assert sock_path in str(info.value)
        with open(sock_path) as f:
            assert f.read() == "data"

    run(loop, main())


def test_unix_server_missing_directory(loop, tmp_path):
    """A path in a directory that does not exist fails with FileNotFoundError."""

    async def main():
        with pytest.raises(FileNotFoundError):
            await loop.create_unix_server(
                asyncio.Protocol, str(tmp_path / "no" / "such.sock")
            )

    run(loop, main())


def test_unix_server_pathlike(loop, tmp_path):
    """A path-like object is accepted (os.fspath)."""

    async def main():
        path = tmp_path / "pathlike.sock"
        factory = ServerSide()
        server = await loop.create_unix_server(factory, path)
        assert server.sockets[0].getsockname() == str(path)
        tr, pr = await loop.create_unix_connection(Recorder, path)
        await factory.first()
        tr.close()
        await pr.lost
        await factory.all_lost()
        await close_server(server)

    run(loop, main())


def test_unix_server_sock(loop, sock_path):
    """sock= serves on a Unix socket the caller bound; it becomes non-blocking."""

    async def main():
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(sock_path)
        factory = ServerSide()
        server = await loop.create_unix_server(factory, sock=sock)
        assert sock.gettimeout() == 0
        assert server.sockets[0].getsockname() == sock_path
        tr, pr = await loop.create_unix_connection(Recorder, sock_path)
        sproto = await factory.first()
        tr.write(b"sock")
        assert await sproto.received(4) == b"sock"
        tr.close()
        await pr.lost
        await factory.all_lost()
        await close_server(server)
        assert sock.fileno() == -1

    run(loop, main())


def test_unix_server_argument_errors(loop, sock_path):
    """path with sock, neither, a non-Unix or non-stream sock: ValueError; ssl=True: TypeError."""

    async def main():
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            with pytest.raises(ValueError):
                await loop.create_unix_server(asyncio.Protocol, sock_path, sock=s)
        with pytest.raises(ValueError):
            await loop.create_unix_server(asyncio.Protocol)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            with pytest.raises(ValueError):
                await loop.create_unix_server(asyncio.Protocol, sock=s)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            with pytest.raises(ValueError):
                await loop.create_unix_server(asyncio.Protocol, sock=s)
        with pytest.raises(TypeError):
            await loop.create_unix_server(asyncio.Protocol, sock_path, ssl=True)
        assert not os.path.exists(sock_path)

    run(loop, main())


def test_unix_start_serving_false(loop, sock_path):
    """start_serving=False binds without listening (connects refused) until start_serving()."""

    async def main():
        factory = ServerSide()
        server = await loop.create_unix_server(factory, sock_path, start_serving=False)
        assert not server.is_serving()
        assert is_socket_file(sock_path)
        with pytest.raises(ConnectionRefusedError):
            await loop.create_unix_connection(Recorder, sock_path)
        await server.start_serving()
        assert server.is_serving()
        tr, pr = await loop.create_unix_connection(Recorder, sock_path)
        await factory.first()
        tr.close()
        await pr.lost
        await factory.all_lost()
        await close_server(server)

    run(loop, main())


def test_unix_connection_errors(loop, sock_path):
    """A missing path is FileNotFoundError; a socket file nobody listens on is
    ConnectionRefusedError."""

    async def main():
        with pytest.raises(FileNotFoundError):
            await loop.create_unix_connection(Recorder, sock_path)
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(sock_path)
        stale.close()
        with pytest.raises(ConnectionRefusedError):
            await loop.create_unix_connection(Recorder, sock_path)

    run(loop, main())


def test_unix_connection_argument_errors(loop, sock_path):
    """path with sock, neither, a wrong sock, server_hostname without ssl: ValueError."""

    async def main():
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            with pytest.raises(ValueError):
                await loop.create_unix_connection(Recorder, sock_path, sock=s)
        with pytest.raises(ValueError):
            await loop.create_unix_connection(Recorder)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            with pytest.raises(ValueError):
                await loop.create_unix_connection(Recorder, sock=s)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            with pytest.raises(ValueError):
                await loop.create_unix_connection(Recorder, sock=s)
        with pytest.raises(ValueError):
            await loop.create_unix_connection(Recorder, sock_path, server_hostname="h")

    run(loop, main())


def test_unix_connection_sock_socketpair(loop):
    """create_unix_connection(sock=) and connect_accepted_socket wrap the two ends of a
    socketpair; create_connection(sock=) takes a Unix stream socket too."""

    async def main():
        a, b = socket.socketpair()
        tr_a, pr_a = await loop.create_unix_connection(Recorder, sock=a)
        tr_b, pr_b = await loop.connect_accepted_socket(Recorder, b)
        assert a.gettimeout() == 0 and b.gettimeout() == 0
        tr_a.write(b"from a")
        assert await pr_b.received(6) == b"from a"
        tr_b.write(b"from b")
        assert await pr_a.received(6) == b"from b"
        tr_a.close()
        await pr_b.eof
        assert await pr_b.lost is None
        assert await pr_a.lost is None

        c, d = socket.socketpair()
        tr_c, pr_c = await loop.create_connection(Recorder, sock=c)
        d.setblocking(False)
        await loop.sock_sendall(d, b"plain")
        assert await pr_c.received(5) == b"plain"
        d.close()
        await pr_c.eof
        assert await pr_c.lost is None
        assert squash(pr_c.events) == ["made", "data", "eof", "lost"]

    run(loop, main())


def test_unix_peer_close_of_socketpair(loop):
    """Closing the plain end of a socketpair gives the transport EOF then connection_lost."""

    async def main():
        a, b = socket.socketpair()
        tr, pr = await loop.connect_accepted_socket(Recorder, a)
        b.sendall(b"before close")
        b.close()
        await pr.eof
        assert bytes(pr.data) == b"before close"
        assert await pr.lost is None
        assert squash(pr.events) == ["made", "data", "eof", "lost"]

    run(loop, main())


@linux_only
@pytest.mark.parametrize("as_bytes", [False, True], ids=["str", "bytes"])
def test_unix_abstract_name(loop, tmp_path, as_bytes):
    """A Linux abstract name ("\\0...") serves without a file; getsockname gives bytes."""

    name = abstract_name()
    path = name.encode() if as_bytes else name

    async def main():
        factory = ServerSide()
        server = await loop.create_unix_server(factory, path)
        assert server.sockets[0].getsockname() == name.encode()
        tr, pr = await loop.create_unix_connection(Recorder, path)
        assert tr.get_extra_info("peername") == name.encode()
        sproto = await factory.first()
        assert sproto.transport.get_extra_info("sockname") == name.encode()
        tr.write(b"abstract")
        assert await sproto.received(8) == b"abstract"
        tr.close()
        await pr.lost
        await factory.all_lost()
        await close_server(server)
        assert os.listdir(tmp_path) == []
        # The name is free again once the server closed.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.bind(name)

    run(loop, main())


@linux_only
def test_unix_abstract_name_in_use(loop):
    """A second server on an abstract name in use fails with OSError(EADDRINUSE)."""

    name = abstract_name()

    async def main():
        server = await loop.create_unix_server(asyncio.Protocol, name)
        with pytest.raises(OSError) as info:
            await loop.create_unix_server(asyncio.Protocol, name)
        assert info.value.errno == errno.EADDRINUSE
        await close_server(server)

    run(loop, main())


def test_unix_pause_resume_reading(loop, sock_path):
    """pause_reading/resume_reading on a Unix transport hold data back and release it."""

    async def main():
        server, tr, pr, sproto = await unix_pair(loop, sock_path)
        tr.pause_reading()
        assert not tr.is_reading()
        sproto.transport.write(b"held")
        await asyncio.sleep(QUIET)
        assert pr.events == ["made"]
        tr.resume_reading()
        assert await pr.received(4) == b"held"
        await teardown(server, tr, pr, sproto)

    run(loop, main())
