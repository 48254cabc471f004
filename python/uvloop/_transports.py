"""Stream transports over TCP and Unix sockets.

`SocketTransport` is an `asyncio.Transport` with asyncio's `_SelectorSocketTransport`
behaviour. What runs per read or per write lives in its native half,
`uvloop.loop.StreamTransport` (bound onto each instance, so a call such as
`transport.write(data)` goes straight to native code); what runs once per connection, and the
error reports, are here.
"""

import asyncio
import collections
import contextvars
import inspect
import itertools
import os
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
    """The read end of a pipe (or FIFO, tty, socket): asyncio's, reading natively."""

    def _read_ready(self):
        try:
            data = _native.read(self._fileno)
        except OSError as exc:
            self._fatal_error(exc, "Fatal read error on pipe transport")
            return
        if data is None:
            return
        if data:
            self._protocol.data_received(data)
            return
        if self._loop.get_debug():
            log.logger.info("%r was closed by peer", self)
        self._closing = True
        self._loop._remove_reader(self._fileno)
        self._loop.call_soon(self._protocol.eof_received)
        self._loop.call_soon(self._call_connection_lost, None)


class _WriteChunks:
    """A write pipe's queue: what asyncio appends to its bytearray, kept as chunks (bytes by
    reference, other buffers copied as asyncio copies them) and sent with os.writev, so that no
    byte is copied again while it waits."""

    __slots__ = ("_chunks", "_size")

    # Chunks per writev (well under IOV_MAX).
    MAX_VECTORS = 64

    def __init__(self):
        self._chunks = collections.deque()
        self._size = 0

    def __iadd__(self, data):
        chunk = data if type(data) is bytes else bytes(data)
        if chunk:
            self._chunks.append(memoryview(chunk))
            self._size += len(chunk)
        return self

    def __len__(self):
        return self._size

    def __bool__(self):
        return self._size > 0

    def clear(self):
        self._chunks.clear()
        self._size = 0

    def vectors(self):
        return list(itertools.islice(self._chunks, self.MAX_VECTORS))

    def consume(self, count):
        """Drops the first `count` bytes (sent)."""
        self._size -= count
        chunks = self._chunks
        while count:
            head = chunks[0]
            if count < len(head):
                chunks[0] = head[count:]
                return
            count -= len(head)
            chunks.popleft()


class WritePipeTransport(unix_events._UnixWritePipeTransport):
    """The write end of a pipe (or FIFO, tty, socket): asyncio's, with a queue of chunks
    written by os.writev instead of a bytearray that every write copies into and shifts."""

    def __init__(self, loop, pipe, protocol, waiter=None, extra=None):
        super().__init__(loop, pipe, protocol, waiter, extra)
        self._buffer = _WriteChunks()

    def _write_ready(self):
        try:
            sent = os.writev(self._fileno, self._buffer.vectors())
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._buffer.clear()
            self._conn_lost += 1
            # _fatal_error() leaves the writer alone once the buffer is empty.
            self._loop._remove_writer(self._fileno)
            self._fatal_error(exc, "Fatal write error on pipe transport")
            return
        self._buffer.consume(sent)
        if self._buffer:
            return
        self._loop._remove_writer(self._fileno)
        self._maybe_resume_protocol()  # may write again
        if self._closing:
            self._loop._remove_reader(self._fileno)
            self._call_connection_lost(None)
