"""An aiohttp app for gunicorn's aiohttp workers (tests/integration/test_gunicorn_aiohttp.py).

    gunicorn gunicorn_aiohttp_app:make_app -k aiohttp.GunicornUVLoopWebWorker -w 2

- GET /loop     JSON: the worker's pid and running loop (type, whether it is a uvloop.Loop)
- GET /block    as /loop, after blocking the worker for 0.2 s (time.sleep), so that while one
                worker is busy the other one takes the next connection
- GET /stream   a streamed response of 20 chunks
"""

import asyncio
import os
import time

from aiohttp import web

import uvloop


def loop_info():
    loop = asyncio.get_running_loop()
    return {
        "loop_type": f"{type(loop).__module__}.{type(loop).__qualname__}",
        "is_uvloop": isinstance(loop, uvloop.Loop),
        "pid": os.getpid(),
    }


async def loop_handler(request):
    return web.json_response(loop_info())


async def block_handler(request):
    time.sleep(0.2)
    return web.json_response(loop_info())


async def stream_handler(request):
    response = web.StreamResponse()
    response.content_type = "text/plain"
    await response.prepare(request)
    for i in range(20):
        await asyncio.sleep(0.001)
        await response.write(b"chunk %02d\n" % i)
    await response.write_eof()
    return response


async def make_app():
    app = web.Application()
    app.router.add_get("/loop", loop_handler)
    app.router.add_get("/block", block_handler)
    app.router.add_get("/stream", stream_handler)
    return app
