"""Executors (run_in_executor, default executor, its shutdown) and async generator hooks."""

import asyncio
import concurrent.futures
import gc
import inspect
import sys
import threading
import warnings

import pytest

from conftest import run


def _thread_name(*args):
    return threading.current_thread().name, args


# --- run_in_executor ------------------------------------------------------------------------


def test_run_in_executor_default(loop):
    async def main():
        fut = loop.run_in_executor(None, _thread_name, 1, "two")
        assert isinstance(fut, asyncio.Future)
        return await fut

    name, args = run(loop, main())
    assert args == (1, "two")
    assert name.startswith("asyncio_")
    assert name != threading.current_thread().name


def test_run_in_executor_reuses_default_executor(loop):
    async def main():
        await loop.run_in_executor(None, _thread_name)
        first = loop._default_executor
        await loop.run_in_executor(None, _thread_name)
        return first, loop._default_executor

    first, second = run(loop, main())
    assert isinstance(first, concurrent.futures.ThreadPoolExecutor)
    assert first is second


def test_run_in_executor_custom_executor(loop):
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="custom") as executor:

        async def main():
            return await asyncio.gather(
                *(loop.run_in_executor(executor, _thread_name, i) for i in range(5))
            )

        results = run(loop, main())
    assert [args for _, args in results] == [(i,) for i in range(5)]
    assert {name for name, _ in results} == {"custom_0"}


def test_run_in_executor_propagates_exceptions(loop):
    def fail():
        raise LookupError("in thread")

    async def main():
        with pytest.raises(LookupError, match="in thread"):
            await loop.run_in_executor(None, fail)
        return "ok"

    assert run(loop, main()) == "ok"


def test_run_in_executor_on_closed_loop(loop):
    loop.close()
    with pytest.raises(RuntimeError, match="^Event loop is closed$"):
        loop.run_in_executor(None, print)


def test_run_in_executor_debug_mode_rejects_coroutine_functions(loop):
    async def coroutine_function():
        pass

    loop.set_debug(True)
    with pytest.raises(TypeError, match=r"^coroutines cannot be used with run_in_executor\(\)$"):
        loop.run_in_executor(None, coroutine_function)


def test_set_default_executor(loop):
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="mine") as executor:
        loop.set_default_executor(executor)

        async def main():
            return await loop.run_in_executor(None, _thread_name)

        assert run(loop, main())[0] == "mine_0"


class _InlineExecutor(concurrent.futures.Executor):
    def submit(self, fn, *args, **kwargs):
        fut = concurrent.futures.Future()
        fut.set_result(fn(*args, **kwargs))
        return fut


def test_set_default_executor_not_a_thread_pool(loop):
    if sys.version_info >= (3, 11):
        with pytest.raises(TypeError, match="^executor must be ThreadPoolExecutor instance$"):
            loop.set_default_executor(_InlineExecutor())
    else:
        with pytest.warns(DeprecationWarning, match="not an instance of ThreadPoolExecutor"):
            loop.set_default_executor(_InlineExecutor())

        async def main():
            return await loop.run_in_executor(None, _thread_name)

        assert run(loop, main())[0] == threading.current_thread().name


def test_close_shuts_the_default_executor_down(loop):
    async def main():
        await loop.run_in_executor(None, _thread_name)
        return loop._default_executor

    executor = run(loop, main())
    loop.close()
    assert loop._default_executor is None
    with pytest.raises(RuntimeError, match="cannot schedule new futures after shutdown"):
        executor.submit(print)
    executor.shutdown(wait=True)


# --- shutdown_default_executor ---------------------------------------------------------------


def test_shutdown_default_executor(loop):
    async def main():
        await loop.run_in_executor(None, _thread_name)
        executor = loop._default_executor
        threads = set(executor._threads)
        await loop.shutdown_default_executor()
        return threads

    threads = run(loop, main())
    assert threads and not any(t.is_alive() for t in threads)


def test_shutdown_default_executor_without_executor(loop):
    assert run(loop, loop.shutdown_default_executor()) is None
    assert loop._default_executor is None


def test_run_in_executor_after_shutdown_default_executor(loop):
    run(loop, loop.shutdown_default_executor())
    with pytest.raises(RuntimeError, match="^Executor shutdown has been called$"):
        loop.run_in_executor(None, print)


def test_custom_executor_after_shutdown_default_executor(loop):
    run(loop, loop.shutdown_default_executor())
    with concurrent.futures.ThreadPoolExecutor(1) as executor:

        async def main():
            return await loop.run_in_executor(executor, sum, (1, 2))

        assert run(loop, main()) == 3


def _accepts_shutdown_timeout(loop_kind):
    # asyncio from 3.12; uvloop on every version (a documented difference).
    return sys.version_info >= (3, 12) or loop_kind == "uvloop"


