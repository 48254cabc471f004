"""The loop's low-level socket operations: sock_recv/sock_recv_into/sock_sendall/
sock_connect/sock_accept, the datagram ones (sock_recvfrom/sock_recvfrom_into/sock_sendto,
3.11+), sock_sendfile and loop.sendfile on a transport.

The specification is asyncio's selector loop (selector_events.py: `sock_*`, `_sock_*`,
`_sock_read_done`, `_sock_write_done`, `_ensure_fd_no_transport`, `_sendfile_native`),
unix_events.py (`_sock_sendfile_native`, `_sock_sendfile_native_impl`) and base_events.py
(`sock_sendfile`, `_sock_sendfile_fallback`, `_check_sendfile_params`, `sendfile`).
"""

import asyncio
import errno
import hashlib
import io
import random
import socket
import struct
import sys

import pytest

from conftest import run
from net_protocols import QUIET, Recorder, ServerSide, close_server, needs_ipv6, tcp_server

needs_datagram_ops = pytest.mark.skipif(
    sys.version_info < (3, 11), reason="sock_recvfrom/sock_sendto are new in 3.11"
)


@pytest.fixture
def tcp_pair():
    """A connected pair of non-blocking TCP sockets (client, accepted)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        client = socket.create_connection(listener.getsockname())
        conn, _ = listener.accept()
    client.setblocking(False)
    conn.setblocking(False)
    yield client, conn
    client.close()
    conn.close()


@pytest.fixture
def small_buffers_pair():
    """Like tcp_pair, with small kernel buffers so that a few hundred KiB fill them."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        client.connect(listener.getsockname())
        conn, _ = listener.accept()
    client.setblocking(False)
    conn.setblocking(False)
    yield client, conn
    client.close()
    conn.close()


@pytest.fixture
def listener():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    s.setblocking(False)
    yield s
    s.close()


@pytest.fixture
def udp_pair():
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    a.bind(("127.0.0.1", 0))
    b.bind(("127.0.0.1", 0))
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


@pytest.fixture
def data_file(tmp_path):
    """A 1 MiB + 123 byte file of random bytes, opened for binary reading."""
    data = random.Random(3).randbytes(1024 * 1024 + 123)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    with open(path, "rb") as f:
        yield f, data


async def recv_exactly(loop, sock, n):
    chunks = []
    got = 0
    while got < n:
        data = await loop.sock_recv(sock, min(n - got, 1 << 20))
        if not data:
            break
        chunks.append(data)
        got += len(data)
    return b"".join(chunks)


async def recv_all(loop, sock):
    chunks = []
    while True:
        data = await loop.sock_recv(sock, 1 << 20)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


# --- sock_recv / sock_recv_into / sock_sendall -------------------------------------------------


def test_sock_recv_ready_and_pending(loop, tcp_pair):
    """sock_recv returns data already there, waits for data that is not, and b"" at EOF."""
    client, conn = tcp_pair

    async def main():
        await loop.sock_sendall(client, b"ready")
        await asyncio.sleep(QUIET)
        data = await loop.sock_recv(conn, 100)
        assert type(data) is bytes and data == b"ready"

        pending = loop.create_task(loop.sock_recv(conn, 100))
        await asyncio.sleep(QUIET)
        assert not pending.done()
        assert await loop.sock_sendall(client, b"later") is None
        assert await pending == b"later"

        await loop.sock_sendall(client, b"0123456789")
        assert await recv_exactly(loop, conn, 4) == b"0123"
        assert await recv_exactly(loop, conn, 6) == b"456789"

        client.shutdown(socket.SHUT_WR)
        assert await loop.sock_recv(conn, 100) == b""

    run(loop, main())


def test_sock_recv_into(loop, tcp_pair):
    """sock_recv_into fills the buffer (or a slice of it) and returns the byte count."""
    client, conn = tcp_pair

    async def main():
        buf = bytearray(10)
        pending = loop.create_task(loop.sock_recv_into(conn, buf))
        await asyncio.sleep(QUIET)
        assert not pending.done()
        await loop.sock_sendall(client, b"abc")
        assert await pending == 3
        assert buf[:3] == b"abc"

        view = memoryview(buf)[5:]
        await loop.sock_sendall(client, b"xyz")
        n = 0
        while n < 3:
            n += await loop.sock_recv_into(conn, view[n:])
        assert bytes(buf) == b"abc\0\0xyz\0\0"

        client.close()
        assert await loop.sock_recv_into(conn, bytearray(5)) == 0

    run(loop, main())


