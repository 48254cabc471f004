"""TLS over the loop's socket transports: asyncio's SSLProtocol on top of them.

The specification is asyncio's `sslproto.py` and `selector_events._make_ssl_transport`, and the
streams API (`start_server(ssl=)`, `open_connection(ssl=)`, `StreamWriter.start_tls`,
`loop.start_tls`).
"""

import asyncio
import hashlib
import os
import shutil
import ssl
import subprocess
import sys

import pytest

from conftest import run

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl tool")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for "localhost": (certfile, keyfile)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return str(cert), str(key)


@pytest.fixture
def contexts(certificate):
    """(server context, client context trusting the server's certificate)."""
    cert, key = certificate
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=cert)
    return server, client


async def echo(reader, writer):
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()
    await writer.wait_closed()


def test_tls_echo_large_transfer(loop, contexts):
    """4 MiB through a TLS echo server arrive byte-exact; the transports report TLS details."""
    server_ctx, client_ctx = contexts
    payload = os.urandom(4 * 1024 * 1024)

    async def main():
        server = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_ctx, server_hostname="localhost"
        )
        assert writer.get_extra_info("sslcontext") is client_ctx
        assert writer.get_extra_info("peercert")["subject"] == ((("commonName", "localhost"),),)
        assert writer.get_extra_info("cipher") is not None

        async def send():
            for start in range(0, len(payload), 100_000):
                writer.write(payload[start:start + 100_000])
                await writer.drain()
            writer.write_eof() if writer.can_write_eof() else None

        sender = asyncio.ensure_future(send())
        received = await reader.readexactly(len(payload))
        await sender
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        return received

    received = run(loop, main(), timeout=30)
    assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()


def test_tls_certificate_not_trusted(loop, contexts):
    """A client that does not trust the server's certificate fails the handshake."""
    server_ctx, _ = contexts
    untrusting = ssl.create_default_context()

    async def main():
        server = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        try:
            with pytest.raises(ssl.SSLCertVerificationError):
                await asyncio.open_connection(
                    "127.0.0.1", port, ssl=untrusting, server_hostname="localhost"
                )
        finally:
            server.close()
            await server.wait_closed()

    run(loop, main())


def test_start_tls_upgrades_a_plain_connection(loop, contexts):
    """loop.start_tls turns an established plain connection into a TLS one on both ends."""
    server_ctx, client_ctx = contexts
    upgraded = []

    class UpgradingServer(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            assert data == b"STARTTLS\n"
            self.transport.write(b"GO\n")
            asyncio.ensure_future(self.upgrade())

        async def upgrade(self):
            loop = asyncio.get_running_loop()
            protocol = TlsEcho()
            tls = await loop.start_tls(self.transport, protocol, server_ctx, server_side=True)
            protocol.attach(tls)
            upgraded.append(tls)

    class TlsEcho(asyncio.Protocol):
        """start_tls does not call connection_made: data may come before the transport."""

        transport = None
        pending = b""

        def attach(self, transport):
            self.transport = transport
            if self.pending:
                transport.write(self.pending.upper())

        def data_received(self, data):
            if self.transport is None:
                self.pending += data
            else:
                self.transport.write(data.upper())

    async def main():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(UpgradingServer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"STARTTLS\n")
        assert await reader.readline() == b"GO\n"
        if sys.version_info >= (3, 11):
            await writer.start_tls(client_ctx, server_hostname="localhost")
        else:
            transport = await loop.start_tls(
                writer.transport, writer._protocol, client_ctx, server_hostname="localhost"
            )
            writer._transport = transport
        writer.write(b"hello over tls\n")
        assert await reader.readline() == b"HELLO OVER TLS\n"
        assert writer.get_extra_info("peercert") is not None
        writer.close()
        await writer.wait_closed()
        for tls in upgraded:
            tls.close()
        server.close()
        await server.wait_closed()

    run(loop, main(), timeout=20)
    assert len(upgraded) == 1
