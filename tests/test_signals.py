"""POSIX signals: add_signal_handler / remove_signal_handler, wake-ups, close(), Ctrl-C.

The specification is asyncio's unix loop (unix_events.py: `add_signal_handler`,
`remove_signal_handler`, `_check_signal`, `_handle_signal`, `close`), asyncio's Runner
(runners.py: `_on_sigint`) and PEP 475 (a Python-level signal handler runs while select() waits).

Every test runs in the main thread; the signal handlers and the wake-up fd in force before a
test are put back after it, so that one failure cannot leave SIGUSR1 at SIG_DFL (which would
kill the test process at the next signal) or leave a dangling wake-up fd behind.
"""

import asyncio
import contextvars
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from conftest import run

pytestmark = pytest.mark.skipif(
    sys.platform == "win32", reason="POSIX signals"  # the suite only targets Linux anyway
)

SIGNALS = [signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT, signal.SIGHUP, signal.SIGTERM]

# A signal handler is expected well within this; the loops otherwise wait much longer.
PROMPT = 5.0


@pytest.fixture(autouse=True)
def restore_signals():
    assert threading.current_thread() is threading.main_thread()
    saved = {sig: signal.getsignal(sig) for sig in SIGNALS}
    wakeup_fd = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(wakeup_fd)
    yield
    for sig, handler in saved.items():
        if handler is not None:
            signal.signal(sig, handler)
    signal.set_wakeup_fd(wakeup_fd)


def current_wakeup_fd():
    fd = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(fd)
    return fd


def kill_self(sig=signal.SIGUSR1):
    os.kill(os.getpid(), sig)


def kill_later(delay, sig=signal.SIGUSR1, main_thread=False):
    """Sends `sig` to this process from another thread after `delay` seconds."""
    main_ident = threading.main_thread().ident

    def target():
        time.sleep(delay)
        if main_thread:
            signal.pthread_kill(main_ident, sig)
        else:
            kill_self(sig)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


# --- delivery -------------------------------------------------------------------------------


def test_handler_runs_with_args_signal_sent_inside_loop(loop):
    fut = loop.create_future()
    loop.add_signal_handler(signal.SIGUSR1, lambda *args: fut.set_result(args), "a", 1)

    async def main():
        kill_self()
        return await asyncio.wait_for(fut, PROMPT)

    assert run(loop, main()) == ("a", 1)


def test_handler_added_while_running(loop):
    async def main():
        fut = loop.create_future()
        loop.add_signal_handler(signal.SIGUSR1, fut.set_result, "added while running")
        loop.call_soon(kill_self)
        return await asyncio.wait_for(fut, PROMPT)

    assert run(loop, main()) == "added while running"


@pytest.mark.parametrize("main_thread", [False, True], ids=["kill", "pthread_kill-main"])
def test_signal_from_other_thread_wakes_idle_loop(loop, main_thread):
    # The loop waits on a 60 s timer with nothing else to do: only the signal's write to the
    # wake-up fd can end the wait early.
    fut = loop.create_future()
    loop.add_signal_handler(signal.SIGUSR1, lambda: fut.set_result(time.monotonic()))

    async def main():
        started = time.monotonic()
        thread = kill_later(0.1, main_thread=main_thread)
        fired = await asyncio.wait_for(fut, 60)
        thread.join()
        return fired - started

    started = time.monotonic()
    elapsed = run(loop, main(), timeout=90)
    assert elapsed < PROMPT
    assert time.monotonic() - started < PROMPT


def test_signal_wakes_run_forever_without_timers(loop):
    # No timer at all: the loop would block forever without the wake-up.
    fired = []

    def handler():
        fired.append(time.monotonic())
        loop.stop()

    loop.add_signal_handler(signal.SIGUSR1, handler)
    kill_later(0.1)
    # Watchdog: stops the loop if the signal never gets through (then the test fails).
    watchdog = threading.Timer(20, loop.call_soon_threadsafe, (loop.stop,))
    watchdog.start()
    started = time.monotonic()
    try:
        loop.run_forever()
    finally:
        watchdog.cancel()
    assert len(fired) == 1
    assert fired[0] - started < PROMPT


