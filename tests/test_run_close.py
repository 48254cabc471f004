"""run_forever, run_until_complete, stop, close, is_running and the loop's repr."""

import asyncio
import gc
import re
import warnings
import weakref

import pytest

from conftest import LOOP_KINDS, run


# --- run_forever / stop ---------------------------------------------------------------------


def test_stop_before_run_forever_runs_one_iteration(loop):
    calls = []

    def first():
        calls.append("first")
        loop.call_soon(calls.append, "next iteration")

    loop.call_soon(first)
    loop.call_soon(calls.append, "second")
    loop.stop()
    loop.run_forever()
    assert calls == ["first", "second"]
    assert loop.is_running() is False
    # The stop request was consumed: the next run needs its own stop.
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert calls == ["first", "second", "next iteration"]


def test_stop_with_nothing_scheduled_returns_at_once(loop):
    loop.call_later(3600, lambda: None)
    loop.stop()
    loop.run_forever()  # must not wait for the timer
    assert loop.is_running() is False


def test_stop_from_callback_finishes_the_current_batch(loop):
    calls = []

    def stopper():
        calls.append("stop")
        loop.stop()
        loop.call_soon(calls.append, "scheduled by stopper")

    loop.call_soon(calls.append, "before")
    loop.call_soon(stopper)
    loop.call_soon(calls.append, "after")
    loop.run_forever()
    assert calls == ["before", "stop", "after"]
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert calls == ["before", "stop", "after", "scheduled by stopper"]


def test_run_forever_twice(loop):
    calls = []
    for i in range(2):
        loop.call_soon(calls.append, i)
        loop.call_soon(loop.stop)
        loop.run_forever()
    assert calls == [0, 1]


def test_stop_twice_stops_once(loop):
    calls = []

    def stop_twice():
        loop.stop()
        loop.stop()
        loop.call_soon(calls.append, "after")

    loop.call_soon(stop_twice)
    loop.run_forever()
    assert calls == []
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert calls == ["after"]


def test_is_running(loop):
    seen = []
    assert loop.is_running() is False
    loop.call_soon(lambda: seen.append(loop.is_running()))
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert seen == [True]
    assert loop.is_running() is False


def test_get_running_loop_inside_and_outside(loop):
    async def main():
        return asyncio.get_running_loop(), asyncio.get_event_loop()

    assert run(loop, main()) == (loop, loop)
    with pytest.raises(RuntimeError, match="no running event loop"):
        asyncio.get_running_loop()
    assert asyncio._get_running_loop() is None


def test_callback_sees_running_loop(loop):
    seen = []
    loop.call_soon(lambda: seen.append(asyncio.get_running_loop()))
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert seen == [loop]


# --- run_until_complete ---------------------------------------------------------------------


def test_run_until_complete_with_a_future(loop):
    fut = loop.create_future()
    loop.call_later(0.01, fut.set_result, 42)
    assert loop.run_until_complete(fut) == 42
    assert loop.is_running() is False


def test_run_until_complete_with_a_coroutine(loop):
    async def coro(x):
        await asyncio.sleep(0.001)
        return x * 2

    assert loop.run_until_complete(coro(21)) == 42


def test_run_until_complete_with_a_done_future(loop):
    fut = loop.create_future()
    fut.set_result("done")
    assert loop.run_until_complete(fut) == "done"


def test_run_until_complete_raises_the_exception(loop):
    async def coro():
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        loop.run_until_complete(coro())
    # The loop is usable afterwards.
    assert run(loop, asyncio.sleep(0, "again")) == "again"


def test_run_until_complete_with_task_of_another_loop(new_loop):
    loop, other = new_loop(), new_loop()

    async def coro():
        return "other"

    task = other.create_task(coro())
    with pytest.raises(ValueError, match="The future belongs to a different loop"):
        loop.run_until_complete(task)
    assert other.run_until_complete(task) == "other"


def test_run_until_complete_with_non_awaitable(loop):
    with pytest.raises(TypeError, match="An asyncio.Future, a coroutine or an awaitable is required"):
        loop.run_until_complete(42)


def test_loop_stopped_before_future_completed(loop):
    fut = loop.create_future()
    loop.call_soon(loop.stop)
    with pytest.raises(RuntimeError, match=r"^Event loop stopped before Future completed\.$"):
        loop.run_until_complete(fut)
    assert not fut.done()
    # Done callbacks were removed: completing the future later does not stop a later run.
    fut.set_result(None)
    calls = []
    loop.call_soon(calls.append, 1)
    loop.call_soon(loop.call_soon, calls.append, 2)
    loop.call_later(0.01, loop.stop)
    loop.run_forever()
    assert calls == [1, 2]


def test_stop_before_run_until_complete(loop):
    fut = loop.create_future()
    loop.stop()
    with pytest.raises(RuntimeError, match="Event loop stopped before Future completed."):
        loop.run_until_complete(fut)


def test_nested_run_until_complete_on_same_loop(loop):
    async def main():
        inner = loop.create_future()
        with pytest.raises(RuntimeError, match="^This event loop is already running$"):
            loop.run_until_complete(inner)
        with pytest.raises(RuntimeError, match="^This event loop is already running$"):
            loop.run_forever()
        return "outer"

    assert run(loop, main()) == "outer"


