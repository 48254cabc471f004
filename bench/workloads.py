#!/usr/bin/env python3
"""Event-loop micro-benchmark workloads: one process, one loop kind, one or more cases.

Standalone (stdlib only); bench/run.py executes it inside each loop's own virtualenv:

    python workloads.py --loop asyncio --case call_soon_batch --n 200000
    python workloads.py --loop ours --case call_later,sleep0 --quick
    python workloads.py --loop ours --info

It prints one JSON document on stdout:

    {"loop": ..., "info": {...}, "results": [{"case", "n", "sec_per_op", "samples", ...}, ...]}

Every case runs once as a warm-up on the same loop, then `--repeat` timed times; `sec_per_op` is the
median of the timed samples. Only the section between the two time.perf_counter() reads is timed: the
loop is created (and the warm-up run) before it and closed after it. A case that raises, or whose
self-check fails, gets an "error" entry instead of numbers; the other cases still run.
"""

import argparse
import asyncio
import gc
import json
import os
import platform
import statistics
import sys
import threading
import traceback
from time import perf_counter

# "before": this project built from an earlier commit (bench/run.py --before-commit), in its own venv
LOOP_KINDS = ("asyncio", "uvloop-0.23", "rloop-0.5", "before", "ours")


# --------------------------------------------------------------------------------------------------
# Loop factories


def loop_factory(kind):
    """Return (factory, info) for a loop kind; checks that the right package was imported."""
    if kind == "asyncio":
        return asyncio.new_event_loop, {"module": "asyncio", "version": platform.python_version()}
    if kind in ("uvloop-0.23", "before", "ours"):
        import uvloop

        version = getattr(uvloop, "__version__", "?")
        is_ours = not version.startswith("0.")  # this project (ours or before), not a PyPI release
        if is_ours != (kind in ("before", "ours")):
            raise RuntimeError(
                f"--loop {kind} but the uvloop found is version {version} at {uvloop.__file__}"
            )
        return uvloop.new_event_loop, {
            "module": "uvloop",
            "version": version,
            "file": uvloop.__file__,
        }
    if kind == "rloop-0.5":
        import rloop

        try:
            from importlib.metadata import version as dist_version

            version = dist_version("rloop")
        except Exception:
            version = getattr(rloop, "__version__", "?")
        return rloop.new_event_loop, {"module": "rloop", "version": version, "file": rloop.__file__}
    raise ValueError(f"unknown loop kind {kind!r}; expected one of {', '.join(LOOP_KINDS)}")


# --------------------------------------------------------------------------------------------------
# Cases. Each takes (loop, n), runs n operations and returns the elapsed seconds of the timed
# section. Each checks its own result so that a loop that skips work cannot look fast.


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def case_call_soon_batch(loop, n):
    """One callback schedules n callbacks with call_soon; the last one to run stops the loop."""
    count = 0

    def cb():
        nonlocal count
        count += 1
        if count == n:
            loop.stop()

    def schedule_all():
        call_soon = loop.call_soon
        for _ in range(n):
            call_soon(cb)

    loop.call_soon(schedule_all)
    t0 = perf_counter()
    loop.run_forever()
    t1 = perf_counter()
    check(count == n, f"{count} of {n} callbacks ran")
    return t1 - t0


def case_call_soon_chain(loop, n):
    """A callback that re-schedules itself with call_soon, n hops (one loop iteration per hop)."""
    left = n
    call_soon = loop.call_soon

    def hop():
        nonlocal left
        left -= 1
        if left:
            call_soon(hop)
        else:
            loop.stop()

    call_soon(hop)
    t0 = perf_counter()
    loop.run_forever()
    t1 = perf_counter()
    check(left == 0, f"{n - left} of {n} hops ran")
    return t1 - t0


def case_call_later(loop, n):
    """n call_later timers with delays spread over 0..1 ms, run until all have fired."""
    count = 0

    def cb():
        nonlocal count
        count += 1
        if count == n:
            loop.stop()

    def schedule_all():
        call_later = loop.call_later
        for i in range(n):
            call_later((i % 1000) * 1e-6, cb)

    loop.call_soon(schedule_all)
    t0 = perf_counter()
    loop.run_forever()
    t1 = perf_counter()
    check(count == n, f"{count} of {n} timers fired")
    return t1 - t0


