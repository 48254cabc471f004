"""Stream transports over TCP and Unix sockets.

`SocketTransport` is an `asyncio.Transport` with asyncio's `_SelectorSocketTransport`
behaviour. What runs per read or per write lives in its native half,
`uvloop.loop.StreamTransport` (bound onto each instance, so a call such as
`transport.write(data)` goes straight to native code); what runs once per connection, and the
error reports, are here.
"""

import asyncio
import contextvars
import inspect
import socket
import warnings
from asyncio import (
    base_events,
    constants,
    futures,
    log,
    selector_events,
    transports,
    trsock,
    unix_events,
)

from . import loop as _native

# Server._attach()/_detach() take the transport from 3.13 on (for close_clients()).
_SERVER_TRACKS_TRANSPORTS = len(inspect.signature(base_events.Server._attach).parameters) > 1

# The native methods each transport exposes as its own.
_NATIVE_METHODS = (
    "write",
    "writelines",
    "write_eof",
    "can_write_eof",
    "close",
    "abort",
    "is_closing",
    "is_reading",
    "pause_reading",
    "resume_reading",
    "get_write_buffer_size",
    "get_write_buffer_limits",
    "get_protocol",
    "set_protocol",
)


def _set_nodelay(sock):
    """TCP_NODELAY on every TCP socket; asyncio skips sockets made with proto 0, which are TCP
    too (and then suffer Nagle's delay with split writes)."""
    if (
        sock.family in (socket.AF_INET, socket.AF_INET6)
        and sock.type == socket.SOCK_STREAM
        and sock.proto in (0, socket.IPPROTO_TCP)
    ):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class SocketTransport(transports._FlowControlMixin, asyncio.Transport):
    """A connected stream socket (TCP or Unix) driven by the loop.

    A `_FlowControlMixin` as asyncio's socket transports are (sendfile's fallback checks), with
    flow control itself done natively.
    """

    _sendfile_compatible = constants._SendfileMode.TRY_NATIVE
    _start_tls_compatible = True

    def __init__(self, loop, sock, protocol, waiter=None, extra=None, server=None):
        asyncio.BaseTransport.__init__(self, extra)
        self._extra["socket"] = trsock.TransportSocket(sock)
        try:
            self._extra["sockname"] = sock.getsockname()
        except OSError:
            self._extra["sockname"] = None
        if "peername" not in self._extra:
            try:
                self._extra["peername"] = sock.getpeername()
            except OSError:
                self._extra["peername"] = None
        self._loop = loop
        self._sock = sock
        self._sock_fd = sock.fileno()
        self._protocol_connected = True
        self._empty_waiter = None
        self._core = core = _native.StreamTransport(
            loop, self._sock_fd, protocol, self, contextvars.copy_context()
        )
        for name in _NATIVE_METHODS:
            setattr(self, name, getattr(core, name))
        self._server = server
        if server is not None:
            if _SERVER_TRACKS_TRANSPORTS:
                server._attach(self)
            else:
                server._attach()
        loop._transports[self._sock_fd] = self
        _set_nodelay(sock)
        loop.call_soon(protocol.connection_made, self)
        # Reading starts only after connection_made().
        loop.call_soon(core._start_reading)
        if waiter is not None:
            loop.call_soon(futures._set_result_unless_cancelled, waiter, None)

    @property
    def _protocol(self):
        return self._core.get_protocol()

    @property
    def _protocol_paused(self):
        return self._core._protocol_paused

    @property
    def _closing(self):
        return self._core.is_closing()

    @property
    def _conn_lost(self):
        return self._core._conn_lost

    def set_write_buffer_limits(self, high=None, low=None):
        if high is None:
            high = 64 * 1024 if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._core._set_write_buffer_limits(high, low)

    def _call_connection_lost(self, exc):
        if self._sock is None:
            return
        try:
            if self._protocol_connected:
                self._core.get_protocol().connection_lost(exc)
        finally:
            self._sock.close()
            self._sock = None
            server = self._server
            if server is not None:
                self._server = None
                if _SERVER_TRACKS_TRANSPORTS:
                    server._detach(self)
                else:
                    server._detach()
            self._core._connection_lost()

    def _fatal_error(self, exc, message="Fatal error on transport"):
        if isinstance(exc, OSError):
            if self._loop.get_debug():
                log.logger.debug("%r: %s", self, message, exc_info=True)
        else:
            self._loop.call_exception_handler(
                {
                    "message": message,
                    "exception": exc,
                    "transport": self,
                    "protocol": self._protocol,
                }
            )
        self._core._force_close(exc)

    def _force_close(self, exc):
        self._core._force_close(exc)

    def _report_protocol_error(self, message, exc):
        self._loop.call_exception_handler(
            {
                "message": message,
                "exception": exc,
                "transport": self,
                "protocol": self._protocol,
            }
        )

    def _debug_log(self, message):
        log.logger.debug("%r %s", self, message)

    # sendfile() waits for the write buffer to drain through this future.

    def _make_empty_waiter(self):
        if self._empty_waiter is not None:
            raise RuntimeError("Empty waiter is already set")
        self._empty_waiter = waiter = self._loop.create_future()
        self._core._empty_waiter = waiter
        if not self._core.get_write_buffer_size():
            waiter.set_result(None)
        return waiter

    def _reset_empty_waiter(self):
        self._empty_waiter = None
        self._core._empty_waiter = None

    def __repr__(self):
        info = [self.__class__.__name__]
        if self._sock is None:
            info.append("closed")
        elif self._core.is_closing():
            info.append("closing")
        info.append(f"fd={self._sock_fd}")
        if self._sock is not None and not self._loop.is_closed():
            events = self._loop._watched_events(self._sock_fd)
            info.append("read=polling" if events & 1 else "read=idle")
            write = "polling" if events & 2 else "idle"
            info.append(f"write=<{write}, bufsize={self._core.get_write_buffer_size()}>")
        return "<{}>".format(" ".join(info))

    def __del__(self, _warn=warnings.warn):
        if getattr(self, "_sock", None) is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self._sock.close()


