"""`uvloop.Loop`: the native loop core plus the per-run parts of asyncio's loop API.

What runs per callback (scheduling, timers, fd watchers) is native, in `uvloop.loop.Loop`.
What runs once per loop or per run (run_forever's set-up, executors, exception handlers,
signal handlers) is here, reusing asyncio's own code where it only needs the attributes
this class provides, so that behaviour and log records match asyncio exactly.
"""

import asyncio
import errno
import os
import selectors
import signal
import socket
import sys
import threading
import warnings
import weakref
from asyncio import coroutines, log

from . import _asyncio_private as _private
from . import _server, _subprocess, _transports
from . import loop as _native

_NUMERIC_NAMEINFO = socket.NI_NUMERICHOST | socket.NI_NUMERICSERV


def _is_numeric_host(host):
    """Whether getaddrinfo can answer for `host` without asking a resolver."""
    if host is None:
        return True
    if isinstance(host, bytes):
        try:
            host = host.decode("ascii")
        except UnicodeDecodeError:
            return False
    if not isinstance(host, str):
        return False
    for family, address in ((socket.AF_INET, host), (socket.AF_INET6, host.partition("%")[0])):
        try:
            socket.inet_pton(family, address)
        except (OSError, ValueError):
            continue
        return True
    return False


def _sighandler_noop(signum, frame):
    """Installed for loop-handled signals: the wake-up fd does the work."""


