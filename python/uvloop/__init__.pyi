import asyncio
import sys
from typing import Any, Awaitable, Callable, Coroutine, TypeVar

from ._eventloop import Loop as Loop

_T = TypeVar("_T")

__version__: str
__all__ = ("new_event_loop", "install", "run", "Loop", "EventLoopPolicy")

def new_event_loop() -> Loop: ...
def install() -> None: ...
def run(
    main: Coroutine[Any, Any, _T] | Awaitable[_T],
    *,
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = ...,
    debug: bool | None = ...,
    **run_kwargs: Any,
) -> _T: ...

if sys.version_info >= (3, 14):
    class EventLoopPolicy(asyncio.events._BaseDefaultEventLoopPolicy):
        def _loop_factory(self) -> Loop: ...

else:
    class EventLoopPolicy(asyncio.events.BaseDefaultEventLoopPolicy):
        def _loop_factory(self) -> Loop: ...
        # Inherited from AbstractEventLoopPolicy: they raise NotImplementedError, as in
        # MagicStack's uvloop (the loop reaps its own children).
        def get_child_watcher(self) -> asyncio.AbstractChildWatcher: ...
        def set_child_watcher(self, watcher: asyncio.AbstractChildWatcher | None) -> None: ...
