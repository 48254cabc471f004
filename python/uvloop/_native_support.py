"""Python helpers the native loop calls on rare paths: error reports, reprs and debug stacks.

They run once per error or per debug-mode handle, never per callback, so they stay in Python
and reuse asyncio's own formatting to produce the same messages and log records.
"""

import errno
import socket
import sys
from asyncio import log

from . import _asyncio_private as _private

_FORMAT_TAKES_DEBUG = sys.version_info >= (3, 13)


def extract_stack():
    """The stack of the Python code that called into the loop (the native frame has none)."""
    return _private.extract_stack(sys._getframe(1))


def _format_callback(handle, callback, args):
    if _FORMAT_TAKES_DEBUG:
        return _private.format_callback_source(
            callback, args, debug=handle._loop.get_debug()
        )
    return _private.format_callback_source(callback, args)


def handle_repr(handle):
    """asyncio's Handle/TimerHandle repr for a native handle."""
    info = [type(handle).__name__]
    if handle._cancelled:
        info.append("cancelled")
    when = getattr(handle, "_when", None)
    if when is not None:
        info.append(f"when={when}")
    callback = handle._callback
    if callback is not None:
        info.append(_format_callback(handle, callback, handle._args))
    traceback = handle._source_traceback
    if traceback:
        frame = traceback[-1]
        info.append(f"created at {frame[0]}:{frame[1]}")
    return "<{}>".format(" ".join(info))


def report_callback_error(handle, callback, args, exc):
    """What asyncio's Handle._run does when a callback raises."""
    context = {
        "message": f"Exception in callback {_format_callback(handle, callback, args)}",
        "exception": exc,
        "handle": handle,
    }
    if handle._source_traceback:
        context["source_traceback"] = handle._source_traceback
    handle._loop.call_exception_handler(context)


def warn_slow_callback(handle, seconds):
    log.logger.warning(
        "Executing %s took %.3f seconds", _private.format_handle(handle), seconds
    )


def check_callback(callback, method):
    _private.PER_RUN_METHODS["_check_callback"](None, callback, method)


def report_protocol_callback_error(loop, callback, exc):
    """A protocol callback run by a native transport raised: what asyncio's Handle._run reports."""
    if _FORMAT_TAKES_DEBUG:
        source = _private.format_callback_source(callback, (), debug=loop.get_debug())
    else:
        source = _private.format_callback_source(callback, ())
    loop.call_exception_handler({"message": f"Exception in callback {source}", "exception": exc})


_OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


def report_accept_error(loop, sock, exc):
    """A server's accept failed: asyncio's report."""
    if isinstance(exc, OSError) and exc.errno in _OUT_OF_RESOURCES:
        message = "socket.accept() out of system resource"
    else:
        message = "Error accepting a connection"
    loop.call_exception_handler(
        {"message": message, "exception": exc, "socket": _private.TransportSocket(sock)}
    )


def socket_for_fd(fd):
    """A socket object owning `fd` (a duplicate of an accepted connection's descriptor), in
    non-blocking mode as asyncio's transports' sockets are (debug-mode `sock_*` and `sendfile`
    refuse a socket whose timeout is not 0)."""
    sock = socket.socket(fileno=fd)
    sock.setblocking(False)
    return sock


def numeric_datagram_address(sock, addr):
    """`addr` with its host in numbers, for `sock.sendto`. A host name is refused with
    ValueError: resolving it would block the loop on the resolver (uvloop refuses it too);
    what the socket module refuses otherwise raises its own error."""
    if not isinstance(addr, tuple):
        raise TypeError(f"{sock.family.name} address must be tuple, not {type(addr).__name__}")
    host, port = addr[0], addr[1]
    try:
        infos = socket.getaddrinfo(host, port, sock.family, socket.SOCK_DGRAM, 0, socket.AI_NUMERICHOST)
    except socket.gaierror as exc:
        if exc.errno != socket.EAI_NONAME:
            raise
        raise ValueError(
            f"sendto(): address {addr!r} needs a DNS lookup, which would block the event loop; "
            "resolve it first (loop.getaddrinfo) and send to the numeric address"
        ) from None
    return infos[0][4]
