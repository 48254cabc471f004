"""Datagram endpoints and pipe transports.

The specification is asyncio's `create_datagram_endpoint` (base_events.py),
`_SelectorDatagramTransport` (selector_events.py), and `connect_read_pipe` /
`connect_write_pipe` with `_UnixReadPipeTransport` / `_UnixWritePipeTransport` (unix_events.py).
"""

import asyncio
import hashlib
import os
import socket
import sys

import pytest

from conftest import run


class EchoDatagram(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data, addr)


class Collector(asyncio.DatagramProtocol):
    def __init__(self):
        self.received = asyncio.Queue()
        self.errors = []
        self.lost = None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.received.put_nowait((data, addr))

    def error_received(self, exc):
        self.errors.append(exc)

    def connection_lost(self, exc):
        self.lost = ("lost", exc)


def test_thousand_datagrams_round_trip(loop):
    """1000 numbered datagrams through an echo endpoint, a window of 32 in flight: all back."""

    async def main():
        server, _ = await loop.create_datagram_endpoint(EchoDatagram, local_addr=("127.0.0.1", 0))
        address = server.get_extra_info("sockname")
        client, proto = await loop.create_datagram_endpoint(Collector, remote_addr=address)
        assert client.get_extra_info("peername") == address
        seen = set()
        for start in range(0, 1000, 32):
            batch = range(start, min(start + 32, 1000))
            for i in batch:
                client.sendto(i.to_bytes(4, "big") * 16)
            for _ in batch:
                data, addr = await proto.received.get()
                assert addr == address
                assert data[:4] * 16 == data
                seen.add(int.from_bytes(data[:4], "big"))
        client.close()
        server.close()
        await asyncio.sleep(0)
        return seen, proto.lost

    seen, lost = run(loop, main())
    assert seen == set(range(1000))
    assert lost == ("lost", None)


def test_sendto_without_a_connected_peer(loop, loop_kind):
    async def main():
        server, _ = await loop.create_datagram_endpoint(EchoDatagram, local_addr=("127.0.0.1", 0))
        address = server.get_extra_info("sockname")
        client, proto = await loop.create_datagram_endpoint(
            Collector, local_addr=("127.0.0.1", 0), family=socket.AF_INET
        )
        assert client.get_extra_info("peername") is None
        # asyncio's own is one only from 3.12 on; ours always.
        assert isinstance(client, asyncio.DatagramTransport) == (
            loop_kind == "uvloop" or sys.version_info >= (3, 12)
        )
        assert client.get_write_buffer_size() == 0
        client.sendto(b"one", address)
        result = await proto.received.get()
        client.abort()
        server.close()
        await asyncio.sleep(0)
        return result, client.is_closing()

    (data, addr), closing = run(loop, main())
    assert data == b"one"
    assert closing


def test_connected_endpoint_refuses_other_addresses(loop):
    async def main():
        server, _ = await loop.create_datagram_endpoint(EchoDatagram, local_addr=("127.0.0.1", 0))
        address = server.get_extra_info("sockname")
        client, _ = await loop.create_datagram_endpoint(Collector, remote_addr=address)
        try:
            with pytest.raises(ValueError):
                client.sendto(b"x", ("127.0.0.1", address[1] + 1 if address[1] < 65535 else 1))
        finally:
            client.close()
            server.close()
            await asyncio.sleep(0)

    run(loop, main())


def test_error_received_for_a_closed_port(loop):
    """A datagram to a port nobody listens on comes back as ICMP: error_received gets
    ConnectionRefusedError on a connected endpoint."""

    async def main():
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.bind(("127.0.0.1", 0))
        address = probe.getsockname()
        probe.close()
        client, proto = await loop.create_datagram_endpoint(Collector, remote_addr=address)
        for _ in range(50):
            client.sendto(b"anyone?")
            await asyncio.sleep(0.01)
            if proto.errors:
                break
        client.close()
        await asyncio.sleep(0)
        return proto.errors

    errors = run(loop, main())
    assert errors and isinstance(errors[0], ConnectionRefusedError)


def test_unix_datagram_by_path(loop, tmp_path):
    async def main():
        server_path = str(tmp_path / "server.sock")
        client_path = str(tmp_path / "client.sock")
        server, _ = await loop.create_datagram_endpoint(
            EchoDatagram, local_addr=server_path, family=socket.AF_UNIX
        )
        client, proto = await loop.create_datagram_endpoint(
            Collector, local_addr=client_path, remote_addr=server_path, family=socket.AF_UNIX
        )
        client.sendto(b"over unix")
        result = await proto.received.get()
        client.close()
        server.close()
        await asyncio.sleep(0)
        return result

    assert run(loop, main()) == (b"over unix", str(tmp_path / "server.sock"))


