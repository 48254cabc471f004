"""add_reader / remove_reader / add_writer / remove_writer on real descriptors.

The specification is asyncio's selector loop (selector_events.py: `add_reader`, `_add_reader`,
`_remove_reader`, `_process_events`, `_ensure_fd_no_transport`; selectors.py:
`_fileobj_to_fd`, `_fileobj_lookup`).

Readiness is always waited for in real time (futures, short sleeps), never in a count of loop
iterations: a loop is free to poll for I/O less often than once per iteration while callbacks
keep it busy.
"""

import asyncio
import contextvars
import errno
import gc
import os
import socket
import tempfile
import weakref

import pytest

from conftest import run

# How long "nothing happens" is watched for: long enough for many blocking polls.
QUIET = 0.05


def settle(loop, seconds=QUIET):
    """Runs the loop for `seconds` of real time (its polls block on a timer meanwhile)."""
    run(loop, asyncio.sleep(seconds))


def wait_future(loop, fut, timeout=5):
    return run(loop, asyncio.wait_for(fut, timeout))


@pytest.fixture
def pipe():
    r, w = os.pipe()
    os.set_blocking(r, False)
    os.set_blocking(w, False)
    fds = [r, w]
    yield r, w, fds
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


@pytest.fixture
def sockpair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


class FilenoObject:
    """Anything with a fileno() method is a file object for add_reader."""

    def __init__(self, fileno):
        self._fileno = fileno

    def fileno(self):
        if isinstance(self._fileno, BaseException):
            raise self._fileno
        return self._fileno

    def __repr__(self):
        return f"<FilenoObject {self._fileno!r}>"


def fill_pipe(w):
    """Writes to the non-blocking `w` until the kernel buffer is full; returns the byte count."""
    total = 0
    chunk = b"x" * 65536
    while True:
        try:
            total += os.write(w, chunk)
        except BlockingIOError:
            return total


# --- readers --------------------------------------------------------------------------------


def test_add_reader_raw_fd_fires_with_args(loop, pipe):
    r, w, _ = pipe
    fut = loop.create_future()
    calls = []

    def on_readable(*args):
        calls.append(args)
        data = os.read(r, 100)
        loop.remove_reader(r)
        fut.set_result(data)

    assert loop.add_reader(r, on_readable, "a", 2, None) is None
    settle(loop)
    assert calls == []  # not readable yet
    os.write(w, b"hello")
    assert wait_future(loop, fut) == b"hello"
    assert calls == [("a", 2, None)]


def test_add_reader_socket_object(loop, sockpair):
    a, b = sockpair
    fut = loop.create_future()

    def on_readable(sock):
        fut.set_result(sock.recv(100))

    loop.add_reader(a, on_readable, a)
    b.send(b"ping")
    assert wait_future(loop, fut) == b"ping"
    # The socket object and its fd number name the same registration.
    assert loop.remove_reader(a.fileno()) is True
    assert loop.remove_reader(a) is False


def test_add_reader_file_object(loop, pipe):
    r, w, fds = pipe
    rfile = os.fdopen(r, "rb", buffering=0)
    fds.remove(r)
    try:
        fut = loop.create_future()
        loop.add_reader(rfile, lambda: fut.set_result(rfile.read(100)))
        os.write(w, b"file data")
        assert wait_future(loop, fut) == b"file data"
        assert loop.remove_reader(rfile) is True
        assert loop.remove_reader(rfile) is False
    finally:
        rfile.close()


def test_add_reader_object_with_fileno_method(loop, pipe):
    r, w, _ = pipe
    obj = FilenoObject(r)
    fut = loop.create_future()
    loop.add_reader(obj, lambda: fut.set_result(os.read(r, 10)))
    os.write(w, b"z")
    assert wait_future(loop, fut) == b"z"
    assert loop.remove_reader(r) is True


def test_reader_fires_on_pipe_eof(loop, pipe):
    r, w, fds = pipe
    fut = loop.create_future()

    def on_readable():
        loop.remove_reader(r)
        fut.set_result(os.read(r, 100))

    loop.add_reader(r, on_readable)
    settle(loop)
    assert not fut.done()
    os.close(w)
    fds.remove(w)
    assert wait_future(loop, fut) == b""


