"""uvloop: a fast, drop-in asyncio event loop on libuv, written in Rust."""

import asyncio as _asyncio
import sys as _sys
import warnings as _warnings

from ._eventloop import Loop, new_event_loop

__version__ = "1.0.0.dev0"
__all__ = ("new_event_loop", "install", "run", "Loop", "EventLoopPolicy")


class EventLoopPolicy(_asyncio.events.BaseDefaultEventLoopPolicy):
    """An asyncio event loop policy whose loops are uvloop loops.

    >>> asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    """

    def _loop_factory(self):
        return new_event_loop()

    def __repr__(self):
        return f"<{type(self).__name__}>"


def install():
    """Make uvloop the event loop of every new asyncio loop (sets the event loop policy).

    Deprecated from Python 3.12 on, as in uvloop: prefer `uvloop.run()` or
    `asyncio.Runner(loop_factory=uvloop.new_event_loop)`.
    """
    if _sys.version_info >= (3, 12):
        _warnings.warn(
            "uvloop.install() is deprecated on Python 3.12 and later; "
            "use uvloop.run() instead.",
            DeprecationWarning,
            stacklevel=2,
        )
    _asyncio.set_event_loop_policy(EventLoopPolicy())


def run(main, *, loop_factory=new_event_loop, debug=None, **run_kwargs):
    """Run coroutine `main` on a new uvloop loop and return its result, as `asyncio.run` does."""
    if _asyncio._get_running_loop() is not None:
        raise RuntimeError("asyncio.run() cannot be called from a running event loop")
    if not _asyncio.iscoroutine(main):
        raise ValueError(f"a coroutine was expected, got {main!r}")

    async def checked_main():
        if not isinstance(_asyncio.get_running_loop(), Loop):
            main.close()
            raise TypeError("uvloop.run() uses a non-uvloop event loop")
        return await main

    if _sys.version_info >= (3, 12):
        return _asyncio.run(
            checked_main(), loop_factory=loop_factory, debug=debug, **run_kwargs
        )
    if _sys.version_info >= (3, 11):
        with _asyncio.Runner(loop_factory=loop_factory, debug=debug, **run_kwargs) as runner:
            return runner.run(checked_main())
    if run_kwargs:
        raise TypeError(f"run() got unexpected keyword arguments {sorted(run_kwargs)}")
    return _run_pre_311(checked_main(), loop_factory, debug)


def _run_pre_311(main, loop_factory, debug):
    """`asyncio.run` of Python 3.9/3.10, with a loop factory."""
    from asyncio.runners import _cancel_all_tasks

    loop = loop_factory()
    try:
        _asyncio.set_event_loop(loop)
        if debug is not None:
            loop.set_debug(debug)
        return loop.run_until_complete(main)
    finally:
        try:
            _cancel_all_tasks(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            _asyncio.set_event_loop(None)
            loop.close()
