"""The transport classes: stream transports on libuv handles (`SocketTransport`), and, for
datagrams and pipes, asyncio's transports with native readers and writers."""

import asyncio
import errno
import os
import socket
import stat
import sys
from asyncio import log

from . import _asyncio_private as _private
from . import loop as _native


class SocketTransport(_private.FlowControlMixin, asyncio.Transport):
    """A connected stream socket (TCP or Unix) on a libuv handle.

    Made natively (`uvloop.loop.open_socket_transport`): the `_core` slot holds its
    `uvloop.loop.StreamCore`, and every method that runs per read, per write or per connection
    is a native method descriptor installed on this class. What is here runs on rare paths
    (error reports, reprs, sendfile's checks). A `_FlowControlMixin` as asyncio's socket
    transports are (sendfile's fallback checks), with flow control itself done natively.
    """

    __slots__ = ("_core", "__weakref__")

    _sendfile_compatible = _private.SendfileMode.TRY_NATIVE
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


_native.install_transport_class(SocketTransport, "socket")


# asyncio's datagram transport is an asyncio.DatagramTransport only from 3.12 on.
_DATAGRAM_BASES: tuple[type, ...] = (_private.SelectorDatagramTransport,)
if not issubclass(_DATAGRAM_BASES[0], asyncio.DatagramTransport):
    _DATAGRAM_BASES += (asyncio.DatagramTransport,)


class UnixDatagramTransport(*_DATAGRAM_BASES):  # type: ignore[misc]  # bases picked at import
    """An AF_UNIX datagram endpoint (which libuv cannot carry: see `uvloop.loop.DatagramCore`):
    asyncio's selector datagram transport, on every Python an instance of
    asyncio.DatagramTransport as documented, with its reader and connected sends native."""

    def __init__(self, loop, sock, protocol, address=None, waiter=None, extra=None):
        core = _native.DatagramCore(self, sock.fileno())
        # Before asyncio's __init__, which registers the reader it finds here.
        self._read_ready = core.read_ready
        super().__init__(loop, sock, protocol, address, waiter, extra)
        if self._extra["peername"] == "":
            self._sock = _UnnamedPeerSocket(self._sock)
        core.bind(_DATAGRAM_BASES[0].sendto.__get__(self))
        self.sendto = core.sendto


class _UnnamedPeerSocket:
    """The socket of an endpoint connected to an unnamed AF_UNIX peer (one end of a
    socketpair), as asyncio's datagram code sees it. That code tells a connected socket by a
    truthy peer name, and this one's is "", so it sends with `sock.sendto(data, None)`, which
    the socket module refuses (asyncio loses the datagram); here that is `send(data)`."""

    __slots__ = ("_sock",)

    def __init__(self, sock):
        self._sock = sock

    def sendto(self, data, *flags_and_address):
        if flags_and_address == (None,):
            return self._sock.send(data)
        return self._sock.sendto(data, *flags_and_address)

    def __getattr__(self, name):
        return getattr(self._sock, name)


# How the running Python's asyncio counts queued datagrams and treats empty ones.
_DATAGRAM_HEADER_SIZE = 8 if sys.version_info >= (3, 13) else 0
_DROPS_EMPTY_DATAGRAMS = sys.version_info < (3, 13)


class UDPTransport(_private.FlowControlMixin, asyncio.DatagramTransport):
    """A UDP endpoint on a libuv handle, with asyncio's `_SelectorDatagramTransport` behaviour
    (hot methods native, see SocketTransport)."""

    __slots__ = ("_core", "__weakref__")

    max_size = 256 * 1024

    def __init__(self, *args, **kwargs):
        raise TypeError("UDPTransport objects are made by the event loop")

    _loop = property(lambda self: self._core._loop)
    _protocol = property(lambda self: self.get_protocol())
    _protocol_paused = property(lambda self: self._core._protocol_paused)
    _conn_lost = property(lambda self: self._core._conn_lost)
    _address = property(lambda self: self._core._address)
    _sock_fd = property(lambda self: self._core._sock_fd)
    _closing = property(lambda self: self.is_closing())

    # asyncio's datagram transports can pause reading from 3.11 on.
    if sys.version_info >= (3, 11):
        pause_reading = property(lambda self: self._pause_reading)
        resume_reading = property(lambda self: self._resume_reading)
        is_reading = property(lambda self: self._is_reading)

    def set_write_buffer_limits(self, high=None, low=None):
        SocketTransport.set_write_buffer_limits(self, high, low)

    _fatal_error = SocketTransport._fatal_error
    _report_protocol_error = SocketTransport._report_protocol_error

    def __repr__(self):
        fd, closed, closing, reading, bufsize = self._core._repr_info()
        info = [self.__class__.__name__]
        if closed:
            info.append("closed")
        elif closing:
            info.append("closing")
        info.append(f"fd={fd}")
        if not closed:
            info.append("read=polling" if reading else "read=idle")
            info.append(f"write=<{'polling' if bufsize else 'idle'}, bufsize={bufsize}>")
        return "<{}>".format(" ".join(info))


_native.install_transport_class(UDPTransport, "datagram")


