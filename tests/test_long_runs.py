"""Long runs: a million callbacks, hundreds of thousands of timers and tasks, no memory growth.

Memory is compared with itself: each test runs a warm-up first (caches, free lists, the
ready queue's and the timer heap's capacity all reach their working size), measures, runs the
bulk, and measures again. Two measures: the resident set size (catches native leaks, e.g. in
Rust collections or libuv) and `sys.getallocatedblocks()` (catches any Python object leaked per
callback, however small). Nothing here depends on speed.
"""

import asyncio
import ctypes
import ctypes.util
import gc
import os
import socket
import sys

import pytest

from conftest import run

# Generous: a leak of one small object per callback over these runs is far bigger.
MAX_RSS_GROWTH = 10 * 1024 * 1024
MAX_BLOCK_GROWTH = 20_000

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

try:
    _malloc_trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
except (OSError, AttributeError):  # not glibc
    _malloc_trim = None


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE_SIZE


class Memory:
    def __init__(self):
        gc.collect()
        if _malloc_trim is not None:
            # Hand free heap pages back to the system, so that the resident size counts memory
            # in use rather than the allocator's fragmentation.
            _malloc_trim(0)
        self.rss = rss_bytes()
        self.blocks = sys.getallocatedblocks()

    def assert_no_growth_since(self, before, what):
        rss_growth = self.rss - before.rss
        block_growth = self.blocks - before.blocks
        assert rss_growth < MAX_RSS_GROWTH, (
            f"{what}: resident memory grew by {rss_growth / 2**20:.1f} MiB"
        )
        assert block_growth < MAX_BLOCK_GROWTH, (
            f"{what}: {block_growth} more Python memory blocks allocated"
        )


# --- callbacks ------------------------------------------------------------------------------


class Chains:
    """`width` self-rescheduling call_soon chains; every 1000th callback also schedules a
    burst of 100 one-shot callbacks (so the ready queue grows and shrinks)."""

    def __init__(self, loop, width=100):
        self.loop = loop
        self.width = width
        self.count = 0
        self.burst_count = 0

    def run(self, n):
        loop = self.loop
        target = self.count + n
        done = loop.create_future()
        live = [self.width]

        def burst(i):
            self.burst_count += 1

        def step(token):
            self.count += 1
            if self.count % 1000 == 0:
                for i in range(100):
                    loop.call_soon(burst, i)
            if self.count < target:
                loop.call_soon(step, token)
            else:
                live[0] -= 1
                if live[0] == 0:
                    done.set_result(None)

        for token in range(self.width):
            loop.call_soon(step, token)
        run(loop, done, timeout=100)
        run(loop, asyncio.sleep(0))  # let the last bursts run
        # Each chain finishes with one overshooting step at most.
        assert target <= self.count < target + self.width


