"""The embedded scheduler: a coroutine that fires due schedules every ``SCHEDULER_INTERVAL_S``
seconds inside the server process (the default placement; DESIGN §1's embedded column).

Start it next to the server's other background loops, with an event to stop it::

    stop = asyncio.Event()
    scheduler = asyncio.create_task(run_scheduler(stop))
    ...
    stop.set()          # at shutdown
    await scheduler     # returns within one pass (a pass in progress completes)

It is safe to start it in every server process, and next to Celery beat (``schedules.tasks``):
each tick fires at most once whoever fires it (``schedules.services``). With
``SCHEDULER_ENABLED=false`` the coroutine returns at once, for deployments where beat fires the
schedules.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections, connections

from schedules.services import schedules_fire_due

logger = logging.getLogger(__name__)


def _fire_pass() -> list[str]:
    """One pass in the calling (worker) thread: fire the due schedules; returns the ids of the
    tasks queued. The thread's database connection is closed afterwards: a pass every few
    seconds must not keep a connection per pool thread open in between."""
    close_old_connections()
    try:
        return [str(task.uuid) for task in schedules_fire_due()]
    finally:
        connections.close_all()


async def run_scheduler(stop: asyncio.Event, *, interval_s: float | None = None) -> None:
    """Fire due schedules every ``interval_s`` seconds (default ``SCHEDULER_INTERVAL_S``)
    until ``stop`` is set. The first pass runs at once.

    Each pass runs in a thread (ORM code must not block the event loop). A failing pass (the
    database unreachable, ...) is logged and retried at the next interval; this coroutine only
    ends when ``stop`` is set (or it is cancelled), or at once when ``SCHEDULER_ENABLED`` is
    false.
    """
    if not settings.SCHEDULER_ENABLED:
        logger.info("scheduler: disabled (SCHEDULER_ENABLED=false)")
        return
    interval = settings.SCHEDULER_INTERVAL_S if interval_s is None else interval_s
    fire = sync_to_async(_fire_pass, thread_sensitive=False)
    logger.info("scheduler: firing due schedules every %.1f s", interval)
    while not stop.is_set():
        try:
            queued = await fire()
            if queued:
                logger.info("scheduler: queued %d task(s): %s", len(queued), ", ".join(queued))
        except Exception:
            logger.exception("scheduler: a pass failed; retrying in %.1f s", interval)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
    logger.info("scheduler: stopped")
