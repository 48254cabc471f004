"""uvloop's public entry points: new_event_loop, EventLoopPolicy, install, run, __version__ and
`python -m uvloop`. These are uvloop-only, so they do not take the differential fixtures."""

import asyncio
import os
import subprocess
import sys
import textwrap
import warnings

import pytest

import uvloop


@pytest.fixture
def restore_policy():
    saved = asyncio.get_event_loop_policy()
    try:
        yield
    finally:
        asyncio.set_event_loop_policy(saved)


async def _running_loop():
    return asyncio.get_running_loop()


def test_version():
    assert uvloop.__version__ == "1.0.0.dev0"


def test_public_names():
    assert set(uvloop.__all__) == {"new_event_loop", "install", "run", "Loop", "EventLoopPolicy"}


def test_new_event_loop():
    loop = uvloop.new_event_loop()
    try:
        assert type(loop) is uvloop.Loop
        assert isinstance(loop, asyncio.AbstractEventLoop)
        assert loop.is_running() is False and loop.is_closed() is False
        assert loop.run_until_complete(_running_loop()) is loop
    finally:
        loop.close()


def test_new_event_loop_returns_distinct_loops():
    a, b = uvloop.new_event_loop(), uvloop.new_event_loop()
    try:
        assert a is not b
    finally:
        a.close()
        b.close()


def test_event_loop_policy(restore_policy):
    policy = uvloop.EventLoopPolicy()
    assert isinstance(policy, asyncio.AbstractEventLoopPolicy)
    loop = policy.new_event_loop()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()


def test_event_loop_policy_with_asyncio_run(restore_policy):
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    assert isinstance(asyncio.run(_running_loop()), uvloop.Loop)


def test_install(restore_policy):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        uvloop.install()
    assert isinstance(asyncio.get_event_loop_policy(), uvloop.EventLoopPolicy)
    deprecations = [w for w in caught if issubclass(w.category, DeprecationWarning)]
    if sys.version_info >= (3, 12):
        assert len(deprecations) == 1
        assert "uvloop.install() is deprecated" in str(deprecations[0].message)
        assert deprecations[0].filename == __file__  # attributed to the caller
    else:
        assert deprecations == []
    loop = asyncio.new_event_loop()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()


def test_run_returns_value_on_a_uvloop_loop():
    async def main():
        loop = asyncio.get_running_loop()
        return type(loop), loop.get_debug(), "result"

    assert uvloop.run(main()) == (uvloop.Loop, False, "result")


def test_run_closes_its_loop_and_clears_the_event_loop():
    loop = uvloop.run(_running_loop())
    assert loop.is_closed() is True
    assert asyncio._get_running_loop() is None


def test_run_debug():
    async def main():
        return asyncio.get_running_loop().get_debug()

    assert uvloop.run(main(), debug=True) is True


def test_run_propagates_exceptions():
    async def main():
        raise ArithmeticError("from main")

    with pytest.raises(ArithmeticError, match="from main"):
        uvloop.run(main())


def test_run_cancels_leftover_tasks():
    events = []

    async def leftover():
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            events.append("cancelled")
            raise

    async def main():
        asyncio.get_running_loop().create_task(leftover())
        await asyncio.sleep(0)

    uvloop.run(main())
    assert events == ["cancelled"]


def test_run_with_asyncio_loop_factory_is_refused():
    async def main():
        return "must not run"

    with pytest.raises(TypeError):
        uvloop.run(main(), loop_factory=asyncio.new_event_loop)


def test_run_with_non_coroutine():
    with pytest.raises(ValueError, match="a coroutine was expected"):
        uvloop.run(42)


def test_run_from_running_loop():
    async def inner():
        return 1

    async def outer():
        coro = inner()
        try:
            with pytest.raises(
                RuntimeError, match="cannot be called from a running event loop"
            ):
                uvloop.run(coro)
        finally:
            coro.close()
        return "ok"

    assert uvloop.run(outer()) == "ok"


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.Runner is 3.11+")
def test_asyncio_runner_with_uvloop_factory():
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        loop = runner.get_loop()
        assert isinstance(loop, uvloop.Loop)
        first = runner.run(_running_loop())
        second = runner.run(_running_loop())
    assert first is second is loop
    assert loop.is_closed() is True


@pytest.mark.skipif(sys.version_info < (3, 12), reason="asyncio.run(loop_factory=) is 3.12+")
def test_asyncio_run_with_uvloop_factory():
    assert isinstance(asyncio.run(_running_loop(), loop_factory=uvloop.new_event_loop), uvloop.Loop)


# --- python -m uvloop -----------------------------------------------------------------------


def _python_m_uvloop(*args, cwd=None):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [sys.executable, "-m", "uvloop", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env=env,
    )


_REPORT = """
import asyncio, sys

async def main():
    return type(asyncio.get_running_loop()).__module__, type(asyncio.get_running_loop()).__name__

print(repr(sys.argv))
print(__name__)
print(asyncio.run(main()))
"""


def test_python_m_uvloop_script(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(_REPORT)
    result = _python_m_uvloop(str(script), "a", "b")
    assert result.returncode == 0, result.stderr
    argv, name, loop_type = result.stdout.splitlines()
    assert argv == repr([str(script), "a", "b"])
    assert name == "__main__"
    assert loop_type == "('uvloop', 'Loop')"


def test_python_m_uvloop_script_imports_siblings(tmp_path):
    (tmp_path / "sibling.py").write_text("VALUE = 'sibling'\n")
    script = tmp_path / "script.py"
    script.write_text("import sibling\nprint(sibling.VALUE)\n")
    result = _python_m_uvloop(str(script))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "sibling\n"


def test_python_m_uvloop_script_is_the_main_module(tmp_path):
    """Classes defined in the script pickle by reference to __main__, as under `python script.py`."""
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            """
            import pickle, sys

            class Point:
                pass

            print(sys.modules["__main__"].Point is Point)
            print(type(pickle.loads(pickle.dumps(Point()))) is Point)
            """
        )
    )
    result = _python_m_uvloop(str(script))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "True\nTrue\n"


def test_python_m_uvloop_exit_code(tmp_path):
    script = tmp_path / "exit3.py"
    script.write_text("import sys\nsys.exit(3)\n")
    assert _python_m_uvloop(str(script)).returncode == 3


def test_python_m_uvloop_uncaught_exception(tmp_path):
    script = tmp_path / "fail.py"
    script.write_text("raise ValueError('uncaught in script')\n")
    result = _python_m_uvloop(str(script))
    assert result.returncode == 1
    assert "ValueError: uncaught in script" in result.stderr


def test_python_m_uvloop_module(tmp_path):
    package = tmp_path / "mypkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "tool.py").write_text(_REPORT)
    result = _python_m_uvloop("-m", "mypkg.tool", "x", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    argv, name, loop_type = result.stdout.splitlines()
    assert eval(argv) == [str(package / "tool.py"), "x"]
    assert name == "__main__"
    assert loop_type == "('uvloop', 'Loop')"


def test_python_m_uvloop_module_exit_code(tmp_path):
    (tmp_path / "exiting.py").write_text(
        textwrap.dedent(
            """
            import sys
            sys.exit(5)
            """
        )
    )
    assert _python_m_uvloop("-m", "exiting", cwd=tmp_path).returncode == 5


def test_python_m_uvloop_without_arguments():
    result = _python_m_uvloop()
    assert result.returncode == 2
    assert "usage" in result.stderr