def case_timer_cancel(loop, n):
    """n call_later(10, ...) timers, all cancelled, then one more loop iteration (the clean-up)."""
    fired = 0
    cancelled = 0

    def cb():
        nonlocal fired
        fired += 1

    def schedule_and_cancel():
        nonlocal cancelled
        call_later = loop.call_later
        handles = [call_later(10.0, cb) for _ in range(n)]
        for h in handles:
            h.cancel()
        cancelled = sum(1 for h in handles if h.cancelled())
        loop.call_soon(loop.stop)  # one more iteration: cancelled timers get dropped there

    loop.call_soon(schedule_and_cancel)
    t0 = perf_counter()
    loop.run_forever()
    t1 = perf_counter()
    check(cancelled == n and fired == 0, f"{cancelled} of {n} cancelled, {fired} fired")
    return t1 - t0


async def _one():
    return 1


def case_task_gather(loop, n):
    """n tasks of a trivial coroutine, awaited with asyncio.gather."""

    async def main():
        create_task = loop.create_task
        results = await asyncio.gather(*[create_task(_one()) for _ in range(n)])
        return sum(results)

    coro = main()
    t0 = perf_counter()
    total = loop.run_until_complete(coro)
    t1 = perf_counter()
    check(total == n, f"gather summed {total}, expected {n}")
    return t1 - t0


def case_sleep0(loop, n):
    """One coroutine awaiting asyncio.sleep(0) n times."""

    async def main():
        sleep = asyncio.sleep
        for _ in range(n):
            await sleep(0)
        return n

    coro = main()
    t0 = perf_counter()
    done = loop.run_until_complete(coro)
    t1 = perf_counter()
    check(done == n, "sleep loop did not finish")
    return t1 - t0


def case_future_pingpong(loop, n):
    """Two tasks exchanging a counter through loop.create_future() futures, n round trips."""
    box = [None, loop.create_future()]  # [pinger's reply future, ponger's request future]

    async def pinger():
        create_future = loop.create_future
        v = 0
        for _ in range(n):
            reply = create_future()
            box[0] = reply
            box[1].set_result(v)
            v = await reply
        return v

    async def ponger():
        create_future = loop.create_future
        for _ in range(n):
            v = await box[1]
            box[1] = create_future()
            box[0].set_result(v + 1)

    async def main():
        results = await asyncio.gather(loop.create_task(ponger()), loop.create_task(pinger()))
        return results[1]

    coro = main()
    t0 = perf_counter()
    v = loop.run_until_complete(coro)
    t1 = perf_counter()
    check(v == n, f"ping-pong counter is {v}, expected {n}")
    return t1 - t0


def case_call_soon_threadsafe(loop, n):
    """Another thread calls call_soon_threadsafe n times; the n-th callback stops the loop."""
    count = 0

    def cb():
        nonlocal count
        count += 1
        if count == n:
            loop.stop()

    call_soon_threadsafe = loop.call_soon_threadsafe  # a missing API fails here, not in the thread
    failure = []

    def producer():
        try:
            for _ in range(n):
                call_soon_threadsafe(cb)
        except BaseException as exc:
            failure.append(exc)

    def watchdog():  # stops the loop if the producer died (it cannot wake the loop itself then)
        if failure:
            loop.stop()
        else:
            watch[0] = loop.call_later(0.05, watchdog)

    thread = threading.Thread(target=producer, daemon=True)
    loop.call_soon(thread.start)  # starts once the loop runs
    watch = [loop.call_later(0.05, watchdog)]
    t0 = perf_counter()
    loop.run_forever()
    t1 = perf_counter()
    thread.join()
    watch[0].cancel()
    if failure:
        raise failure[0]
    check(count == n, f"{count} of {n} thread-safe callbacks ran")
    return t1 - t0


def _trivial():
    return 1


