"""Servers: `create_server` and `create_unix_server`, and the `Server` they return.

`Server` is asyncio's Server of the running Python (its `serve_forever`, `wait_closed`,
`close_clients`, ... with each version's behaviour) whose connection accounting is native
(`uvloop.loop.ServerClients`): each listening socket is a `uvloop.loop.ServerListener` that
accepts connections and makes their transports in Rust, so no Python code runs per connection
but the protocol factory. The functions here run once per call.
"""

import collections.abc
import contextvars
import errno
import itertools
import os
import socket
import stat
import sys
from asyncio import log, tasks

from . import _asyncio_private as _private
from . import loop as _native

_HAS_IPV6 = hasattr(socket, "AF_INET6")
# Keyword arguments the running Python's asyncio has.
_HAS_SSL_SHUTDOWN_TIMEOUT = sys.version_info >= (3, 11)
_HAS_KEEP_ALIVE = sys.version_info >= (3, 13)
_HAS_CLEANUP_SOCKET = sys.version_info >= (3, 13)
# 3.13 skips addresses of a disabled family (EADDRNOTAVAIL) and words bind errors with str(err).
_SKIPS_UNAVAILABLE_ADDRESSES = sys.version_info >= (3, 13)


# Marks a keyword argument that was not given (for those only some Pythons accept).
_NOT_GIVEN = object()


class Server(_private.Server):
    """asyncio's Server, with the connections of its listeners counted natively."""

    def __init__(
        self, loop, sockets, protocol_factory, ssl_context, backlog, ssl_handshake_timeout,
        ssl_shutdown_timeout=None,
    ):
        if _HAS_SSL_SHUTDOWN_TIMEOUT:
            super().__init__(
                loop, sockets, protocol_factory, ssl_context, backlog, ssl_handshake_timeout,
                ssl_shutdown_timeout,
            )
        else:
            super().__init__(
                loop, sockets, protocol_factory, ssl_context, backlog, ssl_handshake_timeout
            )
        # asyncio's own Server keeps a WeakSet of transports here (3.13+).
        self._clients = _native.ServerClients(self)

    # Before 3.13 asyncio counts connections in _active_count: the native accounting answers.
    @property
    def _active_count(self):
        return len(self._clients)

    @_active_count.setter
    def _active_count(self, value):
        """asyncio's __init__ sets it to 0; the count is the native one."""

    def close(self):
        self._clients._server_closed()
        super().close()


def _unexpected(function, name):
    return TypeError(f"{function}() got an unexpected keyword argument {name!r}")


def _set_reuseport(sock):
    if not hasattr(socket, "SO_REUSEPORT"):
        raise ValueError("reuse_port not supported by socket module")
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    except OSError:
        raise ValueError(
            "reuse_port not supported by socket module, SO_REUSEPORT defined but not implemented."
        )


def _check_ssl_arguments(ssl, ssl_handshake_timeout, ssl_shutdown_timeout, unix):
    if isinstance(ssl, bool):
        raise TypeError("ssl argument must be an SSLContext or None")
    without_ssl = (not ssl) if unix else (ssl is None)
    if ssl_handshake_timeout is not None and without_ssl:
        raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
    if ssl_shutdown_timeout is not None and without_ssl:
        raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")


async def create_server(
    loop, protocol_factory, host=None, port=None, *, family=socket.AF_UNSPEC,
    flags=socket.AI_PASSIVE, sock=None, backlog=100, ssl=None, reuse_address=None,
    reuse_port=None, keep_alive=_NOT_GIVEN, ssl_handshake_timeout=None,
    ssl_shutdown_timeout=_NOT_GIVEN, start_serving=True,
):
    """asyncio's create_server: sockets bound to every address of `host` (or `sock`), served
    by a Server."""
    if keep_alive is _NOT_GIVEN:
        keep_alive = None
    elif not _HAS_KEEP_ALIVE:
        raise _unexpected("create_server", "keep_alive")
    if ssl_shutdown_timeout is _NOT_GIVEN:
        ssl_shutdown_timeout = None
    elif not _HAS_SSL_SHUTDOWN_TIMEOUT:
        raise _unexpected("create_server", "ssl_shutdown_timeout")
    _check_ssl_arguments(ssl, ssl_handshake_timeout, ssl_shutdown_timeout, unix=False)
    if sock is not None:
        _private.check_ssl_socket(sock)

    if host is not None or port is not None:
        if sock is not None:
            raise ValueError("host/port and sock can not be specified at the same time")
        if reuse_address is None:
            reuse_address = os.name == "posix" and sys.platform != "cygwin"
        if host == "":
            hosts = [None]
        elif isinstance(host, str) or not isinstance(host, collections.abc.Iterable):
            hosts = [host]
        else:
            hosts = host
        infos = await tasks.gather(
            *[loop._create_server_getaddrinfo(h, port, family=family, flags=flags) for h in hosts]
        )
        infos = set(itertools.chain.from_iterable(infos))
        sockets = []
        completed = False
        try:
            for af, socktype, proto, _canonname, sa in infos:
                try:
                    sock = socket.socket(af, socktype, proto)
                except OSError:
                    # A family/type/protocol combination this system cannot make.
                    if loop.get_debug():
                        log.logger.warning(
                            "create_server() failed to create socket.socket(%r, %r, %r)",
                            af, socktype, proto, exc_info=True,
                        )
                    continue
                sockets.append(sock)
                if reuse_address:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, True)
                if reuse_port:
                    _set_reuseport(sock)
                if keep_alive:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, True)
                # One family per socket: no IPv4-mapped addresses on IPv6 ones.
                if _HAS_IPV6 and af == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, True)
                try:
                    sock.bind(sa)
                except OSError as err:
                    reason = str(err) if _SKIPS_UNAVAILABLE_ADDRESSES else err.strerror
                    msg = f"error while attempting to bind on address {sa!r}: {reason.lower()}"
                    if _SKIPS_UNAVAILABLE_ADDRESSES and err.errno == errno.EADDRNOTAVAIL:
                        sockets.pop()
                        sock.close()
                        if loop.get_debug():
                            log.logger.warning(msg)
                        continue
                    raise OSError(err.errno, msg) from None
            if _SKIPS_UNAVAILABLE_ADDRESSES and not sockets:
                raise OSError(
                    f"could not bind on any address out of {[info[4] for info in infos]!r}"
                )
            completed = True
        finally:
            if not completed:
                for sock in sockets:
                    sock.close()
    else:
        if sock is None:
            raise ValueError("Neither host/port nor sock were specified")
        if sock.type != socket.SOCK_STREAM:
            raise ValueError(f"A Stream Socket was expected, got {sock!r}")
        sockets = [sock]

    for sock in sockets:
        sock.setblocking(False)
    server = Server(
        loop, sockets, protocol_factory, ssl, backlog, ssl_handshake_timeout,
        ssl_shutdown_timeout,
    )
    if start_serving:
        server._start_serving()
        await tasks.sleep(0)
    if loop.get_debug():
        log.logger.info("%r is serving", server)
    return server


