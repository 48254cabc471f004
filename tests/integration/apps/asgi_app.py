"""A small ASGI app for the uvicorn tests (tests/integration/test_uvicorn.py).

Every endpoint reports the loop it runs on, so the test can tell uvicorn's `--loop uvloop`
really handed the app our loop:

- GET /loop        JSON: the running loop's type, whether it is a uvloop.Loop, the pid and
                   what the lifespan startup saw
- GET /stream      a chunked response of 20 chunks written with awaits in between
- GET /block       as /loop, after blocking the worker for 0.2 s (time.sleep), so that with
                   --workers 2 the other worker takes the next connection
- POST /echo       the request body back
- WS  /ws          first a JSON message as /loop, then every message echoed until the client
                   closes
"""

import asyncio
import json
import os
import time

import uvloop

state = {}


def loop_info():
    loop = asyncio.get_running_loop()
    return {
        "loop_type": f"{type(loop).__module__}.{type(loop).__qualname__}",
        "is_uvloop": isinstance(loop, uvloop.Loop),
        "pid": os.getpid(),
    }


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                state["startup"] = loop_info()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    elif scope["type"] == "http":
        await http(scope, receive, send)
    elif scope["type"] == "websocket":
        await websocket(scope, receive, send)


async def read_body(receive):
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def http(scope, receive, send):
    path = scope["path"]
    body = await read_body(receive)
    if path == "/stream":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        for i in range(20):
            await asyncio.sleep(0.001)
            await send({"type": "http.response.body", "body": b"chunk %02d\n" % i,
                        "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/echo":
        payload, ctype = body, b"application/octet-stream"
    elif path in ("/loop", "/block"):
        if path == "/block":
            time.sleep(0.2)
        payload = json.dumps(dict(loop_info(), startup=state.get("startup"))).encode()
        ctype = b"application/json"
    else:
        payload, ctype = b"not found", b"text/plain"
    await send({"type": "http.response.start", "status": 404 if ctype == b"text/plain" else 200,
                "headers": [(b"content-type", ctype),
                            (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})


async def websocket(scope, receive, send):
    message = await receive()
    assert message["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": json.dumps(loop_info())})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})