def test_signal_while_loop_not_running_is_handled_at_next_run(loop):
    # The C-level handler writes the signal number to the loop's self-pipe (the wake-up fd set
    # by add_signal_handler); the loop reads it when it runs next.
    got = []
    loop.add_signal_handler(signal.SIGUSR1, got.append, "delivered")
    kill_self()
    time.sleep(0.05)
    assert got == []
    run(loop, asyncio.sleep(0.05))
    assert got == ["delivered"]


def test_signal_during_other_loops_run_is_not_lost(new_loop):
    # Loop A owns the SIGUSR1 handler but is idle; loop B (no handlers) runs meanwhile and the
    # signal arrives during B's run. asyncio's run_forever leaves the wake-up fd alone, so the
    # signal number waits in A's self-pipe and A runs the handler when it runs next.
    loop_a = new_loop()
    loop_b = new_loop()
    got = []
    loop_a.add_signal_handler(signal.SIGUSR1, got.append, "A's handler")

    async def in_b():
        kill_self()
        await asyncio.sleep(0.05)

    run(loop_b, in_b())
    assert got == []
    run(loop_a, asyncio.sleep(0.05))
    assert got == ["A's handler"]


def test_each_signal_runs_its_own_handler(loop):
    got = []
    done = loop.create_future()

    def handler(name):
        got.append(name)
        if len(got) == 2:
            done.set_result(None)

    loop.add_signal_handler(signal.SIGUSR1, handler, "usr1")
    loop.add_signal_handler(signal.SIGUSR2, handler, "usr2")

    async def main():
        kill_self(signal.SIGUSR1)
        await asyncio.sleep(0.05)
        kill_self(signal.SIGUSR2)
        await asyncio.wait_for(done, PROMPT)

    run(loop, main())
    assert got == ["usr1", "usr2"]


def test_handler_runs_once_per_delivered_signal(loop):
    count = 0
    event = None  # made inside the loop: on 3.9 an Event binds the loop current at creation

    def handler():
        nonlocal count
        count += 1
        event.set()

    loop.add_signal_handler(signal.SIGUSR1, handler)

    async def main():
        nonlocal event
        event = asyncio.Event()
        for i in range(1, 6):
            event.clear()
            kill_later(0.01)
            await asyncio.wait_for(event.wait(), PROMPT)
            assert count == i
        await asyncio.sleep(0.05)

    run(loop, main())
    assert count == 5


