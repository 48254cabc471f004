"""uvloop on an asyncio shaped like Python 3.14's, on every Python installed here.

No 3.14 or 3.15 interpreter can be installed on the project's machines, so each check runs in a
child Python whose asyncio a `sitecustomize` has changed, before anything else is imported, the
way 3.14 changed it where it matters to uvloop (checked against 3.14's Lib/asyncio):

- `events.BaseDefaultEventLoopPolicy` is gone; `events._BaseDefaultEventLoopPolicy` is the base;
- `get_event_loop_policy`/`set_event_loop_policy` warn (DeprecationWarning, "slated for removal
  in Python 3.16") unless asyncio itself calls them; `events._get_event_loop_policy` and
  `events._set_event_loop_policy` are the silent ones;
- `asyncio.iscoroutinefunction` warns likewise; `coroutines._iscoroutinefunction` is silent;
- the child watchers are gone (`AbstractChildWatcher`, `ThreadedChildWatcher`, ...,
  `get_child_watcher`, `set_child_watcher`).

Every child runs with DeprecationWarning turned into an error, so that uvloop touching a
deprecated API outside `install()` (which is deprecated itself, and says so) fails the check.
"""

import os
import subprocess
import sys
import textwrap

SITECUSTOMIZE = r'''
import asyncio
import sys
import warnings
from asyncio import coroutines, events, unix_events

_MESSAGE = "{!r} is deprecated and slated for removal in Python 3.16"


def _deprecated(name, function):
    """`function`, warning when called from outside asyncio (asyncio's own code does not)."""

    def deprecated(*args, **kwargs):
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if not caller.startswith("asyncio."):
            warnings.warn(_MESSAGE.format(name), DeprecationWarning, stacklevel=2)
        return function(*args, **kwargs)

    return deprecated


events._BaseDefaultEventLoopPolicy = events.BaseDefaultEventLoopPolicy
del events.BaseDefaultEventLoopPolicy
asyncio.__dict__.pop("BaseDefaultEventLoopPolicy", None)

for _name in ("get_event_loop_policy", "set_event_loop_policy"):
    _function = getattr(events, _name)
    setattr(events, "_" + _name, _function)
    setattr(events, _name, _deprecated("asyncio." + _name, _function))
    setattr(asyncio, _name, getattr(events, _name))

coroutines._iscoroutinefunction = coroutines.iscoroutinefunction
coroutines.iscoroutinefunction = _deprecated(
    "asyncio.iscoroutinefunction", coroutines._iscoroutinefunction
)
asyncio.iscoroutinefunction = coroutines.iscoroutinefunction

for _module in (asyncio, events, unix_events):
    for _name in (
        "AbstractChildWatcher", "BaseChildWatcher", "SafeChildWatcher", "FastChildWatcher",
        "MultiLoopChildWatcher", "ThreadedChildWatcher", "PidfdChildWatcher",
        "get_child_watcher", "set_child_watcher",
    ):
        _module.__dict__.pop(_name, None)
for _policy in vars(unix_events).values():
    if isinstance(_policy, type):
        for _name in ("get_child_watcher", "set_child_watcher"):
            if _name in vars(_policy):
                delattr(_policy, _name)
'''

# An echo round trip over TCP, a child process, and a signal handler: what a program does.
PROGRAM = r'''
import asyncio
import os
import signal
import sys

import uvloop


async def echo_round_trip():
    async def handle(reader, writer):
        writer.write(await reader.readexactly(5))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"hello")
    echoed = await reader.readexactly(5)
    writer.close()
    await writer.wait_closed()
    server.close()
    await server.wait_closed()
    return echoed


async def child_output():
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "print('child')", stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    return out.strip(), proc.returncode


async def signal_handled():
    loop = asyncio.get_running_loop()
    got = loop.create_future()
    loop.add_signal_handler(signal.SIGUSR1, got.set_result, "signal")

    async def handler():
        pass

    try:
        loop.add_signal_handler(signal.SIGUSR2, handler)
    except TypeError:
        refused = True
    else:
        refused = False
    os.kill(os.getpid(), signal.SIGUSR1)
    result = await asyncio.wait_for(got, 5)
    loop.remove_signal_handler(signal.SIGUSR1)
    return result, refused


async def main():
    assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
    return await echo_round_trip(), await child_output(), await signal_handled()


EXPECTED = (b"hello", (b"child", 0), ("signal", True))


def forbid_policies():
    """Makes any use of asyncio's event loop policies fail."""
    from asyncio import events

    def forbidden(*args):
        raise AssertionError("an event loop policy was used")

    for name in ("get_event_loop_policy", "set_event_loop_policy"):
        setattr(events, name, forbidden)
        setattr(events, "_" + name, forbidden)
        setattr(asyncio, name, forbidden)
'''