class Loop(_native.Loop, asyncio.AbstractEventLoop):
    """An asyncio event loop on libuv."""

    __module__ = "uvloop"

    def __init__(self):
        self._exception_handler = None
        self._default_executor = None
        self._asyncgens = weakref.WeakSet()
        self._asyncgens_shutdown_called = False
        self._executor_shutdown_called = False
        self._coroutine_origin_tracking_enabled = False
        self._coroutine_origin_tracking_saved_depth = None
        # signal number -> Handle, and the handler each replaced (restored on removal).
        self._signal_handlers = {}
        self._replaced_signal_handlers = {}
        # Signals and Ctrl-C reach the loop through this socket pair (signal.set_wakeup_fd).
        self._ssock = None
        self._csock = None
        # The wake-up fd this loop replaced for a run: signals it does not handle go on there.
        self._forward_signals_fd = None
        # fd -> transport, so that add_reader() refuses an fd a transport owns (as asyncio).
        self._transports = weakref.WeakValueDictionary()
        # Listening Unix socket -> inode of its file, removed on close (create_unix_server, 3.13+).
        self._unix_server_sockets = {}
        # Listening socket -> its uvloop.loop.ServerListener.
        self._listeners = {}
        # Child pid -> pidfd watched for its exit (see _subprocess).
        self._child_pidfds = {}
        _live_loops.add(self)
        # Made now, as asyncio makes its self-pipe: every descriptor of the loop's own exists
        # from its creation, so none can take the number of a user's watched fd that was
        # closed without remove_reader (which would replace the loop's reader).
        self._ensure_self_pipe()
        self.set_debug(_private.is_debug_mode())

    @property
    def _selector(self):
        return _SelectorView(self)

    # Name resolution: socket's own functions (so results and errors are exactly socket's), run
    # in libuv's thread pool unless the answer needs no lookup.

    async def getaddrinfo(self, host, port, *, family=0, type=0, proto=0, flags=0):
        resolve = self._getaddrinfo_debug if self._debug else socket.getaddrinfo
        if _is_numeric_host(host):
            return resolve(host, port, family, type, proto, flags)
        return await self._run_in_pool(resolve, host, port, family, type, proto, flags)

    async def getnameinfo(self, sockaddr, flags=0):
        if isinstance(flags, int) and flags & _NUMERIC_NAMEINFO == _NUMERIC_NAMEINFO:
            return socket.getnameinfo(sockaddr, flags)
        return await self._run_in_pool(socket.getnameinfo, sockaddr, flags)

    # sock_* on the data path: the system call at once, natively; a native wait only when the
    # socket is not ready. Checks as asyncio's.

    async def sock_recv(self, sock, n):
        """Receive up to `n` bytes from the non-blocking socket `sock`."""
        _private.check_ssl_socket(sock)
        if self._debug and sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")
        data = self._sock_recv_or_wait(sock, n)
        if data.__class__ is bytes:
            return data
        return await data

    async def sock_recv_into(self, sock, buf):
        """Receive into `buf` from the non-blocking socket `sock`; the byte count."""
        _private.check_ssl_socket(sock)
        if self._debug and sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")
        count = self._sock_recv_into_or_wait(sock, buf)
        if count.__class__ is int:
            return count
        return await count

    async def sock_sendall(self, sock, data):
        """Send all of `data` on the non-blocking socket `sock`."""
        _private.check_ssl_socket(sock)
        if self._debug and sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")
        rest = self._sock_sendall_or_wait(sock, data)
        if rest is not None:
            await rest

    def _ensure_fd_no_transport(self, fd):
        """RuntimeError if a transport that is not closing owns `fd` (asyncio's check, looked up
        without raising KeyError on the common path)."""
        fileno = fd
        if not isinstance(fileno, int):
            try:
                fileno = int(fileno.fileno())
            except (AttributeError, TypeError, ValueError):
                raise ValueError(f"Invalid file object: {fd!r}") from None
        transport = self._transport_of(fileno)
        if transport is None:
            ref = self._transports.data.get(fileno)
            transport = None if ref is None else ref()
        if transport is not None and not transport.is_closing():
            raise RuntimeError(f"File descriptor {fd!r} is used by transport {transport!r}")

    # Servers (see _server): listeners and transports made natively.

    async def create_server(self, protocol_factory, host=None, port=None, **kwargs):
        """A Server listening on every address of host:port (or on `sock`)."""
        return await _server.create_server(self, protocol_factory, host, port, **kwargs)

    async def create_unix_server(self, protocol_factory, path=None, **kwargs):
        """A Server listening on the Unix socket `path` (or on `sock`)."""
        return await _server.create_unix_server(self, protocol_factory, path, **kwargs)

    def _start_serving(self, protocol_factory, sock, sslcontext=None, server=None, backlog=100,
                       ssl_handshake_timeout=None, ssl_shutdown_timeout=None):
        _server.start_serving(
            self, protocol_factory, sock, sslcontext, server, backlog, ssl_handshake_timeout,
            ssl_shutdown_timeout,
        )

    def _stop_serving(self, sock):
        """Stop accepting on `sock` and close it; a Unix server's socket file is removed if it
        is still the one it bound (as asyncio does from 3.13 on)."""
        path = sock.getsockname() if sock in self._unix_server_sockets else None
        listener = self._listeners.pop(sock, None)
        if listener is not None:
            listener.close()
        sock.close()
        if path is None:
            return
        inode = self._unix_server_sockets.pop(sock)
        try:
            if os.stat(path).st_ino == inode:
                os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.logger.error("Unable to clean up listening UNIX socket %r: %r", path, exc)

    async def _sendfile_native(self, transp, file, offset, count):
        """sendfile on a stream transport: os.sendfile on its socket (as asyncio does), reading
        paused and writes refused meanwhile."""
        resume_reading = transp.is_reading()
        transp.pause_reading()
        await transp._make_empty_waiter()
        try:
            return await self.sock_sendfile(transp._sock, file, offset, count, fallback=False)
        finally:
            transp._reset_empty_waiter()
            if resume_reading:
                transp.resume_reading()

    async def _make_subprocess_transport(
        self, protocol, args, shell, stdin, stdout, stderr, bufsize, extra=None, **kwargs
    ):
        return await _subprocess.make_subprocess_transport(
            self, protocol, args, shell, stdin, stdout, stderr, bufsize, extra, **kwargs
        )

    def _make_read_pipe_transport(self, pipe, protocol, waiter=None, extra=None):
        transport = _transports.open_read_pipe(self, pipe, protocol)
        if waiter is not None:
            self.call_soon(_private.set_result_unless_cancelled, waiter, None)
        return transport

    def _make_write_pipe_transport(self, pipe, protocol, waiter=None, extra=None):
        transport = _transports.open_write_pipe(self, pipe, protocol)
        if waiter is not None:
            self.call_soon(_private.set_result_unless_cancelled, waiter, None)
        return transport

    def _make_datagram_transport(self, sock, protocol, address=None, waiter=None, extra=None):
        transport = _transports.open_datagram_transport(self, sock, protocol, address, extra)
        if waiter is not None:
            self.call_soon(_private.set_result_unless_cancelled, waiter, None)
        return transport

    def _make_socket_transport(self, sock, protocol, waiter=None, *, extra=None, server=None):
        transport = _native.open_socket_transport(self, sock, protocol, extra)
        if waiter is not None:
            self.call_soon(_private.set_result_unless_cancelled, waiter, None)
        return transport

    def _make_ssl_transport(
        self,
        rawsock,
        protocol,
        sslcontext,
        waiter=None,
        *,
        server_side=False,
        server_hostname=None,
        extra=None,
        server=None,
        **timeouts,
    ):
        # asyncio's TLS layer (its SSLProtocol, with the timeouts the running Python has) over
        # our socket transport.
        self._ensure_fd_no_transport(rawsock)
        ssl_protocol = _private.SSLProtocol(
            self, protocol, sslcontext, waiter, server_side, server_hostname, **timeouts
        )
        _native.open_socket_transport(self, rawsock, ssl_protocol, extra)
        return ssl_protocol._app_transport

    def run_forever(self):
        """Run until stop() is called."""
        self._check_closed()
        self._check_running()
        self._set_coroutine_origin_tracking(self._debug)
        old_agen_hooks = sys.get_asyncgen_hooks()
        old_wakeup_fd = self._install_wakeup_fd()
        try:
            self._thread_id = threading.get_ident()
            sys.set_asyncgen_hooks(
                firstiter=self._asyncgen_firstiter_hook,
                finalizer=self._asyncgen_finalizer_hook,
            )
            _private.set_running_loop(self)
            self._run()
        finally:
            self._stopping = False
            self._thread_id = None
            _private.set_running_loop(None)
            self._set_coroutine_origin_tracking(False)
            sys.set_asyncgen_hooks(*old_agen_hooks)
            self._restore_wakeup_fd(old_wakeup_fd)

    def close(self):
        """Close the loop: drop pending callbacks, release every resource, restore signals.

        Refuses while running; closing twice does nothing.
        """
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self.is_closed():
            return
        if self._debug:
            log.logger.debug("Close %r", self)
        _subprocess.close_watchers(self)
        self._close()
        self._close_self_pipe()
        self._executor_shutdown_called = True
        executor = self._default_executor
        if executor is not None:
            self._default_executor = None
            executor.shutdown(wait=False)
        if not sys.is_finalizing():
            for sig in list(self._signal_handlers):
                self.remove_signal_handler(sig)
        elif self._signal_handlers:
            warnings.warn(
                f"Closing the loop {self!r} on interpreter shutdown "
                f"stage, skipping signal handlers removal",
                ResourceWarning,
                source=self,
            )
            self._signal_handlers.clear()

    async def shutdown_default_executor(self, timeout=None):
        """Wait for the default executor's threads, at most `timeout` seconds (None: no limit)."""
        self._executor_shutdown_called = True
        if self._default_executor is None:
            return
        future = self.create_future()
        thread = threading.Thread(target=self._do_shutdown, args=(future,))
        thread.start()
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout)
        except asyncio.TimeoutError:
            warnings.warn(
                "The executor did not finishing joining "
                f"its threads within {timeout} seconds.",
                RuntimeWarning,
                stacklevel=2,
            )
            self._default_executor.shutdown(wait=False)
        else:
            thread.join()

    # Signals, as asyncio's unix loop handles them: the C-level handler writes the signal
    # number to the wake-up socket, whose reader schedules the registered handle.

    def add_signal_handler(self, sig, callback, *args):
        """Run `callback(*args)` in the loop when signal `sig` arrives (main thread only)."""
        if coroutines.iscoroutine(callback) or _private.iscoroutinefunction(callback):
            raise TypeError("coroutines cannot be used with add_signal_handler()")
        self._check_signal(sig)
        self._check_closed()
        self._ensure_self_pipe()
        try:
            # Raises ValueError outside the main thread.
            signal.set_wakeup_fd(self._csock.fileno())
        except (ValueError, OSError) as exc:
            raise RuntimeError(str(exc))

        handle = self._new_handle(callback, args)
        first = sig not in self._signal_handlers
        self._signal_handlers[sig] = handle
        try:
            previous = signal.signal(sig, _sighandler_noop)
            signal.siginterrupt(sig, False)
        except OSError as exc:
            del self._signal_handlers[sig]
            if not self._signal_handlers and not self.is_running():
                self._reset_wakeup_fd()
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig:d} cannot be caught")
            raise
        if first:
            self._replaced_signal_handlers[sig] = previous

    def remove_signal_handler(self, sig):
        """Remove the loop's handler for `sig`; True if there was one."""
        self._check_signal(sig)
        try:
            del self._signal_handlers[sig]
        except KeyError:
            return False
        handler = self._replaced_signal_handlers.pop(sig, None)
        if handler is None:
            handler = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
        try:
            signal.signal(sig, handler)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig:d} cannot be caught")
            raise
        # A running loop keeps the wake-up fd so that Ctrl-C still interrupts it.
        if not self._signal_handlers and not self.is_running():
            self._reset_wakeup_fd()
        return True

    def _check_signal(self, sig):
        if not isinstance(sig, int):
            raise TypeError(f"sig must be an int, not {sig!r}")
        if sig not in signal.valid_signals():
            raise ValueError(f"invalid signal number {sig}")

    def _handle_signal(self, sig):
        handle = self._signal_handlers.get(sig)
        if handle is None:
            return
        if handle._cancelled:
            self.remove_signal_handler(sig)
        else:
            self._add_callback_signalsafe(handle)

    def _ensure_self_pipe(self):
        if self._ssock is not None:
            return
        ssock, csock = socket.socketpair()
        ssock.setblocking(False)
        csock.setblocking(False)
        self._ssock, self._csock = ssock, csock
        self._add_reader(ssock.fileno(), self._read_from_self)

    def _close_self_pipe(self):
        if self._ssock is None:
            return
        self._remove_reader(self._ssock.fileno())
        self._ssock.close()
        self._csock.close()
        self._ssock = self._csock = None

    def _read_from_self(self):
        while True:
            try:
                data = self._ssock.recv(4096)
            except InterruptedError:
                continue
            except BlockingIOError:
                return
            if not data:
                return
            for signum in data:
                if signum in self._signal_handlers:
                    self._handle_signal(signum)
                elif signum and self._forward_signals_fd is not None:
                    self._forward_signal(signum)

    def _forward_signal(self, signum):
        # asyncio leaves the wake-up fd alone during a run, so another loop's handlers still
        # get their signals; this loop took the fd over (to wake from libuv's wait) and passes
        # them on.
        try:
            os.write(self._forward_signals_fd, bytes((signum,)))
        except OSError:
            pass

    def _install_wakeup_fd(self):
        """Point the signal wake-up fd at this loop for the run, so a signal ends the wait.

        Returns the fd to restore afterwards, or None when not in the main thread.
        """
        if threading.current_thread() is not threading.main_thread():
            return None
        self._ensure_self_pipe()
        try:
            old_fd = signal.set_wakeup_fd(self._csock.fileno())
        except (ValueError, OSError):
            return None
        if old_fd not in (-1, self._csock.fileno()):
            self._forward_signals_fd = old_fd
        return old_fd

    def _restore_wakeup_fd(self, old_fd):
        self._forward_signals_fd = None
        if old_fd is None or self._signal_handlers or self._csock is None:
            return
        if old_fd == self._csock.fileno():
            old_fd = -1
        try:
            signal.set_wakeup_fd(old_fd)
        except (ValueError, OSError) as exc:
            log.logger.info("set_wakeup_fd(%s) failed: %s", old_fd, exc)

    def _reset_wakeup_fd(self):
        try:
            signal.set_wakeup_fd(-1)
        except (ValueError, OSError) as exc:
            log.logger.info("set_wakeup_fd(-1) failed: %s", exc)