@pytest.mark.parametrize("method", ["run_forever", "run_until_complete"])
def test_running_another_loop_inside_a_callback(new_loop, method):
    loop_a, loop_b = new_loop(), new_loop()
    # Should loop B run after all, it stops at once instead of hanging the test.
    done = loop_b.create_future()
    loop_b.call_soon(done.set_result, None)
    loop_b.call_soon(loop_b.stop)
    attempt = {
        "run_forever": loop_b.run_forever,
        "run_until_complete": lambda: loop_b.run_until_complete(done),
    }[method]
    errors = []

    def cb():
        try:
            attempt()
        except RuntimeError as exc:
            errors.append(str(exc))

    loop_a.call_soon(cb)
    loop_a.call_soon(loop_a.stop)
    loop_a.run_forever()
    assert errors == ["Cannot run the event loop while another loop is running"]
    assert loop_b.is_running() is False
    assert done.done() is False
    # Loop B still works once A is no longer running.
    assert loop_b.run_until_complete(done) is None


def test_another_loop_runs_after_the_first_stops(new_loop):
    loop_a, loop_b = new_loop(), new_loop()
    assert loop_a.run_until_complete(asyncio.sleep(0, "a")) == "a"
    assert loop_b.run_until_complete(asyncio.sleep(0, "b")) == "b"
    assert loop_a.run_until_complete(asyncio.sleep(0, "a2")) == "a2"


# --- close ----------------------------------------------------------------------------------


def test_close(loop):
    assert loop.is_closed() is False
    loop.close()
    assert loop.is_closed() is True
    loop.close()  # idempotent
    assert loop.is_closed() is True


def test_close_from_a_callback_is_refused(loop):
    errors = []

    def try_close():
        try:
            loop.close()
        except RuntimeError as exc:
            errors.append(str(exc))

    loop.call_soon(try_close)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert errors == ["Cannot close a running event loop"]
    assert loop.is_closed() is False
    assert run(loop, asyncio.sleep(0, "still usable")) == "still usable"


def test_close_from_a_coroutine_is_refused(loop):
    async def main():
        with pytest.raises(RuntimeError, match="^Cannot close a running event loop$"):
            loop.close()
        return loop.is_closed()

    assert run(loop, main()) is False


def test_run_after_close(loop):
    async def coro():
        pass

    loop.close()
    with pytest.raises(RuntimeError, match="^Event loop is closed$"):
        loop.run_forever()
    c = coro()
    try:
        with pytest.raises(RuntimeError, match="^Event loop is closed$"):
            loop.run_until_complete(c)
    finally:
        c.close()


def test_close_drops_pending_callbacks_and_timers(loop):
    class Callback:
        def __call__(self):
            raise AssertionError("must not run")

    soon, later = Callback(), Callback()
    refs = [weakref.ref(soon), weakref.ref(later)]
    loop.call_soon(soon)
    loop.call_later(0.001, later)
    del soon, later
    loop.close()
    gc.collect()
    assert [r() for r in refs] == [None, None]


def test_reentrant_callback_stops_schedules_and_tries_to_close(loop):
    calls = []

    def reentrant():
        loop.call_soon(calls.append, "scheduled")
        loop.stop()
        try:
            loop.close()
        except RuntimeError as exc:
            calls.append(str(exc))
        calls.append(("running", loop.is_running(), "closed", loop.is_closed()))

    loop.call_soon(reentrant)
    loop.run_forever()
    assert calls == [
        "Cannot close a running event loop",
        ("running", True, "closed", False),
    ]
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert calls[-1] == "scheduled"
    loop.close()
    assert loop.is_closed() is True


@pytest.mark.allow_fd_leak
def test_unclosed_loop_warns_when_collected(loop_kind):
    # The fixtures would keep the loop alive, so it is made directly; the collected loop closes
    # itself in __del__.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        unclosed = LOOP_KINDS[loop_kind]()
        text = repr(unclosed)
        del unclosed
        gc.collect()
    resource = [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert [str(w.message) for w in resource] == [f"unclosed event loop {text}"]
    assert resource[0].source.is_closed() is True


def test_collected_unclosed_loop_releases_its_descriptors(loop_kind):
    """Same as above, but the autouse fd check verifies nothing stays open."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        unclosed = LOOP_KINDS[loop_kind]()
        unclosed.run_until_complete(asyncio.sleep(0))
        ref = weakref.ref(unclosed)
        del unclosed
        gc.collect()
    assert ref() is None


def test_closed_loop_does_not_warn_when_collected(loop_kind):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        closed = LOOP_KINDS[loop_kind]()
        closed.close()
        del closed
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


# --- repr -----------------------------------------------------------------------------------


def test_repr(loop):
    name = type(loop).__name__
    pattern = re.compile(r"<(\w+) running=(True|False) closed=(True|False) debug=(True|False)>")
    assert pattern.fullmatch(repr(loop)).groups() == (name, "False", "False", "False")

    async def main():
        return repr(loop)

    assert run(loop, main()) == f"<{name} running=True closed=False debug=False>"
    loop.set_debug(True)
    assert repr(loop) == f"<{name} running=False closed=False debug=True>"
    loop.close()
    assert repr(loop) == f"<{name} running=False closed=True debug=True>"


def test_repr_class_name(loop, loop_kind):
    # The format is asyncio's; the class name is each implementation's own.
    expected = {"asyncio": "_UnixSelectorEventLoop", "uvloop": "Loop"}[loop_kind]
    assert repr(loop).startswith(f"<{expected} ")