def test_reader_fires_on_socket_peer_close(loop, sockpair):
    a, b = sockpair
    received = []
    fut = loop.create_future()

    def on_readable():
        data = a.recv(100)
        received.append(data)
        if not data:
            loop.remove_reader(a)
            fut.set_result(None)

    loop.add_reader(a, on_readable)
    b.send(b"last words")
    b.close()
    wait_future(loop, fut)
    assert b"".join(received) == b"last words"
    assert received[-1] == b""


def test_reader_is_level_triggered(loop, pipe):
    # Unread data keeps the fd readable: the reader runs again and again until it is consumed.
    r, w, _ = pipe
    count = 0
    fut = loop.create_future()

    def on_readable():
        nonlocal count
        count += 1
        if count == 5:
            assert os.read(r, 10) == b"x"
            fut.set_result(None)

    loop.add_reader(r, on_readable)
    os.write(w, b"x")
    wait_future(loop, fut)
    settle(loop)
    assert count == 5  # once drained, it stops firing
    assert loop.remove_reader(r) is True


def test_reader_callback_runs_in_context_of_add_reader(loop, pipe):
    # asyncio's _add_reader makes the Handle with context=None: a copy of the current context.
    r, w, _ = pipe
    var = contextvars.ContextVar("var")
    var.set("at add_reader")
    fut = loop.create_future()
    loop.add_reader(r, lambda: fut.set_result(var.get()))
    var.set("later")
    os.write(w, b"x")
    assert wait_future(loop, fut) == "at add_reader"
    loop.remove_reader(r)


def test_replacing_reader_replaces_callback(loop, pipe):
    r, w, _ = pipe
    old_calls, new_calls = [], []
    fut = loop.create_future()
    loop.add_reader(r, old_calls.append, "old")

    def new(tag):
        new_calls.append(tag)
        if not fut.done():
            fut.set_result(None)

    loop.add_reader(r, new, "new")
    os.write(w, b"x")
    wait_future(loop, fut)
    settle(loop)  # the data stays unread: the new reader keeps firing, the old one never
    assert old_calls == []
    assert len(new_calls) >= 2 and set(new_calls) == {"new"}
    assert loop.remove_reader(r) is True
    assert loop.remove_reader(r) is False


def test_replaced_reader_already_due_in_this_iteration_does_not_run(loop):
    # Both fds become readable in the same poll; whichever reader runs first replaces the
    # other's. The replaced handle is cancelled (asyncio's _add_reader calls reader.cancel()),
    # so it must not run although it was already queued.
    pairs = [socket.socketpair() for _ in range(2)]
    try:
        (a0, b0), (a1, b1) = pairs
        old_runs = []
        new_runs = []
        fut = loop.create_future()

        def new_reader(i):
            new_runs.append(i)
            pairs[i][0].recv(10)
            loop.remove_reader(pairs[i][0])
            fut.set_result(None)

        def old_reader(i):
            old_runs.append(i)
            pairs[i][0].recv(10)
            loop.remove_reader(pairs[i][0])
            other = 1 - i
            loop.add_reader(pairs[other][0], new_reader, other)

        loop.add_reader(a0, old_reader, 0)
        loop.add_reader(a1, old_reader, 1)

        async def main():
            # Both writes happen inside one callback: the next poll sees both fds ready.
            b0.send(b"x")
            b1.send(b"y")
            await fut

        run(loop, main())
        settle(loop)
        assert len(old_runs) == 1
        assert new_runs == [1 - old_runs[0]]
    finally:
        for a, b in pairs:
            a.close()
            b.close()


def test_remove_reader_return_values(loop, pipe):
    r, w, _ = pipe
    assert loop.remove_reader(r) is False
    loop.add_reader(r, lambda: None)
    assert loop.remove_reader(r) is True
    assert loop.remove_reader(r) is False
    # A writer on the fd is not a reader.
    loop.add_writer(w, lambda: None)
    assert loop.remove_reader(w) is False
    assert loop.remove_writer(w) is True
    assert loop.remove_writer(w) is False


