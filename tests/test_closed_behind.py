"""Descriptors of transports and servers closed behind the loop's back: never a crashed process.

libuv aborts the process when it changes what it watches on a descriptor that was closed, or
closed and reused, behind its back. Each scenario closes a socket the loop uses (its socket
object, or `os.close()` on its fileno) and then makes the loop change what it watches on it; it
runs in a child process, on asyncio and on ours, and the child must exit on its own: asyncio
raises or logs errors there, ours keeps working on its own duplicate of the descriptor. Neither
may die of a signal or hang.
"""

import subprocess
import sys
import textwrap

import pytest

PRELUDE = textwrap.dedent(
    """
    import asyncio, os, socket, sys
    import uvloop

    def main(coro):
        runner = uvloop.run if sys.argv[1] == "uvloop" else asyncio.run
        try:
            runner(coro)
        except Exception as exc:  # asyncio raises for some of these: allowed, not a crash
            print("raised", type(exc).__name__)
        print("done")
    """
)

SCENARIOS = {
    # os.close() on a connected transport's fd, then reading paused and resumed (libuv would
    # re-register the fd).
    "transport_fd_closed_then_resume_reading": """
        async def scenario():
            loop = asyncio.get_running_loop()
            server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
            await asyncio.sleep(0.05)
            os.close(transport.get_extra_info("socket").fileno())
            transport.pause_reading()
            await asyncio.sleep(0.05)
            transport.resume_reading()
            await asyncio.sleep(0.05)
            transport.write(b"x" * 1_000_000)
            await asyncio.sleep(0.1)
            transport.abort()
            server.close()
            await asyncio.sleep(0.05)
        main(scenario())
    """,
    # The socket given to create_connection(sock=...) closed by its owner, then a large write
    # (libuv would start watching for writability).
    "given_socket_closed_then_write": """
        async def scenario():
            loop = asyncio.get_running_loop()
            server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            sock = socket.create_connection(("127.0.0.1", port))
            sock.setblocking(False)
            transport, _ = await loop.create_connection(asyncio.Protocol, sock=sock)
            await asyncio.sleep(0.05)
            sock.close()
            transport.write(b"x" * 10_000_000)
            transport.pause_reading()
            transport.resume_reading()
            await asyncio.sleep(0.1)
            transport.abort()
            server.close()
            await asyncio.sleep(0.05)
        main(scenario())
    """,
    # The fd of an accepted connection's socket object closed by the server's protocol.
    "accepted_connection_fd_closed": """
        class Closer(asyncio.Protocol):
            def connection_made(self, transport):
                self.transport = transport
                os.close(transport.get_extra_info("socket").fileno())
                transport.pause_reading()
                transport.resume_reading()

        async def scenario():
            loop = asyncio.get_running_loop()
            server = await loop.create_server(Closer, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            client, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
            await asyncio.sleep(0.1)
            client.write(b"hello")
            await asyncio.sleep(0.1)
            client.close()
            server.close()
            await asyncio.sleep(0.05)
        main(scenario())
    """,
    # A listening socket's fd closed, then the server closed.
    "listening_socket_fd_closed": """
        async def scenario():
            loop = asyncio.get_running_loop()
            server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
            os.close(server.sockets[0].fileno())
            await asyncio.sleep(0.05)
            server.close()
            await asyncio.sleep(0.05)
        main(scenario())
    """,
    # A datagram endpoint's fd closed, then it sends and is closed.
    "datagram_fd_closed": """
        async def scenario():
            loop = asyncio.get_running_loop()
            transport, _ = await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
            )
            address = transport.get_extra_info("sockname")
            os.close(transport.get_extra_info("socket").fileno())
            transport.sendto(b"x" * 1000, address)
            await asyncio.sleep(0.05)
            transport.close()
            await asyncio.sleep(0.05)
        main(scenario())
    """,
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_closed_behind_the_loop_never_crashes(loop_kind, scenario):
    script = PRELUDE + textwrap.dedent(SCENARIOS[scenario])
    child = subprocess.run(
        [sys.executable, "-c", script, loop_kind],
        capture_output=True,
        timeout=30,
    )
    assert child.returncode == 0, child.stderr.decode(errors="replace")[-2000:]
    assert child.stdout.decode().splitlines()[-1] == "done"
