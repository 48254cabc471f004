#!/usr/bin/env python3
"""Echo server for the echo benchmark, on any of the benchmarked event loops.

    python server.py --loop ours --mode protocol --port 0      # 0: any free port
    python server.py --loop asyncio --mode streams --unix /tmp/echo.sock

Run inside the loop's own virtualenv (bench/run.py sets them up; bench/echo/run.py drives this
script). Prints "READY <port or path>" on stdout once listening, then echoes every connection until
SIGTERM or SIGINT. Modes:

- protocol: asyncio.Protocol, data_received -> transport.write(data)
- buffered: asyncio.BufferedProtocol into a preallocated per-connection buffer; buffer_updated
  writes the received slice back as bytes
- streams:  asyncio.start_server; reader.read(65536) -> writer.write(data); await writer.drain()
- sock:     a listening socket and one task per connection using loop.sock_accept, sock_recv and
  sock_sendall (TCP_NODELAY set by hand, as transports do it themselves)

With --warm-heap, the server allocates and frees 4 MiB before it starts. glibc then serves blocks
below 4 MiB from its heap and keeps up to 8 MiB of free heap top instead of handing memory back to
the kernel and faulting it in again (its dynamic mmap and trim thresholds follow the largest block
freed so far). Which state a server is in otherwise depends on whether it happened to free a block
over 128 KiB: with 100 KiB messages that decides about half of the server's CPU time, for every
loop alike, so the large-message cells are measured in both states.

The loop is made as bench/workloads.py makes it for --loop (which also checks that the venv holds
the right uvloop), so this script must stay next to bench/workloads.py's directory.
"""

import argparse
import asyncio
import os
import signal
import socket
import sys

BENCH_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, BENCH_DIR)
from workloads import LOOP_KINDS, loop_factory  # noqa: E402

READ_SIZE = 65536  # streams and sock modes: bytes asked for per read
BUFFER_SIZE = 256 * 1024  # buffered mode: size of each connection's receive buffer


class EchoProtocol(asyncio.Protocol):
    """Writes back every chunk as it arrives."""

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


class EchoBufferedProtocol(asyncio.BufferedProtocol):
    """Receives into one preallocated buffer and writes back a copy of each received slice."""

    def connection_made(self, transport):
        self.transport = transport
        self.buffer = memoryview(bytearray(BUFFER_SIZE))

    def get_buffer(self, sizehint):
        return self.buffer

    def buffer_updated(self, nbytes):
        self.transport.write(bytes(self.buffer[:nbytes]))


async def handle_stream(reader, writer):
    """streams mode: one connection, echoed until EOF (other errors reach the loop's handler)."""
    try:
        while data := await reader.read(READ_SIZE):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def handle_sock(loop, conn):
    """sock mode: one accepted socket, echoed until EOF."""
    with conn:
        try:
            while data := await loop.sock_recv(conn, READ_SIZE):
                await loop.sock_sendall(conn, data)
        except ConnectionError:
            pass


def listening_socket(args):
    """A bound, listening, non-blocking socket for --port or --unix."""
    if args.unix:
        if os.path.exists(args.unix):
            os.unlink(args.unix)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(args.unix)
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((args.host, args.port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


class Stop:
    """Ends the server: cleanly on a signal, or with an error on the first unexpected failure
    (an exception in a connection handler or a callback), so that a broken loop fails loudly
    instead of silently leaving clients waiting."""

    def __init__(self, loop):
        self.future = loop.create_future()

    def signal(self):
        if not self.future.done():
            self.future.set_result(None)

    def error(self, exc):
        if not self.future.done():
            self.future.set_exception(exc)

    def on_loop_error(self, loop, context):
        """Exception handler for the loop: any reported error but a socket error (a client going
        away) stops the server."""
        exc = context.get("exception")
        if not isinstance(exc, OSError):
            self.error(exc or RuntimeError(context.get("message", "loop error")))

    def watch(self, task):
        """Makes `task` raising (not being cancelled) stop the server."""
        task.add_done_callback(self._task_done)

    def _task_done(self, task):
        if not task.cancelled() and task.exception() is not None:
            self.error(task.exception())


async def serve_sock(loop, sock, stop):
    """sock mode: accept forever, one task per connection."""
    tasks = set()  # strong references to the running connection tasks
    while True:
        conn, _ = await loop.sock_accept(sock)
        conn.setblocking(False)
        if conn.family != socket.AF_UNIX:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        task = loop.create_task(handle_sock(loop, conn))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        stop.watch(task)


async def start(loop, args, sock, stop):
    """Starts serving on `sock` in the chosen mode; returns the server or the accept task."""
    if args.mode == "protocol":
        return await loop.create_server(EchoProtocol, sock=sock, backlog=1024)
    if args.mode == "buffered":
        return await loop.create_server(EchoBufferedProtocol, sock=sock, backlog=1024)
    if args.mode == "streams":
        return await asyncio.start_server(handle_stream, sock=sock, limit=READ_SIZE, backlog=1024)
    task = loop.create_task(serve_sock(loop, sock, stop))
    stop.watch(task)
    return task


def install_signals(loop, stop):
    """Stops on SIGTERM or SIGINT, through the loop if it supports signal handlers."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.signal)
        except (NotImplementedError, RuntimeError, AttributeError):
            signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop.signal))


async def main(args):
    loop = asyncio.get_running_loop()
    stop = Stop(loop)
    loop.set_exception_handler(stop.on_loop_error)
    install_signals(loop, stop)
    sock = listening_socket(args)
    where = args.unix or sock.getsockname()[1]  # before start(): some loops detach the socket
    server = await start(loop, args, sock, stop)
    print(f"READY {where}", flush=True)
    try:
        await stop.future
    finally:
        if isinstance(server, asyncio.Task):
            server.cancel()
            sock.close()
        else:
            server.close()


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--loop", required=True, choices=LOOP_KINDS)
    p.add_argument("--mode", required=True, choices=("protocol", "buffered", "streams", "sock"))
    p.add_argument("--host", default="127.0.0.1", help="address to bind with --port (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="TCP port (default 0: any free port)")
    p.add_argument("--unix", help="listen on this Unix socket path instead of TCP")
    p.add_argument("--warm-heap", action="store_true",
                   help="allocate and free 4 MiB first (raises glibc's mmap and trim thresholds)")
    return p.parse_args(argv)


if __name__ == "__main__":
    ARGS = parse_args()
    if ARGS.warm_heap:
        bytearray(4 << 20)  # made and freed at once
    FACTORY, _ = loop_factory(ARGS.loop)
    LOOP = FACTORY()
    asyncio.set_event_loop(LOOP)
    try:
        LOOP.run_until_complete(main(ARGS))
    finally:
        LOOP.close()
