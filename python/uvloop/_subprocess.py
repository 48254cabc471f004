"""Child processes: asyncio's subprocess transport over children libuv starts (`uv_spawn`).

libuv starts the child (posix_spawn where it can) and reports its exit; it reaps only its own
children, by pid, so processes started elsewhere by `subprocess` or `os.fork` are left alone.
On Linux its SIGCHLD handler is kept out of the way (it would replace the program's own SIGCHLD
handler, and be replaced by it): libuv polls each child's pidfd instead, and reaps when it is
readable (see `src/uv/child_exit.rs`).
What `uv_spawn` cannot express the way `subprocess.Popen` does (`preexec_fn`, `umask`,
`process_group`, `user`, `group`, `extra_groups`, `pipesize`, `restore_signals=False`, a signal
the parent ignores or blocks, a standard descriptor that is non-blocking (libuv's child makes
fds 0-2 blocking, which the parent's shared descriptor would see) or, inherited as it is,
close-on-exec, an environment name with "=", and any descriptor Popen itself would refuse) goes
to asyncio's own transport on `subprocess.Popen`, with the exit watched through a pidfd (or,
without pidfds, a thread waiting for the pid). Descriptors Popen's `close_fds` would close are
made close-on-exec for the moment of the spawn (see `src/uv/close_fds.rs`).
"""

import _signal  # type: ignore[import-not-found]  # CPython's C module; typeshed has no stub
import errno
import os
import signal
import stat
import subprocess
import sys
import threading
import warnings
from asyncio import log

from . import _asyncio_private as _private
from . import loop as _native

# The keyword arguments of Popen that uv_spawn expresses (with the values checked below).
_SPAWN_KEYWORDS = frozenset(
    ("executable", "cwd", "env", "close_fds", "pass_fds", "start_new_session", "restore_signals")
)
# Signals Popen(restore_signals=True) resets to their default in the child (libuv resets all).
_RESTORED_SIGNALS = frozenset(
    getattr(signal, name) for name in ("SIGPIPE", "SIGXFZ", "SIGXFSZ") if hasattr(signal, name)
)
# Every signal but those Popen resets anyway (SIG_IGN on one of them is what the child gets too).
_ALL_SIGNALS = tuple(int(s) for s in signal.valid_signals() if s not in _RESTORED_SIGNALS)
# Whether libuv watches its children with a SIGCHLD handler of its own (Linux without pidfds),
# which the program's SIGCHLD handler and libuv's would take from each other.
_LIBUV_SIGCHLD_HANDLER = (
    sys.platform.startswith("linux") and not _native.ChildProcess.exits_watched_by_pidfd()
)


async def make_subprocess_transport(
    loop, protocol, args, shell, stdin, stdout, stderr, bufsize, extra=None, **kwargs
):
    waiter = loop.create_future()
    if _spawnable(stdin, stdout, stderr, kwargs):
        transport = SpawnedTransport(
            loop, protocol, args, shell, stdin, stdout, stderr, bufsize,
            waiter=waiter, extra=extra, **kwargs,
        )
    else:
        transport = _private.UnixSubprocessTransport(
            loop, protocol, args, shell, stdin, stdout, stderr, bufsize,
            waiter=waiter, extra=extra, **kwargs,
        )
        _watch(loop, transport.get_pid(), transport)
    try:
        await waiter
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException:
        transport.close()
        await transport._wait()
        raise
    return transport


def _stdio_fd(child_fd, target):
    """The parent's descriptor that becomes the child's `child_fd` as it is (None for PIPE and
    DEVNULL, which are made here, and for STDOUT, which is stdout's), or -1 for a target
    uv_spawn cannot take."""
    if target in (subprocess.PIPE, subprocess.DEVNULL):
        return None
    if target == subprocess.STDOUT:
        return None if child_fd == 2 else -1
    if target is None:
        return child_fd
    if isinstance(target, int):
        return target if target >= 0 else -1
    try:
        return target.fileno()
    except Exception:
        return -1  # Popen raises what it raises for it


