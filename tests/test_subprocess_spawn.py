"""Child processes started through libuv's uv_spawn, and the Popen fallback, against asyncio.

The specification is asyncio's Popen-based transport (`unix_events._UnixSubprocessTransport`
over `subprocess.Popen`): whichever way our loop starts a child (libuv's `uv_spawn`, or asyncio's
own transport for what uv_spawn cannot express: `preexec_fn`, `umask`, `process_group`,
`restore_signals=False`, a signal the parent ignores or blocks...), the child must see the same
stdio, environment, working directory, descriptors, session and signal dispositions, the same
errors must be raised, and the same exit codes reported.

What a child sees is read from the child itself (its /proc/self files, os.fstat on its
descriptors) and reported back on a pipe, so every assertion is about the child, not about how
it was started. Every test also checks that no zombie child is left behind.
"""

import asyncio
import contextlib
import errno
import fcntl
import io
import json
import logging
import os
import signal
import stat
import subprocess
import sys
import time
import warnings

import pytest

from conftest import run

PY = sys.executable
TRUE = "/bin/true" if os.path.exists("/bin/true") else "/usr/bin/true"
CAT = "/bin/cat" if os.path.exists("/bin/cat") else "/usr/bin/cat"


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


# The child's view of one of its descriptors: None if it is not open.
PROBE = """
import fcntl, json, os, sys
def probe(fd):
    try:
        st = os.fstat(fd)
    except OSError:
        return None
    return {
        "devnull": os.path.samestat(st, os.stat(os.devnull)),
        "accmode": fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE,
        "blocking": os.get_blocking(fd),
    }
"""


@contextlib.contextmanager
def redirected(fd, target, inheritable=True):
    """`fd` (0, 1 or 2) temporarily refers to what `target` refers to."""
    saved = os.dup(fd)
    try:
        os.dup2(target, fd, inheritable=inheritable)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


@contextlib.contextmanager
def pipe():
    r, w = os.pipe()
    fds = {"r": r, "w": w}
    try:
        yield fds
    finally:
        for fd in fds.values():
            if fd is not None:
                os.close(fd)


def close_w(fds):
    os.close(fds["w"])
    fds["w"] = None


def read_all(fd):
    chunks = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


async def communicate(*args, input=None, **kwargs):
    proc = await asyncio.create_subprocess_exec(*args, **kwargs)
    out, err = await proc.communicate(input)
    return out, err, proc.returncode


def describe(exc):
    """What a test compares of an exception."""
    if isinstance(exc, OSError):
        return (type(exc), exc.errno, exc.strerror, exc.filename, exc.filename2)
    return (type(exc), str(exc))


def popen_outcome(args, **kwargs):
    """The oracle: what subprocess.Popen itself does with these arguments, called as asyncio
    calls it. The exception it raises, or the child's (stdout, returncode)."""
    try:
        proc = subprocess.Popen(args, bufsize=0, **{"stdout": subprocess.PIPE, **kwargs})
    except Exception as exc:
        return describe(exc)
    with proc:
        out, _ = proc.communicate()
    return out, proc.returncode


async def loop_outcome(args, **kwargs):
    try:
        proc = await asyncio.create_subprocess_exec(
            *args, **{"stdout": subprocess.PIPE, **kwargs}
        )
    except Exception as exc:
        return describe(exc)
    out, _ = await proc.communicate()
    return out, proc.returncode


def check_same_as_popen(loop, args, **kwargs):
    """The loop starts (or refuses) the child exactly as Popen does; returns the outcome."""
    expected = popen_outcome(args, **kwargs)
    assert run(loop, loop_outcome(args, **kwargs)) == expected
    return expected


# ---------------------------------------------------------------------------------------------
# 1. stdio


PIPE_END = {"devnull": False, "accmode": os.O_RDONLY, "blocking": True}


@pytest.mark.parametrize("kind", ["pipe", "devnull", "inherit", "fd", "file"])
def test_stdin_targets(loop, tmp_path, kind):
    """stdin=PIPE, DEVNULL, None (the parent's fd 0), an int fd, a file object: the child reads
    what was meant for it, through a descriptor of the same kind and mode as with Popen."""
    data = b"to the child"
    path = tmp_path / "in"
    path.write_bytes(data)
    code = PROBE + "data = sys.stdin.buffer.read(); print(json.dumps([probe(0), data.decode()]))"

    async def main():
        with pipe() as fds, open(path, "rb") as file:
            os.write(fds["w"], data)
            close_w(fds)
            kwargs = dict(stdout=subprocess.PIPE)
            if kind == "pipe":
                return await communicate(*python(code), stdin=subprocess.PIPE, input=data,
                                         **kwargs)
            if kind == "devnull":
                return await communicate(*python(code), stdin=subprocess.DEVNULL, **kwargs)
            if kind == "inherit":
                with redirected(0, fds["r"]):
                    proc = await asyncio.create_subprocess_exec(*python(code), **kwargs)
                out, err = await proc.communicate()
                return out, err, proc.returncode
            target = fds["r"] if kind == "fd" else file
            return await communicate(*python(code), stdin=target, **kwargs)

    out, _, returncode = run(loop, main())
    assert returncode == 0
    seen, read = json.loads(out)
    if kind == "devnull":
        assert (seen, read) == ({"devnull": True, "accmode": os.O_RDWR, "blocking": True}, "")
        return
    assert read == data.decode()
    if kind == "pipe" and sys.version_info < (3, 10):
        # asyncio before 3.10 gives the child a socket (socketpair) for stdin=PIPE; the pipe
        # of later versions is accepted there too.
        assert seen in (PIPE_END, {"devnull": False, "accmode": os.O_RDWR, "blocking": True})
    else:
        assert seen == PIPE_END


