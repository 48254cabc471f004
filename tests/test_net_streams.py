"""asyncio streams over the loop's TCP and Unix transports.

The specification is asyncio's streams.py (`open_connection`, `start_server`,
`open_unix_connection`, `start_unix_server`, `StreamReader`, `StreamReaderProtocol`,
`StreamWriter.drain/close/wait_closed`, `FlowControlMixin._drain_helper`) over the selector
transports of selector_events.py. The streams code is asyncio's on both loops; what differs is
the transport under it, so these tests pin how the two work together: flow control in both
directions, EOF, closing and the extra info the writer passes through.
"""

import asyncio
import hashlib
import os
import random
import socket

import pytest

from conftest import run

QUIET = 0.05


class Handlers:
    """Keeps the server-side (reader, writer) pairs and signals when the handler finished."""

    def __init__(self, body):
        self.body = body
        self.done = []
        self.writers = []

    async def __call__(self, reader, writer):
        self.writers.append(writer)
        fut = asyncio.get_running_loop().create_future()
        self.done.append(fut)
        try:
            await self.body(reader, writer)
        except BaseException as exc:  # reported to the test through the future
            fut.set_exception(exc)
            raise
        else:
            fut.set_result(None)
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass

    async def wait_all(self):
        for fut in self.done:
            await fut


async def echo_body(reader, writer):
    while True:
        data = await reader.read(65536)
        if not data:
            break
        writer.write(data)
        await writer.drain()


async def upper_lines_body(reader, writer):
    while True:
        line = await reader.readline()
        if not line:
            break
        writer.write(line.upper())
        await writer.drain()


async def tcp_stream_server(handler, **kwargs):
    server = await asyncio.start_server(handler, "127.0.0.1", 0, **kwargs)
    return server, server.sockets[0].getsockname()


async def close_writer(writer):
    writer.close()
    await writer.wait_closed()


