"""Exception handlers, errors escaping callbacks, and debug mode."""

import asyncio
import contextvars
import gc
import inspect
import logging
import os
import re
import subprocess
import sys
import threading
import time
from asyncio import constants, format_helpers

import pytest

from conftest import run

# From 3.13 asyncio leaves callback arguments out of messages unless in debug mode.
REPR_SHOWS_ARGS = "debug" not in inspect.signature(format_helpers._format_args_and_kwargs).parameters


def run_one_batch(loop):
    loop.call_soon(loop.stop)
    loop.run_forever()


def _lineno():
    """The line number of the caller."""
    return sys._getframe(1).f_lineno


# --- exception handlers ---------------------------------------------------------------------


def test_exception_handler_get_set(loop):
    assert loop.get_exception_handler() is None

    def handler(loop, context):
        pass

    loop.set_exception_handler(handler)
    assert loop.get_exception_handler() is handler
    loop.set_exception_handler(None)
    assert loop.get_exception_handler() is None


def test_set_exception_handler_rejects_non_callable(loop):
    with pytest.raises(TypeError, match="^A callable object or None is expected, got 42$"):
        loop.set_exception_handler(42)


def test_exception_in_callback_goes_to_handler_and_loop_keeps_running(loop):
    contexts = []
    calls = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append((lp, ctx)))

    def bad_callback(x):
        raise ZeroDivisionError(x)

    handle = loop.call_soon(bad_callback, 7)
    loop.call_soon(calls.append, "after")
    run_one_batch(loop)
    assert calls == ["after"]
    assert len(contexts) == 1
    handler_loop, context = contexts[0]
    assert handler_loop is loop
    assert set(context) == {"message", "exception", "handle"}
    assert type(context["exception"]) is ZeroDivisionError
    assert context["exception"].args == (7,)
    assert context["handle"] is handle
    code = bad_callback.__code__
    assert context["message"] == (
        f"Exception in callback {bad_callback.__qualname__}{'(7)' if REPR_SHOWS_ARGS else '()'} "
        f"at {code.co_filename}:{code.co_firstlineno}"
    )
    # And the loop still runs work afterwards.
    assert run(loop, asyncio.sleep(0, "alive")) == "alive"


class _CustomBaseException(BaseException):
    pass


@pytest.mark.parametrize("exc_type", [asyncio.CancelledError, _CustomBaseException, GeneratorExit])
def test_base_exceptions_other_than_exit_and_interrupt_go_to_handler(loop, exc_type):
    contexts = []
    calls = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))

    def raiser():
        raise exc_type("handled")

    loop.call_soon(raiser)
    loop.call_soon(calls.append, "after")
    run_one_batch(loop)
    assert calls == ["after"]
    assert [type(c["exception"]) for c in contexts] == [exc_type]