def case_run_in_executor(loop, n):
    """n sequential `await loop.run_in_executor(None, func)` with a trivial func."""

    async def main():
        run_in_executor = loop.run_in_executor
        total = 0
        for _ in range(n):
            total += await run_in_executor(None, _trivial)
        return total

    coro = main()
    t0 = perf_counter()
    total = loop.run_until_complete(coro)
    t1 = perf_counter()
    check(total == n, f"executor summed {total}, expected {n}")
    return t1 - t0


def _udp_echo(loop, n, size):
    """n datagrams of `size` bytes bounced one at a time off an echo endpoint on 127.0.0.1."""
    payload = b"u" * size

    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, transport):
            self.transport = transport

        def datagram_received(self, data, addr):
            self.transport.sendto(data, addr)

    class Client(asyncio.DatagramProtocol):
        def __init__(self):
            self.count = 0
            self.done = loop.create_future()

        def connection_made(self, transport):
            self.transport = transport

        def datagram_received(self, data, addr):
            self.count += len(data) == size
            if self.count == n:
                self.done.set_result(None)
            else:
                self.transport.sendto(payload)

    async def setup():
        server, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
        address = server.get_extra_info("sockname")
        client, proto = await loop.create_datagram_endpoint(Client, remote_addr=address)
        return server, client, proto

    server, client, proto = loop.run_until_complete(setup())
    client.sendto(payload)
    t0 = perf_counter()
    loop.run_until_complete(asyncio.wait_for(proto.done, 60))
    t1 = perf_counter()
    client.close()
    server.close()
    loop.run_until_complete(asyncio.sleep(0))
    check(proto.count == n, f"{proto.count} of {n} datagrams came back")
    return t1 - t0


def case_udp_echo_64(loop, n):
    """64-byte datagrams, one round trip at a time, through a datagram echo endpoint."""
    return _udp_echo(loop, n, 64)


def case_udp_echo_1k(loop, n):
    """1 KiB datagrams, one round trip at a time, through a datagram echo endpoint."""
    return _udp_echo(loop, n, 1024)


def case_pipe_throughput(loop, n):
    """n MiB from a write pipe transport to a read pipe transport of one os.pipe()."""
    chunk = b"p" * (1024 * 1024)

    class Reader(asyncio.Protocol):
        def __init__(self):
            self.size = 0
            self.done = loop.create_future()

        def data_received(self, data):
            self.size += len(data)
            if self.size >= n * len(chunk):
                self.done.set_result(None)

    class Writer(asyncio.Protocol):
        def __init__(self):
            self.resumed = None

        def pause_writing(self):
            self.resumed = loop.create_future()

        def resume_writing(self):
            self.resumed.set_result(None)
            self.resumed = None

    async def main():
        r, w = os.pipe()
        reader_t, reader = await loop.connect_read_pipe(Reader, os.fdopen(r, "rb"))
        writer_t, writer = await loop.connect_write_pipe(Writer, os.fdopen(w, "wb"))
        t0 = perf_counter()
        for _ in range(n):
            writer_t.write(chunk)
            if writer.resumed is not None:
                await writer.resumed
        await reader.done
        t1 = perf_counter()
        writer_t.close()
        reader_t.close()
        await asyncio.sleep(0)
        return t1 - t0, reader.size

    elapsed, size = loop.run_until_complete(main())
    check(size == n * len(chunk), f"{size} of {n * len(chunk)} bytes arrived")
    return elapsed


def case_subprocess_spawn(loop, n):
    """n times: start /bin/true with create_subprocess_exec and wait for it."""

    async def main():
        codes = 0
        for _ in range(n):
            proc = await asyncio.create_subprocess_exec("/bin/true")
            codes += await proc.wait()
        return codes

    coro = main()
    t0 = perf_counter()
    codes = loop.run_until_complete(coro)
    t1 = perf_counter()
    check(codes == 0, "a /bin/true failed")
    return t1 - t0