def run_shaped(tmp_path, code, *args):
    """Runs `code` (after PROGRAM) in a child Python with 3.14's asyncio shape; its stdout."""
    (tmp_path / "sitecustomize.py").write_text(SITECUSTOMIZE)
    path = os.environ.get("PYTHONPATH", "")
    script = tmp_path / "program.py"
    script.write_text(PROGRAM + textwrap.dedent(code))
    result = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", *args, str(script)],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(tmp_path), path)))},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_shape_is_in_effect(tmp_path):
    out = run_shaped(
        tmp_path,
        """
        from asyncio import events
        assert not hasattr(events, "BaseDefaultEventLoopPolicy")
        assert issubclass(uvloop.EventLoopPolicy, events._BaseDefaultEventLoopPolicy)
        try:
            asyncio.get_event_loop_policy()
        except DeprecationWarning:
            print("policy functions warn")
        try:
            asyncio.iscoroutinefunction(main)
        except DeprecationWarning:
            print("iscoroutinefunction warns")
        """,
    )
    assert out.split("\n")[:2] == ["policy functions warn", "iscoroutinefunction warns"]


def test_uvloop_run(tmp_path):
    code = """
    if sys.version_info >= (3, 11):  # 3.9/3.10: asyncio.run sets the loop as current, as we do
        forbid_policies()
    assert uvloop.run(main()) == EXPECTED
    print("ok")
    """
    assert run_shaped(tmp_path, code) == "ok\n"


def test_asyncio_run_with_loop_factory(tmp_path):
    code = """
    forbid_policies()
    if sys.version_info >= (3, 12):
        result = asyncio.run(main(), loop_factory=uvloop.new_event_loop)
    elif sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            result = runner.run(main())
    else:
        loop = uvloop.new_event_loop()
        result = loop.run_until_complete(main())
        loop.close()
    assert result == EXPECTED
    print("ok")
    """
    assert run_shaped(tmp_path, code) == "ok\n"


def test_new_event_loop_and_loop_class(tmp_path):
    code = """
    forbid_policies()
    for loop in (uvloop.new_event_loop(), uvloop.Loop()):
        assert loop.run_until_complete(main()) == EXPECTED
        loop.close()
    print("ok")
    """
    assert run_shaped(tmp_path, code) == "ok\n"


def test_install_warns_only_for_itself(tmp_path):
    code = """
    import warnings
    from asyncio import events
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        uvloop.install()
    messages = [str(w.message) for w in caught]
    if sys.version_info >= (3, 12):
        assert len(messages) == 1 and "uvloop.install() is deprecated" in messages[0], messages
    else:
        assert messages == [], messages
    assert isinstance(events._get_event_loop_policy(), uvloop.EventLoopPolicy)
    loop = asyncio.new_event_loop()
    assert isinstance(loop, uvloop.Loop)
    assert loop.run_until_complete(main()) == EXPECTED
    loop.close()
    print("ok")
    """
    assert run_shaped(tmp_path, code) == "ok\n"


def test_python_m_uvloop(tmp_path):
    code = """
    assert isinstance(asyncio.new_event_loop(), uvloop.Loop)
    print("ok")
    """
    assert run_shaped(tmp_path, code, "-m", "uvloop") == "ok\n"
