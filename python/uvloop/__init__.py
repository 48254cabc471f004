"""uvloop: a fast, drop-in asyncio event loop on libuv, written in Rust."""

import asyncio as _asyncio
import inspect as _inspect
import sys as _sys
import warnings as _warnings

from . import _asyncio_private as _private
from . import loop as _loop  # noqa: F401  (first: it decides whether the GIL is on)

# A free-threaded CPython turns the GIL on when it loads uvloop.loop (declared gil_used: the
# loop's state is guarded by the GIL); with PYTHON_GIL=0 / -X gil=0 it stays off, and then
# this loop is not safe to use.
if not getattr(_sys, "_is_gil_enabled", lambda: True)():
    raise ImportError(
        "uvloop needs the GIL, which PYTHON_GIL=0 or -X gil=0 keeps off on this free-threaded "
        "Python; run without them (CPython then turns the GIL on when it loads uvloop)"
    )

from ._eventloop import Loop, new_event_loop  # noqa: E402

__version__ = "1.0.0.dev0"
__all__ = ("new_event_loop", "install", "run", "Loop", "EventLoopPolicy")

_NO_POLICIES = (
    f"asyncio of Python {_sys.version.split()[0]} has no event loop policies: use "
    "uvloop.run(main()) or asyncio.run(main(), loop_factory=uvloop.new_event_loop)"
)

if _private.BaseDefaultEventLoopPolicy is not None:

    class EventLoopPolicy(_private.BaseDefaultEventLoopPolicy):
        """An asyncio event loop policy whose loops are uvloop loops.

        >>> asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())

        asyncio deprecated its policies in Python 3.14 (removal planned for 3.16); prefer
        `uvloop.run()` or `asyncio.run(main(), loop_factory=uvloop.new_event_loop)`.
        """

        def _loop_factory(self):
            return new_event_loop()

        def __repr__(self):
            return f"<{type(self).__name__}>"

else:

    class EventLoopPolicy:
        """asyncio of this Python has no event loop policies: this class cannot be used."""

        def __init__(self):
            raise RuntimeError(_NO_POLICIES)


def install():
    """Make uvloop the event loop of every new asyncio loop (sets the event loop policy).

    Deprecated from Python 3.12 on, as in uvloop: prefer `uvloop.run()` or
    `asyncio.run(main(), loop_factory=uvloop.new_event_loop)`.
    """
    if _private.set_event_loop_policy is None:
        raise RuntimeError(_NO_POLICIES)
    if _sys.version_info >= (3, 12):
        _warnings.warn(
            "uvloop.install() is deprecated on Python 3.12 and later; "
            "use uvloop.run() instead.",
            DeprecationWarning,
            stacklevel=2,
        )
    # From 3.14 on through asyncio's private setter: the public one warns that policies are
    # deprecated, which the warning above already says.
    _private.set_event_loop_policy(EventLoopPolicy())


def run(main, *, loop_factory=new_event_loop, debug=None, **run_kwargs):
    """Run coroutine `main` on a new uvloop loop and return its result, as `asyncio.run` does."""
    if _private.get_running_loop() is not None:
        raise RuntimeError("asyncio.run() cannot be called from a running event loop")
    if not _asyncio.iscoroutine(main):
        # As asyncio.run: any awaitable from 3.14 on, only coroutines before.
        if _sys.version_info < (3, 14):
            raise ValueError(f"a coroutine was expected, got {main!r}")
        if not _inspect.isawaitable(main):
            raise TypeError("An asyncio.Future, a coroutine or an awaitable is required")

    async def checked_main():
        if not isinstance(_asyncio.get_running_loop(), Loop):
            if _asyncio.iscoroutine(main):
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
    loop = loop_factory()
    try:
        _asyncio.set_event_loop(loop)
        if debug is not None:
            loop.set_debug(debug)
        return loop.run_until_complete(main)
    finally:
        try:
            _private.cancel_all_tasks(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            _asyncio.set_event_loop(None)
            loop.close()
