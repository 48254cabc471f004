#!/usr/bin/env python3
"""Minimal keep-alive HTTP/1.1 server (asyncio.Protocol + httptools) for the HTTP benchmark.

    python server_httptools.py --loop ours --port 0       # 0: any free port

Run inside the loop's own virtualenv with httptools installed (bench/http/run.py sets them up and
drives this script). Prints "READY <port>" on stdout once listening, then serves until SIGTERM or
SIGINT. Every request, whatever its method and path, gets the same small "200 OK" response with a
Content-Length; the connection is kept alive unless the request says otherwise (HTTP/1.0 without
keep-alive, or "Connection: close"). Pipelined requests are answered in order, as the parser
completes them. A malformed request gets a 400 and the connection is closed.

Any error the loop reports (an exception in a callback or a transport) stops the server with that
error, so that a broken loop fails loudly instead of leaving clients waiting.
"""

import argparse
import asyncio
import os
import signal
import socket
import sys

import httptools

BENCH_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, BENCH_DIR)
from workloads import LOOP_KINDS, loop_factory  # noqa: E402

BODY = b"Hello, World!"


def response(status, body, keep_alive):
    """A complete HTTP/1.1 response with a Content-Length."""
    connection = b"keep-alive" if keep_alive else b"close"
    return (b"HTTP/1.1 " + status + b"\r\n"
            b"Content-Type: text/plain\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n"
            b"Connection: " + connection + b"\r\n\r\n" + body)


OK_KEEP_ALIVE = response(b"200 OK", BODY, True)
OK_CLOSE = response(b"200 OK", BODY, False)
BAD_REQUEST = response(b"400 Bad Request", b"Bad Request", False)


class HttpProtocol(asyncio.Protocol):
    """One connection: feeds the parser, answers each request as soon as it is complete."""

    def connection_made(self, transport):
        self.transport = transport
        self.parser = httptools.HttpRequestParser(self)

    def data_received(self, data):
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.write(BAD_REQUEST)
            self.transport.close()

    def on_message_complete(self):
        """Parser callback, once per request (several per data_received when pipelined)."""
        if self.transport.is_closing():
            return
        if self.parser.should_keep_alive():
            self.transport.write(OK_KEEP_ALIVE)
        else:
            self.transport.write(OK_CLOSE)
            self.transport.close()


def install_stop(loop):
    """A future that gets a result on SIGTERM/SIGINT, or the first error the loop reports."""
    stop = loop.create_future()

    def finish(exc=None):
        if stop.done():
            return
        if exc is None:
            stop.set_result(None)
        else:
            stop.set_exception(exc)

    def on_loop_error(_loop, context):
        finish(context.get("exception") or RuntimeError(context.get("message", "loop error")))

    loop.set_exception_handler(on_loop_error)
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, finish)
        except (NotImplementedError, RuntimeError, AttributeError):
            signal.signal(sig, lambda *_: loop.call_soon_threadsafe(finish))
    return stop


async def serve(args):
    """Listens on --host/--port, prints READY, serves until stopped."""
    loop = asyncio.get_running_loop()
    stop = install_stop(loop)
    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted sockets only when it is
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(1024)
    sock.setblocking(False)
    port = sock.getsockname()[1]  # before create_server: some loops detach the socket
    server = await loop.create_server(HttpProtocol, sock=sock, backlog=1024)
    print(f"READY {port}", flush=True)
    try:
        await stop
    finally:
        server.close()


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--loop", required=True, choices=LOOP_KINDS)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="TCP port (default 0: any free port)")
    return p.parse_args(argv)


if __name__ == "__main__":
    ARGS = parse_args()
    FACTORY, _ = loop_factory(ARGS.loop)
    LOOP = FACTORY()
    asyncio.set_event_loop(LOOP)
    try:
        LOOP.run_until_complete(serve(ARGS))
    finally:
        LOOP.close()
