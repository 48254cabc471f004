"""The in-process integration scenarios, each run in a subprocess of its own on one loop:

    python scenarios.py SCENARIO asyncio|uvloop

`asyncio` runs the scenario on stock asyncio, `uvloop` on ours, through the same entry point
(`uvloop.install()`, the event loop policy, `uvloop.run`, anyio's backend options, Tornado's
IOLoop...). A scenario asserts what it checks itself (an AssertionError fails the run) and
reports, on the last line of stdout after `RESULT: `, a JSON object:

- `loops`: [tag, loop type, is a uvloop.Loop] for every place it looked at the running loop
  (coroutines, request handlers, callbacks)
- `checks`: what it observed that must be the same on both loops (bodies, counts, exit codes)
- `logs`: [logger, level, first line of the message (+ exception type)] of every record at
  WARNING and above
- `warnings`: [category, first line of the message] of every warning (filter "always")

Anything else the process writes to stderr (unraisable exceptions, warnings at exit) is
compared too (tests/integration/integration_support.py runs the scenarios and compares).
"""

import sys
import warnings

# First, before anything imports: every warning is recorded, each time it is emitted.
warnings.simplefilter("always")
_recorded_warnings = []
_show_warning = warnings.showwarning


def _record_warning(message, category, filename, lineno, file=None, line=None):
    text = str(message)
    _recorded_warnings.append([category.__name__, text.splitlines()[0] if text else ""])


warnings.showwarning = _record_warning

import asyncio  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402

import uvloop  # noqa: E402

SCENARIO, KIND = sys.argv[1], sys.argv[2]
assert KIND in ("asyncio", "uvloop"), KIND
OURS = KIND == "uvloop"
PY = sys.executable


class _Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.records = []
        self.full = []  # with tracebacks: printed if the scenario fails

    def emit(self, record):
        try:
            message = record.getMessage()
        except Exception as exc:  # a bad format string is worth reporting too
            message = f"<unformattable: {exc!r}>"
        first = message.splitlines()[0] if message else ""
        if record.exc_info and record.exc_info[0] is not None:
            first += f" [{record.exc_info[0].__name__}]"
        self.records.append([record.name, record.levelname, first])
        try:
            self.full.append(logging.Formatter("%(name)s %(levelname)s %(message)s").format(record))
        except Exception as exc:
            self.full.append(f"{record.name} {record.levelname} <unformattable: {exc!r}>")


_capture = _Capture()
logging.getLogger().addHandler(_capture)

LOOPS = []
CHECKS = {}


def here(tag):
    """Records the running loop at this point (tag says where)."""
    loop = asyncio.get_running_loop()
    saw_loop(tag, loop)
    return loop


def loop_info():
    loop = asyncio.get_running_loop()
    return {
        "loop_type": f"{type(loop).__module__}.{type(loop).__qualname__}",
        "is_uvloop": isinstance(loop, uvloop.Loop),
    }


def saw_loop(tag, loop):
    """Records a loop that is not running here (made by a policy or a framework)."""
    LOOPS.append([tag, f"{type(loop).__module__}.{type(loop).__qualname__}",
                  isinstance(loop, uvloop.Loop)])


def check_info(tag, info):
    """Records a loop seen by the other side of a connection (a handler's JSON report)."""
    LOOPS.append([tag, info["loop_type"], info["is_uvloop"]])


def enter(how, main):
    """Runs coroutine function `main` through entry point `how`, on the loop of KIND."""
    if how == "install":
        if OURS:
            uvloop.install()
        return asyncio.run(main())
    if how == "policy":
        asyncio.set_event_loop_policy(
            uvloop.EventLoopPolicy() if OURS else asyncio.DefaultEventLoopPolicy()
        )
        return asyncio.run(main())
    if how == "run":
        return uvloop.run(main()) if OURS else asyncio.run(main())
    raise ValueError(how)


def free_socket():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


SCENARIOS = {}


def scenario(fn):
    SCENARIOS[fn.__name__] = fn
    return fn


# --- 1. uvloop.install() / the event loop policy -------------------------------------------------