def test_removed_reader_never_runs(loop, pipe):
    r, w, _ = pipe
    calls = []
    loop.add_reader(r, calls.append, 1)
    assert loop.remove_reader(r) is True
    os.write(w, b"x")
    settle(loop)
    assert calls == []


def test_remove_reader_inside_its_callback(loop, pipe):
    r, w, _ = pipe
    calls = []
    results = []

    def on_readable():
        calls.append(1)
        results.append(loop.remove_reader(r))  # the data stays unread

    loop.add_reader(r, on_readable)
    os.write(w, b"x")
    settle(loop, 0.1)
    assert calls == [1]
    assert results == [True]
    assert loop.remove_reader(r) is False


def test_re_add_reader_inside_its_callback(loop, pipe):
    # Replacing a reader from inside itself: the new callback takes over.
    r, w, _ = pipe
    calls = []
    fut = loop.create_future()

    def second():
        calls.append("second")
        os.read(r, 10)
        loop.remove_reader(r)
        fut.set_result(None)

    def first():
        calls.append("first")
        loop.add_reader(r, second)

    loop.add_reader(r, first)
    os.write(w, b"x")
    wait_future(loop, fut)
    settle(loop)
    assert calls == ["first", "second"]


# --- writers --------------------------------------------------------------------------------


def test_add_writer_fires_when_writable_with_args(loop, sockpair):
    a, _ = sockpair
    fut = loop.create_future()
    calls = []

    def on_writable(*args):
        calls.append(args)
        loop.remove_writer(a)
        fut.set_result(None)

    assert loop.add_writer(a, on_writable, 1, "two") is None
    wait_future(loop, fut)
    settle(loop)
    assert calls == [(1, "two")]


def test_writer_waits_for_buffer_space(loop, pipe):
    r, w, _ = pipe
    fill_pipe(w)
    fut = loop.create_future()
    calls = []

    def on_writable():
        calls.append(1)
        loop.remove_writer(w)
        fut.set_result(None)

    loop.add_writer(w, on_writable)
    settle(loop)
    assert calls == []  # the pipe is full
    # Drain the pipe: it becomes writable.
    while True:
        try:
            if not os.read(r, 1 << 20):
                break
        except BlockingIOError:
            break
    wait_future(loop, fut)
    assert calls == [1]


def test_add_writer_file_object(loop, pipe):
    r, w, fds = pipe
    wfile = os.fdopen(w, "wb", buffering=0)
    fds.remove(w)
    try:
        fut = loop.create_future()

        def on_writable():
            wfile.write(b"via writer")
            loop.remove_writer(wfile)
            fut.set_result(None)

        loop.add_writer(wfile, on_writable)
        wait_future(loop, fut)
        assert os.read(r, 100) == b"via writer"
        assert loop.remove_writer(wfile) is False
    finally:
        wfile.close()


def test_replacing_writer_replaces_callback(loop, sockpair):
    a, _ = sockpair
    old_calls = []
    fut = loop.create_future()
    loop.add_writer(a, old_calls.append, "old")

    def new():
        loop.remove_writer(a)
        fut.set_result(None)

    loop.add_writer(a.fileno(), new)
    wait_future(loop, fut)
    settle(loop)
    assert old_calls == []


def test_remove_writer_inside_its_callback(loop, sockpair):
    a, _ = sockpair
    calls = []
    loop.add_writer(a, lambda: calls.append(loop.remove_writer(a)))
    settle(loop, 0.1)
    assert calls == [True]


# --- reader and writer on one fd ------------------------------------------------------------


def test_reader_and_writer_on_same_fd_are_independent(loop, sockpair):
    a, b = sockpair
    events = []
    writer_fut = loop.create_future()
    reader_fut = loop.create_future()

    def on_writable():
        events.append("w")
        assert loop.remove_writer(a) is True
        writer_fut.set_result(None)

    def on_readable():
        events.append("r")
        reader_fut.set_result(a.recv(100))

    loop.add_reader(a, on_readable)
    loop.add_writer(a, on_writable)
    wait_future(loop, writer_fut)
    settle(loop)
    # Writable at once; not readable until the peer sends. Removing the writer kept the reader.
    assert events == ["w"]
    b.send(b"data")
    assert wait_future(loop, reader_fut) == b"data"
    assert events == ["w", "r"]
    assert loop.remove_writer(a) is False
    assert loop.remove_reader(a) is True
    assert loop.remove_reader(a) is False


