"""Child processes and fork.

The specification is asyncio's `base_subprocess.py`, `unix_events._UnixSubprocessTransport` and
`subprocess.py` (create_subprocess_exec/shell, Process), with `subprocess.Popen`'s arguments.
Every test also checks that no zombie child is left behind.
"""

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
import threading

import pytest

import uvloop
from conftest import run

PY = sys.executable


@pytest.fixture(autouse=True)
def no_zombies():
    yield
    try:
        zombie = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        zombie = None
    assert zombie is None, f"a child process was left unreaped: {zombie}"


def python(code):
    return (PY, "-c", code)


def test_exec_communicate(loop):
    """stdout and stderr are separate pipes; communicate returns both and the exit code."""

    async def main():
        proc = await asyncio.create_subprocess_exec(
            *python("import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out, err = await proc.communicate()
        return out, err, proc.returncode

    assert run(loop, main()) == (b"out\n", b"err\n", 3)


def test_shell(loop):
    async def main():
        proc = await asyncio.create_subprocess_shell(
            "echo $((6 * 7)); exit 5", stdout=subprocess.PIPE
        )
        out, _ = await proc.communicate()
        return out, proc.returncode

    assert run(loop, main()) == (b"42\n", 5)


def test_large_stdin_and_stdout_at_once(loop):
    """communicate() feeds 8 MiB to `cat` while reading its 8 MiB back: no deadlock, no loss."""
    payload = os.urandom(8 * 1024 * 1024)

    async def main():
        proc = await asyncio.create_subprocess_exec(
            "cat", stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        out, _ = await proc.communicate(payload)
        return out, proc.returncode

    out, code = run(loop, main(), timeout=30)
    assert code == 0
    assert hashlib.sha256(out).digest() == hashlib.sha256(payload).digest()


def test_child_exits_before_its_output_is_read(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            *python("print('x' * 1000)"), stdout=subprocess.PIPE
        )
        code = await proc.wait()
        out = await proc.stdout.read()
        return code, out

    assert run(loop, main()) == (0, b"x" * 1000 + b"\n")


def test_killed_by_signal_has_negative_returncode(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            *python("import sys, time; print('ready', flush=True); time.sleep(30)"),
            stdout=subprocess.PIPE,
        )
        assert await proc.stdout.readline() == b"ready\n"
        proc.kill()
        return await proc.wait()

    assert run(loop, main()) == -signal.SIGKILL


def test_process_that_ignores_sigterm(loop):
    """terminate() is ignored; the process lives on until kill()."""

    async def main():
        proc = await asyncio.create_subprocess_exec(
            *python(
                "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
                "print('ready', flush=True); time.sleep(30)"
            ),
            stdout=subprocess.PIPE,
        )
        assert await proc.stdout.readline() == b"ready\n"
        proc.terminate()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(proc.wait()), 0.3)
        assert proc.returncode is None
        proc.kill()
        return await proc.wait()

    assert run(loop, main()) == -signal.SIGKILL


def test_missing_executable(loop):
    async def main():
        with pytest.raises(FileNotFoundError):
            await asyncio.create_subprocess_exec("/nonexistent/program-xyz")

    run(loop, main())


def test_many_concurrent_short_processes(loop):
    """200 processes at once, every exit seen, none left unreaped."""

    async def one(i):
        proc = await asyncio.create_subprocess_exec("sh", "-c", f"exit {i % 7}")
        return await proc.wait()

    async def main():
        return await asyncio.gather(*(one(i) for i in range(200)))

    assert run(loop, main(), timeout=60) == [i % 7 for i in range(200)]


def test_popen_arguments(loop, tmp_path):
    """cwd, env, stderr=STDOUT, DEVNULL, file objects, pass_fds, start_new_session, umask,
    executable, restore_signals and preexec_fn reach Popen."""
    out_file = open(tmp_path / "out.txt", "wb")
    r, w = os.pipe()

    async def main():
        proc = await asyncio.create_subprocess_exec(
            "ignored-argv0",
            "-c",
            "import os, sys\n"
            "print(os.getcwd(), os.environ['MARK'], os.getsid(0) == os.getpid(), flush=True)\n"
            "print('to-stderr', file=sys.stderr, flush=True)\n"
            f"os.write({w}, b'passed')\n"
            "old = os.umask(0); print(oct(old))",
            executable=PY,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=str(tmp_path),
            env={"MARK": "m1", "PATH": os.environ.get("PATH", "")},
            pass_fds=(w,),
            start_new_session=True,
            umask=0o027,
            restore_signals=True,
            preexec_fn=lambda: os.write(w, b"pre:"),
        )
        out, _ = await proc.communicate()
        proc2 = await asyncio.create_subprocess_exec(*python("print('file')"), stdout=out_file)
        await proc2.wait()
        return out, proc.returncode

    try:
        out, code = run(loop, main())
        assert code == 0
        lines = out.decode().splitlines()
        assert lines[0] == f"{tmp_path} m1 True"
        assert lines[1] == "to-stderr"
        assert lines[2] == "0o27"
        assert os.read(r, 100) == b"pre:passed"
    finally:
        out_file.close()
        os.close(r)
        os.close(w)
    assert (tmp_path / "out.txt").read_bytes() == b"file\n"


@pytest.mark.skipif(sys.version_info < (3, 11), reason="process_group is 3.11+")
def test_process_group(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            *python("import os; print(os.getpgid(0) == os.getpid())"),
            stdout=subprocess.PIPE,
            process_group=0,
        )
        out, _ = await proc.communicate()
        return out

    assert run(loop, main()) == b"True\n"


def test_subprocess_protocol_and_transport(loop):
    """The transport's API and the protocol's callbacks (each pipe lost once, exit once)."""
    events = []

    class Proto(asyncio.SubprocessProtocol):
        def __init__(self):
            self.done = loop.create_future()
            self.output = b""

        def connection_made(self, transport):
            events.append("connection_made")

        def pipe_data_received(self, fd, data):
            assert fd == 1
            self.output += data

        def pipe_connection_lost(self, fd, exc):
            events.append(("pipe_connection_lost", fd, exc))

        def process_exited(self):
            events.append("process_exited")
            self.done.set_result(None)

    async def main():
        transport, proto = await loop.subprocess_exec(
            Proto, *python("import sys; data = sys.stdin.read(); print(data.upper())"),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        assert transport.get_pid() > 0
        assert transport.get_returncode() is None
        assert transport.get_pipe_transport(2) is None
        stdin = transport.get_pipe_transport(0)
        assert isinstance(stdin, asyncio.WriteTransport)
        assert isinstance(transport.get_pipe_transport(1), asyncio.ReadTransport)
        stdin.write(b"hello")
        stdin.close()
        await proto.done
        while ("pipe_connection_lost", 1, None) not in events:
            await asyncio.sleep(0.01)
        code = transport.get_returncode()
        transport.close()
        return proto.output, code

    output, code = run(loop, main())
    assert (output, code) == (b"HELLO\n", 0)
    assert events[0] == "connection_made"
    assert events.count("process_exited") == 1
    assert events.count(("pipe_connection_lost", 0, None)) == 1
    assert events.count(("pipe_connection_lost", 1, None)) == 1


def test_send_signal(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            *python(
                "import signal, sys, time\n"
                "signal.signal(signal.SIGUSR1, lambda *a: sys.exit(9))\n"
                "print('ready', flush=True)\n"
                "time.sleep(30)"
            ),
            stdout=subprocess.PIPE,
        )
        assert await proc.stdout.readline() == b"ready\n"
        proc.send_signal(signal.SIGUSR1)
        return await proc.wait()

    assert run(loop, main()) == 9


def test_processes_started_elsewhere_are_not_reaped(loop):
    """A child started with subprocess.Popen keeps its own exit status for Popen.wait()."""
    outside = subprocess.Popen([PY, "-c", "import sys; sys.exit(7)"])

    async def main():
        proc = await asyncio.create_subprocess_exec(*python("pass"))
        code = await proc.wait()
        await asyncio.sleep(0.2)  # the outside child has certainly exited by now
        return code

    assert run(loop, main()) == 0
    assert outside.wait(timeout=10) == 7


def test_subprocess_in_a_non_main_thread(new_loop):
    results = []

    def thread_main():
        loop = new_loop()
        try:

            async def main():
                proc = await asyncio.create_subprocess_exec(
                    *python("print(6 * 7)"), stdout=subprocess.PIPE
                )
                out, _ = await proc.communicate()
                return out, proc.returncode

            results.append(run(loop, main()))
        except BaseException as exc:  # reported by the main thread
            results.append(exc)
        finally:
            loop.close()

    thread = threading.Thread(target=thread_main)
    thread.start()
    thread.join(30)
    assert results == [(b"42\n", 0)]


def test_fork_child_closes_the_inherited_loop_and_runs_a_new_one(new_loop, loop_kind):
    """After fork the child closes the loop it inherited and runs a fresh one. Ours keeps the
    parent's loop working (wake-ups from threads, fd watchers); asyncio's child, closing the
    loop, unregisters fds from the epoll set it shares with the parent (on 3.12+ the parent's
    loop then misses wake-ups), so that part is checked on ours only."""
    factory = uvloop.new_event_loop if loop_kind == "uvloop" else asyncio.new_event_loop
    loop = new_loop()

    async def wake_from_thread():
        fut = asyncio.get_running_loop().create_future()
        threading.Timer(0.05, lambda: fut.get_loop().call_soon_threadsafe(fut.set_result, 7)).start()
        return await fut

    async def read_socketpair():
        import socket

        a, b = socket.socketpair()
        try:
            fut = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().add_reader(a, lambda: fut.set_result(a.recv(10)))
            b.send(b"ping")
            data = await fut
            asyncio.get_running_loop().remove_reader(a)
            return data
        finally:
            a.close()
            b.close()

    assert run(loop, wake_from_thread()) == 7
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            loop.close()
            child_loop = factory()
            try:
                ok = child_loop.run_until_complete(
                    asyncio.wait_for(wake_from_thread(), 5)
                ) == 7 and child_loop.run_until_complete(read_socketpair()) == b"ping"
            finally:
                child_loop.close()
            code = 0 if ok else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    if loop_kind == "uvloop":
        assert run(loop, wake_from_thread()) == 7
        assert run(loop, read_socketpair()) == b"ping"
