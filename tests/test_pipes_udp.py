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


def _has_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no ::1 on this machine")
def test_ipv6_echo_with_four_tuple_addresses(loop):
    """The echo server answers to the 4-tuple address the socket module reports."""

    async def main():
        server, _ = await loop.create_datagram_endpoint(EchoDatagram, local_addr=("::1", 0))
        address = server.get_extra_info("sockname")
        client, proto = await loop.create_datagram_endpoint(Collector, local_addr=("::1", 0))
        client.sendto(b"six", address)
        client.sendto(b"two-tuple", address[:2])
        first = await proto.received.get()
        second = await proto.received.get()
        client.close()
        server.close()
        await asyncio.sleep(0)
        return address, first, second

    address, first, second = run(loop, main())
    assert first == (b"six", address)
    assert second == (b"two-tuple", address)
    assert len(address) == 4


def test_sendto_data_and_address_forms(loop, loop_kind):
    """bytearray and memoryview data, a host name, an empty datagram (sent from 3.13 on,
    dropped before), and what asyncio refuses."""

    async def main():
        server, _ = await loop.create_datagram_endpoint(EchoDatagram, local_addr=("127.0.0.1", 0))
        host, port = server.get_extra_info("sockname")
        client, proto = await loop.create_datagram_endpoint(Collector, local_addr=("127.0.0.1", 0))
        client.sendto(bytearray(b"array"), (host, port))
        client.sendto(memoryview(b"xxview")[2:], (host, port))
        if loop_kind == "asyncio":
            # asyncio's flaw: the loop thread blocks on the resolver for the name.
            client.sendto(b"by name", ("localhost", port))
        else:
            with pytest.raises(ValueError, match="needs a DNS lookup"):
                client.sendto(b"by name", ("localhost", port))
        client.sendto(b"", (host, port))
        client.sendto(b"last", (host, port))
        received = []
        while not received or received[-1] != b"last":
            data, _ = await proto.received.get()
            received.append(data)
        with pytest.raises(TypeError):
            client.sendto("text", (host, port))
        client.close()
        server.close()
        await asyncio.sleep(0)
        return received

    received = run(loop, main())
    empty = [b""] if sys.version_info >= (3, 13) else []
    by_name = [b"by name"] if loop_kind == "asyncio" else []
    assert received == [b"array", b"view", *by_name, *empty, b"last"]


def test_sendto_a_host_name_is_refused_and_the_endpoint_goes_on(loop, loop_kind):
    """uvloop refuses a host name in sendto (resolving it would block every connection of the
    loop on the resolver); asyncio resolves it in the loop's thread, a known flaw."""
    if loop_kind == "asyncio":
        pytest.skip("asyncio resolves the name, blocking the loop (its known flaw)")

    async def main():
        server, _ = await loop.create_datagram_endpoint(EchoDatagram, local_addr=("127.0.0.1", 0))
        host, port = server.get_extra_info("sockname")
        client, proto = await loop.create_datagram_endpoint(Collector, local_addr=("127.0.0.1", 0))
        for name in ("localhost", "no-such-host.invalid", b"localhost"):
            with pytest.raises(ValueError):
                client.sendto(b"x", (name, port))
        client.sendto(b"still open", (host, port))
        data, _ = await proto.received.get()
        closing = client.is_closing()
        client.close()
        server.close()
        await asyncio.sleep(0)
        return data, closing

    assert run(loop, main()) == (b"still open", False)


