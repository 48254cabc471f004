"""Threads: the GIL while the loop waits, call_soon_threadsafe, run_in_executor, cross-thread stop.

The specification is asyncio's base_events.py (`call_soon_threadsafe` writes to the self-pipe,
`_check_thread` in debug mode, `run_in_executor`) and selectors' blocking wait, which releases
the GIL like every blocking system call in CPython.

No absolute speed is required anywhere: what another thread achieves while the loop waits is
compared with what the same thread achieves, in the same test, while the main thread merely
sleeps.
"""

import asyncio
import concurrent.futures
import contextvars
import os
import sys
import threading
import time

import pytest

from conftest import run

PERIOD = 0.3
# The counting thread must reach at least this share of its undisturbed count.
MIN_SHARE = 0.2


class Counter:
    """A thread that increments a counter in a tight Python loop until stopped."""

    def __init__(self):
        self.count = 0
        self.running = True
        self.started = threading.Event()
        self.thread = threading.Thread(target=self._spin, daemon=True)

    def _spin(self):
        self.started.set()
        n = 0
        while self.running:
            n += 1
        self.count = n

    def __enter__(self):
        self.thread.start()
        self.started.wait(10)
        return self

    def __exit__(self, *exc):
        self.running = False
        self.thread.join(10)
        assert not self.thread.is_alive()


def baseline_count():
    """What the counting thread reaches in PERIOD while this thread sleeps (GIL released)."""
    with Counter() as counter:
        time.sleep(PERIOD)
    return counter.count


def assert_not_starved(count, baseline):
    assert baseline > 0
    assert count >= MIN_SHARE * baseline, (
        f"the other thread counted {count} while the loop waited, "
        f"{count / baseline:.1%} of the {baseline} it counts alone"
    )


# --- the GIL is released while the loop blocks ------------------------------------------------


def test_gil_released_while_loop_sleeps(loop):
    baseline = baseline_count()
    with Counter() as counter:
        run(loop, asyncio.sleep(PERIOD))
    assert_not_starved(counter.count, baseline)


def test_gil_released_on_fresh_loops_first_wait(new_loop):
    # The very first blocking poll of a brand-new loop, straight from run_until_complete.
    baseline = baseline_count()
    loop = new_loop()
    with Counter() as counter:
        loop.run_until_complete(asyncio.sleep(PERIOD))
    assert_not_starved(counter.count, baseline)


def test_gil_released_while_waiting_for_fd(loop):
    r, w = os.pipe()
    try:
        baseline = baseline_count()
        fut = loop.create_future()
        loop.add_reader(r, lambda: fut.set_result(os.read(r, 10)))
        with Counter() as counter:

            def write_later():
                time.sleep(PERIOD)
                os.write(w, b"x")

            writer = threading.Thread(target=write_later)
            writer.start()
            assert run(loop, fut) == b"x"
            writer.join()
        loop.remove_reader(r)
    finally:
        os.close(r)
        os.close(w)
    assert_not_starved(counter.count, baseline)


def test_gil_released_while_run_forever_idles_without_timers(loop):
    baseline = baseline_count()
    with Counter() as counter:
        stopper = threading.Timer(PERIOD, loop.call_soon_threadsafe, (loop.stop,))
        stopper.start()
        watchdog = threading.Timer(20, loop.call_soon_threadsafe, (loop.stop,))
        watchdog.start()
        try:
            loop.run_forever()
        finally:
            stopper.cancel()
            watchdog.cancel()
    assert_not_starved(counter.count, baseline)


def test_idle_loop_in_thread_does_not_starve_main_thread(new_loop):
    # The loop blocks in a background thread; the main thread counts.
    def count_in_main():
        n = 0
        deadline = time.monotonic() + PERIOD
        while time.monotonic() < deadline:
            n += 1
        return n

    alone = count_in_main()
    loop = new_loop()
    ready = threading.Event()

    def run_loop():
        loop.call_soon(ready.set)
        loop.run_forever()

    thread = threading.Thread(target=run_loop)
    thread.start()
    try:
        assert ready.wait(10)
        beside_loop = count_in_main()
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
    assert not thread.is_alive()
    assert_not_starved(beside_loop, alone)