def test_replacing_handler_replaces_callback(loop):
    old = []
    fut = loop.create_future()
    loop.add_signal_handler(signal.SIGUSR1, old.append, "old")
    loop.add_signal_handler(signal.SIGUSR1, fut.set_result, "new")

    async def main():
        kill_self()
        result = await asyncio.wait_for(fut, PROMPT)
        await asyncio.sleep(0.05)
        return result

    assert run(loop, main()) == "new"
    assert old == []
    assert loop.remove_signal_handler(signal.SIGUSR1) is True
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_custom_sigint_handler_replaces_keyboard_interrupt(loop):
    fut = loop.create_future()
    loop.add_signal_handler(signal.SIGINT, fut.set_result, "sigint handled")

    async def main():
        kill_self(signal.SIGINT)
        return await asyncio.wait_for(fut, PROMPT)

    assert run(loop, main()) == "sigint handled"
    assert loop.remove_signal_handler(signal.SIGINT) is True
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_handler_exception_goes_to_exception_handler(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    calls = []

    def bad_handler():
        calls.append(1)
        raise ZeroDivisionError("in signal handler")

    loop.add_signal_handler(signal.SIGUSR1, bad_handler)

    async def main():
        for _ in range(2):
            reported = len(contexts)
            kill_self()
            deadline = time.monotonic() + PROMPT
            while len(contexts) == reported and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
        return "still running"

    assert run(loop, main()) == "still running"
    assert len(calls) == 2
    assert len(contexts) == 2
    for ctx in contexts:
        assert ctx["message"].startswith("Exception in callback ")
        assert "bad_handler" in ctx["message"]
        assert isinstance(ctx["exception"], ZeroDivisionError)
        assert "handle" in ctx


def test_handler_removing_itself(loop):
    results = []
    fut = loop.create_future()

    def handler():
        results.append(loop.remove_signal_handler(signal.SIGUSR1))
        fut.set_result(None)

    loop.add_signal_handler(signal.SIGUSR1, handler)

    async def main():
        kill_self()
        await asyncio.wait_for(fut, PROMPT)

    run(loop, main())
    assert results == [True]
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL
    assert loop.remove_signal_handler(signal.SIGUSR1) is False


def test_python_level_signal_handler_runs_while_loop_idles(loop):
    # Not a loop handler: signal.signal(). asyncio's select() wait is interrupted (EINTR) and,
    # per PEP 475, runs Python signal handlers before it goes on waiting; so the handler runs
    # promptly, not when the 2 s sleep ends.
    fired = []
    signal.signal(signal.SIGUSR1, lambda signum, frame: fired.append(time.monotonic()))

    async def main():
        started = time.monotonic()
        kill_later(0.1, main_thread=True)
        await asyncio.sleep(2)
        return started

    started = run(loop, main())
    assert len(fired) == 1
    assert fired[0] - started < 1.5


class Boom(Exception):
    pass


def test_python_level_signal_handler_exception_escapes_run(loop):
    # An exception raised by a Python signal handler during the wait comes out of select()
    # and so out of run_forever().
    def handler(signum, frame):
        raise Boom

    signal.signal(signal.SIGUSR1, handler)
    kill_later(0.1, main_thread=True)
    loop.call_later(10, loop.stop)  # bounds the run if the exception is lost
    started = time.monotonic()
    with pytest.raises(Boom):
        loop.run_forever()
    assert time.monotonic() - started < PROMPT
    assert not loop.is_running()


# --- remove_signal_handler / close ----------------------------------------------------------


def test_remove_signal_handler_return_values(loop):
    assert loop.remove_signal_handler(signal.SIGUSR1) is False
    loop.add_signal_handler(signal.SIGUSR1, lambda: None)
    assert signal.getsignal(signal.SIGUSR1) not in (signal.SIG_DFL, signal.SIG_IGN, None)
    assert loop.remove_signal_handler(signal.SIGUSR1) is True
    assert loop.remove_signal_handler(signal.SIGUSR1) is False
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL
    # Never-catchable signals can be "removed": there is nothing to remove.
    assert loop.remove_signal_handler(signal.SIGKILL) is False


def test_remove_signal_handler_while_running(loop):
    async def main():
        loop.add_signal_handler(signal.SIGUSR2, lambda: None)
        await asyncio.sleep(0)
        return loop.remove_signal_handler(signal.SIGUSR2)

    assert run(loop, main()) is True
    assert signal.getsignal(signal.SIGUSR2) == signal.SIG_DFL


def test_remove_sigint_restores_default_int_handler(loop):
    loop.add_signal_handler(signal.SIGINT, lambda: None)
    assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    assert loop.remove_signal_handler(signal.SIGINT) is True
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_remove_last_handler_resets_wakeup_fd(loop):
    assert current_wakeup_fd() == -1
    loop.add_signal_handler(signal.SIGUSR1, lambda: None)
    loop.add_signal_handler(signal.SIGUSR2, lambda: None)
    assert current_wakeup_fd() != -1
    loop.remove_signal_handler(signal.SIGUSR1)
    assert current_wakeup_fd() != -1  # SIGUSR2 still needs it
    loop.remove_signal_handler(signal.SIGUSR2)
    assert current_wakeup_fd() == -1


def test_close_restores_signal_handlers(new_loop):
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert current_wakeup_fd() == -1
    loop = new_loop()
    loop.add_signal_handler(signal.SIGUSR1, lambda: None)
    loop.add_signal_handler(signal.SIGINT, lambda: None)
    run(loop, asyncio.sleep(0))
    loop.close()
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert current_wakeup_fd() == -1
    assert loop.remove_signal_handler(signal.SIGUSR1) is False


def test_new_loop_handles_signals_after_previous_loop_closed(new_loop):
    first = new_loop()
    first.add_signal_handler(signal.SIGUSR1, lambda: None)
    first.close()

    loop = new_loop()
    fut = loop.create_future()
    loop.add_signal_handler(signal.SIGUSR1, fut.set_result, "second loop")

    async def main():
        kill_later(0.05)
        return await asyncio.wait_for(fut, PROMPT)

    assert run(loop, main()) == "second loop"
    loop.close()
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_run_leaves_wakeup_fd_as_it_was(loop):
    # asyncio's run_forever never touches the wake-up fd; a loop that uses it during the run
    # must put the previous one back.
    assert run(loop, asyncio.sleep(0)) is None
    assert current_wakeup_fd() == -1

    mine, other = socket.socketpair()
    try:
        mine.setblocking(False)
        signal.set_wakeup_fd(mine.fileno())
        run(loop, asyncio.sleep(0.01))
        assert current_wakeup_fd() == mine.fileno()
    finally:
        signal.set_wakeup_fd(-1)
        mine.close()
        other.close()


def test_signals_reach_users_wakeup_fd_during_run(loop):
    # A program's own wake-up fd (set before the loop runs) keeps receiving the numbers of
    # signals it has Python handlers for: asyncio's run_forever leaves the wake-up fd alone.
    signal.signal(signal.SIGUSR2, lambda signum, frame: None)
    mine, other = socket.socketpair()
    try:
        mine.setblocking(False)
        other.setblocking(False)
        signal.set_wakeup_fd(other.fileno())

        async def main():
            kill_self(signal.SIGUSR2)
            await asyncio.sleep(0.05)

        run(loop, main())
        assert current_wakeup_fd() == other.fileno()
        assert mine.recv(100) == bytes([signal.SIGUSR2])
    finally:
        signal.set_wakeup_fd(-1)
        mine.close()
        other.close()


def test_wakeup_fd_restored_when_run_forever_raises(loop):
    assert current_wakeup_fd() == -1

    def interrupt():
        raise KeyboardInterrupt

    loop.call_soon(interrupt)
    with pytest.raises(KeyboardInterrupt):
        loop.run_forever()
    assert current_wakeup_fd() == -1
    assert not loop.is_running()


def test_handler_runs_in_context_of_add_signal_handler(loop):
    var = contextvars.ContextVar("var")
    var.set("at add_signal_handler")
    fut = loop.create_future()
    loop.add_signal_handler(signal.SIGUSR1, lambda: fut.set_result(var.get()))
    var.set("later")

    async def main():
        kill_self()
        return await asyncio.wait_for(fut, PROMPT)

    assert run(loop, main()) == "at add_signal_handler"


def test_remove_after_handler_replaced_with_signal_signal(loop):
    # remove_signal_handler does not look at what is installed now: it reports that the loop
    # had a handler and resets the signal to SIG_DFL.
    loop.add_signal_handler(signal.SIGUSR1, lambda: None)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    assert loop.remove_signal_handler(signal.SIGUSR1) is True
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", ["1", 10.0, None, b"2"], ids=repr)
def test_sig_not_int_is_type_error(loop, sig):
    with pytest.raises(TypeError) as info:
        loop.add_signal_handler(sig, lambda: None)
    assert str(info.value) == f"sig must be an int, not {sig!r}"
    with pytest.raises(TypeError) as info:
        loop.remove_signal_handler(sig)
    assert str(info.value) == f"sig must be an int, not {sig!r}"


@pytest.mark.parametrize("sig", [0, -1, 1000, signal.NSIG])
def test_invalid_signal_number_is_value_error(loop, sig):
    with pytest.raises(ValueError) as info:
        loop.add_signal_handler(sig, lambda: None)
    assert str(info.value) == f"invalid signal number {sig}"
    with pytest.raises(ValueError) as info:
        loop.remove_signal_handler(sig)
    assert str(info.value) == f"invalid signal number {sig}"


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSTOP], ids=["SIGKILL", "SIGSTOP"])
def test_uncatchable_signal_is_runtime_error(loop, sig):
    with pytest.raises(RuntimeError) as info:
        loop.add_signal_handler(sig, lambda: None)
    assert str(info.value) == f"sig {int(sig)} cannot be caught"
    assert loop.remove_signal_handler(sig) is False
    # The failed attempt left nothing behind: no handler, no wake-up fd.
    assert current_wakeup_fd() == -1