def _shares_stdio_as_popen_would(child_fd, target):
    """Whether the child can get the parent's descriptor for `child_fd` from libuv as Popen
    would give it: open, blocking (libuv's child clears O_NONBLOCK on fds 0-2, which the
    parent's shared descriptor would see), and, when inherited as it is, not close-on-exec
    (libuv's child clears that flag, Popen lets exec close the descriptor)."""
    fd = _stdio_fd(child_fd, target)
    if fd is None:
        return True
    if fd < 0:
        return False
    try:
        return os.get_blocking(fd) and (target is not None or os.get_inheritable(fd))
    except OSError:
        return False  # closed: Popen's error, through Popen


def _spawnable(stdin, stdout, stderr, kwargs):
    """Whether uv_spawn starts the child exactly as Popen would with these arguments."""
    if not kwargs.keys() <= _SPAWN_KEYWORDS:
        return False
    for child_fd, target in enumerate((stdin, stdout, stderr)):
        if not _shares_stdio_as_popen_would(child_fd, target):
            return False
    if not kwargs.get("restore_signals", True):
        return False
    pass_fds = kwargs.get("pass_fds", ())
    if not isinstance(pass_fds, (list, tuple, set, frozenset)):
        return False
    if not all(isinstance(fd, int) and fd >= 0 for fd in pass_fds):
        return False
    env = kwargs.get("env")
    if env is not None and not _plain_environment(env):
        return False
    # libuv's child starts with every signal at its default and none blocked. (The signal
    # module's C functions: its Python wrappers make an enum of every answer, 25 times slower.)
    if _signal.pthread_sigmask(signal.SIG_BLOCK, ()):
        return False
    ignored = signal.SIG_IGN
    for sig in _ALL_SIGNALS:
        if _signal.getsignal(sig) == ignored:
            return False
    if _LIBUV_SIGCHLD_HANDLER and _signal.getsignal(signal.SIGCHLD) not in (signal.SIG_DFL, None):
        return False
    return True


def _plain_environment(env):
    """Whether `env` is a mapping whose names have no "=" (Popen refuses those, or on 3.13+
    hands some to posix_spawn, which takes a leading one)."""
    try:
        return not any(b"=" in os.fsencode(name) for name in env.keys())
    except (AttributeError, TypeError):
        return False


class _Child:
    """What asyncio's subprocess transport uses of a Popen object, for a child libuv started."""

    def __init__(self, native, args, stdin, stdout, stderr):
        self._native = native
        self.args = args
        self.pid = native.pid
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self._returncode = None

    @property
    def returncode(self):
        if self._returncode is not None:
            return self._returncode
        return self._native.returncode

    @returncode.setter
    def returncode(self, value):
        self._returncode = value

    def poll(self):
        # libuv reaps the child; this only reports what it found.
        return self.returncode

    def send_signal(self, sig):
        self._native.send_signal(sig)

    def terminate(self):
        self.send_signal(signal.SIGTERM)

    def kill(self):
        self.send_signal(signal.SIGKILL)

    def __repr__(self):
        return f"<{type(self).__name__}: returncode: {self.returncode} args: {self.args!r}>"


def _environment(env):
    """Popen's environment list for `env` (whose names `_plain_environment` checked)."""
    return [os.fsencode(name) + b"=" + os.fsencode(value) for name, value in env.items()]


def _check_cwd(cwd):
    """The error Popen gives for a working directory it cannot change to, naming `cwd` as
    given."""
    try:
        mode = os.stat(cwd).st_mode
    except OSError as exc:
        raise OSError(exc.errno, os.strerror(exc.errno), cwd) from None
    if not stat.S_ISDIR(mode):
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), cwd)


