"""Futures and tasks on the loop: create_future, create_task, task factories, and asyncio's
task machinery (gather, cancellation, wait_for, timeouts, sleep) running on it."""

import asyncio
import contextvars
import inspect
import re
import sys

import pytest

from conftest import run


async def _return(value):
    return value


# --- create_future --------------------------------------------------------------------------


def test_create_future(loop):
    fut = loop.create_future()
    assert isinstance(fut, asyncio.Future)
    assert asyncio.isfuture(fut)
    assert fut.get_loop() is loop
    assert fut.done() is False
    with pytest.raises(asyncio.InvalidStateError):
        fut.result()
    fut.cancel()


def test_create_future_on_closed_loop(loop):
    # asyncio does not check: the future just never gets its callbacks run.
    loop.close()
    fut = loop.create_future()
    assert fut.get_loop() is loop
    fut.cancel()


def test_future_done_callbacks_run_in_registration_order_on_the_loop(loop):
    fut = loop.create_future()
    calls = []
    for i in range(5):
        fut.add_done_callback(lambda f, i=i: calls.append((i, f.result())))
    fut.set_result("r")
    assert calls == []  # scheduled with call_soon, not run by set_result
    run(loop, asyncio.sleep(0))
    assert calls == [(i, "r") for i in range(5)]


def test_future_done_callbacks_interleave_with_call_soon_in_schedule_order(loop):
    fut = loop.create_future()
    calls = []
    fut.add_done_callback(lambda f: calls.append("done-1"))
    loop.call_soon(calls.append, "soon-1")
    fut.set_result(None)
    loop.call_soon(calls.append, "soon-2")
    fut.add_done_callback(lambda f: calls.append("done-2"))  # already done: scheduled now
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert calls == ["soon-1", "done-1", "soon-2", "done-2"]


def test_future_done_callback_context(loop):
    var = contextvars.ContextVar("var", default="default")
    ctx = contextvars.copy_context()
    ctx.run(var.set, "ctx")
    seen = []
    fut = loop.create_future()
    fut.add_done_callback(lambda f: seen.append(var.get()), context=ctx)
    fut.add_done_callback(lambda f: seen.append(var.get()))
    fut.set_result(None)
    run(loop, asyncio.sleep(0))
    assert seen == ["ctx", "default"]


def test_remove_done_callback(loop):
    fut = loop.create_future()
    calls = []

    def cb(f):
        calls.append("cb")

    fut.add_done_callback(cb)
    fut.add_done_callback(cb)
    assert fut.remove_done_callback(cb) == 2
    fut.set_result(1)
    run(loop, asyncio.sleep(0))
    assert calls == []


def test_awaiting_a_future_resolved_from_a_timer(loop):
    async def main():
        fut = loop.create_future()
        loop.call_later(0.01, fut.set_result, "late")
        return await fut

    assert run(loop, main()) == "late"


def test_future_exception(loop):
    async def main():
        fut = loop.create_future()
        loop.call_soon(fut.set_exception, KeyError("k"))
        with pytest.raises(KeyError):
            await fut
        return type(fut.exception())

    assert run(loop, main()) is KeyError


# --- create_task ----------------------------------------------------------------------------


def test_create_task(loop):
    async def main():
        task = loop.create_task(_return(5))
        assert isinstance(task, asyncio.Task)
        assert task.get_loop() is loop
        assert re.fullmatch(r"Task-\d+", task.get_name())
        assert asyncio.current_task() is not task
        assert task in asyncio.all_tasks()
        return await task

    assert run(loop, main()) == 5


def test_create_task_before_run(loop):
    task = loop.create_task(_return("early"))
    assert task.done() is False
    assert loop.run_until_complete(task) == "early"


def test_create_task_name(loop):
    async def main():
        named = loop.create_task(_return(1), name="my-task")
        numbered = loop.create_task(_return(2), name=123)
        await asyncio.gather(named, numbered)
        return named.get_name(), numbered.get_name()

    assert run(loop, main()) == ("my-task", "123")


def test_create_task_runs_in_copy_of_current_context(loop):
    var = contextvars.ContextVar("var", default="default")

    async def child():
        seen = var.get()
        var.set("child")
        return seen

    async def main():
        var.set("parent")
        task = loop.create_task(child())
        var.set("parent changed after create_task")
        seen = await task
        return seen, var.get()

    assert run(loop, main()) == ("parent", "parent changed after create_task")


@pytest.mark.skipif(sys.version_info < (3, 11), reason="create_task(context=) is 3.11+")
def test_create_task_with_context(loop):
    var = contextvars.ContextVar("var", default="default")
    ctx = contextvars.copy_context()
    ctx.run(var.set, "given")

    async def child():
        seen = var.get()
        var.set("set by task")
        return seen

    async def main():
        return await loop.create_task(child(), context=ctx)

    assert run(loop, main()) == "given"
    assert ctx[var] == "set by task"
    assert var.get() == "default"