OUTPUT_KINDS = ["pipe", "devnull", "inherit", "fd", "fd-nonblocking", "file"]


def check_output_target(loop, tmp_path, fd, kind):
    """The child writes to its descriptor `fd` (1 or 2) and reports its view of it on the other
    one (a pipe); checks what reached the target, and the parent's descriptor flags."""
    other = 3 - fd
    code = PROBE + (
        f"os.write({fd}, b'from the child')\n"
        f"os.write({other}, json.dumps(probe({fd})).encode())"
    )
    path = tmp_path / "out"
    name = "stdout" if fd == 1 else "stderr"
    other_name = "stderr" if fd == 1 else "stdout"

    async def main():
        with pipe() as fds, open(path, "wb") as file:
            kwargs = {other_name: subprocess.PIPE}
            if kind == "pipe":
                kwargs[name] = subprocess.PIPE
            elif kind == "devnull":
                kwargs[name] = subprocess.DEVNULL
            elif kind == "file":
                kwargs[name] = file
            elif kind in ("fd", "fd-nonblocking"):
                kwargs[name] = fds["w"]
                if kind == "fd-nonblocking":
                    os.set_blocking(fds["w"], False)
            if kind == "inherit":
                with redirected(fd, fds["w"]):
                    proc = await asyncio.create_subprocess_exec(*python(code), **kwargs)
            else:
                proc = await asyncio.create_subprocess_exec(*python(code), **kwargs)
            # Popen leaves the parent's descriptor flags as they are.
            blocking = os.get_blocking(fds["w"])
            close_w(fds)
            out, err = await proc.communicate()
            report = err if fd == 1 else out
            target = out if fd == 1 else err
            if kind in ("inherit", "fd", "fd-nonblocking"):
                target = read_all(fds["r"])
            return proc.returncode, report, target, blocking

    with open(path, "wb"):
        pass
    returncode, report, target, blocking = run(loop, main())
    assert returncode == 0
    assert blocking is (kind != "fd-nonblocking")
    seen = json.loads(report)
    if kind == "file":
        target = path.read_bytes()
    if kind == "devnull":
        assert seen == {"devnull": True, "accmode": os.O_RDWR, "blocking": True}
        assert target is None
        return
    assert target == b"from the child"
    if kind == "file":
        assert seen == {"devnull": False, "accmode": os.O_WRONLY, "blocking": True}
    elif kind == "fd-nonblocking":
        # The flag belongs to the open file, shared with the parent: Popen does not touch it.
        assert seen == {"devnull": False, "accmode": os.O_WRONLY, "blocking": False}
    else:
        # (For PIPE: asyncio's read end is non-blocking, the child's write end is not.)
        assert seen == {"devnull": False, "accmode": os.O_WRONLY, "blocking": True}


@pytest.mark.parametrize("kind", OUTPUT_KINDS)
def test_stdout_targets(loop, tmp_path, kind):
    """stdout=PIPE, DEVNULL, None (the parent's fd 1), an int fd (blocking or not), a file
    object: the output lands there, and the parent's descriptor flags are left alone."""
    check_output_target(loop, tmp_path, 1, kind)


@pytest.mark.parametrize("kind", OUTPUT_KINDS)
def test_stderr_targets(loop, tmp_path, kind):
    check_output_target(loop, tmp_path, 2, kind)


@pytest.mark.parametrize("kind", ["pipe", "devnull", "inherit", "fd", "file"])
def test_stderr_to_stdout(loop, tmp_path, kind):
    """stderr=STDOUT: the child's fd 2 is its fd 1, whatever stdout is; the order of writes is
    kept."""
    code = (
        "import os, sys\n"
        "os.write(1, b'1'); os.write(2, b'2'); os.write(1, b'3')\n"
        "sys.exit(0 if os.path.samestat(os.fstat(1), os.fstat(2)) else 5)"
    )
    path = tmp_path / "out"

    async def main():
        with pipe() as fds, open(path, "wb") as file:
            kwargs = dict(stderr=subprocess.STDOUT)
            if kind == "inherit":
                with redirected(1, fds["w"]):
                    proc = await asyncio.create_subprocess_exec(*python(code), **kwargs)
            else:
                stdout = {"pipe": subprocess.PIPE, "devnull": subprocess.DEVNULL,
                          "fd": fds["w"], "file": file}[kind]
                proc = await asyncio.create_subprocess_exec(*python(code), stdout=stdout,
                                                            **kwargs)
            close_w(fds)
            out, _ = await proc.communicate()
            if kind in ("inherit", "fd"):
                out = read_all(fds["r"])
            return proc.returncode, out

    returncode, out = run(loop, main())
    assert returncode == 0
    if kind == "file":
        out = path.read_bytes()
    if kind != "devnull":
        assert out == b"123"


def test_stdout_and_stderr_swapped(loop):
    """stdout=2, stderr=1 (the parent's descriptors, each a pipe here): the child's 1 and 2
    are swapped, not both the same."""
    code = "import os; os.write(1, b'out'); os.write(2, b'err')"

    async def main():
        with pipe() as one, pipe() as two:
            with redirected(1, one["w"]), redirected(2, two["w"]):
                proc = await asyncio.create_subprocess_exec(*python(code), stdout=2, stderr=1)
            close_w(one)
            close_w(two)
            code_ = await proc.wait()
            return code_, read_all(one["r"]), read_all(two["r"])

    assert run(loop, main()) == (0, b"err", b"out")