# --- call_soon_threadsafe -------------------------------------------------------------------


def test_call_soon_threadsafe_from_many_threads(loop):
    threads_n, calls_n = 16, 1000
    total = threads_n * calls_n
    seen = []
    done = loop.create_future()

    def callback(t, i):
        seen.append((t, i))
        if len(seen) == total:
            done.set_result(None)

    barrier = threading.Barrier(threads_n + 1)
    errors = []

    def producer(t):
        try:
            barrier.wait(10)
            for i in range(calls_n):
                loop.call_soon_threadsafe(callback, t, i)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=producer, args=(t,)) for t in range(threads_n)]
    for thread in threads:
        thread.start()

    async def main():
        await asyncio.sleep(0)
        barrier.wait(10)  # all producers start while the loop is running
        await asyncio.wait_for(done, 30)
        await asyncio.sleep(0.05)  # nothing extra arrives

    try:
        run(loop, main(), timeout=60)
    finally:
        for thread in threads:
            thread.join(10)
    assert errors == []
    assert len(seen) == total
    assert sorted(seen) == [(t, i) for t in range(threads_n) for i in range(calls_n)]
    # Each producer's calls run in the order it made them.
    for t in range(threads_n):
        assert [i for tt, i in seen if tt == t] == list(range(calls_n))


@pytest.mark.parametrize("blocked_on", ["nothing", "far_timer", "fd"])
def test_call_soon_threadsafe_wakes_blocked_run_forever(loop, blocked_on):
    r, w = os.pipe()
    r2, w2 = os.pipe()
    woke = []
    try:
        # Watchdog by another route (an fd), in case the wake-up is lost.
        loop.add_reader(r, loop.stop)
        watchdog = threading.Timer(20, os.write, (w, b"x"))
        watchdog.start()
        if blocked_on == "far_timer":
            loop.call_later(3600, lambda: None)
        elif blocked_on == "fd":
            loop.add_reader(r2, lambda: None)  # never readable

        def wake(*args):
            woke.append((time.monotonic(), args))
            loop.stop()

        sent = []

        def sender():
            time.sleep(0.1)
            sent.append(time.monotonic())
            loop.call_soon_threadsafe(wake, "from", "thread")

        thread = threading.Thread(target=sender)
        thread.start()
        try:
            loop.run_forever()
        finally:
            watchdog.cancel()
            thread.join()
            loop.remove_reader(r)
            loop.remove_reader(r2)
    finally:
        for fd in (r, w, r2, w2):
            os.close(fd)
    assert len(woke) == 1, "call_soon_threadsafe did not wake the blocked loop"
    assert woke[0][1] == ("from", "thread")
    assert woke[0][0] - sent[0] < 5


def test_call_soon_threadsafe_with_context_from_thread(loop):
    var = contextvars.ContextVar("var", default="unset")
    ctx = contextvars.copy_context()
    ctx.run(var.set, "in given context")
    fut = loop.create_future()

    def callback(tag):
        fut.set_result((tag, var.get()))

    async def main():
        thread = threading.Thread(
            target=lambda: loop.call_soon_threadsafe(callback, "tag", context=ctx)
        )
        thread.start()
        result = await asyncio.wait_for(fut, 10)
        thread.join()
        return result

    assert run(loop, main()) == ("tag", "in given context")


def test_call_soon_threadsafe_ping_pong(loop):
    # Many round trips between a thread and an idle loop: every wake-up must get through
    # (a lost one hangs a round trip until its timeout).
    rounds = 2000
    answered = threading.Event()
    failures = []

    def pong():
        answered.set()

    def pinger():
        for i in range(rounds):
            answered.clear()
            loop.call_soon_threadsafe(pong)
            if not answered.wait(5):
                failures.append(i)
                break
        loop.call_soon_threadsafe(loop.stop)

    thread = threading.Thread(target=pinger)
    watchdog = threading.Timer(60, loop.call_soon_threadsafe, (loop.stop,))
    watchdog.start()
    thread.start()
    try:
        loop.run_forever()
    finally:
        watchdog.cancel()
        thread.join(10)
    assert failures == []