class SpawnedTransport(_private.BaseSubprocessTransport):
    """asyncio's subprocess transport, over a child started by libuv."""

    def _start(self, args, shell, stdin, stdout, stderr, bufsize, executable=None, cwd=None,
               env=None, close_fds=True, pass_fds=(), start_new_session=False,
               restore_signals=True):
        given_args = args
        if shell:
            args = ["/bin/sh", "-c", args]
            if executable:
                args[0] = executable
        elif isinstance(args, (str, bytes, os.PathLike)):
            args = [args]
        else:
            args = list(args)
        program = executable if executable is not None else args[0]
        if pass_fds and not close_fds:
            warnings.warn("pass_fds overriding close_fds.", RuntimeWarning)
            close_fds = True
        env_list = _environment(env) if env is not None else None
        if cwd is not None:
            _check_cwd(cwd)
        parent_ends = {}
        close_after = []
        stdio = []
        try:
            for fd, target, mode in ((0, stdin, "wb"), (1, stdout, "rb"), (2, stderr, "rb")):
                if target is None:
                    stdio.append(fd)
                elif target == subprocess.PIPE:
                    r, w = os.pipe()
                    child, parent = (r, w) if fd == 0 else (w, r)
                    close_after.append(child)
                    parent_ends[fd] = open(parent, mode, buffering=0)
                    stdio.append(child)
                elif target == subprocess.DEVNULL:
                    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
                    close_after.append(null)
                    stdio.append(null)
                elif target == subprocess.STDOUT:
                    stdio.append(stdio[1])
                elif isinstance(target, int):
                    stdio.append(target)
                else:
                    stdio.append(target.fileno())
            if pass_fds:
                stdio.extend([-1] * (max(pass_fds) + 1 - len(stdio)))
                for fd in pass_fds:
                    if fd > 2:  # the standard ones are what stdin/stdout/stderr say
                        stdio[fd] = fd
            native = _native.ChildProcess(
                self._loop, program, args, env_list, cwd, stdio, bool(start_new_session),
                bool(close_fds), self._process_exited,
            )
        except BaseException:
            for pipe in parent_ends.values():
                pipe.close()
            raise
        finally:
            for fd in close_after:
                os.close(fd)
        self._proc = _Child(
            native, given_args, parent_ends.get(0), parent_ends.get(1), parent_ends.get(2)
        )


def close_watchers(loop):
    """The loop is closing: stop watching the exits of the children Popen started, reaping
    those that already exited; a thread reaps each one still running when it exits (asyncio's
    child watcher thread also outlives the loop), so none is left a zombie. (The loop's closing
    does the same for children libuv started.)"""
    for pid, pidfd in list(loop._child_pidfds.items()):
        loop._remove_reader(pidfd)
        os.close(pidfd)
        try:
            exited, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            continue
        if not exited:
            threading.Thread(
                target=_reap_when_done, args=(pid,), name=f"uvloop-reap-{pid}", daemon=True
            ).start()
    loop._child_pidfds.clear()


def _reap_when_done(pid):
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _watch(loop, pid, transport):
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        threading.Thread(
            target=_wait_in_thread, args=(loop, pid, transport), name=f"uvloop-wait-{pid}",
            daemon=True,
        ).start()
        return
    loop._child_pidfds[pid] = pidfd
    loop._add_reader(pidfd, _exited, loop, pid, transport)


def _exited(loop, pid, transport):
    pidfd = loop._child_pidfds.pop(pid)
    loop._remove_reader(pidfd)
    os.close(pidfd)
    transport._process_exited(_reap(pid, transport._proc))


def _wait_in_thread(loop, pid, transport):
    returncode = _reap(pid, transport._proc)
    try:
        loop.call_soon_threadsafe(transport._process_exited, returncode)
    except RuntimeError:
        pass  # the loop was closed meanwhile


def _reap(pid, popen):
    """The exit code of `pid` (negative: killed by that signal), as asyncio computes it; or
    what `popen` found when its poll() in the transport's close() reaped the child first."""
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        if popen.returncode is not None:
            return popen.returncode
        log.logger.warning(
            "child process pid %d exit status already read:  will report returncode 255", pid
        )
        return 255
    return os.waitstatus_to_exitcode(status)