def test_stdin_none_when_the_parents_fd_0_is_close_on_exec(loop):
    """stdin=None leaves the child's fd 0 as exec leaves the parent's: a close-on-exec fd 0
    (say, a private descriptor that got number 0 in a daemon) is closed in the child."""
    code = PROBE + "print(json.dumps(probe(0)))"

    async def main():
        with pipe() as fds:
            with redirected(0, fds["r"], inheritable=False):
                proc = await asyncio.create_subprocess_exec(
                    *python(code), stdout=subprocess.PIPE
                )
            out, _ = await proc.communicate()
            return proc.returncode, json.loads(out)

    assert run(loop, main()) == (0, None)


def test_stdio_object_without_a_descriptor(loop):
    """A file object without a descriptor (BytesIO) is refused as Popen refuses it."""
    # (stdout, the first one Popen looks at: Popen 3.9 leaks the pipes it made for the others)
    outcome = check_same_as_popen(loop, python("pass"), stdout=io.BytesIO())
    assert outcome[0] is io.UnsupportedOperation


def test_closed_descriptor_as_stdout(loop):
    """stdout=a descriptor number that is not open: OSError(EBADF), raised as Popen raises it
    (up to 3.12 without a file name: the program was never executed; 3.13's Popen, on
    posix_spawn, names the program)."""
    fd = 900
    with pytest.raises(OSError):
        os.fstat(fd)
    outcome = check_same_as_popen(loop, python("pass"), stdout=fd)
    assert outcome[:2] == (OSError, errno.EBADF)


# ---------------------------------------------------------------------------------------------
# 2. env, cwd, executable, shell

ENVIRON = "import sys; sys.stdout.buffer.write(open('/proc/self/environ', 'rb').read())"


@pytest.mark.parametrize(
    "env",
    [
        {"A": "1", "WITH SPACE": "two words", "EMPTY": "", "UNICODE": "\u00e9t\u00e9"},
        {b"A": b"1", b"RAW": b"\xff\xfe", b"EMPTY": b""},
        {"MIXED": b"bytes", b"KEY": "str"},
        {},
    ],
    ids=["str", "bytes", "mixed", "empty"],
)
def test_env_is_exactly_the_childs_environment(loop, env):
    async def main():
        return await communicate(*python(ENVIRON), env=env, stdout=subprocess.PIPE)

    out, _, returncode = run(loop, main())
    assert returncode == 0
    expected = [os.fsencode(k) + b"=" + os.fsencode(v) for k, v in env.items()]
    assert (out.split(b"\0")[:-1] if out else []) == expected


def test_env_none_is_the_parents_environment(loop, monkeypatch):
    monkeypatch.setenv("UVLOOP_TEST_MARK", "inherited")
    monkeypatch.delenv("UVLOOP_TEST_GONE", raising=False)
    os.environ["UVLOOP_TEST_GONE"] = "x"
    del os.environ["UVLOOP_TEST_GONE"]

    async def main():
        return await communicate(*python(ENVIRON), stdout=subprocess.PIPE)

    out, _, returncode = run(loop, main())
    assert returncode == 0
    seen = out.split(b"\0")[:-1]
    assert b"UVLOOP_TEST_MARK=inherited" in seen
    assert not [item for item in seen if item.startswith(b"UVLOOP_TEST_GONE=")]
    # The parent's C environment (which os.environ need not show in full: COLUMNS and LINES set
    # by a library, say), in its order: what a child of subprocess.Popen gets.
    reference = subprocess.run(python(ENVIRON), stdout=subprocess.PIPE).stdout
    assert seen == reference.split(b"\0")[:-1]


def test_program_found_on_the_envs_path(loop, tmp_path):
    """A program name without a slash is looked up on the PATH of `env`."""
    prog = tmp_path / "uvloop-test-prog"
    prog.write_text(f"#!{PY}\nimport sys; print('found', sys.argv[1])\n")
    prog.chmod(0o755)

    async def main():
        return await communicate(
            "uvloop-test-prog", "arg", env={"PATH": str(tmp_path)}, stdout=subprocess.PIPE
        )

    assert run(loop, main()) == (b"found arg\n", None, 0)


def test_program_looked_up_without_path(loop):
    """env without PATH: the default search path (os.defpath for Popen) finds `true`."""
    assert check_same_as_popen(loop, ("true",), env={}) == (b"", 0)


@pytest.mark.parametrize(
    "env",
    [{"A=B": "x"}, {b"A=B": b"x"}, {"=A": "x"}],
    ids=["str", "bytes", "leading"],
)
def test_env_name_with_equals_sign(loop, env):
    """Refused as Popen refuses it (up to 3.12: ValueError("illegal environment variable
    name"); 3.13's Popen, on posix_spawn, lets a leading "=" through)."""
    outcome = check_same_as_popen(loop, python(ENVIRON), env=env)
    if env != {"=A": "x"}:
        assert outcome == (ValueError, "illegal environment variable name")


@pytest.mark.parametrize(
    "env",
    [{"A": "x\0y"}, {b"A": b"x\0y"}, {"A\0B": "x"}],
    ids=["str-value", "bytes-value", "name"],
)
def test_env_with_nul(loop, env):
    outcome = check_same_as_popen(loop, python("pass"), env=env)
    assert outcome == (ValueError, "embedded null byte")


def test_nul_in_an_argument(loop):
    outcome = check_same_as_popen(loop, (PY, "-c", "pass", "a\0b"))
    assert outcome == (ValueError, "embedded null byte")