# name -> (function, default n, what one operation is)
CASES = {
    "call_soon_batch": (case_call_soon_batch, 200_000, "callback"),
    "call_soon_chain": (case_call_soon_chain, 500_000, "hop"),
    "call_later": (case_call_later, 100_000, "timer"),
    "timer_cancel": (case_timer_cancel, 100_000, "schedule+cancel"),
    "task_gather": (case_task_gather, 20_000, "task"),
    "sleep0": (case_sleep0, 200_000, "sleep(0)"),
    "future_pingpong": (case_future_pingpong, 50_000, "round trip"),
    "call_soon_threadsafe": (case_call_soon_threadsafe, 200_000, "call"),
    "run_in_executor": (case_run_in_executor, 2_000, "call"),
    "udp_echo_64": (case_udp_echo_64, 20_000, "round trip"),
    "udp_echo_1k": (case_udp_echo_1k, 20_000, "round trip"),
    "pipe_throughput": (case_pipe_throughput, 256, "MiB"),
    "subprocess_spawn": (case_subprocess_spawn, 200, "process"),
}
QUICK_DIVISOR = 10


# --------------------------------------------------------------------------------------------------
# Driver


def close_loop(loop):
    """Close the loop outside the timed section; returns an error string or None."""
    try:
        if not loop.is_closed():
            loop.run_until_complete(loop.shutdown_asyncgens())
            shutdown_executor = getattr(loop, "shutdown_default_executor", None)
            if shutdown_executor is not None:
                loop.run_until_complete(shutdown_executor())
            loop.close()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def run_case(factory, name, n, repeat, warmup_n):
    func = CASES[name][0]
    result = {"case": name, "n": n, "op": CASES[name][2]}
    loop = factory()
    asyncio.set_event_loop(loop)
    try:
        if warmup_n:
            func(loop, warmup_n)
        samples = []
        for _ in range(repeat):
            gc.collect()
            samples.append(func(loop, n) / n)
        result["sec_per_op"] = statistics.median(samples)
        result["samples"] = samples
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        result["error"] = f"{type(exc).__name__}: {exc}".strip()
        result["traceback"] = traceback.format_exc()
    finally:
        close_error = close_loop(loop)
        if close_error:
            result["close_error"] = close_error
        asyncio.set_event_loop(None)
    return result


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--loop", required=True, choices=LOOP_KINDS)
    p.add_argument(
        "--case",
        action="append",
        default=[],
        help="case name(s), comma-separated or repeated; 'all' for every case",
    )
    p.add_argument("--n", type=int, help="operations per timed run (default: per case)")
    p.add_argument("--repeat", type=int, help="timed runs per case (default 3, 1 with --quick)")
    p.add_argument(
        "--warmup", type=float, default=0.2, help="warm-up run size as a fraction of n (default 0.2)"
    )
    p.add_argument("--quick", action="store_true", help=f"default n / {QUICK_DIVISOR}, 1 timed run (smoke test)")
    p.add_argument("--info", action="store_true", help="only print the loop's module and version")
    p.add_argument("--list", action="store_true", help="list the cases and their default n")
    args = p.parse_args(argv)

    if args.list:
        for name, (_, n, op) in CASES.items():
            print(f"{name:22} n={n:<8} per {op}")
        return 0

    factory, info = loop_factory(args.loop)
    info["python"] = platform.python_version()
    info["executable"] = sys.executable
    probe = factory()
    info["loop_type"] = f"{type(probe).__module__}.{type(probe).__qualname__}"
    probe.close()

    names = []
    for item in args.case:
        names += [c for c in item.split(",") if c]
    if names == ["all"] or (not names and not args.info):
        names = list(CASES)
    unknown = [c for c in names if c not in CASES]
    if unknown:
        p.error(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(CASES)}")

    repeat = args.repeat or (1 if args.quick else 3)
    results = []
    if not args.info:
        for name in names:
            n = args.n or (CASES[name][1] // (QUICK_DIVISOR if args.quick else 1))
            warmup_n = max(1, int(n * args.warmup)) if args.warmup > 0 else 0
            results.append(run_case(factory, name, n, repeat, warmup_n))

    json.dump({"loop": args.loop, "pid": os.getpid(), "info": info, "results": results}, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