async def common_workload(tag):
    """A little of everything asyncio does, on whatever loop runs it."""
    loop = here(tag)
    assert asyncio.get_event_loop() is loop

    async def echo(reader, writer):
        here(f"{tag}: server callback")
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    payload = os.urandom(256 * 1024)
    writer.write(payload)
    await writer.drain()
    got = await reader.readexactly(len(payload))
    writer.write_eof()
    rest = await reader.read()
    writer.close()
    await writer.wait_closed()
    server.close()
    await server.wait_closed()

    fut = loop.create_future()
    loop.call_later(0.01, fut.set_result, "timer")
    timer = await fut

    threadsafe = loop.create_future()
    threading.Thread(
        target=loop.call_soon_threadsafe, args=(threadsafe.set_result, "thread")
    ).start()

    executor = await loop.run_in_executor(None, sum, [1, 2, 3])
    proc = await asyncio.create_subprocess_exec(
        PY, "-c", "import sys; print(sys.stdin.read().upper())",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate(b"child")

    async def agen():
        for i in range(3):
            yield i

    gen = agen()
    first = await gen.__anext__()  # left suspended: asyncio.run's shutdown_asyncgens closes it

    return {
        "echo": got == payload and rest == b"",
        "timer": timer,
        "threadsafe": await threadsafe,
        "executor": executor,
        "subprocess": [proc.returncode, out.decode().strip()],
        "agen": first,
    }


@scenario
def install_asyncio_run():
    """`uvloop.install()` then `asyncio.run(main())`."""

    async def main():
        return await common_workload("install + asyncio.run")

    CHECKS["result"] = enter("install", main)
    policy = asyncio.get_event_loop_policy()
    LOOPS.append(["the event loop policy after asyncio.run", type(policy).__qualname__,
                  isinstance(policy, uvloop.EventLoopPolicy)])


@scenario
def policy_asyncio_run():
    """`asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())` then `asyncio.run(main())`."""

    async def main():
        return await common_workload("policy + asyncio.run")

    CHECKS["result"] = enter("policy", main)


@scenario
def policy_new_event_loop():
    """The policy, then `asyncio.new_event_loop()` run by hand (run_until_complete)."""
    asyncio.set_event_loop_policy(
        uvloop.EventLoopPolicy() if OURS else asyncio.DefaultEventLoopPolicy()
    )
    loop = asyncio.new_event_loop()
    saw_loop("asyncio.new_event_loop()", loop)
    asyncio.set_event_loop(loop)
    try:
        assert asyncio.get_event_loop() is loop
        CHECKS["result"] = loop.run_until_complete(common_workload("policy + new_event_loop"))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        asyncio.set_event_loop(None)
        loop.close()


# --- 4. Tornado ----------------------------------------------------------------------------------


def tornado_app():
    import tornado.web
    import tornado.websocket

    class LoopHandler(tornado.web.RequestHandler):
        async def get(self):
            here("tornado handler")
            await asyncio.sleep(0)
            self.write(loop_info())

    class StreamHandler(tornado.web.RequestHandler):
        async def get(self):
            for i in range(10):
                self.write(b"chunk %02d\n" % i)
                await self.flush()
                await asyncio.sleep(0.001)

    class EchoHandler(tornado.web.RequestHandler):
        def post(self):
            self.write(self.request.body)

    class WebSocketHandler(tornado.websocket.WebSocketHandler):
        def open(self):
            here("tornado websocket handler")
            self.write_message(json.dumps(loop_info()))

        def on_message(self, message):
            self.write_message(message, binary=isinstance(message, bytes))

    return tornado.web.Application(
        [(r"/loop", LoopHandler), (r"/stream", StreamHandler), (r"/echo", EchoHandler),
         (r"/ws", WebSocketHandler)]
    )


async def tornado_workload(tag):
    import tornado.httpclient
    import tornado.httpserver
    import tornado.ioloop
    import tornado.netutil
    import tornado.websocket

    loop = here(tag)
    io_loop = tornado.ioloop.IOLoop.current()
    assert io_loop.asyncio_loop is loop, (io_loop, io_loop.asyncio_loop, loop)
    CHECKS["ioloop_class"] = type(io_loop).__name__

    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    port = sockets[0].getsockname()[1]
    server = tornado.httpserver.HTTPServer(tornado_app())
    server.add_sockets(sockets)

    fired = []
    enough = asyncio.Event()

    def tick():
        here("tornado PeriodicCallback")
        fired.append(loop.time())
        if len(fired) >= 5:
            enough.set()

    periodic = tornado.ioloop.PeriodicCallback(tick, 10)
    periodic.start()

    from_thread = asyncio.Event()
    threading.Thread(target=io_loop.add_callback, args=(from_thread.set,)).start()

    client = tornado.httpclient.AsyncHTTPClient()
    base = f"http://127.0.0.1:{port}"
    info = json.loads((await client.fetch(base + "/loop")).body)
    check_info("tornado handler (reported)", info)
    stream = (await client.fetch(base + "/stream")).body
    payload = os.urandom(256 * 1024)
    echo = (await client.fetch(
        base + "/echo", method="POST", body=payload,
        headers={"Content-Type": "application/octet-stream"},
    )).body
    several = await asyncio.gather(*(client.fetch(base + "/loop") for _ in range(5)))

    ws = await tornado.websocket.websocket_connect(f"ws://127.0.0.1:{port}/ws")
    check_info("tornado websocket handler (reported)", json.loads(await ws.read_message()))
    await ws.write_message("hello")
    ws_text = await ws.read_message()
    blob = os.urandom(200 * 1024)
    await ws.write_message(blob, binary=True)
    ws_binary = await ws.read_message() == blob
    ws.close(1000, "done")

    await asyncio.wait_for(enough.wait(), 10)
    periodic.stop()
    await asyncio.wait_for(from_thread.wait(), 10)
    in_executor = await io_loop.run_in_executor(None, sum, [4, 5])

    server.stop()
    await server.close_all_connections()
    client.close()
    CHECKS.update(
        periodic_fired_at_least_5=len(fired) >= 5,
        stream=stream.decode(),
        echo=echo == payload,
        several=[r.code for r in several],
        websocket=[ws_text, ws_binary],
        executor=in_executor,
    )


@scenario
def tornado_asyncio_run():
    """`uvloop.install()`, `asyncio.run(main())`: Tornado's IOLoop.current() wraps our loop."""

    async def main():
        await tornado_workload("tornado under asyncio.run")

    enter("install", main)


@scenario
def tornado_ioloop_run_sync():
    """The policy, then Tornado's own `IOLoop()` (asyncio.new_event_loop()) and `run_sync`."""
    import tornado.ioloop

    asyncio.set_event_loop_policy(
        uvloop.EventLoopPolicy() if OURS else asyncio.DefaultEventLoopPolicy()
    )
    io_loop = tornado.ioloop.IOLoop()
    saw_loop("tornado IOLoop().asyncio_loop", io_loop.asyncio_loop)

    async def main():
        await tornado_workload("tornado IOLoop.run_sync")

    try:
        io_loop.run_sync(main, timeout=20)
    finally:
        io_loop.close(all_fds=True)


# --- 5. aiohttp ----------------------------------------------------------------------------------


_FILE = {}


def file_to_serve():
    """A 3 MiB file of random bytes, in a directory removed at exit; its path."""
    if not _FILE:
        import atexit
        import hashlib
        import shutil

        directory = tempfile.mkdtemp()
        atexit.register(shutil.rmtree, directory, True)
        data = os.urandom(3 * 1024 * 1024 + 123)
        _FILE["path"] = os.path.join(directory, "served.bin")
        _FILE["sha256"] = hashlib.sha256(data).hexdigest()
        with open(_FILE["path"], "wb") as f:
            f.write(data)
    return _FILE["path"]


def aiohttp_app():
    from aiohttp import WSMsgType, web

    async def loop_handler(request):
        here("aiohttp handler")
        return web.json_response(loop_info())

    async def stream_handler(request):
        here("aiohttp streaming handler")
        response = web.StreamResponse()
        response.content_type = "application/octet-stream"
        await response.prepare(request)
        for i in range(64):
            await response.write(bytes([i]) * 16384)
            if i % 8 == 0:
                await asyncio.sleep(0.001)
        await response.write_eof()
        return response

    async def echo_handler(request):
        return web.Response(body=await request.read())

    async def ws_handler(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_json(loop_info())
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await ws.send_str(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
        return ws

    async def file_handler(request):
        # web.FileResponse: loop.sendfile() on the connection's transport
        return web.FileResponse(file_to_serve())

    app = web.Application(client_max_size=4 * 1024 * 1024)
    app.router.add_get("/file", file_handler)
    app.router.add_get("/loop", loop_handler)
    app.router.add_get("/stream", stream_handler)
    app.router.add_post("/echo", echo_handler)
    app.router.add_get("/ws", ws_handler)
    return app


async def start_aiohttp_app():
    """(runner, port): `aiohttp_app()` served on 127.0.0.1, a free port."""
    from aiohttp import web

    runner = web.AppRunner(aiohttp_app())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, runner.addresses[0][1]


STREAM_BODY = b"".join(bytes([i]) * 16384 for i in range(64))


async def aiohttp_client_workload(base, tag):
    import aiohttp

    here(tag)
    async with aiohttp.ClientSession() as session:
        async with session.get(base + "/loop") as resp:
            check_info("aiohttp handler (reported)", await resp.json())
        async with session.get(base + "/stream") as resp:
            chunks = [chunk async for chunk in resp.content.iter_chunked(4096)]
            streamed = b"".join(chunks)
        payload = os.urandom(1024 * 1024)

        async def body():
            for i in range(0, len(payload), 65536):
                yield payload[i:i + 65536]

        async with session.post(base + "/echo", data=body()) as resp:
            echo = await resp.read()

        async def one():
            async with session.get(base + "/loop") as resp:
                return resp.status

        statuses = await asyncio.gather(*(one() for _ in range(20)))
        async with session.ws_connect(base + "/ws") as ws:
            check_info("aiohttp ws handler (reported)", await ws.receive_json())
            await ws.send_str("hello")
            text = await ws.receive_str()
            blob = os.urandom(300 * 1024)
            await ws.send_bytes(blob)
            ws_echo = await ws.receive_bytes() == blob
        async with session.get(base + "/file") as resp:
            import hashlib

            served = hashlib.sha256(await resp.read()).hexdigest() == _FILE["sha256"]
    return {
        "file": served,
        "streamed": streamed == STREAM_BODY,
        "echo": echo == payload,
        "statuses": sorted(set(statuses)),
        "ws": [text, ws_echo],
    }


@scenario
def aiohttp_client_server():
    """`uvloop.run(main())`: an aiohttp server (AppRunner, streaming response, websocket) and an
    aiohttp ClientSession against it."""

    async def main():
        here("aiohttp main")
        runner, port = await start_aiohttp_app()
        try:
            CHECKS["client"] = await aiohttp_client_workload(
                f"http://127.0.0.1:{port}", "aiohttp client"
            )
        finally:
            await runner.cleanup()

    enter("run", main)


@scenario
def aiohttp_run_app():
    """`uvloop.install()`, then `web.run_app()` (its own loop, its SIGTERM handler): a client
    task fetches from it, then sends the process SIGTERM, which run_app turns into a graceful
    exit."""
    from aiohttp import web

    if OURS:
        uvloop.install()
    app = aiohttp_app()
    sock = free_socket()
    port = sock.getsockname()[1]
    events = []

    async def client_then_stop():
        try:
            CHECKS["client"] = await aiohttp_client_workload(
                f"http://127.0.0.1:{port}", "aiohttp run_app client"
            )
        finally:
            # Stopped even when the client failed (on_cleanup then re-raises its error).
            os.kill(os.getpid(), signal.SIGTERM)

    async def on_startup(app):
        here("aiohttp on_startup")
        events.append("startup")
        app["client"] = asyncio.ensure_future(client_then_stop())

    async def on_shutdown(app):
        events.append("shutdown")

    async def on_cleanup(app):
        events.append("cleanup")
        await app["client"]

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    app.on_cleanup.append(on_cleanup)
    web.run_app(app, sock=sock, print=None, handle_signals=True)
    sock.close()
    CHECKS["events"] = events


# --- 5. anyio ------------------------------------------------------------------------------------


async def anyio_workload(tag):
    import anyio
    from anyio.abc import SocketAttribute

    here(tag)
    results = {}

    async def handle(stream):
        here("anyio TCP handler")
        async with stream:
            try:
                async for chunk in stream:
                    await stream.send(chunk)
            except anyio.EndOfStream:
                pass

    payload = os.urandom(200 * 1024)
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
        port = listener.extra(SocketAttribute.local_port)
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, handle)
            async with await anyio.connect_tcp("127.0.0.1", port) as stream:
                await stream.send(b"ping")
                results["tcp_small"] = (await stream.receive()).decode()
                await stream.send(payload)
                got = b""
                while len(got) < len(payload):
                    got += await stream.receive()
                results["tcp_large"] = got == payload
            # "localhost": resolved through the loop's getaddrinfo, then anyio's happy eyeballs
            # (::1 may be refused: the listener is on 127.0.0.1 only).
            async with await anyio.connect_tcp("localhost", port) as stream:
                await stream.send(b"by name")
                results["tcp_localhost"] = (await stream.receive()).decode()
            tg.cancel_scope.cancel()

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "anyio.sock")
        async with await anyio.create_unix_listener(path) as listener:
            async with anyio.create_task_group() as tg:
                tg.start_soon(listener.serve, handle)
                async with await anyio.connect_unix(path) as stream:
                    await stream.send(b"unix")
                    results["unix"] = (await stream.receive()).decode()
                tg.cancel_scope.cancel()

    async with await anyio.create_udp_socket(local_host="127.0.0.1") as a, \
            await anyio.create_udp_socket(local_host="127.0.0.1") as b:
        await a.sendto(b"datagram", "127.0.0.1", b.extra(SocketAttribute.local_port))
        data, _ = await b.receive()
        results["udp"] = data.decode()

    done = await anyio.run_process(
        [PY, "-c", "import sys; print(sys.stdin.read().upper())"], input=b"run_process"
    )
    results["run_process"] = [done.returncode, done.stdout.decode().strip()]

    async with await anyio.open_process(
        [PY, "-c", "import sys\nfor line in sys.stdin: print(line.strip()[::-1], flush=True)"]
    ) as process:
        await process.stdin.send(b"abc\n")
        first = b""
        while not first.endswith(b"\n"):
            first += await process.stdout.receive()
        await process.stdin.send(b"xyz\n")
        await process.stdin.aclose()
        rest = b""
        try:
            while True:
                rest += await process.stdout.receive()
        except anyio.EndOfStream:
            pass
        results["open_process"] = [first.decode().strip(), rest.decode().strip(),
                                   await process.wait()]

    results["to_thread"] = await anyio.to_thread.run_sync(sum, [1, 2, 3])

    async def in_loop(value):
        here("anyio from_thread.run")
        await anyio.sleep(0)
        return value * 2

    results["from_thread"] = await anyio.to_thread.run_sync(
        lambda: anyio.from_thread.run(in_loop, 21)
    )
    with anyio.move_on_after(0.05) as scope:
        await anyio.sleep(10)
    results["move_on_after"] = scope.cancelled_caught

    with anyio.open_signal_receiver(signal.SIGUSR1) as signals:
        os.kill(os.getpid(), signal.SIGUSR1)
        async for signum in signals:
            results["signal"] = signal.Signals(signum).name
            break
    return results


@scenario
def anyio_install():
    """`uvloop.install()` then `anyio.run(main, backend="asyncio")`."""
    import anyio

    if OURS:
        uvloop.install()

    async def main():
        CHECKS["result"] = await anyio_workload("anyio.run after install")

    anyio.run(main, backend="asyncio")


@scenario
def anyio_use_uvloop():
    """`anyio.run(main, backend="asyncio", backend_options={"use_uvloop": True})`: anyio imports
    uvloop itself."""
    import anyio

    async def main():
        CHECKS["result"] = await anyio_workload("anyio.run use_uvloop")

    anyio.run(main, backend="asyncio", backend_options={"use_uvloop": OURS})


@scenario
def anyio_loop_factory():
    """`anyio.run(..., backend_options={"loop_factory": uvloop.new_event_loop})`."""
    import anyio

    async def main():
        CHECKS["result"] = await anyio_workload("anyio.run loop_factory")

    factory = uvloop.new_event_loop if OURS else asyncio.new_event_loop
    anyio.run(main, backend="asyncio", backend_options={"loop_factory": factory})


# --- 5. websockets -------------------------------------------------------------------------------


@scenario
def websockets_client_server():
    """`uvloop.install()`, `asyncio.run(main())`: websockets' asyncio server and client."""
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import serve
    from websockets.exceptions import ConnectionClosed

    async def handler(ws):
        here("websockets handler")
        if ws.request.path == "/close":
            await ws.close(4001, "bye")
            return
        await ws.send(json.dumps(loop_info()))
        async for message in ws:
            await ws.send(message)

    async def main():
        here("websockets main")
        async with serve(handler, "127.0.0.1", 0, max_size=2 ** 21) as server:
            port = list(server.sockets)[0].getsockname()[1]
            uri = f"ws://127.0.0.1:{port}"
            async with connect(uri, max_size=2 ** 21) as ws:
                check_info("websockets handler (reported)", json.loads(await ws.recv()))
                await ws.send("hello")
                text = await ws.recv()
                blob = os.urandom(1024 * 1024)
                await ws.send(blob)
                binary = await ws.recv() == blob
                pong = await ws.ping()
                await asyncio.wait_for(pong, 5)

            async def client(i):
                async with connect(uri) as ws:
                    await ws.recv()
                    await ws.send(f"client {i}")
                    return await ws.recv()

            many = await asyncio.gather(*(client(i) for i in range(10)))

            async with connect(uri + "/close") as ws:
                try:
                    await ws.recv()
                    closed = None
                except ConnectionClosed as exc:
                    closed = [exc.rcvd.code, exc.rcvd.reason]
        CHECKS.update(text=text, binary=binary, many=many, server_close=closed)

    enter("install", main)


# --- 5. httpx ------------------------------------------------------------------------------------


async def plain_http_server(connections):
    """A minimal HTTP/1.1 server on asyncio streams: keep-alive, Content-Length and chunked."""

    async def handle(reader, writer):
        here("plain asyncio HTTP server")
        connections.append(1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ")
                headers = {k.lower(): v.strip() for k, v in
                           (line.split(":", 1) for line in lines[1:] if line)}
                body = await reader.readexactly(int(headers.get("content-length", 0)))
                if path == "/chunked":
                    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                    for i in range(10):
                        chunk = b"part %d;" % i
                        writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        await writer.drain()
                        await asyncio.sleep(0.001)
                    writer.write(b"0\r\n\r\n")
                else:
                    payload = body if path == "/echo" else json.dumps(loop_info()).encode()
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(payload))
                    writer.write(payload)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionResetError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def httpx_workload(base, tag):
    import httpx

    here(tag)
    async with httpx.AsyncClient(base_url=base) as client:
        for _ in range(5):
            response = await client.get("/loop")
            check_info(f"{tag}: server (reported)", response.json())
        payload = os.urandom(512 * 1024)
        echo = (await client.post("/echo", content=payload)).content == payload
        statuses = await asyncio.gather(*(client.get("/loop") for _ in range(10)))
    async with httpx.AsyncClient(base_url=base) as client:
        async with client.stream("GET", "/chunked" if "plain" in tag else "/stream") as response:
            streamed = b"".join([chunk async for chunk in response.aiter_bytes()])
    return {"echo": echo, "statuses": sorted({r.status_code for r in statuses}),
            "streamed": streamed if "plain" in tag else streamed == STREAM_BODY}


@scenario
def httpx_plain_asyncio_server():
    """The policy, `asyncio.run(main())`: httpx.AsyncClient against an asyncio-streams server."""

    async def main():
        connections = []
        server = await plain_http_server(connections)
        port = server.sockets[0].getsockname()[1]
        try:
            result = await httpx_workload(f"http://127.0.0.1:{port}", "httpx plain")
            result["streamed"] = result["streamed"].decode()
            CHECKS["result"] = result
        finally:
            server.close()
            await server.wait_closed()
        # 5 sequential requests and the upload on one kept-alive connection, the 10 concurrent
        # ones on more, the streamed one on a connection of a new client.
        CHECKS["connections_at_least_2"] = len(connections) >= 2

    enter("policy", main)


@scenario
def httpx_aiohttp_server():
    """`uvloop.run(main())`: httpx.AsyncClient against an aiohttp server."""

    async def main():
        runner, port = await start_aiohttp_app()
        try:
            CHECKS["result"] = await httpx_workload(f"http://127.0.0.1:{port}", "httpx aiohttp")
        finally:
            await runner.cleanup()

    enter("run", main)


# --- the harness checked: what only our loop's run logs is found ---------------------------------


@scenario
def selftest_uvloop_only_diagnostics():
    """Logs, warns and prints on both runs with different ports (which must not count), and once
    more on the uvloop run only (which must)."""
    port = free_socket()
    logging.getLogger("selftest").warning("on both, port %d", port.getsockname()[1])
    warnings.warn(f"on both, {port!r}", UserWarning)
    print(f"on both, port {port.getsockname()[1]}", file=sys.stderr)
    port.close()
    if OURS:
        logging.getLogger("selftest").warning("only on uvloop, port %d", 12345)
        warnings.warn("only on uvloop", RuntimeWarning)
        print("only on uvloop, on stderr", file=sys.stderr)

    async def main():
        here("selftest")

    enter("install", main)


def main():
    try:
        SCENARIOS[SCENARIO]()
    except BaseException:
        # What was logged tells what went wrong on the other side (a server's handler...).
        for text in _capture.full:
            print(f"logged during the scenario: {text}", file=sys.stderr)
        raise
    result = {
        "loops": LOOPS,
        "checks": CHECKS,
        "logs": _capture.records,
        "warnings": _recorded_warnings,
    }
    # From here on (interpreter shutdown), warnings go to stderr, which the test reads too.
    warnings.showwarning = _show_warning
    print("RESULT: " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