@pytest.mark.parametrize("form", [str, bytes, "path"])
def test_cwd(loop, tmp_path, form):
    """The child runs in `cwd`, and a relative program is found from there."""
    prog = tmp_path / "prog"
    prog.write_text(f"#!{PY}\nimport os; print(os.getcwd())\n")
    prog.chmod(0o755)
    cwd = {str: str(tmp_path), bytes: os.fsencode(tmp_path), "path": tmp_path}[form]

    async def main():
        return await communicate("./prog", cwd=cwd, stdout=subprocess.PIPE)

    assert run(loop, main()) == (f"{tmp_path}\n".encode(), None, 0)


@pytest.mark.parametrize("form", [str, bytes, "path"])
def test_missing_cwd(loop, tmp_path, form):
    """FileNotFoundError naming the cwd, as given."""
    missing = tmp_path / "missing"
    cwd = {str: str(missing), bytes: os.fsencode(missing), "path": missing}[form]
    outcome = check_same_as_popen(loop, python("pass"), cwd=cwd)
    assert outcome == (FileNotFoundError, errno.ENOENT, os.strerror(errno.ENOENT), cwd, None)


@pytest.mark.parametrize("form", [str, "path"])
def test_file_as_cwd(loop, tmp_path, form):
    path = tmp_path / "file"
    path.write_bytes(b"")
    cwd = str(path) if form is str else path
    outcome = check_same_as_popen(loop, python("pass"), cwd=cwd)
    assert outcome == (NotADirectoryError, errno.ENOTDIR, os.strerror(errno.ENOTDIR), cwd, None)


CMDLINE = "import sys; sys.stdout.buffer.write(open('/proc/self/cmdline', 'rb').read())"


def test_executable_keeps_argv0(loop):
    async def main():
        return await communicate(
            "my-argv0", "-c", CMDLINE, "x", executable=PY, stdout=subprocess.PIPE
        )

    out, _, returncode = run(loop, main())
    assert returncode == 0
    assert out.split(b"\0")[:-1] == [b"my-argv0", b"-c", CMDLINE.encode(), b"x"]


def test_shell(loop):
    """shell=True runs `/bin/sh -c cmd`; a bytes command too."""

    async def main():
        results = []
        for cmd in ('echo "$0" $((6 * 7)); exit 4', b'echo "$0" $((6 * 7)); exit 4'):
            proc = await asyncio.create_subprocess_shell(cmd, stdout=subprocess.PIPE)
            out, _ = await proc.communicate()
            results.append((out, proc.returncode))
        return results

    assert run(loop, main()) == [(b"/bin/sh 42\n", 4)] * 2


def test_shell_with_executable(loop):
    """shell=True with executable=X runs X with argv [X, "-c", cmd] (Popen replaces argv[0]
    with the executable), so "$0" is X."""
    bash = "/bin/bash"
    if not os.path.exists(bash):
        pytest.skip("no /bin/bash")

    async def main():
        proc = await asyncio.create_subprocess_shell(
            'echo "$0" "$BASH_VERSION" | cut -c1-12; tr "\\0" " " < /proc/$$/cmdline',
            executable=bash, stdout=subprocess.PIPE,
        )
        out, _ = await proc.communicate()
        return out, proc.returncode

    out, returncode = run(loop, main())
    assert returncode == 0
    first, cmdline = out.decode().splitlines()
    assert first.startswith(f"{bash} ")  # bash ran ($BASH_VERSION is set), as "/bin/bash"
    assert len(first) > len(bash) + 1
    assert cmdline.startswith(f"{bash} -c ")


# ---------------------------------------------------------------------------------------------
# 3. pass_fds, close_fds

def test_pass_fds(loop):
    """A passed descriptor (not inheritable in the parent, and a high number) is open in the
    child; the parent's flags are left as they were."""

    async def main():
        with pipe() as fds:
            high = fcntl.fcntl(fds["w"], fcntl.F_DUPFD_CLOEXEC, 150)
            code = f"import os; os.write({fds['w']}, b'low:'); os.write({high}, b'high')"
            try:
                proc = await asyncio.create_subprocess_exec(
                    *python(code), pass_fds=(fds["w"], high)
                )
                inheritable = os.get_inheritable(fds["w"]), os.get_inheritable(high)
            finally:
                os.close(high)
            close_w(fds)
            code = await proc.wait()
            return code, read_all(fds["r"]), inheritable

    assert run(loop, main()) == (0, b"low:high", (False, False))


def test_pass_fds_does_not_override_stdio(loop):
    """pass_fds naming 0, 1 or 2 keeps them open; the stdio arguments still say what they are."""
    code = "import os, sys; print('out'); print('err', file=sys.stderr); print(sys.stdin.read())"

    async def main():
        return await communicate(
            *python(code), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, pass_fds=(0, 1, 2), input=b"in",
        )

    assert run(loop, main()) == (b"out\nin\n", b"err\n", 0)


FSTAT = (
    "import os, sys\n"
    "fd = int(sys.argv[1])\n"
    "try:\n"
    "    os.fstat(fd)\n"
    "except OSError:\n"
    "    print('closed')\n"
    "else:\n"
    "    os.write(fd, b'written by the child')\n"
    "    print('open')\n"
)