def test_shutdown_default_executor_timeout(loop, loop_kind):
    async def main():
        await loop.run_in_executor(None, _thread_name)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            await loop.shutdown_default_executor(timeout=5)
        return caught

    if not _accepts_shutdown_timeout(loop_kind):
        with pytest.raises(TypeError, match="timeout"):
            run(loop, main())
        return
    assert run(loop, main()) == []
    with pytest.raises(RuntimeError, match="^Executor shutdown has been called$"):
        loop.run_in_executor(None, print)


def _shutdown_timeout_expires(loop_kind):
    if loop_kind == "uvloop":
        return True
    # 3.13's asyncio waits inside `timeouts.timeout(timeout)`; 3.12's only bounds the final
    # thread.join(), after the executor has already finished.
    source = inspect.getsource(asyncio.BaseEventLoop.shutdown_default_executor)
    return "timeouts.timeout(timeout)" in source


def test_shutdown_default_executor_timeout_expires(loop, loop_kind):
    if not _shutdown_timeout_expires(loop_kind):
        pytest.skip("this Python's asyncio does not bound the wait for the executor")
    release = threading.Event()

    async def main():
        job = loop.run_in_executor(None, release.wait, 5)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            start = loop.time()
            await loop.shutdown_default_executor(timeout=0.05)
            elapsed = loop.time() - start
        release.set()
        await job
        await asyncio.sleep(0.1)  # let the shutdown thread report back before the loop closes
        return caught, elapsed

    caught, elapsed = run(loop, main())
    assert elapsed < 2
    assert [(w.category, str(w.message)) for w in caught] == [
        (
            RuntimeWarning,
            "The executor did not finishing joining its threads within 0.05 seconds.",
        )
    ]


# --- async generators -----------------------------------------------------------------------


def test_shutdown_asyncgens_finalizes_unfinished_generator(loop):
    events = []

    async def agen():
        try:
            yield 1
            yield 2
        finally:
            events.append("finally")

    async def main():
        gen = agen()
        assert await gen.__anext__() == 1
        return gen

    gen = run(loop, main())  # keep a reference: not finalized by garbage collection
    assert events == []
    run(loop, loop.shutdown_asyncgens())
    assert events == ["finally"]
    assert gen.ag_frame is None


def test_shutdown_asyncgens_reports_errors(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))

    async def agen():
        try:
            yield 1
        finally:
            raise ValueError("in finally")

    async def main():
        gen = agen()
        await gen.__anext__()
        return gen

    gen = run(loop, main())
    run(loop, loop.shutdown_asyncgens())
    assert len(contexts) == 1
    assert contexts[0]["message"] == (
        f"an error occurred during closing of asynchronous generator {gen!r}"
    )
    assert contexts[0]["asyncgen"] is gen
    assert type(contexts[0]["exception"]) is ValueError


def test_asyncgen_started_after_shutdown_asyncgens_warns(loop):
    async def agen():
        yield 1

    async def main():
        await loop.shutdown_asyncgens()
        gen = agen()
        with pytest.warns(ResourceWarning, match="was scheduled after loop.shutdown_asyncgens"):
            await gen.__anext__()
        await gen.aclose()

    run(loop, main())


def test_garbage_collected_asyncgen_is_closed_by_the_loop(loop):
    events = []

    async def agen():
        try:
            yield 1
            yield 2
        finally:
            events.append(("finally", asyncio.get_running_loop() is loop))

    async def main():
        gen = agen()
        await gen.__anext__()
        del gen
        gc.collect()
        # The finalizer hook schedules gen.aclose() as a task on the loop.
        for _ in range(10):
            await asyncio.sleep(0)
        return events

    assert run(loop, main()) == [("finally", True)]


def test_asyncgen_hooks_installed_during_run_and_restored(loop):
    def my_firstiter(agen):
        pass

    def my_finalizer(agen):
        pass

    async def main():
        return sys.get_asyncgen_hooks()

    saved = sys.get_asyncgen_hooks()
    sys.set_asyncgen_hooks(my_firstiter, my_finalizer)
    try:
        inside = run(loop, main())
        after = sys.get_asyncgen_hooks()
    finally:
        sys.set_asyncgen_hooks(*saved)
    assert inside.firstiter.__self__ is loop
    assert inside.finalizer.__self__ is loop
    assert inside.firstiter.__name__ == "_asyncgen_firstiter_hook"
    assert inside.finalizer.__name__ == "_asyncgen_finalizer_hook"
    assert after == (my_firstiter, my_finalizer)


def test_asyncgen_hooks_restored_after_an_escaping_exception(loop):
    def my_firstiter(agen):
        pass

    def raiser():
        raise KeyboardInterrupt

    saved = sys.get_asyncgen_hooks()
    sys.set_asyncgen_hooks(my_firstiter, None)
    try:
        loop.call_soon(raiser)
        with pytest.raises(KeyboardInterrupt):
            loop.run_forever()
        after = sys.get_asyncgen_hooks()
    finally:
        sys.set_asyncgen_hooks(*saved)
    assert after == (my_firstiter, None)
