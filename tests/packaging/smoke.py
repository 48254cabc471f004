"""Run by `make packaging-check` in a virtualenv that got uvloop from the sdist with pip alone,
from a directory outside the checkout: the installed package imports, is the one in that
virtualenv, and runs a TCP echo, a timer and a child process on its loop."""

import asyncio
import os
import sys
import sysconfig

import uvloop

site_packages = os.path.realpath(sysconfig.get_paths()["purelib"])
assert os.path.realpath(uvloop.__file__).startswith(site_packages), uvloop.__file__


async def main():
    loop = asyncio.get_running_loop()
    assert isinstance(loop, uvloop.Loop), type(loop)

    async def echo(reader, writer):
        writer.write(await reader.read(100))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
    writer.write(b"ping")
    assert await reader.read() == b"ping"
    writer.close()
    server.close()
    await server.wait_closed()

    await asyncio.sleep(0.01)
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "print('child')", stdout=asyncio.subprocess.PIPE
    )
    out, _ = await child.communicate()
    assert (child.returncode, out.strip()) == (0, b"child"), (child.returncode, out)


uvloop.run(main())
print(f"uvloop {uvloop.__version__} from {os.path.dirname(uvloop.__file__)}: ok")
