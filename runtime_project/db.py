"""ORM calls from async code that is not serving a request (executors, runners, WebSocket
consumers and their token middleware, SSE streams).

``asgiref.sync_to_async`` defaults to ``thread_sensitive=True``: outside a request's context
every such call runs on ONE process-wide thread, so a slow query (or a SQLite writer waiting
for the lock) of one task stalls the ORM calls of every other running task and stream.
:func:`db_call` runs ``fn`` in a pool thread instead, after closing that thread's connection if
it is broken (what Django does at each request's start).

A pool thread keeps its connection from one call to the next (``CONN_HEALTH_CHECKS`` still
checks it before reuse): ``CONN_MAX_AGE=0`` is meant for request threads, which end with their
request, and here it made every call open a new connection (the largest share of the embedded
server's samples under many streams; ~50 ms each on PostgreSQL on a loaded machine; Channels'
``database_sync_to_async`` does the same, which held WebSocket handshakes to ~150/s). The loop's
pool closes them when it shuts down (``sessions.executors.threads.ClosingThreadPool``).

Not for code a sync view reaches through ``async_to_sync`` (``sandboxes.services``): there
``thread_sensitive=True`` runs the call on the view's own thread, inside its transaction; in
another thread (another connection) it would wait for that transaction's locks (SQLite:
"database is locked" after the busy timeout).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.db import close_old_connections, connections
from django.db.models import QuerySet

Row = TypeVar("Row")


def unique_or_none(queryset: QuerySet[Any, Row]) -> Row | None:
    """The row of ``queryset`` (a lookup on a unique key) or ``None``. Unlike ``first()``, no
    ``ORDER BY``: a model's default ordering by a foreign key (``Step``'s ``task``,
    ``AgentVersion``'s ``agent``) joins the related table, and every ordering is compiled on
    each call; used on the lookups of every request and every event batch."""
    return next(iter(queryset.order_by()[:1]), None)


def db_call(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` (sync, uses the ORM) as a coroutine function run in a pool thread:
    ``await db_call(fn)(*args, **kwargs)`` returns what ``fn`` returns and raises what it raises."""

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        return call_keeping_connections(fn, *args, **kwargs)

    return sync_to_async(wrapped, thread_sensitive=False)


def call_keeping_connections(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` in this pool thread: a broken or aged connection is closed
    first, and the thread's connections stay open for its next call (module docstring)."""
    close_old_connections()
    try:
        return fn(*args, **kwargs)
    finally:
        keep_connections_open()


def keep_connections_open() -> None:
    """This thread's open connections outlive ``CONN_MAX_AGE`` (see the module docstring; also
    the reused request threads of ``runtime_project.handlers``)."""
    for conn in connections.all(initialized_only=True):
        if conn.connection is not None:
            conn.close_at = None


def release_connections() -> None:
    """Close this thread's database connections that are not inside a transaction. From async
    code (no connection of its own there) this does nothing; a later query reconnects."""
    try:
        asyncio.get_running_loop()
        return
    except RuntimeError:
        pass
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close()


async def release_request_connections() -> None:
    """From a streamed body, after its set-up: close what its thread-sensitive ORM calls
    (``sync_to_async``) opened on the request's thread, which Django would otherwise keep until
    the stream ends."""
    await sync_to_async(release_connections)()
