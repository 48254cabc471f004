"""Garbage collection through handles: cycles that pass through the loop's callbacks are
collected once the loop is done with them, as with asyncio's handles."""

import asyncio
import gc
import warnings
import weakref

from conftest import LOOP_KINDS, run


class Owner:
    """Keeps its handles and is their callback: a cycle through each handle."""

    def callback(self):
        pass


def test_cycle_through_run_and_cancelled_handles_is_collected(loop):
    owner = Owner()
    owner.soon = loop.call_soon(owner.callback)
    owner.later = loop.call_later(0.001, owner.callback)
    owner.cancelled = loop.call_later(5, owner.callback)
    owner.cancelled.cancel()
    run(loop, asyncio.sleep(0.02))
    ref = weakref.ref(owner)
    del owner
    gc.collect()
    assert ref() is None


def test_pending_handle_keeps_callback_alive_until_close(loop):
    owner = Owner()
    owner.timer = loop.call_later(100, owner.callback)
    ref = weakref.ref(owner)
    del owner
    gc.collect()
    assert ref() is not None
    loop.close()
    gc.collect()
    assert ref() is None


def test_unreachable_unclosed_loop_with_pending_handles_is_collected(loop_kind):
    loop = LOOP_KINDS[loop_kind]()

    class Protocol:
        def __init__(self, loop):
            self.loop = loop

        def callback(self):
            pass

    protocol = Protocol(loop)
    protocol.handle = loop.call_soon(protocol.callback)
    loop.call_later(10, protocol.callback)
    loop_ref = weakref.ref(loop)
    del loop, protocol
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.collect()
    assert loop_ref() is None
    assert any(
        issubclass(w.category, ResourceWarning) and "unclosed event loop" in str(w.message)
        for w in caught
    )


def test_handle_outliving_the_loop_stays_usable(loop):
    handle = loop.call_soon(Owner().callback)
    timer = loop.call_later(10, Owner().callback)
    loop.close()
    gc.collect()
    handle.cancel()
    timer.cancel()
    assert handle.cancelled() and timer.cancelled()
    assert "cancelled" in repr(handle) and "cancelled" in repr(timer)