def test_sock_sendall_empty_and_return_value(loop, tcp_pair):
    """sock_sendall returns None, for empty data too."""
    client, conn = tcp_pair

    async def main():
        assert await loop.sock_sendall(client, b"") is None
        assert await loop.sock_sendall(client, bytearray(b"ab")) is None
        assert await loop.sock_sendall(client, memoryview(b"cd")) is None
        assert await recv_exactly(loop, conn, 4) == b"abcd"

    run(loop, main())


def test_sock_sendall_large(loop, tcp_pair):
    """16 MiB in one sock_sendall (the send buffer fills many times) arrive byte-exact."""
    client, conn = tcp_pair
    payload = random.Random(11).randbytes(16 * 1024 * 1024)

    async def main():
        async def send():
            await loop.sock_sendall(client, payload)
            client.shutdown(socket.SHUT_WR)

        _, got = await asyncio.gather(send(), recv_all(loop, conn))
        assert len(got) == len(payload)
        assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()

    run(loop, main(), timeout=30)


def test_sock_sendall_waits_for_the_peer(loop, small_buffers_pair):
    """sock_sendall of more than the kernel buffers hold stays pending until the peer reads."""
    client, conn = small_buffers_pair
    payload = b"w" * (8 * 1024 * 1024)

    async def main():
        task = loop.create_task(loop.sock_sendall(client, payload))
        await asyncio.sleep(QUIET)
        assert not task.done()
        got = await recv_exactly(loop, conn, len(payload))
        await task
        assert len(got) == len(payload)

    run(loop, main(), timeout=30)


def test_sock_sendall_cancelled_frees_the_fd(loop, small_buffers_pair):
    """A cancelled pending sock_sendall unregisters its writer: add_writer works after."""
    client, conn = small_buffers_pair

    async def main():
        task = loop.create_task(loop.sock_sendall(client, b"c" * (8 * 1024 * 1024)))
        await asyncio.sleep(QUIET)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        fut = loop.create_future()
        loop.add_writer(client, lambda: fut.done() or fut.set_result(None))

        def drain():
            # Makes room in the send buffer so that the new writer fires.
            try:
                while conn.recv(1 << 20):
                    pass
            except BlockingIOError:
                pass

        loop.add_reader(conn, drain)
        try:
            await fut
        finally:
            assert loop.remove_writer(client)
            assert loop.remove_reader(conn)

    run(loop, main())


def test_sock_recv_cancelled_frees_the_fd(loop, tcp_pair):
    """Cancelling a pending sock_recv unregisters its reader and consumes nothing: a reader
    added afterwards sees the data."""
    client, conn = tcp_pair

    async def main():
        task = loop.create_task(loop.sock_recv(conn, 100))
        await asyncio.sleep(QUIET)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        fut = loop.create_future()

        def on_readable():
            loop.remove_reader(conn)
            fut.set_result(conn.recv(100))

        loop.add_reader(conn, on_readable)
        await loop.sock_sendall(client, b"for the reader")
        assert await fut == b"for the reader"
        # And a new sock_recv works as well.
        await loop.sock_sendall(client, b"again")
        assert await loop.sock_recv(conn, 100) == b"again"

    run(loop, main())


def test_sock_recv_peer_reset(loop, tcp_pair):
    """A reset from the peer fails a pending sock_recv with ConnectionResetError."""
    client, conn = tcp_pair

    async def main():
        task = loop.create_task(loop.sock_recv(conn, 100))
        await asyncio.sleep(QUIET)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()
        with pytest.raises(ConnectionResetError):
            await task

    run(loop, main())


def test_sock_ops_refuse_a_transport_fd(loop):
    """sock_* that would wait on a socket a transport owns raise RuntimeError (the fd is the
    transport's), as do add_reader/add_writer."""

    async def main():
        factory = ServerSide()
        server, addr = await tcp_server(loop, factory)
        tr, pr = await loop.create_connection(Recorder, *addr)
        fd = tr.get_extra_info("socket").fileno()
        alias = socket.socket(fileno=fd)
        try:
            with pytest.raises(RuntimeError):
                await loop.sock_recv(alias, 10)
            with pytest.raises(RuntimeError):
                loop.add_reader(fd, lambda: None)
            with pytest.raises(RuntimeError):
                loop.add_writer(fd, lambda: None)
        finally:
            alias.detach()
        tr.close()
        await pr.lost
        await factory.all_lost()
        await close_server(server)

    run(loop, main())


