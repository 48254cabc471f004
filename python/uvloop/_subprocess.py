"""Child processes: asyncio's subprocess transport, with exits watched through pidfds.

A pidfd becomes readable when its process exits, so the loop learns of the exit like any other
I/O, reaps exactly that pid (never processes started elsewhere by `subprocess` or `os.fork`),
needs no signal handler, and works in any thread. Where pidfds are unavailable (Linux before
5.3), a thread waits for the pid instead.
"""

import os
import threading
from asyncio import log, unix_events


async def make_subprocess_transport(
    loop, protocol, args, shell, stdin, stdout, stderr, bufsize, extra=None, **kwargs
):
    waiter = loop.create_future()
    transport = unix_events._UnixSubprocessTransport(
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


def close_watchers(loop):
    """The loop is closing: stop watching its children, reaping those that already exited."""
    for pid, pidfd in list(loop._child_pidfds.items()):
        loop._remove_reader(pidfd)
        os.close(pidfd)
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
    loop._child_pidfds.clear()


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
    transport._process_exited(_reap(pid))


def _wait_in_thread(loop, pid, transport):
    returncode = _reap(pid)
    try:
        loop.call_soon_threadsafe(transport._process_exited, returncode)
    except RuntimeError:
        pass  # the loop was closed meanwhile


def _reap(pid):
    """The exit code of `pid` (negative: killed by that signal), as asyncio computes it."""
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        log.logger.warning(
            "child process pid %d exit status already read:  will report returncode 255", pid
        )
        return 255
    return os.waitstatus_to_exitcode(status)