def test_exception_in_timer_callback_goes_to_handler(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    handle = loop.call_later(0, lambda: 1 / 0)
    run_one_batch(loop)
    assert [type(c["exception"]) for c in contexts] == [ZeroDivisionError]
    assert contexts[0]["handle"] is handle
    assert contexts[0]["message"].startswith("Exception in callback ")


def test_default_exception_handler_logs_like_asyncio(loop, caplog):
    def failing_callback():
        raise ValueError("logged")

    handle = loop.call_soon(failing_callback)
    with caplog.at_level(logging.DEBUG, logger="asyncio"):
        run_one_batch(loop)
    records = [r for r in caplog.records if r.name == "asyncio"]
    assert len(records) == 1
    record = records[0]
    assert record.levelno == logging.ERROR
    code = failing_callback.__code__
    assert record.getMessage() == (
        f"Exception in callback {failing_callback.__qualname__}() "
        f"at {code.co_filename}:{code.co_firstlineno}\n"
        f"handle: {handle!r}"
    )
    assert record.exc_info[0] is ValueError
    assert str(record.exc_info[1]) == "logged"
    assert record.exc_info[2] is record.exc_info[1].__traceback__


def test_non_callable_callback_outside_debug_mode_fails_when_run(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    loop.call_soon(42)
    run_one_batch(loop)
    assert [type(c["exception"]) for c in contexts] == [TypeError]
    assert contexts[0]["message"] == "Exception in callback 42()"


def test_exception_handler_context_var_for_handle_errors(loop):
    # From 3.13 asyncio runs the custom handler in the failing handle's (or task's) context.
    var = contextvars.ContextVar("var", default="default")
    ctx = contextvars.copy_context()
    ctx.run(var.set, "handle's")
    seen = []
    loop.set_exception_handler(lambda lp, context: seen.append(var.get()))
    loop.call_soon(lambda: 1 / 0, context=ctx)
    run_one_batch(loop)
    runs_in_context = "get_context" in inspect.getsource(asyncio.BaseEventLoop.call_exception_handler)
    assert seen == ["handle's" if runs_in_context else "default"]


def test_call_exception_handler_with_custom_handler(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    context = {"message": "custom", "extra": 1}
    loop.call_exception_handler(context)
    assert contexts == [{"message": "custom", "extra": 1}]


def test_call_exception_handler_default_logs(loop, caplog):
    exc = KeyError("k")
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.call_exception_handler({"message": "my message", "exception": exc, "zz": "last"})
        loop.call_exception_handler({})
    messages = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    assert messages == ["my message\nzz: 'last'", "Unhandled exception in event loop"]
    assert caplog.records[0].exc_info[1] is exc
    assert not caplog.records[1].exc_info


def test_exception_handler_that_raises(loop, caplog):
    def bad_handler(lp, context):
        raise RuntimeError("handler failed")

    loop.set_exception_handler(bad_handler)
    loop.call_soon(lambda: 1 / 0)
    loop.call_soon(loop.stop)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.run_forever()
    records = [r for r in caplog.records if r.name == "asyncio"]
    assert len(records) == 1
    message = records[0].getMessage()
    assert message.startswith("Unhandled error in exception handler\ncontext: {'message': ")
    assert "'exception': ZeroDivisionError('division by zero')" in message
    assert records[0].exc_info[0] is RuntimeError
    assert str(records[0].exc_info[1]) == "handler failed"


def test_default_exception_handler_called_from_custom_handler(loop, caplog):
    def handler(lp, context):
        lp.default_exception_handler({**context, "message": "via custom: " + context["message"]})

    loop.set_exception_handler(handler)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.call_exception_handler({"message": "original"})
    assert [r.getMessage() for r in caplog.records] == ["via custom: original"]


def test_unretrieved_task_exception_is_reported(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))

    async def fail():
        raise ValueError("never retrieved")

    async def main():
        loop.create_task(fail())
        await asyncio.sleep(0.01)

    run(loop, main())
    gc.collect()
    assert [c["message"] for c in contexts] == ["Task exception was never retrieved"]
    assert type(contexts[0]["exception"]) is ValueError


# --- KeyboardInterrupt and SystemExit -------------------------------------------------------


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_base_exception_in_callback_escapes_run_forever(loop, exc_type):
    calls = []
    handler_calls = []
    loop.set_exception_handler(lambda lp, ctx: handler_calls.append(ctx))

    def raiser():
        raise exc_type("escape")

    loop.call_soon(calls.append, "before")
    loop.call_soon(raiser)
    loop.call_soon(calls.append, "after")
    with pytest.raises(exc_type, match="escape"):
        loop.run_forever()
    assert calls == ["before"]
    assert handler_calls == []
    assert loop.is_running() is False
    assert asyncio._get_running_loop() is None
    # The rest of the interrupted batch runs in the next run; the loop is fully usable.
    assert run(loop, asyncio.sleep(0.001, "usable")) == "usable"
    assert calls == ["before", "after"]


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_base_exception_in_callback_escapes_run_until_complete(loop, exc_type):
    fut = loop.create_future()
    loop.call_later(0.001, lambda: (_ for _ in ()).throw(exc_type("from timer")))
    with pytest.raises(exc_type, match="from timer"):
        loop.run_until_complete(fut)
    assert fut.done() is False
    loop.call_soon(fut.set_result, "later")
    assert loop.run_until_complete(fut) == "later"


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_base_exception_in_coroutine_escapes_run_until_complete(loop, exc_type):
    async def main():
        await asyncio.sleep(0)
        raise exc_type("from task")

    with pytest.raises(exc_type, match="from task"):
        loop.run_until_complete(main())
    assert loop.is_running() is False
    assert run(loop, asyncio.sleep(0, "usable")) == "usable"


def test_stop_flag_is_reset_after_escape(loop):
    def stop_then_raise():
        loop.stop()
        raise KeyboardInterrupt

    loop.call_soon(stop_then_raise)
    with pytest.raises(KeyboardInterrupt):
        loop.run_forever()
    # A stale stop request would end this run after one iteration, before the timer.
    assert run(loop, asyncio.sleep(0.01, "ran to completion")) == "ran to completion"


# --- debug mode -----------------------------------------------------------------------------


def test_debug_flag(loop):
    assert loop.get_debug() is False
    loop.set_debug(True)
    assert loop.get_debug() is True
    loop.set_debug(False)
    assert loop.get_debug() is False


def test_debug_mode_tracks_coroutine_origins_while_running(loop):
    async def main():
        return sys.get_coroutine_origin_tracking_depth()

    before = sys.get_coroutine_origin_tracking_depth()
    loop.set_debug(True)
    assert run(loop, main()) == constants.DEBUG_STACK_DEPTH
    assert sys.get_coroutine_origin_tracking_depth() == before
    loop.set_debug(False)
    assert run(loop, main()) == before


_DEBUG_SCRIPT = """
import asyncio, sys
import uvloop
loop = uvloop.new_event_loop() if sys.argv[1] == "uvloop" else asyncio.new_event_loop()
print(loop.get_debug())
loop.close()
"""


@pytest.mark.parametrize(
    "python_args, env, expected",
    [
        ([], {}, "False"),
        ([], {"PYTHONASYNCIODEBUG": "1"}, "True"),
        (["-X", "dev"], {}, "True"),
        (["-E"], {"PYTHONASYNCIODEBUG": "1"}, "False"),
    ],
    ids=["default", "PYTHONASYNCIODEBUG", "X-dev", "E-ignores-env"],
)
def test_debug_mode_from_environment(loop_kind, tmp_path, python_args, env, expected):
    script = tmp_path / "debug_flag.py"
    script.write_text(_DEBUG_SCRIPT)
    base_env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONASYNCIODEBUG", "PYTHONDEVMODE")
    }
    result = subprocess.run(
        [sys.executable, *python_args, str(script), loop_kind],
        env={**base_env, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


def test_slow_callback_warning(loop, caplog):
    loop.set_debug(True)
    loop.slow_callback_duration = 0.01

    def slow_callback():
        time.sleep(0.03)

    def fast_callback():
        pass

    loop.call_soon(slow_callback)
    loop.call_soon(fast_callback)
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        run_one_batch(loop)
    messages = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    assert len(messages) == 1, messages
    match = re.fullmatch(r"Executing (<Handle .*>) took (\d+\.\d{3}) seconds", messages[0])
    assert match, messages[0]
    assert match.group(1).startswith(f"<Handle {slow_callback.__qualname__}() at {__file__}:")
    assert 0.03 <= float(match.group(2)) < 1
    assert caplog.records[0].levelno == logging.WARNING


def test_slow_callback_that_raises_is_reported_twice(loop, caplog):
    loop.set_debug(True)
    loop.slow_callback_duration = 0.01

    def slow_failing():
        time.sleep(0.02)
        raise ValueError("slow and failing")

    loop.call_soon(slow_failing)
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        run_one_batch(loop)
    records = [r for r in caplog.records if r.name == "asyncio"]
    assert [r.levelno for r in records] == [logging.ERROR, logging.WARNING]
    assert records[0].getMessage().startswith("Exception in callback ")
    assert records[1].getMessage().startswith("Executing <Handle ")


def test_slow_task_step_warning_names_the_task(loop, caplog):
    loop.set_debug(True)
    loop.slow_callback_duration = 0.01

    async def slow_coroutine():
        time.sleep(0.03)

    with caplog.at_level(logging.WARNING, logger="asyncio"):
        loop.run_until_complete(loop.create_task(slow_coroutine(), name="slowpoke"))
    messages = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    assert len(messages) == 1, messages
    assert re.fullmatch(
        r"Executing <Task .*name='slowpoke'.*slow_coroutine\(\).*> took \d+\.\d{3} seconds",
        messages[0],
    ), messages[0]


def test_no_slow_callback_warning_outside_debug_mode(loop, caplog):
    loop.slow_callback_duration = 0.001
    loop.call_soon(time.sleep, 0.01)
    with caplog.at_level(logging.DEBUG, logger="asyncio"):
        run_one_batch(loop)
    assert [r for r in caplog.records if r.name == "asyncio"] == []


def test_slow_callback_duration_default(loop):
    assert loop.slow_callback_duration == 0.1


def test_debug_mode_rejects_calls_from_other_threads(loop):
    loop.set_debug(True)
    wrong_thread = "Non-thread-safe operation invoked on an event loop other than the current one"

    async def main():
        done = loop.create_future()
        errors = []

        def other_thread():
            attempts = {
                "call_soon": lambda: loop.call_soon(print),
                "call_later": lambda: loop.call_later(1, print),
                "call_at": lambda: loop.call_at(loop.time() + 1, print),
            }
            for name, attempt in attempts.items():
                try:
                    attempt()
                except RuntimeError as exc:
                    errors.append((name, str(exc)))
            # The thread-safe variant is allowed from anywhere.
            loop.call_soon_threadsafe(done.set_result, None)

        thread = threading.Thread(target=other_thread)
        thread.start()
        await done
        thread.join(5)
        return errors

    assert run(loop, main()) == [
        ("call_soon", wrong_thread),
        ("call_later", wrong_thread),
        ("call_at", wrong_thread),
    ]


def test_debug_mode_allows_other_threads_when_not_running(loop):
    loop.set_debug(True)
    handles = []
    thread = threading.Thread(target=lambda: handles.append(loop.call_soon(print)))
    thread.start()
    thread.join(5)
    assert len(handles) == 1
    handles[0].cancel()


@pytest.mark.parametrize(
    "method, schedule",
    [
        ("call_soon", lambda loop, cb: loop.call_soon(cb)),
        ("call_soon_threadsafe", lambda loop, cb: loop.call_soon_threadsafe(cb)),
        ("call_at", lambda loop, cb: loop.call_later(1, cb)),
        ("call_at", lambda loop, cb: loop.call_at(loop.time() + 1, cb)),
    ],
    ids=["call_soon", "call_soon_threadsafe", "call_later", "call_at"],
)
def test_debug_mode_callback_checks(loop, method, schedule):
    async def coroutine_function():
        pass

    loop.set_debug(True)
    with pytest.raises(TypeError, match=rf"^coroutines cannot be used with {method}\(\)$"):
        schedule(loop, coroutine_function)
    coro = coroutine_function()
    try:
        with pytest.raises(TypeError, match=rf"^coroutines cannot be used with {method}\(\)$"):
            schedule(loop, coro)
    finally:
        coro.close()
    with pytest.raises(
        TypeError, match=rf"^a callable object was expected by {method}\(\), got 42$"
    ):
        schedule(loop, 42)


@pytest.mark.parametrize("method", ["call_soon", "call_soon_threadsafe", "call_later", "call_at"])
def test_debug_mode_source_traceback(loop, method):
    loop.set_debug(True)
    delay = {"call_later": (100,), "call_at": (loop.time() + 100,)}.get(method, ())
    handle = getattr(loop, method)(*delay, print); line = _lineno()  # noqa: E702
    handle.cancel()
    # The last frame is the line that scheduled the callback, not the loop's own code.
    frame = handle._source_traceback[-1]
    assert (frame.filename, frame.lineno, frame.name) == (
        __file__,
        line,
        "test_debug_mode_source_traceback",
    )
    assert repr(handle).endswith(f"created at {__file__}:{line}>")


def test_no_source_traceback_outside_debug_mode(loop):
    handle = loop.call_soon(print)
    timer = loop.call_later(1, print)
    assert handle._source_traceback is None
    assert timer._source_traceback is None
    handle.cancel()
    timer.cancel()


def test_debug_mode_task_source_traceback(loop):
    loop.set_debug(True)

    async def coro():
        pass

    task = loop.create_task(coro()); line = _lineno()  # noqa: E702
    frame = task._source_traceback[-1]
    assert (frame.filename, frame.lineno) == (__file__, line)
    loop.run_until_complete(task)


def test_debug_mode_cancelled_handle_keeps_its_repr(loop):
    loop.set_debug(True)

    def kept_callback():
        pass

    handle = loop.call_soon(kept_callback); line = _lineno()  # noqa: E702
    handle.cancel()
    text = repr(handle)
    assert text.startswith(f"<Handle cancelled {kept_callback.__qualname__}() at {__file__}:")
    assert text.endswith(f"created at {__file__}:{line}>")


def test_debug_mode_exception_log_includes_source_traceback(loop, caplog):
    loop.set_debug(True)

    def failing():
        raise ValueError("debug")

    loop.call_soon(failing); line = _lineno()  # noqa: E702
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        run_one_batch(loop)
    messages = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    assert len(messages) == 1
    assert "\nsource_traceback: Object created at (most recent call last):\n" in messages[0]
    assert f'File "{__file__}", line {line}, in ' in messages[0]


def test_debug_mode_handle_traceback_for_errors_reported_inside_a_callback(loop, caplog):
    loop.set_debug(True)

    def reporter():
        loop.call_exception_handler({"message": "reported"})

    loop.call_soon(reporter); line = _lineno()  # noqa: E702
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        run_one_batch(loop)
    messages = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    assert len(messages) == 1
    assert messages[0].startswith("reported\nhandle_traceback: Handle created at")
    assert f'File "{__file__}", line {line}, in ' in messages[0]


def test_debug_mode_close_is_logged(loop, caplog):
    loop.set_debug(True)
    with caplog.at_level(logging.DEBUG, logger="asyncio"):
        loop.close()
    # Formatted lazily, so the message shows the loop as it is now (closed).
    records = [r for r in caplog.records if r.name == "asyncio"]
    assert [(r.levelno, r.msg, r.args) for r in records] == [(logging.DEBUG, "Close %r", (loop,))]