class ReadPipe(asyncio.Protocol):
    def __init__(self, loop):
        self.hash = hashlib.sha256()
        self.size = 0
        self.eof = loop.create_future()
        self.lost = loop.create_future()

    def data_received(self, data):
        self.hash.update(data)
        self.size += len(data)

    def eof_received(self):
        self.eof.set_result(None)

    def connection_lost(self, exc):
        self.lost.set_result(exc)


class WritePipe(asyncio.Protocol):
    def __init__(self, loop):
        self.loop = loop
        self.paused = None
        self.lost = loop.create_future()

    def pause_writing(self):
        self.paused = self.loop.create_future()

    def resume_writing(self):
        self.paused.set_result(None)
        self.paused = None

    def connection_lost(self, exc):
        if not self.lost.done():
            self.lost.set_result(exc)


def test_pipe_64_mib_checksummed(loop):
    """64 MiB from a write pipe transport to a read pipe transport, with flow control."""
    chunk = os.urandom(1024 * 1024)
    expected = hashlib.sha256(chunk * 64).hexdigest()

    async def main():
        r, w = os.pipe()
        reader_t, reader = await loop.connect_read_pipe(lambda: ReadPipe(loop), os.fdopen(r, "rb"))
        writer_t, writer = await loop.connect_write_pipe(lambda: WritePipe(loop), os.fdopen(w, "wb"))
        paused = 0
        for _ in range(64):
            writer_t.write(chunk)
            if writer.paused is not None:
                paused += 1
                await writer.paused
        writer_t.close()
        await reader.eof
        assert await reader.lost is None
        assert await writer.lost is None
        reader_t.close()
        return reader.hash.hexdigest(), reader.size, paused

    digest, size, paused = run(loop, main(), timeout=60)
    assert size == 64 * 1024 * 1024
    assert digest == expected
    assert paused > 0


def test_write_pipe_notices_the_reader_going_away(loop):
    """With nothing buffered the write side closes quietly (connection_lost(None))."""

    async def main():
        r, w = os.pipe()
        writer_t, writer = await loop.connect_write_pipe(lambda: WritePipe(loop), os.fdopen(w, "wb"))
        os.close(r)
        exc = await asyncio.wait_for(writer.lost, 5)
        return exc, writer_t.is_closing()

    exc, closing = run(loop, main())
    assert exc is None
    assert closing


def test_write_pipe_with_data_queued_when_the_reader_goes_away(loop):
    """Data still queued when the reader leaves: connection_lost gets BrokenPipeError."""

    async def main():
        r, w = os.pipe()
        writer_t, writer = await loop.connect_write_pipe(lambda: WritePipe(loop), os.fdopen(w, "wb"))
        writer_t.write(b"x" * (1024 * 1024))  # more than a pipe holds: the rest is queued
        assert writer_t.get_write_buffer_size() > 0
        os.close(r)
        return await asyncio.wait_for(writer.lost, 5)

    assert isinstance(run(loop, main()), BrokenPipeError)


@pytest.mark.parametrize("kind", ["fifo", "socketpair", "pty"])
def test_pipe_transports_over_other_kinds(loop, tmp_path, kind):
    async def main():
        if kind == "fifo":
            path = tmp_path / "fifo"
            os.mkfifo(path)
            rfd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            wfd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            rfile, wfile = os.fdopen(rfd, "rb"), os.fdopen(wfd, "wb")
        elif kind == "socketpair":
            a, b = socket.socketpair()
            rfile, wfile = a, b
        else:
            leader, follower = os.openpty()
            import tty

            tty.setraw(follower)
            rfile, wfile = os.fdopen(leader, "rb"), os.fdopen(follower, "wb")
        reader_t, reader = await loop.connect_read_pipe(lambda: ReadPipe(loop), rfile)
        writer_t, _ = await loop.connect_write_pipe(lambda: WritePipe(loop), wfile)
        writer_t.write(b"hello pipe")
        while reader.size < 10:
            await asyncio.sleep(0.01)
        writer_t.close()
        reader_t.close()
        await asyncio.sleep(0.01)
        for f in (rfile, wfile):
            f.close()
        return reader.hash.hexdigest()

    assert run(loop, main()) == hashlib.sha256(b"hello pipe").hexdigest()


def test_pipe_transports_refuse_regular_files(loop, tmp_path):
    path = tmp_path / "regular"
    path.write_bytes(b"data")

    async def main():
        with open(path, "rb") as f:
            with pytest.raises(ValueError):
                await loop.connect_read_pipe(asyncio.Protocol, f)
        with open(path, "wb") as f:
            with pytest.raises(ValueError):
                await loop.connect_write_pipe(asyncio.Protocol, f)

    run(loop, main())