def _take_asyncio_methods(cls):
    """asyncio's own code for the per-run parts and the per-connection networking (see
    _asyncio_private): it needs only attributes that this class provides."""
    for methods in (_private.PER_RUN_METHODS, _private.NETWORKING_METHODS):
        for name, function in methods.items():
            if name in vars(cls):
                raise TypeError(f"{cls.__name__}.{name} is both defined and taken from asyncio")
            setattr(cls, name, function)


_take_asyncio_methods(Loop)


class _SelectorView:
    """What asyncio's transports read of their loop's selector (in their repr)."""

    __slots__ = ("_loop",)

    def __init__(self, loop):
        self._loop = loop

    def get_key(self, fd):
        key = self.get_map().get(fd)
        if key is None:
            raise KeyError(fd)
        return key

    def get_map(self):
        return self

    def get(self, fd, default=None):
        events = self._loop._watched_events(fd) if isinstance(fd, int) else 0
        if not events:
            return default
        return selectors.SelectorKey(fd, fd, events, None)


# Loops not yet garbage-collected: a forked child gives each its own kernel objects.
_live_loops = weakref.WeakSet()


def _after_fork_in_child():
    for loop in list(_live_loops):
        loop._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


def new_event_loop():
    """A new, not running, uvloop event loop."""
    return Loop()