def test_open_connection_readline_readexactly_read(loop):
    """readline, readexactly, read(n) and read() to EOF through a line-upper-casing server."""

    async def main():
        handlers = Handlers(upper_lines_body)
        server, addr = await tcp_stream_server(handlers)
        reader, writer = await asyncio.open_connection(*addr)
        assert isinstance(reader, asyncio.StreamReader)
        assert isinstance(writer, asyncio.StreamWriter)

        writer.write(b"hello\n")
        assert await reader.readline() == b"HELLO\n"
        writer.writelines([b"abc", b"def\n", b"ghi\n"])
        await writer.drain()
        assert await reader.readexactly(4) == b"ABCD"
        assert await reader.readline() == b"EF\n"
        assert await reader.read(2) == b"GH"
        assert await reader.readuntil(b"\n") == b"I\n"
        assert not reader.at_eof()

        writer.write(b"last line\n")
        assert writer.can_write_eof()
        writer.write_eof()
        assert await reader.read() == b"LAST LINE\n"
        assert reader.at_eof()
        assert await reader.read() == b""
        assert await reader.readline() == b""
        await close_writer(writer)
        await handlers.wait_all()
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_readexactly_short_stream(loop):
    """readexactly past EOF raises IncompleteReadError carrying the partial data."""

    async def body(reader, writer):
        writer.write(b"12345")
        await writer.drain()

    async def main():
        handlers = Handlers(body)
        server, addr = await tcp_stream_server(handlers)
        reader, writer = await asyncio.open_connection(*addr)
        with pytest.raises(asyncio.IncompleteReadError) as info:
            await reader.readexactly(10)
        assert info.value.partial == b"12345"
        assert info.value.expected == 10
        assert reader.at_eof()
        await close_writer(writer)
        await handlers.wait_all()
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_stream_limit_is_passed_through(loop):
    """limit= reaches the StreamReader: a longer line overruns it (ValueError)."""

    async def body(reader, writer):
        writer.write(b"x" * 100 + b"\n")
        await writer.drain()

    async def main():
        handlers = Handlers(body)
        server, addr = await tcp_stream_server(handlers)
        reader, writer = await asyncio.open_connection(*addr, limit=10)
        with pytest.raises(ValueError):
            await reader.readline()
        await close_writer(writer)
        await handlers.wait_all()
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_writer_extra_info_and_transport(loop):
    """The writer passes get_extra_info through to its transport, on both ends."""

    seen = {}

    async def body(reader, writer):
        seen["peername"] = writer.get_extra_info("peername")
        seen["sockname"] = writer.get_extra_info("sockname")
        await reader.read()

    async def main():
        handlers = Handlers(body)
        server, addr = await tcp_stream_server(handlers)
        reader, writer = await asyncio.open_connection(*addr)
        assert writer.get_extra_info("peername") == addr
        sockname = writer.get_extra_info("sockname")
        assert sockname[0] == "127.0.0.1"
        sock = writer.get_extra_info("socket")
        assert sock.getsockname() == sockname
        assert writer.get_extra_info("nonexistent", 42) == 42
        assert isinstance(writer.transport, asyncio.Transport)
        assert writer.transport.get_extra_info("peername") == addr
        writer.write_eof()
        await handlers.wait_all()
        assert seen == {"peername": sockname, "sockname": addr}
        assert await reader.read() == b""
        await close_writer(writer)
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_close_and_wait_closed(loop):
    """close() marks the writer closing; wait_closed returns once the transport is gone; the
    server reads EOF."""

    got = []

    async def body(reader, writer):
        got.append(await reader.read())

    async def main():
        handlers = Handlers(body)
        server, addr = await tcp_stream_server(handlers)
        reader, writer = await asyncio.open_connection(*addr)
        writer.write(b"bye")
        assert not writer.is_closing()
        writer.close()
        assert writer.is_closing()
        await writer.wait_closed()
        await writer.wait_closed()  # again: returns at once
        await handlers.wait_all()
        assert got == [b"bye"]
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_drain_blocks_until_peer_reads(loop):
    """A writer whose peer does not read blocks in drain() (its transport past the high-water
    mark) until the peer reads; then everything arrives."""

    async def main():
        release = loop.create_future()
        received = []

        async def body(reader, writer):
            await release
            received.append(await reader.read())

        handlers = Handlers(body)
        server, addr = await tcp_stream_server(handlers)
        reader, writer = await asyncio.open_connection(*addr)
        chunk = b"d" * (256 * 1024)
        low, high = writer.transport.get_write_buffer_limits()
        total = 0
        blocked = None
        while blocked is None:
            writer.write(chunk)
            total += len(chunk)
            assert total < 512 * 1024 * 1024
            if writer.transport.get_write_buffer_size() <= high:
                continue
            drain = loop.create_task(writer.drain())
            await asyncio.sleep(QUIET)
            if drain.done():
                drain.result()
            else:
                blocked = drain
        assert writer.transport.get_write_buffer_size() > low
        await asyncio.sleep(QUIET)
        assert not blocked.done()

        release.set_result(None)
        await blocked
        writer.write_eof()
        await handlers.wait_all()
        assert len(received[0]) == total
        await close_writer(writer)
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_drain_after_peer_closed_raises_connection_error(loop):
    """Writing to a peer that closed eventually fails drain() with a ConnectionError."""

    async def body(reader, writer):
        pass  # the handler closes at once

    async def main():
        handlers = Handlers(body)
        server, addr = await tcp_stream_server(handlers)
        reader, writer = await asyncio.open_connection(*addr)
        await handlers.wait_all()
        assert await reader.read() == b""
        with pytest.raises(ConnectionError):
            for _ in range(500):
                writer.write(b"x" * 1024)
                await writer.drain()
                await asyncio.sleep(0.01)
        writer.close()
        try:
            await writer.wait_closed()
        except ConnectionError:
            pass
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_open_connection_refused(loop):
    """open_connection to a port nobody listens on raises ConnectionRefusedError."""

    async def main():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection(*s.getsockname())

    run(loop, main())