def test_call_soon_threadsafe_before_run(loop):
    calls = []
    thread = threading.Thread(target=loop.call_soon_threadsafe, args=(calls.append, "queued"))
    thread.start()
    thread.join()
    run(loop, asyncio.sleep(0))
    assert calls == ["queued"]


def test_call_soon_threadsafe_on_closed_loop_raises(loop):
    loop.close()
    outcome = []

    def target():
        try:
            loop.call_soon_threadsafe(print)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    assert len(outcome) == 1
    assert isinstance(outcome[0], RuntimeError)
    assert str(outcome[0]) == "Event loop is closed"


# --- a loop in another thread ---------------------------------------------------------------


@pytest.fixture
def loop_in_thread(loop):
    """`loop`, running run_forever in a background thread for the test."""
    started = threading.Event()
    errors = []

    def target():
        asyncio.set_event_loop(loop)
        loop.call_soon(started.set)
        try:
            loop.run_forever()
        except BaseException as exc:
            errors.append(exc)
        finally:
            asyncio.set_event_loop(None)

    thread = threading.Thread(target=target)
    thread.start()
    assert started.wait(10)
    yield loop
    if loop.is_running():
        loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    assert not thread.is_alive()
    assert errors == []


def test_stop_loop_in_thread_via_call_soon_threadsafe(loop_in_thread):
    loop = loop_in_thread
    assert loop.is_running()
    loop.call_soon_threadsafe(loop.stop)
    deadline = time.monotonic() + 10
    while loop.is_running() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not loop.is_running()


def test_stop_from_other_thread_ends_run_forever(loop):
    loop.call_later(30, lambda: None)  # a far timer: the loop blocks on it
    stopper = threading.Timer(0.1, loop.call_soon_threadsafe, (loop.stop,))
    stopper.start()
    watchdog = threading.Timer(20, loop.call_soon_threadsafe, (loop.stop,))
    watchdog.start()
    started = time.monotonic()
    try:
        loop.run_forever()
    finally:
        stopper.cancel()
        watchdog.cancel()
    assert time.monotonic() - started < 5
    assert not loop.is_running()


def test_run_coroutine_threadsafe_many(loop_in_thread):
    loop = loop_in_thread

    async def work(i):
        await asyncio.sleep(0.001 * (i % 5))
        return i * 2

    futures = [asyncio.run_coroutine_threadsafe(work(i), loop) for i in range(300)]
    assert [f.result(timeout=30) for f in futures] == [i * 2 for i in range(300)]


def test_run_coroutine_threadsafe_from_many_threads(loop_in_thread):
    loop = loop_in_thread

    async def echo(x):
        await asyncio.sleep(0)
        return x

    def client(t):
        return [
            asyncio.run_coroutine_threadsafe(echo((t, i)), loop).result(timeout=30)
            for i in range(100)
        ]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(client, range(8)))
    assert results == [[(t, i) for i in range(100)] for t in range(8)]


def test_debug_mode_rejects_call_soon_from_other_thread(loop):
    # base_events._check_thread, in debug mode: call_soon & co. from a thread that is not the
    # loop's are refused; call_soon_threadsafe is the way.
    loop.set_debug(True)
    started = threading.Event()

    def target():
        loop.call_soon(started.set)
        loop.run_forever()

    thread = threading.Thread(target=target)
    thread.start()
    try:
        assert started.wait(10)
        message = "Non-thread-safe operation invoked on an event loop other than the current one"
        with pytest.raises(RuntimeError, match=message):
            loop.call_soon(print)
        with pytest.raises(RuntimeError, match=message):
            loop.call_later(1, print)
        with pytest.raises(RuntimeError, match=message):
            loop.call_at(loop.time() + 1, print)
        calls = []
        done = threading.Event()
        loop.call_soon_threadsafe(lambda: (calls.append("ok"), done.set()))
        assert done.wait(10)
        assert calls == ["ok"]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
    assert not thread.is_alive()


