#!/usr/bin/env python3
"""A minimal ASGI app served by uvicorn (httptools parser) on any of the benchmarked loops.

    python app_uvicorn.py --loop rloop-0.5 --port 0       # 0: any free port

Run inside the loop's own virtualenv with uvicorn and httptools installed (bench/http/run.py sets
them up and drives this script). Prints "READY <port>" on stdout once uvicorn is listening, then
serves until SIGTERM or SIGINT (uvicorn's own signal handling shuts it down).

uvicorn's `--loop uvloop` would import whichever `uvloop` the venv holds, and offers nothing for
rloop, so this script makes the loop itself, as bench/workloads.py does for --loop (which also
checks that the venv holds the right uvloop), and runs `uvicorn.Server.serve()` on it with
`loop="none"`: uvicorn then serves on the already running loop. Before serving it checks that the
running loop is the one made here, of the expected package.
"""

import argparse
import asyncio
import os
import socket
import sys

import uvicorn

BENCH_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, BENCH_DIR)
from workloads import LOOP_KINDS, loop_factory  # noqa: E402

BODY = b"Hello, World!"
HEADERS = [(b"content-type", b"text/plain"), (b"content-length", str(len(BODY)).encode())]


async def app(scope, receive, send):
    """ASGI app: the same small plain-text response for every HTTP request."""
    if scope["type"] != "http":
        raise RuntimeError(f"unsupported scope type {scope['type']!r}")
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


def check_loop(kind, loop, module):
    """Fails unless `loop` is running and its class comes from `module` (the package under test)."""
    running = asyncio.get_running_loop()
    if running is not loop:
        raise RuntimeError(f"running loop {running!r} is not the loop made for --loop {kind}")
    have = type(running).__module__
    if have.split(".")[0] != module:
        raise RuntimeError(f"--loop {kind}: the running loop's class comes from {have}, not {module}")
    if kind in ("before", "ours"):
        import uvloop

        if uvloop.__version__.startswith("0."):
            raise RuntimeError(f"--loop {kind}, but uvloop is version {uvloop.__version__} (a PyPI release)")


async def serve(args, loop, module):
    """Binds, starts uvicorn on the running loop, prints READY once it is listening."""
    check_loop(args.loop, loop, module)
    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted sockets only when it is
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(1024)
    sock.setblocking(False)
    port = sock.getsockname()[1]  # before uvicorn: some loops detach the socket
    config = uvicorn.Config(app, loop="none", http="httptools", ws="none", lifespan="off",
                            log_level="warning", access_log=False, backlog=1024)
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():  # uvicorn failed to start (its error is logged, or raised below)
            await task
            raise RuntimeError("uvicorn stopped before it started serving")
        await asyncio.sleep(0.01)
    print(f"READY {port}", flush=True)
    await task


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--loop", required=True, choices=LOOP_KINDS)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="TCP port (default 0: any free port)")
    return p.parse_args(argv)


if __name__ == "__main__":
    ARGS = parse_args()
    FACTORY, INFO = loop_factory(ARGS.loop)
    LOOP = FACTORY()
    asyncio.set_event_loop(LOOP)
    try:
        LOOP.run_until_complete(serve(ARGS, LOOP, INFO["module"]))
    finally:
        LOOP.close()