# --- sock_connect / sock_accept ---------------------------------------------------------------


def test_sock_connect_and_accept(loop, listener):
    """sock_connect connects; sock_accept returns a non-blocking socket and the peer address."""

    async def main():
        client = socket.socket()
        client.setblocking(False)
        try:
            accept = loop.create_task(loop.sock_accept(listener))
            await asyncio.sleep(QUIET)
            assert not accept.done()
            assert await loop.sock_connect(client, listener.getsockname()) is None
            conn, addr = await accept
            with conn:
                assert conn.gettimeout() == 0
                assert addr == client.getsockname()
                assert conn.getpeername() == client.getsockname()
                await loop.sock_sendall(client, b"hi")
                assert await loop.sock_recv(conn, 10) == b"hi"
        finally:
            client.close()

    run(loop, main())


def test_sock_connect_resolves_hostname(loop, listener):
    """sock_connect resolves a host name for the socket's family."""

    async def main():
        port = listener.getsockname()[1]
        with socket.socket() as client:
            client.setblocking(False)
            await loop.sock_connect(client, ("localhost", port))
            assert client.getpeername() == ("127.0.0.1", port)
            conn, _ = await loop.sock_accept(listener)
            conn.close()

    run(loop, main())


@needs_ipv6
def test_sock_connect_ipv6(loop):
    """sock_connect and sock_accept over ::1."""

    async def main():
        with socket.socket(socket.AF_INET6) as lst, socket.socket(socket.AF_INET6) as client:
            lst.bind(("::1", 0))
            lst.listen()
            lst.setblocking(False)
            client.setblocking(False)
            await loop.sock_connect(client, lst.getsockname()[:2])
            conn, addr = await loop.sock_accept(lst)
            with conn:
                assert addr == client.getsockname()
                await loop.sock_sendall(conn, b"v6")
                assert await loop.sock_recv(client, 10) == b"v6"

    run(loop, main())


def test_sock_connect_unix(loop, tmp_path):
    """sock_connect and sock_accept on Unix sockets."""

    path = str(tmp_path / "sock")

    async def main():
        with socket.socket(socket.AF_UNIX) as lst, socket.socket(socket.AF_UNIX) as client:
            lst.bind(path)
            lst.listen()
            lst.setblocking(False)
            client.setblocking(False)
            await loop.sock_connect(client, path)
            conn, addr = await loop.sock_accept(lst)
            with conn:
                assert addr == ""
                await loop.sock_sendall(client, b"unix")
                assert await loop.sock_recv(conn, 10) == b"unix"

    run(loop, main())


def test_sock_connect_refused(loop):
    """sock_connect to a port nobody listens on raises ConnectionRefusedError."""

    async def main():
        with socket.socket() as target, socket.socket() as client:
            target.bind(("127.0.0.1", 0))
            client.setblocking(False)
            with pytest.raises(ConnectionRefusedError) as info:
                await loop.sock_connect(client, target.getsockname())
            assert info.value.errno == errno.ECONNREFUSED

    run(loop, main())


def test_sock_connect_cancelled(loop):
    """Cancelling a connect that cannot complete (full accept queue) raises CancelledError."""

    async def main():
        with socket.socket() as lst:
            lst.bind(("127.0.0.1", 0))
            lst.listen(0)
            fillers = []
            try:
                for _ in range(2):
                    f = socket.socket()
                    f.setblocking(False)
                    f.connect_ex(lst.getsockname())
                    fillers.append(f)
                with socket.socket() as client:
                    client.setblocking(False)
                    task = loop.create_task(loop.sock_connect(client, lst.getsockname()))
                    await asyncio.sleep(QUIET)
                    assert not task.done()
                    task.cancel()
                    with pytest.raises(asyncio.CancelledError):
                        await task
                    # Its writer is gone: a new one can be registered.
                    loop.add_writer(client, lambda: None)
                    assert loop.remove_writer(client)
            finally:
                for f in fillers:
                    f.close()

    run(loop, main())