@pytest.mark.parametrize("close_fds", [True, False, "default"])
def test_close_fds_and_an_inheritable_descriptor(loop, close_fds):
    """A descriptor the parent made inheritable, not passed: closed in the child under
    close_fds (the default), open with close_fds=False; in the parent it stays inheritable."""

    async def main():
        with pipe() as fds:
            os.set_inheritable(fds["w"], True)
            kwargs = {} if close_fds == "default" else {"close_fds": close_fds}
            proc = await asyncio.create_subprocess_exec(
                PY, "-c", FSTAT, str(fds["w"]), stdout=subprocess.PIPE, **kwargs
            )
            inheritable = os.get_inheritable(fds["w"])
            close_w(fds)
            out, _ = await proc.communicate()
            return out, proc.returncode, inheritable, read_all(fds["r"])

    expected_open = close_fds is False
    assert run(loop, main()) == (
        b"open\n" if expected_open else b"closed\n",
        0,
        True,
        b"written by the child" if expected_open else b"",
    )


def test_pass_fds_overrides_close_fds_false(loop):
    """pass_fds with close_fds=False: Popen warns and closes the other descriptors anyway."""

    async def main():
        with pipe() as passed, pipe() as other:
            os.set_inheritable(other["w"], True)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                proc = await asyncio.create_subprocess_exec(
                    PY, "-c", FSTAT, str(other["w"]), stdout=subprocess.PIPE,
                    close_fds=False, pass_fds=(passed["w"],),
                )
            inheritable = os.get_inheritable(other["w"])
            close_w(other)
            out, _ = await proc.communicate()
            warned = [(w.category, str(w.message)) for w in caught]
            return out, proc.returncode, inheritable, read_all(other["r"]), warned

    assert run(loop, main()) == (
        b"closed\n", 0, True, b"", [(RuntimeWarning, "pass_fds overriding close_fds.")]
    )


def test_inheritable_descriptor_stays_inheritable_after_a_failed_spawn(loop):
    async def main():
        with pipe() as fds:
            os.set_inheritable(fds["w"], True)
            with pytest.raises(FileNotFoundError):
                await asyncio.create_subprocess_exec("/nonexistent/uvloop-test-program")
            return os.get_inheritable(fds["w"]), os.get_inheritable(fds["r"])

    assert run(loop, main()) == (True, False)


# ---------------------------------------------------------------------------------------------
# 4. sessions

SESSION = "import os; print(os.getsid(0), os.getpid(), os.getpgid(0))"


def test_start_new_session(loop):
    async def main():
        return await communicate(*python(SESSION), start_new_session=True,
                                 stdout=subprocess.PIPE)

    out, _, returncode = run(loop, main())
    sid, pid, pgid = map(int, out.split())
    assert returncode == 0
    assert sid == pid == pgid


def test_default_session(loop):
    async def main():
        return await communicate(*python(SESSION), stdout=subprocess.PIPE)

    out, _, returncode = run(loop, main())
    sid, pid, pgid = map(int, out.split())
    assert returncode == 0
    assert sid == os.getsid(0)
    assert pgid == os.getpgid(0)


# ---------------------------------------------------------------------------------------------
# 5. signals

def bit(sig):
    return 1 << (int(sig) - 1)


async def signal_masks(**kwargs):
    """(ignored, blocked) signal masks of a child that does not touch its signals (cat)."""
    proc = await asyncio.create_subprocess_exec(
        CAT, "/proc/self/status", stdout=subprocess.PIPE, **kwargs
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    fields = dict(line.split(":\t", 1) for line in out.decode().splitlines() if ":\t" in line)
    return int(fields["SigIgn"], 16), int(fields["SigBlk"], 16)


@pytest.fixture
def saved_signals():
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGUSR1, signal.SIGUSR2)}
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, ())
    yield
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_restore_signals_default(loop, saved_signals):
    """Python ignores SIGPIPE and SIGXFSZ; restore_signals (the default) gives the child their
    default action, and nothing is blocked."""
    assert signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN

    async def main():
        masks = [await signal_masks(), await signal_masks(restore_signals=True)]
        out, _, _ = await communicate(
            *python("import signal; print(signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL)"),
            stdout=subprocess.PIPE,
        )
        return masks, out

    masks, out = run(loop, main())
    for ignored, blocked in masks:
        assert ignored & (bit(signal.SIGPIPE) | bit(signal.SIGXFSZ)) == 0
        assert blocked == 0
    assert out == b"True\n"


def test_restore_signals_false(loop, saved_signals):
    """restore_signals=False: the child ignores SIGPIPE and SIGXFSZ as the parent does."""

    async def main():
        return await signal_masks(restore_signals=False)

    ignored, blocked = run(loop, main())
    assert ignored & bit(signal.SIGPIPE)
    assert ignored & bit(signal.SIGXFSZ)
    assert blocked == 0


def test_signal_ignored_by_the_parent_is_ignored_by_the_child(loop, saved_signals):
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)

    async def main():
        masks = await signal_masks()
        out, _, _ = await communicate(
            *python("import signal; print(signal.getsignal(signal.SIGUSR1) == signal.SIG_IGN)"),
            stdout=subprocess.PIPE,
        )
        return masks, out

    (ignored, blocked), out = run(loop, main())
    assert ignored & bit(signal.SIGUSR1)
    assert ignored & bit(signal.SIGPIPE) == 0  # restore_signals still applies
    assert blocked == 0
    assert out == b"True\n"


def test_signal_blocked_by_the_parent_is_blocked_in_the_child(loop, saved_signals):
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})

    async def main():
        return await signal_masks()

    ignored, blocked = run(loop, main())
    assert blocked == bit(signal.SIGUSR2)
    assert ignored & bit(signal.SIGPIPE) == 0


def test_signal_handled_by_the_parent_is_default_in_the_child(loop, saved_signals):
    signal.signal(signal.SIGUSR1, lambda *args: None)

    async def main():
        return await signal_masks()

    ignored, blocked = run(loop, main())
    assert ignored & bit(signal.SIGUSR1) == 0
    assert blocked == 0


