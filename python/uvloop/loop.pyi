"""The native core of uvloop's event loop (Rust, on libuv)."""

import asyncio
import contextvars
import sys
from typing import Any, Callable, Coroutine, Generator

from typing_extensions import disjoint_base, final

__all__ = [
    "Loop",
    "Handle",
    "TimerHandle",
    "StreamCore",
    "ServerClients",
    "ServerListener",
    "open_socket_transport",
    "install_transport_class",
    "open_pipe_transport",
    "open_udp_transport",
    "UdpCore",
    "ChildProcess",
    "SockOp",
    "DatagramCore",
]

@disjoint_base
class Handle:
    def cancel(self) -> None: ...
    def cancelled(self) -> bool: ...
    def get_context(self) -> contextvars.Context: ...

@final
class TimerHandle(Handle):
    def when(self) -> float: ...

@disjoint_base
class Loop:
    slow_callback_duration: float
    def time(self) -> float: ...
    def call_soon(
        self, callback: Callable[..., object], /, *args: Any, context: contextvars.Context | None = ...
    ) -> Handle: ...
    def call_soon_threadsafe(
        self, callback: Callable[..., object], /, *args: Any, context: contextvars.Context | None = ...
    ) -> Handle: ...
    def call_later(
        self,
        delay: float,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = ...,
    ) -> TimerHandle: ...
    def call_at(
        self,
        when: float,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = ...,
    ) -> TimerHandle: ...
    def create_future(self) -> asyncio.Future[Any]: ...
    if sys.version_info >= (3, 14):
        def create_task(
            self, coro: Coroutine[Any, Any, Any] | Generator[Any, None, Any], **kwargs: Any
        ) -> asyncio.Task[Any]: ...
    elif sys.version_info >= (3, 12):
        def create_task(
            self,
            coro: Coroutine[Any, Any, Any] | Generator[Any, None, Any],
            *,
            name: object = ...,
            context: contextvars.Context | None = ...,
            eager_start: bool | None = ...,
        ) -> asyncio.Task[Any]: ...
    elif sys.version_info >= (3, 11):
        def create_task(
            self,
            coro: Coroutine[Any, Any, Any] | Generator[Any, None, Any],
            *,
            name: object = ...,
            context: contextvars.Context | None = ...,
        ) -> asyncio.Task[Any]: ...
    else:
        def create_task(
            self,
            coro: Coroutine[Any, Any, Any] | Generator[Any, None, Any],
            *,
            name: object = ...,
        ) -> asyncio.Task[Any]: ...
    def set_task_factory(self, factory: Callable[..., Any] | None) -> None: ...
    def get_task_factory(self) -> Callable[..., Any] | None: ...
    def get_debug(self) -> bool: ...
    def is_running(self) -> bool: ...
    def is_closed(self) -> bool: ...
    def stop(self) -> None: ...
    def _add_reader(self, fd: Any, callback: Callable[..., object], *args: Any) -> Handle: ...
    def _remove_reader(self, fd: Any) -> bool: ...
    def _add_writer(self, fd: Any, callback: Callable[..., object], *args: Any) -> Handle: ...
    def _remove_writer(self, fd: Any) -> bool: ...
    def _watched_events(self, fd: int) -> int: ...

# The plumbing between this module and the package's Python modules (transport cores, server
# listeners, child processes, the transport classes it makes): not API, so typed loosely.
ChildProcess: Any
DatagramCore: Any
ServerClients: Any
ServerListener: Any
SockOp: Any
StreamCore: Any
UdpCore: Any
install_transport_class: Any
open_pipe_transport: Any
open_socket_transport: Any
open_udp_transport: Any