def test_sock_accept_cancelled_frees_the_fd(loop, listener):
    """Cancelling a pending sock_accept unregisters it: a later sock_accept gets the client."""

    async def main():
        task = loop.create_task(loop.sock_accept(listener))
        await asyncio.sleep(QUIET)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with socket.socket() as client:
            client.setblocking(False)
            await loop.sock_connect(client, listener.getsockname())
            conn, addr = await loop.sock_accept(listener)
            conn.close()
            assert addr == client.getsockname()

    run(loop, main())


# --- datagrams --------------------------------------------------------------------------------


@needs_datagram_ops
def test_sock_sendto_recvfrom(loop, udp_pair):
    """sock_sendto returns the byte count; sock_recvfrom returns (data, sender address),
    waiting when nothing is there yet."""
    a, b = udp_pair

    async def main():
        pending = loop.create_task(loop.sock_recvfrom(b, 100))
        await asyncio.sleep(QUIET)
        assert not pending.done()
        assert await loop.sock_sendto(a, b"datagram", b.getsockname()) == 8
        assert await pending == (b"datagram", a.getsockname())
        assert await loop.sock_sendto(b, b"reply", a.getsockname()) == 5
        assert await loop.sock_recvfrom(a, 100) == (b"reply", b.getsockname())
        # A datagram longer than bufsize is truncated.
        await loop.sock_sendto(a, b"0123456789", b.getsockname())
        assert await loop.sock_recvfrom(b, 4) == (b"0123", a.getsockname())

    run(loop, main())


@needs_datagram_ops
def test_sock_recvfrom_into(loop, udp_pair):
    """sock_recvfrom_into returns (nbytes, address); nbytes= limits the bytes taken."""
    a, b = udp_pair

    async def main():
        buf = bytearray(16)
        pending = loop.create_task(loop.sock_recvfrom_into(b, buf))
        await asyncio.sleep(QUIET)
        assert not pending.done()
        await loop.sock_sendto(a, b"into buffer", b.getsockname())
        assert await pending == (11, a.getsockname())
        assert buf[:11] == b"into buffer"

        buf = bytearray(16)
        await loop.sock_sendto(a, b"abcdefgh", b.getsockname())
        assert await loop.sock_recvfrom_into(b, buf, 3) == (3, a.getsockname())
        assert buf == b"abc" + bytes(13)

    run(loop, main())


@needs_datagram_ops
def test_sock_recvfrom_cancelled_frees_the_fd(loop, udp_pair):
    """A cancelled sock_recvfrom takes no datagram: the next one gets it."""
    a, b = udp_pair

    async def main():
        task = loop.create_task(loop.sock_recvfrom(b, 100))
        await asyncio.sleep(QUIET)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await loop.sock_sendto(a, b"kept", b.getsockname())
        assert await loop.sock_recvfrom(b, 100) == (b"kept", a.getsockname())

    run(loop, main())


@needs_datagram_ops
def test_sock_sendall_on_connected_udp(loop, udp_pair):
    """sock_sendall and sock_recv work on connected datagram sockets."""
    a, b = udp_pair

    async def main():
        a.connect(b.getsockname())
        await loop.sock_sendall(a, b"connected")
        assert await loop.sock_recv(b, 100) == b"connected"

    run(loop, main())


# --- blocking sockets in debug mode ------------------------------------------------------------


def _blocking_ops(loop, tcp, udp, f):
    ops = [
        ("sock_recv", lambda: loop.sock_recv(tcp, 1)),
        ("sock_recv_into", lambda: loop.sock_recv_into(tcp, bytearray(1))),
        ("sock_sendall", lambda: loop.sock_sendall(tcp, b"x")),
        ("sock_connect", lambda: loop.sock_connect(tcp, ("127.0.0.1", 1))),
        ("sock_accept", lambda: loop.sock_accept(tcp)),
        ("sock_sendfile", lambda: loop.sock_sendfile(tcp, f)),
    ]
    if sys.version_info >= (3, 11):
        ops += [
            ("sock_recvfrom", lambda: loop.sock_recvfrom(udp, 1)),
            ("sock_recvfrom_into", lambda: loop.sock_recvfrom_into(udp, bytearray(1))),
            ("sock_sendto", lambda: loop.sock_sendto(udp, b"x", ("127.0.0.1", 1))),
        ]
    return ops