def test_many_stream_clients(loop):
    """100 stream clients at once, each with its own conversation."""

    async def main():
        handlers = Handlers(upper_lines_body)
        server, addr = await tcp_stream_server(handlers)

        async def client(i):
            reader, writer = await asyncio.open_connection(*addr)
            writer.write(b"client %d\n" % i)
            line = await reader.readline()
            writer.write_eof()
            assert await reader.read() == b""
            await close_writer(writer)
            return line

        lines = await asyncio.gather(*(client(i) for i in range(100)))
        assert lines == [b"CLIENT %d\n" % i for i in range(100)]
        await handlers.wait_all()
        server.close()
        await server.wait_closed()

    run(loop, main())


async def checksum_roundtrip(reader, writer, size, seed):
    """Writes `size` random bytes in random chunks (draining), reads the echo concurrently;
    returns (sent sha256, received sha256, bytes received)."""
    rng = random.Random(seed)
    payload = rng.randbytes(size)

    async def send():
        view = memoryview(payload)
        pos = 0
        while pos < size:
            n = rng.randint(1, 200_000)
            writer.write(view[pos:pos + n])
            pos += n
            await writer.drain()
        writer.write_eof()

    async def receive():
        digest = hashlib.sha256()
        count = 0
        while True:
            data = await reader.read(rng.randint(1, 300_000))
            if not data:
                return digest.hexdigest(), count
            digest.update(data)
            count += len(data)

    _, (got, count) = await asyncio.gather(send(), receive())
    return hashlib.sha256(payload).hexdigest(), got, count


def test_large_transfer_tcp_streams(loop):
    """16 MiB through a stream echo server over TCP arrive byte-exact (sha256)."""

    async def main():
        handlers = Handlers(echo_body)
        server, addr = await tcp_stream_server(handlers)
        reader, writer = await asyncio.open_connection(*addr)
        size = 16 * 1024 * 1024
        sent, got, count = await checksum_roundtrip(reader, writer, size, seed=5)
        assert count == size
        assert got == sent
        await close_writer(writer)
        await handlers.wait_all()
        server.close()
        await server.wait_closed()

    run(loop, main(), timeout=30)


# --- Unix streams -------------------------------------------------------------------------------


def test_unix_streams_echo(loop, tmp_path):
    """start_unix_server/open_unix_connection: a line conversation and the socket path in
    the extra info."""

    path = str(tmp_path / "stream.sock")
    seen = {}

    async def body(reader, writer):
        seen["sockname"] = writer.get_extra_info("sockname")
        await upper_lines_body(reader, writer)

    async def main():
        handlers = Handlers(body)
        server = await asyncio.start_unix_server(handlers, path)
        assert server.sockets[0].getsockname() == path
        reader, writer = await asyncio.open_unix_connection(path)
        assert writer.get_extra_info("peername") == path
        writer.write(b"over unix\n")
        assert await reader.readline() == b"OVER UNIX\n"
        writer.write_eof()
        assert await reader.read() == b""
        await close_writer(writer)
        await handlers.wait_all()
        assert seen == {"sockname": path}
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_unix_streams_pathlike(loop, tmp_path):
    """Unix stream functions take path-like objects."""

    path = tmp_path / "pathlike.sock"

    async def main():
        handlers = Handlers(upper_lines_body)
        server = await asyncio.start_unix_server(handlers, path)
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(b"p\n")
        assert await reader.readline() == b"P\n"
        await close_writer(writer)
        await handlers.wait_all()
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_large_transfer_unix_streams(loop, tmp_path):
    """16 MiB through a stream echo server over a Unix socket arrive byte-exact (sha256)."""

    path = str(tmp_path / "big.sock")

    async def main():
        handlers = Handlers(echo_body)
        server = await asyncio.start_unix_server(handlers, path)
        reader, writer = await asyncio.open_unix_connection(path)
        size = 16 * 1024 * 1024
        sent, got, count = await checksum_roundtrip(reader, writer, size, seed=6)
        assert count == size
        assert got == sent
        await close_writer(writer)
        await handlers.wait_all()
        server.close()
        await server.wait_closed()

    run(loop, main(), timeout=30)


def test_unix_connection_missing_path(loop, tmp_path):
    """open_unix_connection to a path that does not exist raises FileNotFoundError."""

    async def main():
        with pytest.raises(FileNotFoundError):
            await asyncio.open_unix_connection(os.path.join(tmp_path, "missing.sock"))

    run(loop, main())