def test_uncatchable_signal_keeps_other_handlers(loop):
    fut = loop.create_future()
    loop.add_signal_handler(signal.SIGUSR1, fut.set_result, "still here")
    with pytest.raises(RuntimeError):
        loop.add_signal_handler(signal.SIGKILL, lambda: None)

    async def main():
        kill_self()
        return await asyncio.wait_for(fut, PROMPT)

    assert run(loop, main()) == "still here"


def test_coroutine_function_is_type_error(loop):
    async def handler():
        pass

    with pytest.raises(TypeError, match=r"coroutines cannot be used with add_signal_handler\(\)"):
        loop.add_signal_handler(signal.SIGUSR1, handler)
    coro = handler()
    try:
        with pytest.raises(TypeError, match="coroutines cannot be used"):
            loop.add_signal_handler(signal.SIGUSR1, coro)
    finally:
        coro.close()
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL
    assert loop.remove_signal_handler(signal.SIGUSR1) is False


def test_add_signal_handler_on_closed_loop(loop):
    loop.close()
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.add_signal_handler(signal.SIGUSR1, lambda: None)
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL
    # The argument checks come first (unix_events: coroutine check, _check_signal, then
    # _check_closed).
    with pytest.raises(TypeError):
        loop.add_signal_handler("x", lambda: None)
    with pytest.raises(ValueError):
        loop.add_signal_handler(0, lambda: None)
    assert loop.remove_signal_handler(signal.SIGUSR1) is False