def open_datagram_transport(loop, sock, protocol, address=None, extra=None):
    """The transport of a datagram endpoint: native on libuv for UDP, asyncio's with native
    parts for AF_UNIX."""
    if sock.family == socket.AF_UNIX:
        return UnixDatagramTransport(loop, sock, protocol, address, None, extra)
    info = {"socket": _private.TransportSocket(sock)}
    try:
        info["sockname"] = sock.getsockname()
    except OSError:
        info["sockname"] = None
    if extra:
        info.update(extra)
    if "peername" not in info:
        try:
            info["peername"] = sock.getpeername()
        except OSError:
            info["peername"] = None
    return _native.open_udp_transport(
        loop, sock, protocol, address, info, _DATAGRAM_HEADER_SIZE, _DROPS_EMPTY_DATAGRAMS
    )


class _PipeTransport:
    """What the two pipe transports share: asyncio's rare paths of `_UnixReadPipeTransport` and
    `_UnixWritePipeTransport` (their hot methods are native, see SocketTransport)."""

    __slots__ = ()

    _loop = property(lambda self: self._core._loop)
    _protocol = property(lambda self: self.get_protocol())
    _pipe = property(lambda self: self.get_extra_info("pipe") if not self._core._closed else None)
    _fileno = property(lambda self: self._core._sock_fd)
    _closing = property(lambda self: self.is_closing())

    def _report(self, exc, message):
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

    def _info_log(self, message):
        log.logger.info("%r %s", self, message)

    def __repr__(self):
        fd, closed, closing, reading, writing, bufsize = self._core._repr_info()
        info = [self.__class__.__name__]
        if closed:
            info.append("closed")
        elif closing:
            info.append("closing")
        info.append(f"fd={fd}")
        if not closed:
            if isinstance(self, ReadPipeTransport):
                info.append("polling" if reading else "idle")
            else:
                info.append("polling" if writing else "idle")
                info.append(f"bufsize={bufsize}")
        return "<{}>".format(" ".join(info))


class ReadPipeTransport(_PipeTransport, asyncio.ReadTransport):
    """The read end of a pipe (or a FIFO, a socket, a character device) on a libuv handle, with
    asyncio's `_UnixReadPipeTransport` behaviour."""

    __slots__ = ("_core", "__weakref__")

    max_size = 256 * 1024

    def __init__(self, *args, **kwargs):
        raise TypeError("ReadPipeTransport objects are made by the event loop")

    def _fatal_error(self, exc, message="Fatal error on pipe transport"):
        if isinstance(exc, OSError) and exc.errno == errno.EIO:
            if self._core._loop is not None and self._core._loop.get_debug():
                log.logger.debug("%r: %s", self, message, exc_info=True)
        else:
            self._report(exc, message)
        self._force_close(exc)


class WritePipeTransport(_PipeTransport, _private.FlowControlMixin, asyncio.WriteTransport):
    """The write end of a pipe (or a FIFO, a socket, a character device) on a libuv handle, with
    asyncio's `_UnixWritePipeTransport` behaviour."""

    __slots__ = ("_core", "__weakref__")

    def __init__(self, *args, **kwargs):
        raise TypeError("WritePipeTransport objects are made by the event loop")

    _protocol_paused = property(lambda self: self._core._protocol_paused)
    _conn_lost = property(lambda self: self._core._conn_lost)

    def set_write_buffer_limits(self, high=None, low=None):
        SocketTransport.set_write_buffer_limits(self, high, low)

    def _fatal_error(self, exc, message="Fatal error on pipe transport"):
        if isinstance(exc, OSError):
            if self._core._loop is not None and self._core._loop.get_debug():
                log.logger.debug("%r: %s", self, message, exc_info=True)
        else:
            self._report(exc, message)
        self._force_close(exc)

    def _report_protocol_error(self, message, exc):
        self._report(exc, message)


_native.install_transport_class(ReadPipeTransport, "read_pipe")
_native.install_transport_class(WritePipeTransport, "write_pipe")


def open_read_pipe(loop, pipe, protocol):
    """asyncio's checks of a read pipe, then the native transport."""
    mode = os.fstat(pipe.fileno()).st_mode
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)):
        raise ValueError("Pipe transport is for pipes/sockets only.")
    os.set_blocking(pipe.fileno(), False)
    return _native.open_pipe_transport(loop, pipe, protocol, False, False)


def open_write_pipe(loop, pipe, protocol):
    """asyncio's checks of a write pipe, then the native transport, watched for its reading end
    going away where asyncio watches it (sockets and FIFOs)."""
    mode = os.fstat(pipe.fileno()).st_mode
    is_fifo = stat.S_ISFIFO(mode)
    is_socket = stat.S_ISSOCK(mode)
    if not (stat.S_ISCHR(mode) or is_fifo or is_socket):
        raise ValueError("Pipe transport is only for pipes, sockets and character devices")
    os.set_blocking(pipe.fileno(), False)
    watch = is_socket or (is_fifo and not sys.platform.startswith("aix"))
    return _native.open_pipe_transport(loop, pipe, protocol, True, watch)
