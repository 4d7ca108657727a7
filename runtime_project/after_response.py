"""Work a request's view asks for, run on the event loop once its response has begun.

A view that queues a task wakes the executor on commit. Woken at once, the executor claims the
task and starts its sandbox on the same cores while the request is still writing its answer,
and the client waits for both: the streaming create's first event came about 5 ms later for
it (docs/performance.md). :func:`after_response` lets such a call wait until the response's first
message (its status and headers) has been sent; ``runtime_project.handlers.ASGIHandler`` then
starts it as a task of its own, which runs when the request next waits (after the body of a
plain answer, after the first event of a stream). Outside a synchronous view that handler
serves (an ``async def`` view that may wait for the task before it answers, a WebSocket
consumer, the executor, a test's client), nothing is deferred and the caller acts at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from typing import Any

logger = logging.getLogger(__name__)

Call = Callable[[], Awaitable[Any]]

# The calls deferred by the request being served, or None where nothing may be deferred.
_DEFERRED: ContextVar[list[Call] | None] = ContextVar("after_response", default=None)
_RUNNING: set[asyncio.Task[Any]] = set()  # strong references until they are done


def after_response(call: Call) -> bool:
    """Defer ``call`` (a coroutine function, no arguments) until the current request's response
    has begun; returns ``False`` (nothing deferred) outside a synchronous view the one-hop
    handler serves. ``call`` must not raise: errors are logged."""
    deferred = _DEFERRED.get()
    if deferred is None:
        return False
    deferred.append(call)
    return True


@contextlib.contextmanager
def deferring(deferred: list[Call]) -> Iterator[None]:
    """Inside the block (and the threads it hands work to), :func:`after_response` collects
    into ``deferred``."""
    token = _DEFERRED.set(deferred)
    try:
        yield
    finally:
        _DEFERRED.reset(token)


def start(deferred: list[Call]) -> None:
    """Start every call of ``deferred`` (emptied) as a task on the running loop."""
    calls, deferred[:] = deferred[:], []
    for call in calls:
        task = asyncio.get_running_loop().create_task(_run(call))
        _RUNNING.add(task)
        task.add_done_callback(_RUNNING.discard)


async def _run(call: Call) -> None:
    try:
        await call()
    except Exception:
        logger.exception("a call deferred until the response began failed")
