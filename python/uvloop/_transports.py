"""The transport classes: stream transports on libuv handles (`SocketTransport`), and, for
datagrams and pipes, asyncio's transports with native readers and writers."""

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


class SocketTransport(transports._FlowControlMixin, asyncio.Transport):
    """A connected stream socket (TCP or Unix) on a libuv handle.

    Made natively (`uvloop.loop.open_socket_transport`): the `_core` slot holds its
    `uvloop.loop.StreamCore`, and every method that runs per read, per write or per connection
    is a native method descriptor installed on this class. What is here runs on rare paths
    (error reports, reprs, sendfile's checks). A `_FlowControlMixin` as asyncio's socket
    transports are (sendfile's fallback checks), with flow control itself done natively.
    """

    __slots__ = ("_core", "__weakref__")

    _sendfile_compatible = constants._SendfileMode.TRY_NATIVE
    _start_tls_compatible = True

    def __init__(self, *args, **kwargs):
        raise TypeError("SocketTransport objects are made by the event loop")

    # Attributes asyncio's own code reads (sendfile, TLS), from the native state.
    _loop = property(lambda self: self._core._loop)
    _protocol = property(lambda self: self.get_protocol())
    _protocol_paused = property(lambda self: self._core._protocol_paused)
    _conn_lost = property(lambda self: self._core._conn_lost)
    _sock = property(lambda self: self._core._sock)
    _sock_fd = property(lambda self: self._core._sock_fd)
    _closing = property(lambda self: self.is_closing())

    def set_write_buffer_limits(self, high=None, low=None):
        if high is None:
            high = 64 * 1024 if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._core._set_write_buffer_limits(high, low)

    def _fatal_error(self, exc, message="Fatal error on transport"):
        if isinstance(exc, OSError):
            if self._core._loop is not None and self._core._loop.get_debug():
                log.logger.debug("%r: %s", self, message, exc_info=True)
        else:
            self._core._loop.call_exception_handler(
                {
                    "message": message,
                    "exception": exc,
                    "transport": self,
                    "protocol": self.get_protocol(),
                }
            )
        self._force_close(exc)

    def _report_protocol_error(self, message, exc):
        self._core._loop.call_exception_handler(
            {
                "message": message,
                "exception": exc,
                "transport": self,
                "protocol": self.get_protocol(),
            }
        )

    def _debug_log(self, message):
        log.logger.debug("%r %s", self, message)

    def __repr__(self):
        fd, closed, closing, reading, writing, bufsize = self._core._repr_info()
        info = [self.__class__.__name__]
        if closed:
            info.append("closed")
        elif closing:
            info.append("closing")
        info.append(f"fd={fd}")
        if not closed:
            info.append("read=polling" if reading else "read=idle")
            info.append(f"write=<{'polling' if writing else 'idle'}, bufsize={bufsize}>")
        return "<{}>".format(" ".join(info))


_native.install_socket_transport(SocketTransport)


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
