#!/usr/bin/env python3
"""Echo server for the memory benchmark, on any of the benchmarked event loops.

    python server.py --loop ours          # prints "READY <echo port> <control port>"

Run inside the loop's own virtualenv (bench/memory/run.py drives it). It listens on two TCP ports
on 127.0.0.1, both with `loop.create_server`:

- the echo port: an `asyncio.Protocol` whose `data_received` writes the data back, and which
  counts its live connections (`connection_made` / `connection_lost`);
- the control port: line commands, one answer line each: `live` -> `live <n>` (the echo
  connections currently open), `gc` -> `gc <n>` (after `gc.collect()`).

The soft RLIMIT_NOFILE is raised to the hard limit first, so that thousands of connections fit.
Serves until SIGTERM or SIGINT. Any error the loop reports, other than a client's connection being
reset, stops the server with that error (exit status 1), so that a loop that cannot hold the
connections (say, out of file descriptors) fails loudly instead of leaving the client waiting.

The loop is made as bench/workloads.py makes it for --loop (which also checks that the venv holds
the right uvloop), so this script must stay next to bench/workloads.py's directory.
"""

import argparse
import asyncio
import gc
import os
import resource
import signal
import socket
import sys

BENCH_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, BENCH_DIR)
from workloads import LOOP_KINDS, loop_factory  # noqa: E402

LIVE = 0  # echo connections currently open


class EchoProtocol(asyncio.Protocol):
    """Writes back every chunk as it arrives; counts itself in LIVE while connected."""

    def connection_made(self, transport):
        global LIVE
        LIVE += 1
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)

    def connection_lost(self, exc):
        global LIVE
        LIVE -= 1


class ControlProtocol(asyncio.Protocol):
    """`live` and `gc` commands, one per line."""

    def connection_made(self, transport):
        self.transport = transport
        self.pending = b""

    def data_received(self, data):
        self.pending += data
        while b"\n" in self.pending:
            line, self.pending = self.pending.split(b"\n", 1)
            command = line.strip().decode(errors="replace")
            if command == "gc":
                gc.collect()
                self.transport.write(f"gc {LIVE}\n".encode())
            elif command == "live":
                self.transport.write(f"live {LIVE}\n".encode())
            else:
                self.transport.write(f"error unknown command {command!r}\n".encode())


def raise_fd_limit():
    """Soft RLIMIT_NOFILE up to the hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def listening_socket(host, port):
    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted sockets only when it is
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def install_stop(loop):
    """A future that gets a result on SIGTERM/SIGINT, or the first error the loop reports (but a
    client's connection being reset or broken)."""
    stop = loop.create_future()

    def finish(exc=None):
        if stop.done():
            return
        if exc is None:
            stop.set_result(None)
        else:
            stop.set_exception(exc)

    def on_loop_error(_loop, context):
        exc = context.get("exception")
        if not isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
            finish(exc or RuntimeError(context.get("message", "loop error")))

    loop.set_exception_handler(on_loop_error)
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, finish)
        except (NotImplementedError, RuntimeError, AttributeError):
            signal.signal(sig, lambda *_: loop.call_soon_threadsafe(finish))
    return stop


async def serve(args):
    loop = asyncio.get_running_loop()
    stop = install_stop(loop)
    echo_sock = listening_socket(args.host, args.port)
    control_sock = listening_socket(args.host, 0)
    # the ports before create_server: some loops detach the socket
    echo_port, control_port = echo_sock.getsockname()[1], control_sock.getsockname()[1]
    echo = await loop.create_server(EchoProtocol, sock=echo_sock, backlog=1024)
    control = await loop.create_server(ControlProtocol, sock=control_sock, backlog=16)
    print(f"READY {echo_port} {control_port}", flush=True)
    try:
        await stop
    finally:
        echo.close()
        control.close()


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--loop", required=True, choices=LOOP_KINDS)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="echo port (default 0: any free port)")
    return p.parse_args(argv)


if __name__ == "__main__":
    ARGS = parse_args()
    raise_fd_limit()
    FACTORY, _ = loop_factory(ARGS.loop)
    LOOP = FACTORY()
    asyncio.set_event_loop(LOOP)
    try:
        LOOP.run_until_complete(serve(ARGS))
    finally:
        LOOP.close()