@pytest.mark.skipif(sys.version_info >= (3, 11), reason="create_task(context=) exists")
def test_create_task_context_unsupported_before_311(loop):
    coro = _return(1)
    try:
        with pytest.raises(TypeError, match="context"):
            loop.create_task(coro, context=contextvars.copy_context())
    finally:
        coro.close()


def _create_task_takes_eager_start(loop_kind):
    # asyncio's loop.create_task has no eager_start before 3.14 (only Task has, from 3.12);
    # uvloop accepts it from 3.12, where asyncio.Task supports it.
    if "eager_start" in inspect.signature(asyncio.BaseEventLoop.create_task).parameters:
        return True
    return loop_kind == "uvloop" and sys.version_info >= (3, 12)


def test_create_task_eager_start(loop, loop_kind):
    if not _create_task_takes_eager_start(loop_kind):
        coro = _return(1)
        try:
            with pytest.raises(TypeError, match="eager_start"):
                loop.create_task(coro, eager_start=True)
        finally:
            coro.close()
        return

    events = []

    async def child(name):
        events.append(f"{name} start")
        await asyncio.sleep(0)
        events.append(f"{name} end")
        return name

    async def main():
        eager = loop.create_task(child("eager"), eager_start=True)
        events.append("after eager create_task")
        lazy = loop.create_task(child("lazy"), eager_start=False)
        events.append("after lazy create_task")
        return await asyncio.gather(eager, lazy)

    assert run(loop, main()) == ["eager", "lazy"]
    # As asyncio.Task(..., eager_start=True) orders them on the stock loop: the eager task's
    # first step ran inside create_task, so its wake-up is queued before the lazy task's start.
    assert events == [
        "eager start",
        "after eager create_task",
        "after lazy create_task",
        "eager end",
        "lazy start",
        "lazy end",
    ]


def test_create_task_eager_start_finishing_synchronously(loop, loop_kind):
    if not _create_task_takes_eager_start(loop_kind):
        pytest.skip("this loop's create_task() has no eager_start on this Python")

    async def main():
        task = loop.create_task(_return("sync"), eager_start=True)
        # Completed inside create_task, never scheduled.
        assert task.done() is True
        assert task not in asyncio.all_tasks()
        return task.result()

    assert run(loop, main()) == "sync"


def test_create_task_eager_start_not_running_loop_is_lazy(loop, loop_kind):
    if not _create_task_takes_eager_start(loop_kind):
        pytest.skip("this loop's create_task() has no eager_start on this Python")
    events = []

    async def child():
        events.append("ran")
        return "lazy"

    # asyncio.Task only starts eagerly when its loop is running.
    task = loop.create_task(child(), eager_start=True)
    assert events == [] and task.done() is False
    assert loop.run_until_complete(task) == "lazy"


def test_create_task_rejects_non_coroutine(loop):
    with pytest.raises(TypeError, match="a coroutine was expected, got 42"):
        loop.create_task(42)


# --- task factories -------------------------------------------------------------------------


def test_task_factory(loop):
    calls = []

    def factory(factory_loop, coro, **kwargs):
        calls.append((factory_loop, kwargs))
        task = asyncio.Task(coro, loop=factory_loop)
        task.made_by_factory = True
        return task

    assert loop.get_task_factory() is None
    loop.set_task_factory(factory)
    assert loop.get_task_factory() is factory

    async def main():
        a = loop.create_task(_return("a"))
        b = asyncio.ensure_future(_return("b"))
        c = asyncio.create_task(_return("c"), name="named")
        assert (a.made_by_factory, b.made_by_factory, c.made_by_factory) == (True,) * 3
        assert c.get_name() == "named"
        return await asyncio.gather(a, b, c)

    # run() itself creates tasks (for main and wait_for) through the factory too.
    assert run(loop, main()) == ["a", "b", "c"]
    assert all(call == (loop, {}) for call in calls)
    assert len(calls) >= 3

    loop.set_task_factory(None)
    assert loop.get_task_factory() is None
    task = loop.create_task(_return("plain"))
    assert not hasattr(task, "made_by_factory")
    assert loop.run_until_complete(task) == "plain"


@pytest.mark.skipif(sys.version_info < (3, 11), reason="create_task(context=) is 3.11+")
def test_task_factory_receives_context(loop):
    received = []

    def factory(factory_loop, coro, **kwargs):
        received.append(kwargs)
        return asyncio.Task(coro, loop=factory_loop, **kwargs)

    loop.set_task_factory(factory)
    ctx = contextvars.copy_context()
    task = loop.create_task(_return(1), context=ctx)
    plain = loop.create_task(_return(2))
    assert received == [{"context": ctx}, {}]
    assert loop.run_until_complete(asyncio.gather(task, plain)) == [1, 2]


@pytest.mark.skipif(
    "_set_task_name" not in inspect.getsource(asyncio.BaseEventLoop.create_task),
    reason="this asyncio calls set_name() on what the factory returns: it must be a Task",
)
def test_task_factory_returning_a_future(loop):
    def factory(factory_loop, coro):
        coro.close()
        fut = factory_loop.create_future()
        fut.set_result("from factory")
        return fut

    loop.set_task_factory(factory)
    fut = loop.create_task(_return(1))
    assert isinstance(fut, asyncio.Future) and not isinstance(fut, asyncio.Task)
    assert fut.result() == "from factory"