# ---------------------------------------------------------------------------------------------
# 6. errors

@pytest.mark.parametrize("form", [str, bytes])
def test_missing_program(loop, form):
    program = "/nonexistent/uvloop-test-program"
    program = program if form is str else os.fsencode(program)
    outcome = check_same_as_popen(loop, (program,))
    assert outcome == (FileNotFoundError, errno.ENOENT, os.strerror(errno.ENOENT), program, None)


def test_missing_program_on_path(loop):
    outcome = check_same_as_popen(loop, ("uvloop-no-such-program-xyz",))
    assert outcome[:2] == (FileNotFoundError, errno.ENOENT)
    assert outcome[3] == "uvloop-no-such-program-xyz"


def test_missing_program_in_cwd(loop, tmp_path):
    outcome = check_same_as_popen(loop, ("./missing",), cwd=str(tmp_path))
    assert outcome[:2] == (FileNotFoundError, errno.ENOENT)
    assert outcome[3] == "./missing"


def test_missing_executable(loop):
    outcome = check_same_as_popen(
        loop, python("pass"), executable="/nonexistent/uvloop-test-program"
    )
    assert outcome[:2] == (FileNotFoundError, errno.ENOENT)
    assert outcome[3] == "/nonexistent/uvloop-test-program"


def test_non_executable_file(loop, tmp_path):
    path = tmp_path / "script"
    path.write_text(f"#!{PY}\n")
    path.chmod(0o644)
    outcome = check_same_as_popen(loop, (str(path),))
    assert outcome == (PermissionError, errno.EACCES, os.strerror(errno.EACCES), str(path), None)


def test_directory_as_program(loop, tmp_path):
    outcome = check_same_as_popen(loop, (str(tmp_path),))
    assert outcome[:2] == (PermissionError, errno.EACCES)
    assert outcome[3] == str(tmp_path)


def test_executable_file_of_unknown_format(loop, tmp_path):
    """An executable file without a #! line or a binary format: Popen execs it directly and
    gets ENOEXEC (no fallback to running it with /bin/sh, as execvp may do)."""
    path = tmp_path / "script"
    path.write_text("exit 7\n")
    path.chmod(0o755)
    outcome = check_same_as_popen(loop, (str(path),))
    assert outcome == (OSError, errno.ENOEXEC, os.strerror(errno.ENOEXEC), str(path), None)


# ---------------------------------------------------------------------------------------------
# 7. exit codes

@pytest.mark.parametrize("code", [0, 3, 255])
def test_exit_code(loop, code):
    async def main():
        proc = await asyncio.create_subprocess_exec(*python(f"import sys; sys.exit({code})"))
        return await proc.wait(), proc.returncode

    assert run(loop, main()) == (code, code)


@pytest.mark.parametrize("how", ["kill", "terminate", "send_signal"])
def test_killed(loop, how):
    async def main():
        proc = await asyncio.create_subprocess_exec(*python("import time; time.sleep(30)"))
        if how == "send_signal":
            proc.send_signal(signal.SIGKILL)
        else:
            getattr(proc, how)()
        return await proc.wait()

    expected = -signal.SIGTERM if how == "terminate" else -signal.SIGKILL
    assert run(loop, main()) == expected


def test_signals_after_exit(loop):
    """After the exit: the child object (Popen's send_signal, terminate, kill) does nothing,
    whether or not the transport has finished."""

    async def main():
        proc = await asyncio.create_subprocess_exec(*python("pass"))
        child = proc._transport.get_extra_info("subprocess")
        assert await proc.wait() == 0
        child.send_signal(signal.SIGTERM)
        child.terminate()
        child.kill()
        await asyncio.sleep(0.05)
        child.send_signal(signal.SIGTERM)
        child.kill()
        return child.returncode

    assert run(loop, main()) == 0


@pytest.mark.parametrize("method", ["send_signal", "terminate", "kill"])
def test_process_signals_after_exit(loop, method):
    """asyncio.subprocess.Process after wait(): what the transport does (asyncio's: its
    process is gone once the transport finished)."""

    async def main():
        proc = await asyncio.create_subprocess_exec(*python("pass"))
        await proc.wait()
        await asyncio.sleep(0.05)
        args = (signal.SIGTERM,) if method == "send_signal" else ()
        try:
            getattr(proc, method)(*args)
        except ProcessLookupError:
            return "ProcessLookupError"
        return None

    assert run(loop, main()) == "ProcessLookupError"


# ---------------------------------------------------------------------------------------------
# 8. closing the transport around the child's exit

ASYNCIO_255 = "asyncio's Popen transport can report 255 when closed around the child's exit"