async def create_unix_server(
    loop, protocol_factory, path=None, *, sock=None, backlog=100, ssl=None,
    ssl_handshake_timeout=None, ssl_shutdown_timeout=_NOT_GIVEN, start_serving=True,
    cleanup_socket=_NOT_GIVEN,
):
    """asyncio's create_unix_server: a Unix socket bound to `path` (or `sock`), served by a
    Server."""
    if ssl_shutdown_timeout is _NOT_GIVEN:
        ssl_shutdown_timeout = None
    elif not _HAS_SSL_SHUTDOWN_TIMEOUT:
        raise _unexpected("create_unix_server", "ssl_shutdown_timeout")
    if cleanup_socket is _NOT_GIVEN:
        cleanup_socket = _HAS_CLEANUP_SOCKET
    elif not _HAS_CLEANUP_SOCKET:
        raise _unexpected("create_unix_server", "cleanup_socket")
    _check_ssl_arguments(ssl, ssl_handshake_timeout, ssl_shutdown_timeout, unix=True)

    if path is not None:
        if sock is not None:
            raise ValueError("path and sock can not be specified at the same time")
        path = os.fspath(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # An abstract name (str or bytes starting with a NUL) has no file to remove.
        if path[0] not in (0, "\x00"):
            try:
                if stat.S_ISSOCK(os.stat(path).st_mode):
                    os.remove(path)
            except FileNotFoundError:
                pass
            except OSError as err:
                # The directory may allow creating the socket only.
                log.logger.error(
                    "Unable to check or remove stale UNIX socket %r: %r", path, err
                )
        try:
            sock.bind(path)
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise OSError(errno.EADDRINUSE, f"Address {path!r} is already in use") from None
            raise
        except BaseException:
            sock.close()
            raise
    else:
        if sock is None:
            raise ValueError("path was not specified, and no sock specified")
        if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
            raise ValueError(f"A UNIX Domain Stream Socket was expected, got {sock!r}")

    if cleanup_socket:
        name = sock.getsockname()
        if name[0] not in (0, "\x00"):
            try:
                loop._unix_server_sockets[sock] = os.stat(name).st_ino
            except FileNotFoundError:
                pass

    sock.setblocking(False)
    server = Server(
        loop, [sock], protocol_factory, ssl, backlog, ssl_handshake_timeout, ssl_shutdown_timeout
    )
    if start_serving:
        server._start_serving()
        await tasks.sleep(0)
    return server


def start_serving(
    loop, protocol_factory, sock, sslcontext=None, server=None, backlog=100,
    ssl_handshake_timeout=None, ssl_shutdown_timeout=None,
):
    """Listens on `sock` for `server` (asyncio's `loop._start_serving`)."""
    if sslcontext is not None:
        protocol_factory = _tls_factory(
            loop, protocol_factory, sslcontext, ssl_handshake_timeout, ssl_shutdown_timeout
        )
    listener = _native.ServerListener(
        loop, sock, protocol_factory, server._clients, contextvars.copy_context(), backlog
    )
    loop._listeners[sock] = listener


def _tls_factory(loop, protocol_factory, sslcontext, handshake_timeout, shutdown_timeout):
    """The protocol factory of a TLS server: asyncio's TLS protocol around the application's,
    the connection closed if its handshake fails (reported in debug mode, as asyncio does)."""
    timeouts = {"ssl_handshake_timeout": handshake_timeout}
    if _HAS_SSL_SHUTDOWN_TIMEOUT:
        timeouts["ssl_shutdown_timeout"] = shutdown_timeout

    def make_protocol():
        waiter = loop.create_future()
        protocol = _private.SSLProtocol(
            loop, protocol_factory(), sslcontext, waiter, server_side=True, **timeouts
        )
        waiter.add_done_callback(lambda fut: _handshake_done(loop, protocol, fut))
        return protocol

    return make_protocol


def _handshake_done(loop, protocol, waiter):
    if waiter.cancelled() or waiter.exception() is None:
        return
    exc = waiter.exception()
    # asyncio's TLS protocol has force-closed the connection already.
    transport = protocol._app_transport
    if transport is not None:
        transport.close()
    if loop.get_debug():
        loop.call_exception_handler(
            {
                "message": "Error on transport creation for incoming connection",
                "exception": exc,
                "protocol": protocol,
            }
        )
