"""The event loop's default thread pool, with database connections closed when it shuts down.

``db_call``, the event buffer's writes (``sync_to_async(thread_sensitive=False)``) and
``asyncio.to_thread`` run ORM code on the running loop's default executor. Django keeps one
connection per thread and closes it only when told to (``close_old_connections``) or when the
``DatabaseWrapper`` is garbage-collected, which takes the cyclic collector because the wrapper
references itself through ``ops``, ``features`` and the rest. So when a loop ends its pool (every
``asyncio.run``: a Celery task through ``execute_task``, every test's loop), each pool thread
ended with its connection still open until some later ``gc.collect()``. On PostgreSQL they piled
up across tests until the 100-connection limit was hit.

:class:`ClosingThreadPool` remembers the connection handles of each of its threads and closes
them once the threads have stopped. While the pool lives, its threads keep their connections,
so the event writes do not pay for a new PostgreSQL connection per batch.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.db import connections

logger = logging.getLogger(__name__)


class ClosingThreadPool(ThreadPoolExecutor):
    """A ``ThreadPoolExecutor`` whose ``shutdown(wait=True)`` also closes the database
    connections its threads opened. With ``wait=False`` they are left alone, because the
    threads may still be using them."""

    def __init__(self, max_workers: int | None = None, thread_name_prefix: str = "asyncio") -> None:
        self._handles: list[Any] = []
        self._handles_lock = threading.Lock()
        super().__init__(
            max_workers=max_workers,
            thread_name_prefix=thread_name_prefix,
            initializer=self._remember,
        )

    def _remember(self) -> None:
        # Runs first in each new pool thread: its DatabaseWrappers (thread-local), created now
        # without connecting, are the objects any later ORM call in this thread uses.
        handles = [connections[alias] for alias in connections]
        with self._handles_lock:
            self._handles.extend(handles)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        super().shutdown(wait=wait, cancel_futures=cancel_futures)
        if not wait:
            return
        with self._handles_lock:
            handles, self._handles = self._handles, []
        for handle in handles:
            if handle.connection is None:
                continue
            # Its thread has ended; closing it from this one is safe, and Django must be told.
            handle.inc_thread_sharing()
            try:
                handle.close()
            except Exception:
                logger.warning("closing a pool thread's database connection failed", exc_info=True)
            finally:
                handle.dec_thread_sharing()


def install_closing_pool(loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Make a :class:`ClosingThreadPool` the default executor of ``loop`` (default: the running
    one). The loop shuts its default executor down when it closes (``asyncio.run``,
    ``asyncio.Runner``, pytest-asyncio), and that closes the connections. Call it before the
    loop's first ``to_thread``: an executor the loop already made is replaced, not shut down.
    A second call on the same loop (an executor restarted) keeps the pool it installed."""
    loop = loop or asyncio.get_running_loop()
    # CPython's loops expose their default executor only privately (uvloop not at all).
    if isinstance(getattr(loop, "_default_executor", None), ClosingThreadPool):
        return
    loop.set_default_executor(ClosingThreadPool())