def close_around_exit(loop, wait_before_close, **kwargs):
    """100 children that exit at once, their transport closed right after it was created:
    returns the return codes and the 'exit status already read' warnings logged."""
    records = []

    class Handler(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    handler = Handler()
    logger = logging.getLogger("asyncio")
    logger.addHandler(handler)

    class Proto(asyncio.SubprocessProtocol):
        def __init__(self):
            self.exited = loop.create_future()

        def process_exited(self):
            self.exited.set_result(None)

    async def one(i):
        transport, proto = await loop.subprocess_exec(
            Proto, TRUE, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, **kwargs
        )
        if wait_before_close:
            # The child has exited but nobody has reaped it: close() is what sees it first.
            try:
                os.waitid(os.P_PID, transport.get_pid(), os.WEXITED | os.WNOWAIT)
            except ChildProcessError:
                pass  # a watcher thread reaped it already
        transport.close()
        if i % 2:
            await transport._wait()
        else:
            await proto.exited
        return transport.get_returncode()

    async def main():
        return [await one(i) for i in range(100)]

    try:
        codes = run(loop, main(), timeout=30)
    finally:
        logger.removeHandler(handler)
    # "exit status already read" (pidfd watcher), "Unknown child process" (thread watcher).
    return codes, [r for r in records if "returncode 255" in r]


def test_close_right_after_an_exit(loop, loop_kind, request):
    """The child has exited (not yet reaped) when the transport is closed: the return code is
    the child's, 0, never 255 with an 'exit status already read' warning."""
    codes, warnings = close_around_exit(loop, wait_before_close=True)
    if loop_kind == "asyncio" and (warnings or set(codes) != {0}):
        request.applymarker(pytest.mark.xfail(strict=False, reason=ASYNCIO_255))
    assert (set(codes), warnings) == ({0}, [])


def test_close_while_the_child_exits(loop, loop_kind, request):
    """The transport is closed while the child is exiting: it was either killed first (-9) or
    exited (0); never 255 with a warning."""
    codes, warnings = close_around_exit(loop, wait_before_close=False)
    if loop_kind == "asyncio" and (warnings or not set(codes) <= {0, -9}):
        request.applymarker(pytest.mark.xfail(strict=False, reason=ASYNCIO_255))
    assert set(codes) <= {0, -signal.SIGKILL}
    assert warnings == []


def test_close_right_after_an_exit_on_the_popen_fallback(loop, loop_kind, request):
    """The same through the Popen fallback (umask): asyncio's transport there, without its race
    (Popen.poll() in close() reaps the child, the exit watcher then finds no status)."""
    codes, warnings = close_around_exit(loop, wait_before_close=True, umask=0o022)
    if loop_kind == "asyncio" and (warnings or set(codes) != {0}):
        request.applymarker(pytest.mark.xfail(strict=False, reason=ASYNCIO_255))
    assert (set(codes), warnings) == ({0}, [])


def test_exit_status_taken_by_another_waitpid(loop):
    """A child whose exit status the program takes itself (os.waitpid on its pid): the loop
    reports returncode 255 and logs that the status was already read, as asyncio's watchers do.
    (asyncio's thread watcher, 3.9-3.11, may take the status first: then it is reported.)"""
    records = []

    class Handler(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    async def main():
        proc = await asyncio.create_subprocess_exec(
            TRUE, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
        )
        try:
            os.waitpid(proc.pid, 0)  # blocks the loop until the child has exited
        except ChildProcessError:
            taken = False
        else:
            taken = True
        return taken, await proc.wait()

    handler = Handler()
    logging.getLogger("asyncio").addHandler(handler)
    try:
        taken, code = run(loop, main())
    finally:
        logging.getLogger("asyncio").removeHandler(handler)
    lost = [r for r in records if "returncode 255" in r]
    assert (code, len(lost)) == ((255, 1) if taken else (0, 0))


def test_child_running_when_the_loop_closes_is_reaped_after_its_exit(new_loop, loop_kind):
    """The loop closes while its child still runs: once the child exits it is reaped, not left
    a zombie (as asyncio's watcher thread does, 3.9-3.11)."""
    if loop_kind == "asyncio" and sys.version_info >= (3, 12):
        pytest.xfail(
            "asyncio 3.12+ watches the exit through a pidfd reader of the loop: once the loop is "
            "closed the child stays a zombie and the pidfd open"
        )

    async def start():
        proc = await asyncio.create_subprocess_exec(
            *python("import time; time.sleep(0.3)"), stdin=subprocess.DEVNULL
        )
        return proc.pid

    loop = new_loop()
    pid = run(loop, start())
    loop.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return  # reaped
        time.sleep(0.02)
    pytest.fail(f"child {pid} was not reaped after the loop closed")


# ---------------------------------------------------------------------------------------------
# 9. the Popen fallback

def test_preexec_fn(loop):
    async def main():
        return await communicate(
            *python("import os; print(os.environ.get('UVLOOP_PREEXEC'))"),
            preexec_fn=lambda: os.putenv("UVLOOP_PREEXEC", "set in preexec_fn"),
            stdout=subprocess.PIPE,
        )

    assert run(loop, main()) == (b"set in preexec_fn\n", None, 0)
    assert "UVLOOP_PREEXEC" not in os.environ


def test_umask(loop, tmp_path):
    path = tmp_path / "created"

    async def main():
        return await communicate(
            *python(f"open({str(path)!r}, 'w').close()"), umask=0o077,
        )

    assert run(loop, main()) == (None, None, 0)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.skipif(sys.version_info < (3, 11), reason="process_group is 3.11+")
def test_process_group(loop):
    async def main():
        return await communicate(
            *python("import os; print(os.getpgid(0) == os.getpid(), os.getsid(0))"),
            process_group=0, stdout=subprocess.PIPE,
        )

    out, _, returncode = run(loop, main())
    assert returncode == 0
    assert out == f"True {os.getsid(0)}\n".encode()


def test_fallback_with_pipes_and_exit_code(loop):
    """Through the fallback (umask): pipes, the exit code, a kill."""

    async def main():
        out = await communicate(
            *python("import sys; print(sys.stdin.read().upper()); sys.exit(3)"),
            umask=0o022, stdin=subprocess.PIPE, stdout=subprocess.PIPE, input=b"abc",
        )
        proc = await asyncio.create_subprocess_exec(
            *python("import time; time.sleep(30)"), umask=0o022
        )
        proc.kill()
        return out, await proc.wait()

    assert run(loop, main()) == ((b"ABC\n", None, 3), -signal.SIGKILL)


# ---------------------------------------------------------------------------------------------
# 10. the transport and its child object

@pytest.mark.parametrize("fallback", [False, True], ids=["default", "umask"])
@pytest.mark.parametrize(
    "stdio, types",
    [
        ((subprocess.PIPE,) * 3,
         (asyncio.WriteTransport, asyncio.ReadTransport, asyncio.ReadTransport)),
        ((subprocess.DEVNULL,) * 3, (type(None),) * 3),
        ((subprocess.PIPE, subprocess.PIPE, subprocess.STDOUT),
         (asyncio.WriteTransport, asyncio.ReadTransport, type(None))),
        ((None, subprocess.DEVNULL, subprocess.PIPE),
         (type(None), type(None), asyncio.ReadTransport)),
    ],
    ids=["pipes", "devnull", "stdout", "mixed"],
)
def test_transport_and_child(loop, stdio, types, fallback):
    extra = {"umask": 0o022} if fallback else {}
    exited = []

    class Proto(asyncio.SubprocessProtocol):
        def __init__(self):
            self.done = loop.create_future()

        def process_exited(self):
            exited.append(transport_box[0].get_returncode())
            self.done.set_result(None)

    transport_box = []

    async def main():
        transport, proto = await loop.subprocess_exec(
            Proto, *python("import sys; sys.stdin.close(); sys.exit(5)"),
            stdin=stdio[0], stdout=stdio[1], stderr=stdio[2], **extra,
        )
        transport_box.append(transport)
        try:
            child = transport.get_extra_info("subprocess")
            pid = transport.get_pid()
            assert isinstance(pid, int) and pid > 0
            assert child.pid == pid
            assert transport.get_returncode() is None
            for fd, expected in enumerate(types):
                assert isinstance(transport.get_pipe_transport(fd), expected), fd
            assert transport.get_pipe_transport(3) is None
            stdin = transport.get_pipe_transport(0)
            if stdin is not None:
                stdin.close()
            await proto.done
            return child.returncode, transport.get_returncode(), child.poll(), exited
        finally:
            transport.close()

    assert run(loop, main()) == (5, 5, 5, [5])


@pytest.mark.parametrize("how", ["exec", "shell"])
def test_child_args(loop, how):
    """The child object's args are what Popen was given: the tuple of subprocess_exec, the
    command string of subprocess_shell."""

    async def main():
        if how == "exec":
            transport, _ = await loop.subprocess_exec(
                asyncio.SubprocessProtocol, *python("pass")
            )
        else:
            transport, _ = await loop.subprocess_shell(asyncio.SubprocessProtocol, "exit 0")
        await transport._wait()
        transport.close()
        return transport.get_extra_info("subprocess").args

    expected = python("pass") if how == "exec" else "exit 0"
    assert run(loop, main()) == expected


# ---------------------------------------------------------------------------------------------
# 11. the program's own SIGCHLD handler (libuv would install one of its own)


@pytest.fixture
def sigchld_restored():
    saved = signal.getsignal(signal.SIGCHLD)
    yield
    signal.signal(signal.SIGCHLD, saved)


async def child_exit_code(*args):
    proc = await asyncio.create_subprocess_exec(*args)
    return await asyncio.wait_for(proc.wait(), 10)


def test_sigchld_handler_added_before_a_child(loop, sigchld_restored):
    """loop.add_signal_handler(SIGCHLD) then a child: the child's exit is reported and the
    handler runs for it; after remove_signal_handler, SIGCHLD is at its default again."""

    async def main():
        calls = []
        loop.add_signal_handler(signal.SIGCHLD, calls.append, "chld")
        code = await child_exit_code(*python("raise SystemExit(4)"))
        while not calls:
            await asyncio.sleep(0.01)
        loop.remove_signal_handler(signal.SIGCHLD)
        after = await child_exit_code(*python("pass"))
        return code, after, signal.getsignal(signal.SIGCHLD)

    assert run(loop, main()) == (4, 0, signal.SIG_DFL)


def test_sigchld_handler_added_while_a_child_runs(loop, sigchld_restored):
    """A SIGCHLD handler added while a child runs: that child's exit is still reported, and the
    handler runs for it."""

    async def main():
        calls = []
        proc = await asyncio.create_subprocess_exec(*python("import time; time.sleep(0.3)"))
        loop.add_signal_handler(signal.SIGCHLD, calls.append, "chld")
        code = await asyncio.wait_for(proc.wait(), 10)
        while not calls:
            await asyncio.sleep(0.01)
        loop.remove_signal_handler(signal.SIGCHLD)
        return code

    assert run(loop, main()) == 0


def test_python_level_sigchld_handler_survives_children(loop, sigchld_restored):
    """signal.signal(SIGCHLD, handler) before a child: after the child has exited and its
    transport is closed, the handler is still the one in force (and runs for a later child)."""
    calls = []
    signal.signal(signal.SIGCHLD, lambda signum, frame: calls.append(signum))

    async def main():
        first = await child_exit_code(*python("pass"))
        await asyncio.sleep(0.05)
        seen = len(calls)
        second = await child_exit_code(*python("pass"))
        while len(calls) == seen:
            await asyncio.sleep(0.01)
        return first, second, seen > 0

    assert run(loop, main()) == (0, 0, True)
    handler = signal.getsignal(signal.SIGCHLD)
    assert callable(handler)
    # What the kernel has is still Python's handler: a SIGCHLD now reaches it.
    before = len(calls)
    os.kill(os.getpid(), signal.SIGCHLD)  # delivered to this thread, handled before the next line
    assert len(calls) == before + 1