def test_add_signal_handler_in_non_main_thread(new_loop):
    # set_wakeup_fd() only works in the main thread: the ValueError becomes a RuntimeError.
    outcome = {}

    def target():
        loop = new_loop()
        try:
            loop.add_signal_handler(signal.SIGUSR1, lambda: None)
        except BaseException as exc:
            outcome["exc"] = exc
        outcome["remove"] = loop.remove_signal_handler(signal.SIGUSR1)
        # The loop itself works in that thread.
        outcome["run"] = loop.run_until_complete(asyncio.sleep(0, "ran"))
        loop.close()

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(10)
    assert not thread.is_alive()
    assert isinstance(outcome["exc"], RuntimeError), outcome
    assert "main thread" in str(outcome["exc"])
    assert outcome["remove"] is False
    assert outcome["run"] == "ran"
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL

    # Only that thread is refused: a loop in the main thread still gets its signals.
    loop = new_loop()
    fut = loop.create_future()
    loop.add_signal_handler(signal.SIGUSR1, fut.set_result, "main thread")

    async def main():
        kill_self()
        return await asyncio.wait_for(fut, PROMPT)

    assert run(loop, main()) == "main thread"


def test_loop_running_in_other_thread_leaves_main_thread_signals_alone(new_loop):
    main_loop = new_loop()
    fut = main_loop.create_future()
    main_loop.add_signal_handler(signal.SIGUSR1, fut.set_result, "main loop")
    wakeup = current_wakeup_fd()
    outcome = {}

    def target():
        loop = new_loop()
        try:
            outcome["run"] = loop.run_until_complete(asyncio.sleep(0.05, "thread loop"))
        finally:
            loop.close()

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(10)
    assert outcome["run"] == "thread loop"
    assert current_wakeup_fd() == wakeup

    async def main():
        kill_self()
        return await asyncio.wait_for(fut, PROMPT)

    assert run(main_loop, main()) == "main loop"


# --- Ctrl-C in a child process --------------------------------------------------------------

CHILD_PRELUDE = textwrap.dedent(
    """\
    import asyncio, os, signal, sys
    kind = sys.argv[1]
    if kind == "uvloop":
        import uvloop
        new_loop = uvloop.new_event_loop
        run = uvloop.run
    else:
        new_loop = asyncio.new_event_loop
        run = asyncio.run

    def say(word):
        print(word, flush=True)
    """
)