def test_remove_reader_keeps_writer(loop, sockpair):
    a, b = sockpair
    loop.add_reader(a, lambda: None)
    fut = loop.create_future()

    def on_writable():
        loop.remove_writer(a)
        fut.set_result("writer still works")

    loop.add_writer(a, on_writable)
    assert loop.remove_reader(a) is True
    assert wait_future(loop, fut) == "writer still works"


def test_reader_removing_writer_of_same_fd_in_same_iteration(loop, sockpair):
    # asyncio's _process_events queues the reader, then the writer of a ready fd; the reader
    # removes the writer, which cancels the queued writer handle: it must not run.
    a, b = sockpair
    b.send(b"x")
    calls = []
    fut = loop.create_future()

    def on_readable():
        calls.append("r")
        a.recv(10)
        loop.remove_reader(a)
        calls.append(loop.remove_writer(a))
        fut.set_result(None)

    loop.add_reader(a, on_readable)
    loop.add_writer(a, calls.append, "w")
    wait_future(loop, fut)
    settle(loop)
    assert calls == ["r", True]


# --- fd lifetime ----------------------------------------------------------------------------


def test_fd_number_reused_after_remove_and_close(loop):
    r1, w1 = os.pipe()
    try:
        fut1 = loop.create_future()
        loop.add_reader(r1, lambda: fut1.set_result(os.read(r1, 10)))
        os.write(w1, b"1")
        assert wait_future(loop, fut1) == b"1"
        assert loop.remove_reader(r1) is True
    finally:
        os.close(r1)
        os.close(w1)

    r2, w2 = os.pipe()
    try:
        if r2 != r1:
            # Make sure the new pipe really takes the old number.
            os.dup2(r2, r1, inheritable=False)
            os.close(r2)
            r2 = r1
        fut2 = loop.create_future()
        loop.add_reader(r2, lambda: fut2.set_result(os.read(r2, 10)))
        os.write(w2, b"2")
        assert wait_future(loop, fut2) == b"2"
        assert loop.remove_reader(r2) is True
    finally:
        os.close(r2)
        os.close(w2)


def test_remove_reader_after_fd_closed(loop):
    # The kernel drops a closed fd from epoll by itself; unregistering it afterwards is not an
    # error (selectors.EpollSelector.unregister ignores the OSError).
    r, w = os.pipe()
    loop.add_reader(r, lambda: None)
    os.close(r)
    os.close(w)
    assert loop.remove_reader(r) is True
    assert loop.remove_reader(r) is False
    settle(loop)


def test_remove_reader_of_closed_socket_object(loop):
    # A closed socket's fileno() is -1, but asyncio still finds its registration:
    # `_remove_reader` -> `selector.get_key(sock)` -> `_fileobj_lookup`, which on ValueError
    # searches the registered keys for that very object. So removal by the object works.
    a, b = socket.socketpair()
    calls = []
    loop.add_reader(a, calls.append, "r")
    a.close()
    b.close()
    assert loop.remove_reader(a) is True
    # Once unregistered, the object is just a socket whose fileno() is -1.
    with pytest.raises(ValueError, match="Invalid file descriptor: -1"):
        loop.remove_reader(a)
    settle(loop)
    assert calls == []


def test_remove_writer_of_closed_socket_object(loop):
    # As above, for the writer side.
    a, b = socket.socketpair()
    calls = []
    loop.add_writer(a, calls.append, "w")
    a.close()
    b.close()
    assert loop.remove_writer(a) is True
    # Once unregistered, the object is just a socket whose fileno() is -1.
    with pytest.raises(ValueError, match="Invalid file descriptor: -1"):
        loop.remove_writer(a)
    settle(loop)
    assert calls == []