@pytest.mark.parametrize("data", [b"bytes", bytearray(b"bytearray"), memoryview(b"view")])
def test_socketpair_datagram_endpoint_sends_without_an_address(loop, loop_kind, data):
    """One end of an AF_UNIX datagram socketpair: its peer is unnamed (peer name ""), and
    sendto(data) without an address goes to it, queued or not."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    b.setblocking(False)

    async def asyncio_bug():
        transport, _ = await loop.create_datagram_endpoint(Collector, sock=a)
        errors = []
        loop.set_exception_handler(lambda loop, context: errors.append(context))
        transport.sendto(data)
        await asyncio.sleep(0)
        return [type(context.get("exception")) for context in errors], transport.is_closing()

    async def main():
        transport, proto = await loop.create_datagram_endpoint(Collector, sock=a)
        errors = []
        loop.set_exception_handler(lambda loop, context: errors.append(context))
        transport.sendto(data)
        # Fill the socket so that the next ones queue, then drain it from the other end.
        sent = 0
        while transport.get_write_buffer_size() == 0 and sent < 100_000:
            transport.sendto(b"f" * 1024)
            sent += 1
        transport.sendto(data)
        received = []
        while len(received) < sent + 2:
            try:
                received.append(b.recv(2048))
            except BlockingIOError:
                await asyncio.sleep(0.001)
        transport.close()
        await asyncio.sleep(0)
        return received[0], received[-1], errors, proto.errors

    try:
        if loop_kind == "asyncio":
            # asyncio's bug: it sends with sock.sendto(data, None), which the socket module
            # refuses (TypeError); the transport dies and the datagram is lost.
            assert run(loop, asyncio_bug()) == ([TypeError], True)
            return
        first, last, errors, proto_errors = run(loop, main())
    finally:
        b.close()
    assert first == bytes(data) and last == bytes(data)
    assert errors == [] and proto_errors == []


def test_sendto_to_an_unparsable_address_is_a_fatal_error(loop):
    """asyncio passes the address to socket.sendto, whose TypeError ends the transport."""

    async def main():
        client, proto = await loop.create_datagram_endpoint(Collector, local_addr=("127.0.0.1", 0))
        errors = []
        loop.set_exception_handler(lambda loop, context: errors.append(context))
        client.sendto(b"where?", ["127.0.0.1", 9])
        await asyncio.sleep(0.01)
        return errors, proto.lost

    errors, lost = run(loop, main())
    assert lost is not None and isinstance(lost[1], TypeError)
    assert [type(context["exception"]) for context in errors] == [TypeError]


def test_full_socket_queues_datagrams_in_order(loop, tmp_path):
    """A Unix datagram peer that does not read: sendto queues in the transport (the buffer size
    grows), and everything arrives in order once the peer reads."""

    async def main():
        peer_path = str(tmp_path / "peer.sock")
        peer = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        peer.bind(peer_path)
        peer.setblocking(False)
        transport, proto = await loop.create_datagram_endpoint(
            Collector, local_addr=str(tmp_path / "ours.sock"), remote_addr=peer_path,
            family=socket.AF_UNIX,
        )
        sent = 0
        while transport.get_write_buffer_size() == 0 and sent < 100_000:
            transport.sendto(sent.to_bytes(4, "big") * 256)
            sent += 1
        for _ in range(10):
            transport.sendto(sent.to_bytes(4, "big") * 256)
            sent += 1
        queued = transport.get_write_buffer_size()
        got = []
        while len(got) < sent:
            try:
                got.append(int.from_bytes(peer.recv(2048)[:4], "big"))
            except BlockingIOError:
                await asyncio.sleep(0.001)
        transport.close()
        peer.close()
        await asyncio.sleep(0)
        return got, sent, queued

    # (The size after draining is not checked: 3.13.0's asyncio counts 8 header bytes per
    # queued datagram and takes back only the data, on both loops.)
    got, sent, queued = run(loop, main())
    assert queued > 0
    assert got == list(range(sent))


def test_datagram_received_errors_reach_the_exception_handler(loop):
    """An exception in datagram_received is reported; the endpoint goes on receiving."""

    class Failing(Collector):
        def datagram_received(self, data, addr):
            if data == b"boom":
                raise RuntimeError("boom")
            super().datagram_received(data, addr)

    async def main():
        errors = []
        loop.set_exception_handler(lambda loop, context: errors.append(context))
        server, proto = await loop.create_datagram_endpoint(Failing, local_addr=("127.0.0.1", 0))
        address = server.get_extra_info("sockname")
        client, _ = await loop.create_datagram_endpoint(Collector, remote_addr=address)
        client.sendto(b"boom")
        client.sendto(b"after")
        data, _ = await proto.received.get()
        client.close()
        server.close()
        await asyncio.sleep(0)
        return data, errors

    data, errors = run(loop, main())
    assert data == b"after"
    assert [str(context["exception"]) for context in errors] == ["boom"]


def test_set_protocol_redirects_datagrams(loop):
    async def main():
        server, first = await loop.create_datagram_endpoint(Collector, local_addr=("127.0.0.1", 0))
        address = server.get_extra_info("sockname")
        client, _ = await loop.create_datagram_endpoint(Collector, remote_addr=address)
        client.sendto(b"to first")
        await first.received.get()
        second = Collector()
        server.set_protocol(second)
        assert server.get_protocol() is second
        client.sendto(b"to second")
        data, _ = await second.received.get()
        client.close()
        server.close()
        await asyncio.sleep(0)
        return data, first.received.qsize()

    assert run(loop, main()) == (b"to second", 0)


@pytest.mark.skipif(sys.version_info < (3, 12), reason="datagram pause_reading is 3.12+")
def test_datagram_pause_and_resume_reading(loop):
    async def main():
        server, proto = await loop.create_datagram_endpoint(Collector, local_addr=("127.0.0.1", 0))
        address = server.get_extra_info("sockname")
        client, _ = await loop.create_datagram_endpoint(Collector, remote_addr=address)
        server.pause_reading()
        assert not server.is_reading()
        client.sendto(b"held")
        await asyncio.sleep(0.05)
        held = proto.received.qsize()
        server.resume_reading()
        data, _ = await proto.received.get()
        client.close()
        server.close()
        await asyncio.sleep(0)
        return held, data

    assert run(loop, main()) == (0, b"held")


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