# asyncio's datagram transport is an asyncio.DatagramTransport only from 3.12 on.
_DATAGRAM_BASES = (selector_events._SelectorDatagramTransport,)
if not issubclass(_DATAGRAM_BASES[0], asyncio.DatagramTransport):
    _DATAGRAM_BASES += (asyncio.DatagramTransport,)


class DatagramTransport(*_DATAGRAM_BASES):
    """A datagram endpoint: asyncio's selector datagram transport, on every Python an instance
    of asyncio.DatagramTransport as documented, with its reader and the common case of
    `sendto` native (`uvloop.loop.DatagramCore`)."""

    def __init__(self, loop, sock, protocol, address=None, waiter=None, extra=None):
        core = _native.DatagramCore(self, sock.fileno(), sock.family)
        # Before asyncio's __init__, which registers the reader it finds here.
        self._read_ready = core.read_ready
        super().__init__(loop, sock, protocol, address, waiter, extra)
        core.bind(_DATAGRAM_BASES[0].sendto.__get__(self))
        self.sendto = core.sendto


class ReadPipeTransport(unix_events._UnixReadPipeTransport):
    """The read end of a pipe (or FIFO, tty, socket): asyncio's, with its reader native
    (`uvloop.loop.PipeReader`)."""

    def __init__(self, loop, pipe, protocol, waiter=None, extra=None):
        # Before asyncio's __init__, which registers the reader it finds here.
        self._read_ready = _native.PipeReader(self, pipe.fileno()).read_ready
        super().__init__(loop, pipe, protocol, waiter, extra)

    def _read_ended(self, exc):
        """The reader met end of file (exc is None) or a failed read."""
        if exc is not None:
            self._fatal_error(exc, "Fatal read error on pipe transport")
            return
        if self._loop.get_debug():
            log.logger.info("%r was closed by peer", self)
        self._closing = True
        self._loop._remove_reader(self._fileno)
        self._loop.call_soon(self._protocol.eof_received)
        self._loop.call_soon(self._call_connection_lost, None)


class WritePipeTransport(unix_events._UnixWritePipeTransport):
    """The write end of a pipe (or FIFO, tty, socket): asyncio's, with its queue and writer
    native (`uvloop.loop.PipeWriteQueue`): chunks kept as written and sent with writev, instead
    of a bytearray that every write copies into and every partial write shifts."""

    def __init__(self, loop, pipe, protocol, waiter=None, extra=None):
        super().__init__(loop, pipe, protocol, waiter, extra)
        self._buffer = _native.PipeWriteQueue(self, self._fileno)
        self._write_ready = self._buffer.write_ready

    def _write_failed(self, exc):
        self._buffer.clear()
        self._conn_lost += 1
        # _fatal_error() leaves the writer alone once the buffer is empty.
        self._loop._remove_writer(self._fileno)
        self._fatal_error(exc, "Fatal write error on pipe transport")

    def _write_drained(self):
        self._loop._remove_writer(self._fileno)
        self._maybe_resume_protocol()  # may write again
        if self._closing:
            self._loop._remove_reader(self._fileno)
            self._call_connection_lost(None)