def test_key_keeps_object_it_was_registered_with(loop):
    # asyncio replaces a reader with selector.modify(fd, ...), which changes the key's events and
    # data but keeps its fileobj: the socket first registered is still found by identity after
    # it was closed, although the reader was replaced through its fd number.
    a, b = socket.socketpair()
    calls = []
    loop.add_reader(a, calls.append, "first")
    loop.add_reader(a.fileno(), calls.append, "second")
    a.close()
    b.close()
    assert loop.remove_reader(a) is True
    settle(loop)
    assert calls == []


def test_fd_number_too_large(loop):
    # Such an fd can never be registered: removing it answers False (a dict lookup in
    # selectors), adding it fails where the number is converted to a C int.
    for fd in (2**31, 2**63, 2**64):
        assert loop.remove_reader(fd) is False
        assert loop.remove_writer(fd) is False
        with pytest.raises(OverflowError):
            loop.add_reader(fd, lambda: None)
        with pytest.raises(OverflowError):
            loop.add_writer(fd, lambda: None)
    with pytest.raises(OverflowError):
        loop.add_reader(FilenoObject(2**70), lambda: None)
    assert loop.remove_reader(FilenoObject(2**70)) is False


def unused_fd_number():
    """A descriptor number that is closed, and high enough not to be reused by the loop."""
    r, w = os.pipe()
    try:
        fd = os.dup2(r, 900, inheritable=False)
    finally:
        os.close(r)
        os.close(w)
    os.close(fd)
    return fd


def test_closed_fd_cannot_be_added(loop):
    # epoll_ctl fails with EBADF; asyncio lets the OSError out, errno and all.
    fd = unused_fd_number()
    with pytest.raises(OSError) as info:
        loop.add_reader(fd, lambda: None)
    assert info.value.errno == errno.EBADF
    assert info.value.strerror == os.strerror(errno.EBADF)
    assert loop.remove_reader(fd) is False
    with pytest.raises(OSError) as info:
        loop.add_writer(fd, lambda: None)
    assert info.value.errno == errno.EBADF
    assert loop.remove_writer(fd) is False


def test_regular_file_cannot_be_watched(loop):
    # epoll refuses regular files with EPERM; asyncio lets the PermissionError out.
    with tempfile.TemporaryFile() as f:
        with pytest.raises(PermissionError) as info:
            loop.add_reader(f, lambda: None)
        assert info.value.errno == errno.EPERM
        with pytest.raises(PermissionError):
            loop.add_writer(f.fileno(), lambda: None)
        assert loop.remove_reader(f) is False
        assert loop.remove_writer(f) is False


# --- bad input ------------------------------------------------------------------------------

WATCH_METHODS = ["add_reader", "add_writer", "remove_reader", "remove_writer"]


def call_watch(loop, method, fileobj):
    if method.startswith("add"):
        return getattr(loop, method)(fileobj, lambda: None)
    return getattr(loop, method)(fileobj)


@pytest.mark.parametrize("method", WATCH_METHODS)
@pytest.mark.parametrize(
    "fileobj", ["abc", None, 3.0, object(), b"1"], ids=lambda v: type(v).__name__
)
def test_non_file_object_is_value_error(loop, method, fileobj):
    with pytest.raises(ValueError) as info:
        call_watch(loop, method, fileobj)
    assert str(info.value) == f"Invalid file object: {fileobj!r}"


@pytest.mark.parametrize("method", WATCH_METHODS)
def test_negative_fd_is_value_error(loop, method):
    with pytest.raises(ValueError) as info:
        call_watch(loop, method, -1)
    assert str(info.value) == "Invalid file descriptor: -1"


@pytest.mark.parametrize("method", WATCH_METHODS)
@pytest.mark.parametrize(
    "bad_fileno",
    ["three", None, 2.5j, ValueError("I/O operation on closed file"), TypeError("no"),
     AttributeError("gone")],
    ids=repr,
)
def test_bad_fileno_result_is_invalid_file_object(loop, method, bad_fileno):
    # selectors._fileobj_to_fd: int(fileobj.fileno()) failing with AttributeError, TypeError or
    # ValueError means "Invalid file object".
    obj = FilenoObject(bad_fileno)
    with pytest.raises(ValueError) as info:
        call_watch(loop, method, obj)
    assert str(info.value) == f"Invalid file object: {obj!r}"