def test_blocking_socket_rejected_in_debug_mode(loop, data_file):
    """In debug mode every sock_* refuses a blocking socket: ValueError, and the socket is
    left untouched."""
    f, _ = data_file

    async def main():
        loop.set_debug(True)
        with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            assert tcp.gettimeout() is None
            for name, op in _blocking_ops(loop, tcp, udp, f):
                with pytest.raises(ValueError, match="the socket must be non-blocking"):
                    await op()
            assert tcp.gettimeout() is None
            assert f.tell() == 0

    run(loop, main())


# --- sock_sendfile ------------------------------------------------------------------------------


def test_sock_sendfile_whole_file(loop, tcp_pair, data_file):
    """sock_sendfile sends the whole file, returns its size and leaves the position at EOF."""
    client, conn = tcp_pair
    f, data = data_file

    async def main():
        async def send():
            n = await loop.sock_sendfile(client, f)
            client.shutdown(socket.SHUT_WR)
            return n

        n, got = await asyncio.gather(send(), recv_all(loop, conn))
        assert n == len(data)
        assert got == data
        assert f.tell() == len(data)

    run(loop, main())


def test_sock_sendfile_offset_count(loop, tcp_pair, data_file):
    """offset and count select a slice; the file position ends after it."""
    client, conn = tcp_pair
    f, data = data_file

    async def main():
        n = await loop.sock_sendfile(client, f, 1000, 300_000)
        assert n == 300_000
        assert f.tell() == 301_000
        assert await recv_exactly(loop, conn, n) == data[1000:301_000]
        # count past the end sends what there is.
        n = await loop.sock_sendfile(client, f, len(data) - 10, 1000)
        assert n == 10
        assert await recv_exactly(loop, conn, 10) == data[-10:]

    run(loop, main())


def test_sock_sendfile_empty_file(loop, tcp_pair, tmp_path):
    """An empty file sends nothing and returns 0."""
    client, conn = tcp_pair
    path = tmp_path / "empty"
    path.write_bytes(b"")

    async def main():
        with open(path, "rb") as f:
            assert await loop.sock_sendfile(client, f) == 0
            assert f.tell() == 0

    run(loop, main())


def test_sock_sendfile_not_a_regular_file(loop, tcp_pair):
    """A file without a descriptor cannot be sent natively: SendfileNotAvailableError with
    fallback=False, read and sent in chunks with the default fallback."""
    client, conn = tcp_pair
    data = bytes(range(256)) * 1000

    async def main():
        src = io.BytesIO(data)
        with pytest.raises(asyncio.SendfileNotAvailableError):
            await loop.sock_sendfile(client, src, fallback=False)
        assert issubclass(asyncio.SendfileNotAvailableError, RuntimeError)

        async def send():
            n = await loop.sock_sendfile(client, src, 10)
            client.shutdown(socket.SHUT_WR)
            return n

        n, got = await asyncio.gather(send(), recv_all(loop, conn))
        assert n == len(data) - 10
        assert got == data[10:]
        assert src.tell() == len(data)

    run(loop, main())


def test_sock_sendfile_argument_errors(loop, tcp_pair, data_file, tmp_path):
    """Text files, datagram sockets, non-positive counts and negative offsets are ValueError;
    non-integer offset or count TypeError."""
    client, conn = tcp_pair
    f, _ = data_file
    text_path = tmp_path / "text.txt"
    text_path.write_text("text")

    async def main():
        with open(text_path) as tf:
            with pytest.raises(ValueError):
                await loop.sock_sendfile(client, tf)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.setblocking(False)
            with pytest.raises(ValueError):
                await loop.sock_sendfile(udp, f)
        for kwargs, exc in (
            ({"count": 0}, ValueError),
            ({"count": -5}, ValueError),
            ({"offset": -1}, ValueError),
            ({"count": "10"}, TypeError),
            ({"offset": 1.5}, TypeError),
        ):
            with pytest.raises(exc):
                await loop.sock_sendfile(client, f, **kwargs)
        assert f.tell() == 0

    run(loop, main())


# --- loop.sendfile on a transport ---------------------------------------------------------------


async def transport_to_raw_peer(loop):
    """(transport, protocol, peer socket, listener): a client transport whose peer is a plain
    non-blocking socket."""
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen()
    lst.setblocking(False)
    tr, pr = await loop.create_connection(Recorder, *lst.getsockname())
    peer, _ = await loop.sock_accept(lst)
    return tr, pr, peer, lst