@pytest.mark.timeout(120)
def test_million_callbacks_without_memory_growth(loop):
    chains = Chains(loop)
    chains.run(100_000)  # warm-up
    before = Memory()
    chains.run(900_000)
    after = Memory()
    assert chains.count >= 1_000_000
    assert chains.burst_count == (chains.count // 1000) * 100
    after.assert_no_growth_since(before, "1M call_soon callbacks")


@pytest.mark.timeout(120)
def test_call_soon_threadsafe_long_run_without_memory_growth(loop):
    # The thread-safe path (wake-ups included), from the loop's own thread.
    count = 0

    def run_batch(n):
        done = loop.create_future()
        target = count + n

        def step():
            nonlocal count
            count += 1
            if count < target:
                loop.call_soon_threadsafe(step)
            else:
                done.set_result(None)

        loop.call_soon_threadsafe(step)
        run(loop, done, timeout=100)

    run_batch(20_000)
    before = Memory()
    run_batch(200_000)
    after = Memory()
    assert count == 220_000
    after.assert_no_growth_since(before, "200k call_soon_threadsafe callbacks")


# --- timers ---------------------------------------------------------------------------------


def timer_round(loop, n=200_000):
    """n call_later(0) timers with an argument each; every even one cancelled."""
    ran = []
    handles = [loop.call_later(0, ran.append, i) for i in range(n)]
    for handle in handles[::2]:
        handle.cancel()
    del handles
    done = loop.create_future()
    loop.call_later(0.001, done.set_result, None)
    run(loop, done, timeout=100)
    run(loop, asyncio.sleep(0))
    return ran


@pytest.mark.timeout(120)
def test_timers_cancelled_half_without_memory_growth(loop):
    expected = list(range(1, 200_000, 2))
    ran = timer_round(loop)  # warm-up: heap at full size once
    assert sorted(ran) == expected
    del ran
    before = Memory()
    for _ in range(2):
        ran = timer_round(loop)
        assert len(ran) == 100_000
        assert sorted(ran) == expected
        del ran
    after = Memory()
    after.assert_no_growth_since(before, "2 x 200k call_later(0) timers, half cancelled")


@pytest.mark.timeout(120)
def test_cancelled_far_timers_are_released(loop):
    # asyncio drops cancelled timers from its heap once they are more than half of many
    # (base_events._run_once, _MIN_CANCELLED_TIMER_HANDLES_FRACTION): memory comes back.
    class Payload:
        pass

    def schedule_and_cancel(n):
        handles = [loop.call_later(3600 + i, Payload()) for i in range(n)]
        for handle in handles:
            handle.cancel()
        del handles
        run(loop, asyncio.sleep(0))
        run(loop, asyncio.sleep(0))

    schedule_and_cancel(200_000)  # warm-up
    before = Memory()
    for _ in range(2):
        schedule_and_cancel(200_000)
    after = Memory()
    after.assert_no_growth_since(before, "cancelled far timers")
    # And the loop still runs timers normally.
    fut = loop.create_future()
    loop.call_later(0.01, fut.set_result, "timer ok")
    assert run(loop, fut) == "timer ok"


# --- tasks ----------------------------------------------------------------------------------


async def work(i):
    await asyncio.sleep(0)
    fut = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(fut.set_result, i)
    return await fut


async def task_rounds(rounds, per_round=5_000):
    total = 0
    for _ in range(rounds):
        tasks = [asyncio.ensure_future(work(i)) for i in range(per_round)]
        results = await asyncio.gather(*tasks)
        assert results == list(range(per_round))
        assert all(task.done() and not task.cancelled() for task in tasks)
        total += len(results)
    return total


@pytest.mark.timeout(120)
def test_hundred_thousand_tasks_without_memory_growth(loop):
    # Rounds of 5k: with bigger rounds even stock asyncio's resident size creeps up (allocator
    # fragmentation, with no Python block growing), which says nothing about the loop.
    assert run(loop, task_rounds(4), timeout=100) == 20_000  # warm-up
    before = Memory()
    assert run(loop, task_rounds(20), timeout=100) == 100_000
    after = Memory()
    after.assert_no_growth_since(before, "100k tasks")
    assert asyncio.all_tasks(loop) == set()


# --- fd watchers ----------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_reader_churn_without_memory_growth(loop):
    # add_reader/remove_reader on a ready socket, fired each time: the watcher set does not
    # keep anything behind.
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    try:

        def cycles(n):
            fired = 0
            done = loop.create_future()

            def on_readable(i):
                nonlocal fired
                a.recv(1)
                fired += 1
                loop.remove_reader(a)
                if i + 1 < n:
                    b.send(b"x")
                    loop.add_reader(a, on_readable, i + 1)
                else:
                    done.set_result(None)

            b.send(b"x")
            loop.add_reader(a, on_readable, 0)
            run(loop, done, timeout=100)
            return fired

        assert cycles(5_000) == 5_000
        before = Memory()
        assert cycles(50_000) == 50_000
        after = Memory()
        after.assert_no_growth_since(before, "50k add_reader/remove_reader cycles")
    finally:
        a.close()
        b.close()