@pytest.mark.parametrize("method", WATCH_METHODS)
def test_negative_fileno_is_invalid_descriptor(loop, method):
    with pytest.raises(ValueError) as info:
        call_watch(loop, method, FilenoObject(-5))
    assert str(info.value) == "Invalid file descriptor: -5"


@pytest.mark.parametrize("method", WATCH_METHODS)
def test_fileno_raising_other_error_propagates(loop, method):
    # Only AttributeError, TypeError and ValueError become "Invalid file object".
    with pytest.raises(OSError, match="fileno failed"):
        call_watch(loop, method, FilenoObject(OSError("fileno failed")))


def test_closed_file_object_is_invalid(loop, pipe):
    r, w, fds = pipe
    rfile = os.fdopen(r, "rb", buffering=0)
    fds.remove(r)
    rfile.close()
    with pytest.raises(ValueError, match="Invalid file object"):
        loop.add_reader(rfile, lambda: None)


def test_bad_input_registers_nothing(loop, pipe):
    r, w, _ = pipe
    with pytest.raises(ValueError):
        loop.add_reader(FilenoObject("bad"), lambda: None)
    assert loop.remove_reader(r) is False
    calls = []
    loop.add_reader(r, calls.append, "ok")
    os.write(w, b"x")
    settle(loop)
    assert calls and set(calls) == {"ok"}
    loop.remove_reader(r)


# --- closed loop ----------------------------------------------------------------------------


def test_add_reader_writer_on_closed_loop_raise(loop, pipe):
    r, w, _ = pipe
    loop.close()
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.add_reader(r, lambda: None)
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.add_writer(w, lambda: None)


def test_remove_on_closed_loop_returns_false(loop, pipe):
    r, w, _ = pipe
    loop.add_reader(r, lambda: None)
    loop.add_writer(w, lambda: None)
    loop.close()
    assert loop.remove_reader(r) is False
    assert loop.remove_writer(w) is False
    # Never registered either.
    assert loop.remove_reader(w) is False


def test_closed_loop_check_comes_before_fd_number_check(loop):
    # asyncio: add_reader only converts file objects (_ensure_fd_no_transport) before
    # _add_reader's _check_closed; an int fd is validated later by the selector. So on a closed
    # loop a negative fd gives RuntimeError, and remove_reader gives False.
    loop.close()
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.add_reader(-1, lambda: None)
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.add_writer(-1, lambda: None)
    assert loop.remove_reader(-1) is False
    assert loop.remove_writer(-1) is False
    # A non-file object is rejected before the closed check.
    with pytest.raises(ValueError, match="Invalid file object"):
        loop.add_reader("abc", lambda: None)


def test_close_drops_watchers_and_releases_callbacks(loop, pipe):
    r, w, _ = pipe

    class Callback:
        def __call__(self):
            pass

    cb = Callback()
    ref = weakref.ref(cb)
    loop.add_reader(r, cb)
    del cb
    loop.close()
    gc.collect()
    assert ref() is None


def test_close_leaves_watched_fds_open(loop, pipe, sockpair):
    # Closing the loop closes its selector, not the descriptors it was watching.
    r, w, _ = pipe
    a, b = sockpair
    loop.add_reader(r, lambda: None)
    loop.add_writer(a, lambda: None)
    loop.close()
    os.write(w, b"still open")
    assert os.read(r, 100) == b"still open"
    b.send(b"socket too")
    assert a.recv(100) == b"socket too"


def test_remove_reader_releases_callback_and_file_object(loop, pipe):
    # The selector key holds the file object and the handle holds callback and args while
    # registered; removal (the handle is cancelled) lets them all go.
    r, w, _ = pipe

    class Arg:
        pass

    class Callback:
        def __call__(self, arg):
            pass

    obj, cb, arg = FilenoObject(r), Callback(), Arg()
    refs = [weakref.ref(x) for x in (obj, cb, arg)]
    loop.add_reader(obj, cb, arg)
    del obj, cb, arg
    gc.collect()
    assert all(ref() is not None for ref in refs)
    assert loop.remove_reader(r) is True
    gc.collect()
    assert [ref() for ref in refs] == [None, None, None]