def test_loop_sendfile_on_transport(loop, data_file):
    """loop.sendfile sends the file through the transport, in order with its writes; write()
    is refused while it runs; reading resumes afterwards."""
    f, data = data_file

    async def main():
        tr, pr, peer, lst = await transport_to_raw_peer(loop)
        try:
            tr.write(b"head:")
            task = loop.create_task(loop.sendfile(tr, f))
            await asyncio.sleep(0)
            assert not task.done()
            with pytest.raises(RuntimeError):
                tr.write(b"during")
            received = loop.create_task(recv_exactly(loop, peer, 5 + len(data) + 5))
            n = await task
            assert n == len(data)
            assert f.tell() == len(data)
            tr.write(b":tail")
            got = await received
            assert got == b"head:" + data + b":tail"
            # Reading was resumed.
            assert tr.is_reading()
            await loop.sock_sendall(peer, b"back")
            assert await pr.received(4) == b"back"
        finally:
            tr.close()
            await pr.lost
            peer.close()
            lst.close()

    run(loop, main())


def test_loop_sendfile_on_accepted_transport_in_debug_mode(loop, data_file):
    """In debug mode asyncio's sendfile refuses a blocking socket: the socket of a transport a
    server accepted is non-blocking (timeout 0.0), so sendfile works on it."""
    f, data = data_file
    loop.set_debug(True)

    async def main():
        accepted = loop.create_future()

        class Accepted(asyncio.Protocol):
            def connection_made(self, transport):
                accepted.set_result(transport)

        server = await loop.create_server(Accepted, "127.0.0.1", 0)
        peer = socket.create_connection(server.sockets[0].getsockname())
        peer.setblocking(False)
        tr = await accepted
        try:
            assert tr.get_extra_info("socket").gettimeout() == 0.0
            received = loop.create_task(recv_exactly(loop, peer, len(data)))
            assert await loop.sendfile(tr, f) == len(data)
            assert await received == data
        finally:
            tr.close()
            peer.close()
            server.close()
            await server.wait_closed()

    run(loop, main())


def test_loop_sendfile_offset_count_no_fallback(loop, data_file):
    """offset/count apply to loop.sendfile; a socket transport needs no fallback."""
    f, data = data_file

    async def main():
        tr, pr, peer, lst = await transport_to_raw_peer(loop)
        try:
            n = await loop.sendfile(tr, f, 5, 70_000, fallback=False)
            assert n == 70_000
            assert f.tell() == 70_005
            assert await recv_exactly(loop, peer, n) == data[5:70_005]
        finally:
            tr.close()
            await pr.lost
            peer.close()
            lst.close()

    run(loop, main())


def test_loop_sendfile_fallback_for_non_regular_file(loop):
    """A BytesIO goes through the fallback; with fallback=False it is refused."""
    data = b"fallback data " * 10_000

    async def main():
        tr, pr, peer, lst = await transport_to_raw_peer(loop)
        try:
            src = io.BytesIO(data)
            with pytest.raises(asyncio.SendfileNotAvailableError):
                await loop.sendfile(tr, src, fallback=False)
            assert not tr.is_closing()
            n = await loop.sendfile(tr, src)
            assert n == len(data)
            assert await recv_exactly(loop, peer, n) == data
        finally:
            tr.close()
            await pr.lost
            peer.close()
            lst.close()

    run(loop, main())


def test_loop_sendfile_closing_transport(loop, data_file):
    """loop.sendfile on a closing transport raises RuntimeError."""
    f, _ = data_file

    async def main():
        tr, pr, peer, lst = await transport_to_raw_peer(loop)
        tr.close()
        with pytest.raises(RuntimeError):
            await loop.sendfile(tr, f)
        await pr.lost
        peer.close()
        lst.close()
        assert f.tell() == 0

    run(loop, main())


def test_loop_sendfile_unix_transport(loop, tmp_path, data_file):
    """loop.sendfile works on a Unix socket transport too."""
    f, data = data_file
    path = str(tmp_path / "sendfile.sock")

    async def main():
        lst = socket.socket(socket.AF_UNIX)
        lst.bind(path)
        lst.listen()
        lst.setblocking(False)
        tr, pr = await loop.create_unix_connection(Recorder, path)
        peer, _ = await loop.sock_accept(lst)
        try:
            received = loop.create_task(recv_exactly(loop, peer, len(data)))
            assert await loop.sendfile(tr, f) == len(data)
            assert await received == data
        finally:
            tr.close()
            await pr.lost
            peer.close()
            lst.close()

    run(loop, main())