# --- run_in_executor ------------------------------------------------------------------------


def test_run_in_executor_many_concurrent_jobs(loop):
    def job(i):
        time.sleep(0.002)
        return i * i, threading.get_ident()

    async def main():
        return await asyncio.gather(*(loop.run_in_executor(None, job, i) for i in range(500)))

    try:
        results = run(loop, main(), timeout=60)
    finally:
        run(loop, loop.shutdown_default_executor())
    assert [r for r, _ in results] == [i * i for i in range(500)]
    assert threading.get_ident() not in {ident for _, ident in results}
    assert len({ident for _, ident in results}) > 1  # really concurrent


def test_run_in_executor_custom_pool_runs_jobs_in_parallel(loop):
    # 16 jobs that each wait for all the others: they only finish if all run at once, and the
    # loop must keep serving the futures meanwhile.
    n = 16
    barrier = threading.Barrier(n)

    def job(i):
        barrier.wait(20)
        return i

    async def main():
        with concurrent.futures.ThreadPoolExecutor(max_workers=n) as pool:
            return await asyncio.gather(*(loop.run_in_executor(pool, job, i) for i in range(n)))

    assert run(loop, main(), timeout=30) == list(range(n))


def test_run_in_executor_exception_and_threadsafe_callbacks(loop):
    calls = []

    def job(i):
        if i % 10 == 3:
            raise ValueError(i)
        loop.call_soon_threadsafe(calls.append, i)
        return i

    async def main():
        return await asyncio.gather(
            *(loop.run_in_executor(None, job, i) for i in range(200)), return_exceptions=True
        )

    try:
        results = run(loop, main(), timeout=60)
        run(loop, asyncio.sleep(0.05))
    finally:
        run(loop, loop.shutdown_default_executor())
    for i, result in enumerate(results):
        if i % 10 == 3:
            assert isinstance(result, ValueError) and result.args == (i,)
        else:
            assert result == i
    assert sorted(calls) == [i for i in range(200) if i % 10 != 3]


def test_executor_jobs_run_while_loop_idles(loop):
    # The loop waits on the executor's future; the worker thread needs the GIL to finish.
    def job():
        n = 0
        for _ in range(200_000):
            n += 1
        return n

    async def main():
        return await asyncio.wait_for(loop.run_in_executor(None, job), 30)

    try:
        assert run(loop, main(), timeout=40) == 200_000
    finally:
        run(loop, loop.shutdown_default_executor())


def test_cross_thread_cancel_waits_for_a_running_threadsafe_callback(loop, loop_kind):
    """Once `cancel()` of a call_soon_threadsafe handle returns in another thread, the callback
    is neither running nor going to run (asyncio's _ThreadSafeHandle from 3.14 on)."""
    started = threading.Event()
    events = []

    def callback():
        started.set()
        time.sleep(0.3)  # GIL released: the other thread's cancel() runs meanwhile
        events.append("callback done")

    def cancel_while_running(handle):
        assert started.wait(5)
        handle.cancel()
        events.append("cancel returned")

    async def main():
        handle = loop.call_soon_threadsafe(callback)
        thread = threading.Thread(target=cancel_while_running, args=(handle,))
        thread.start()
        await loop.run_in_executor(None, thread.join)
        return handle.cancelled()

    assert run(loop, main()) is True
    if loop_kind == "asyncio" and sys.version_info < (3, 14):
        # asyncio's race before 3.14: cancel() returns while the callback still runs.
        assert events == ["cancel returned", "callback done"]
    else:
        assert events == ["callback done", "cancel returned"]