# --- many fds -------------------------------------------------------------------------------


def test_many_socketpairs_all_delivered(loop):
    pairs = []
    try:
        for _ in range(200):
            a, b = socket.socketpair()
            a.setblocking(False)
            pairs.append((a, b))
        received = {}
        fut = loop.create_future()

        def on_readable(i, sock):
            received[i] = sock.recv(100)
            loop.remove_reader(sock)
            if len(received) == len(pairs) and not fut.done():
                fut.set_result(None)

        for i, (a, _) in enumerate(pairs):
            loop.add_reader(a, on_readable, i, a)
        # Half sent before the loop runs, half from inside it.
        for i, (_, b) in enumerate(pairs[:100]):
            b.send(b"%d" % i)

        async def send_rest():
            for i, (_, b) in enumerate(pairs[100:], 100):
                b.send(b"%d" % i)
                if i % 10 == 0:
                    await asyncio.sleep(0)
            await fut

        run(loop, send_rest())
        assert received == {i: b"%d" % i for i in range(200)}
        for a, _ in pairs:
            assert loop.remove_reader(a) is False
    finally:
        for a, b in pairs:
            a.close()
            b.close()


def test_many_writers_all_fire(loop):
    pairs = [socket.socketpair() for _ in range(200)]
    try:
        fired = set()
        fut = loop.create_future()

        def on_writable(i, sock):
            fired.add(i)
            loop.remove_writer(sock)
            if len(fired) == len(pairs):
                fut.set_result(None)

        for i, (a, _) in enumerate(pairs):
            loop.add_writer(a, on_writable, i, a)
        wait_future(loop, fut)
        assert fired == set(range(200))
    finally:
        for a, b in pairs:
            a.close()
            b.close()


# --- errors in callbacks --------------------------------------------------------------------


def test_reader_exception_goes_to_exception_handler(loop, pipe, sockpair):
    r, w, _ = pipe
    a, b = sockpair
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    errors = []

    def bad_reader():
        exc = ZeroDivisionError(f"boom {len(errors)}")
        errors.append(exc)
        if len(errors) == 3:
            # Not removed from inside: asyncio's message would then show the cancelled
            # handle's callback as None.
            loop.call_soon(loop.remove_reader, r)
        raise exc

    good = loop.create_future()
    loop.add_reader(r, bad_reader)
    loop.add_reader(a, lambda: good.set_result(a.recv(10)) if not good.done() else None)
    os.write(w, b"x")  # never read: the bad reader fires until it removes itself
    b.send(b"fine")
    assert wait_future(loop, good) == b"fine"
    loop.remove_reader(a)
    settle(loop, 0.1)
    assert len(errors) == 3
    assert len(contexts) == 3
    for ctx, exc in zip(contexts, errors):
        assert ctx["message"].startswith("Exception in callback ")
        assert "bad_reader" in ctx["message"]
        assert ctx["exception"] is exc
        assert "handle" in ctx
    # The loop is still fine.
    assert run(loop, asyncio.sleep(0, "alive")) == "alive"


def test_writer_exception_goes_to_exception_handler(loop, sockpair):
    a, _ = sockpair
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))

    def bad_writer():
        loop.call_soon(loop.remove_writer, a)
        raise ValueError("writer failed")

    loop.add_writer(a, bad_writer)
    settle(loop)
    assert len(contexts) == 1
    assert "bad_writer" in contexts[0]["message"]
    assert isinstance(contexts[0]["exception"], ValueError)
    assert contexts[0]["message"].startswith("Exception in callback ")


def test_reader_keyboard_interrupt_escapes_run(loop, pipe):
    # BaseException subclasses KeyboardInterrupt/SystemExit are not swallowed by Handle._run.
    r, w, _ = pipe

    def reader():
        loop.remove_reader(r)
        raise KeyboardInterrupt

    loop.add_reader(r, reader)
    os.write(w, b"x")
    loop.call_later(5, loop.stop)  # bounds the run if the interrupt is swallowed
    with pytest.raises(KeyboardInterrupt):
        loop.run_forever()
    assert not loop.is_running()