CHILD_SCRIPTS = {
    # Blocked with nothing to do: no timers, no fds, no handlers.
    "run_forever_idle": """
        loop = new_loop()
        loop.call_soon(say, "READY")
        try:
            loop.run_forever()
        except KeyboardInterrupt:
            say("KI")
            loop.close()
            sys.exit(0)
        say("returned normally")
        sys.exit(1)
    """,
    # Blocked on a long timer.
    "run_until_complete_sleep": """
        loop = new_loop()
        loop.call_soon(say, "READY")
        task = loop.create_task(asyncio.sleep(100))
        try:
            loop.run_until_complete(task)
        except KeyboardInterrupt:
            say("KI")
            task.cancel()
            try:
                loop.run_until_complete(task)
            except asyncio.CancelledError:
                pass
            loop.close()
            sys.exit(0)
        sys.exit(1)
    """,
    # Blocked while a loop signal handler (for another signal) owns the wake-up fd.
    "run_forever_with_sigusr1_handler": """
        loop = new_loop()
        loop.add_signal_handler(signal.SIGUSR1, say, "USR1")
        loop.call_soon(say, "READY")
        try:
            loop.run_forever()
        except KeyboardInterrupt:
            say("KI")
            loop.close()
            sys.exit(0)
        sys.exit(1)
    """,
    # Blocked waiting for an fd that never becomes readable.
    "run_forever_reader": """
        loop = new_loop()
        r, w = os.pipe()
        loop.add_reader(r, say, "READABLE")
        loop.call_soon(say, "READY")
        try:
            loop.run_forever()
        except KeyboardInterrupt:
            say("KI")
            loop.remove_reader(r)
            loop.close()
            sys.exit(0)
        sys.exit(1)
    """,
    # Busy: callbacks keep the loop running without ever blocking.
    "run_forever_busy": """
        loop = new_loop()
        def spin():
            loop.call_soon(spin)
        loop.call_soon(say, "READY")
        loop.call_soon(spin)
        try:
            loop.run_forever()
        except KeyboardInterrupt:
            say("KI")
            loop.close()
            sys.exit(0)
        sys.exit(1)
    """,
    # asyncio.run / uvloop.run: from 3.11 the Runner's SIGINT handler cancels the main task and
    # run() raises KeyboardInterrupt; before 3.11 KeyboardInterrupt comes out of the wait and
    # the shutdown cancels the task. Either way: CANCELLED, then KeyboardInterrupt.
    "run_sleep": """
        async def main():
            asyncio.get_running_loop().call_soon(say, "READY")
            try:
                await asyncio.sleep(100)
            except asyncio.CancelledError:
                say("CANCELLED")
                raise
        try:
            run(main())
        except KeyboardInterrupt:
            say("KI")
            sys.exit(0)
        sys.exit(1)
    """,
}


def spawn_child(kind, body):
    script = CHILD_PRELUDE + textwrap.dedent(body)
    return subprocess.Popen(
        [sys.executable, "-c", script, kind],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a terminal's Ctrl-C must not reach it (nor the parent)
    )


def read_line(proc, timeout=20):
    """The child's next stdout line, failing instead of hanging."""
    result = []
    reader = threading.Thread(target=lambda: result.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if reader.is_alive():
        proc.kill()
        proc.communicate()
        pytest.fail("no output from child within the timeout")
    return result[0].strip()


def finish_child(proc, timeout=PROMPT + 5):
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"child did not react to SIGINT in {timeout}s; stderr:\n{err}")
    return out, err


@pytest.mark.parametrize("scenario", sorted(CHILD_SCRIPTS))
def test_ctrl_c_interrupts_loop_in_child(loop_kind, scenario):
    proc = spawn_child(loop_kind, CHILD_SCRIPTS[scenario])
    try:
        assert read_line(proc) == "READY"
        time.sleep(0.3)  # let the child settle into its wait
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        out, err = finish_child(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    lines = out.split()
    expected = ["CANCELLED", "KI"] if scenario == "run_sleep" else ["KI"]
    assert lines == expected, (out, err)
    assert proc.returncode == 0, err


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.Runner's SIGINT handling is 3.11+")
def test_second_ctrl_c_interrupts_task_that_ignores_cancel(loop_kind):
    # runners.Runner._on_sigint: the first SIGINT cancels the main task; the second one raises
    # KeyboardInterrupt from the signal handler, out of the loop's wait.
    body = """
        async def main():
            asyncio.get_running_loop().call_soon(say, "READY")
            try:
                await asyncio.sleep(100)
            except asyncio.CancelledError:
                say("IGNORED")
            try:
                await asyncio.sleep(100)
            except asyncio.CancelledError:
                say("CANCELLED AT SHUTDOWN")
                raise
        try:
            run(main())
        except KeyboardInterrupt:
            say("KI")
            sys.exit(0)
        sys.exit(1)
    """
    proc = spawn_child(loop_kind, body)
    try:
        assert read_line(proc) == "READY"
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        assert read_line(proc, timeout=PROMPT + 5) == "IGNORED"
        time.sleep(0.3)
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        out, err = finish_child(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert out.splitlines() == ["CANCELLED AT SHUTDOWN", "KI"], (out, err)
    assert proc.returncode == 0, err
