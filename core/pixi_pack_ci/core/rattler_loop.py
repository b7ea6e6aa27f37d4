"""Running py-rattler's coroutines from synchronous code.

Not ``asyncio.run``: when a rattler call fails (a damaged package, say) while others of the same
run are still working on rattler's native threads, those finish later and hand their results to
the event loop from their threads. ``asyncio.run`` has closed it by then, and the closed loop's
RuntimeError is printed by pyo3, traceback and all, beside our one-line error. So after a failure
the unfinished tasks are cancelled and the loop is kept open (and referenced, so it is never
collected mid-run): the late results land in its queue and are never run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

#: Loops of failed runs, kept open for rattler's late calls.
_KEPT_OPEN: list[asyncio.AbstractEventLoop] = []


def run_rattler(coroutine: Coroutine[Any, Any, T]) -> T:
    """``coroutine``'s result, or its exception, as ``asyncio.run`` would give them."""
    loop = asyncio.new_event_loop()
    try:
        result = loop.run_until_complete(coroutine)
    except BaseException:
        pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        _KEPT_OPEN.append(loop)
        raise
    loop.close()
    return result