def test_set_task_factory_rejects_non_callable(loop):
    with pytest.raises(TypeError, match="^task factory must be a callable or None$"):
        loop.set_task_factory(42)
    assert loop.get_task_factory() is None


# --- asyncio's machinery on the loop --------------------------------------------------------


def test_gather_1000_tasks(loop):
    async def work(i):
        await asyncio.sleep(0.001 * (i % 5))
        return i * i

    async def main():
        return await asyncio.gather(*(work(i) for i in range(1000)))

    assert run(loop, main()) == [i * i for i in range(1000)]


def test_gather_return_exceptions(loop):
    async def fail():
        raise ValueError("x")

    async def main():
        return await asyncio.gather(_return(1), fail(), return_exceptions=True)

    result = run(loop, main())
    assert result[0] == 1 and type(result[1]) is ValueError


def test_task_cancel(loop):
    events = []

    async def child():
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError as exc:
            events.append(("cancelled", exc.args))
            raise

    async def main():
        task = loop.create_task(child())
        await asyncio.sleep(0)
        assert task.cancel("reason") is True
        with pytest.raises(asyncio.CancelledError):
            await task
        assert task.cancelled() is True
        assert task.cancel() is False  # already done
        return events

    assert run(loop, main()) == [("cancelled", ("reason",))]


def test_cancel_task_before_it_starts(loop):
    ran = []

    async def child():
        ran.append(True)

    async def main():
        task = loop.create_task(child())
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return ran

    assert run(loop, main()) == []


def test_cancelling_gather_cancels_children(loop):
    async def main():
        children = [loop.create_task(asyncio.sleep(3600)) for _ in range(10)]
        gathered = asyncio.gather(*children)
        await asyncio.sleep(0)
        gathered.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gathered
        return [c.cancelled() for c in children]

    assert run(loop, main()) == [True] * 10


def test_shield(loop):
    async def main():
        inner = loop.create_task(asyncio.sleep(0.01, "inner"))
        outer = asyncio.shield(inner)
        outer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await outer
        return await inner

    assert run(loop, main()) == "inner"


def test_wait_for_timeout(loop):
    cancelled = []

    async def slow():
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def main():
        start = loop.time()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(slow(), 0.05)
        return loop.time() - start

    elapsed = run(loop, main())
    assert 0.05 <= elapsed < 2
    assert cancelled == [True]


def test_wait_for_completes_in_time(loop):
    async def main():
        return await asyncio.wait_for(asyncio.sleep(0.01, "ok"), 5)

    assert run(loop, main()) == "ok"


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.timeout is 3.11+")
def test_asyncio_timeout(loop):
    async def main():
        start = loop.time()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05) as cm:
                await asyncio.sleep(3600)
        assert cm.expired() is True
        async with asyncio.timeout(5) as cm2:
            await asyncio.sleep(0)
        assert cm2.expired() is False
        return loop.time() - start

    assert 0.05 <= run(loop, main()) < 2


def test_wait_first_completed(loop):
    async def main():
        fast = loop.create_task(asyncio.sleep(0.01, "fast"))
        slow = loop.create_task(asyncio.sleep(3600))
        done, pending = await asyncio.wait({fast, slow}, return_when=asyncio.FIRST_COMPLETED)
        slow.cancel()
        return done == {fast}, pending == {slow}, fast.result()

    assert run(loop, main()) == (True, True, "fast")


@pytest.mark.parametrize("delay", [0, -1, 0.001, 0.02, 0.1])
def test_sleep(loop, delay):
    async def main():
        start = loop.time()
        result = await asyncio.sleep(delay, result=delay)
        return result, loop.time() - start

    result, elapsed = run(loop, main())
    assert result == delay
    assert max(delay, 0) <= elapsed < max(delay, 0) + 1


def test_sleep_zero_yields_once(loop):
    events = []

    async def a():
        events.append("a1")
        await asyncio.sleep(0)
        events.append("a2")

    async def b():
        events.append("b1")
        await asyncio.sleep(0)
        events.append("b2")

    async def main():
        await asyncio.gather(a(), b())

    run(loop, main())
    assert events == ["a1", "b1", "a2", "b2"]


def test_sleeps_wake_in_deadline_order(loop):
    order = []

    async def sleeper(delay):
        await asyncio.sleep(delay)
        order.append(delay)

    async def main():
        await asyncio.gather(*(sleeper(d) for d in (0.03, 0.01, 0.02, 0.0)))

    run(loop, main())
    assert order == [0.0, 0.01, 0.02, 0.03]


def test_current_task_and_all_tasks(loop):
    async def main():
        me = asyncio.current_task()
        other = loop.create_task(asyncio.sleep(0))
        tasks = asyncio.all_tasks()
        await other
        return me, other, tasks

    me, other, tasks = run(loop, main())
    assert isinstance(me, asyncio.Task)
    assert me in tasks and other in tasks
    assert asyncio.all_tasks(loop) == set()
