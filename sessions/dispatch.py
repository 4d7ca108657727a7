"""Where a queued task goes to be run, per ``TASK_EXECUTOR``.

* ``inline`` / ``worker``: a ``task.queued`` doorbell on the channel layer wakes the executors,
  which claim from the database.
* ``celery``: a broker message ``sessions.execute_task(task_id)`` on the queue of the agent's
  kind (``TASK_QUEUES``). The message is only a hint: the worker claims from the database and
  ignores a task that is no longer queued, so a duplicate or late message is harmless, and
  :func:`sweep` re-sends messages that were lost.

Cancellation always travels as a database flag plus a channel-layer message to the executors
and to the task's own control group (``task-control.<uuid>``), which the process running it
listens to, whatever machine it is on.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Exists, OuterRef
from django.utils import timezone

from runtime_project.db import unique_or_none
from sessions.choices import TaskStatus

logger = logging.getLogger(__name__)


def task_control_group(task_uuid: Any) -> str:
    """Channel-layer group of the process running a task (cancel requests)."""
    return f"task-control.{task_uuid}"


def queue_for(kind: str) -> str:
    """The Celery queue of an agent kind (``TASK_QUEUES``, else the default queue)."""
    queue: str = settings.TASK_QUEUES.get(kind, settings.CELERY_TASK_DEFAULT_QUEUE)
    return queue


def dispatch_task(task_uuid: Any) -> None:
    """Send the broker message that runs ``task_uuid`` (celery executor only). Never raises: a
    lost message is re-sent by :func:`sweep`."""
    from sessions.models import Task

    kind = unique_or_none(Task.objects.filter(uuid=task_uuid).values_list("agent__kind", flat=True))
    if kind is None:
        return
    from runtime_project.celery import app

    try:
        app.send_task("sessions.execute_task", args=[str(task_uuid)], queue=queue_for(kind))
    except Exception:
        logger.warning("could not send task %s to the broker; the sweep retries", task_uuid,
                       exc_info=True)  # fmt: skip


def dispatch_next_in_session(session_id: int) -> None:
    """After a task of a session ends, send its next queued task (celery executor)."""
    from sessions.models import Task

    nxt = (
        Task.objects.filter(session_id=session_id, status=TaskStatus.QUEUED)
        .order_by("created_at")
        .values_list("uuid", flat=True)
        .first()
    )
    if nxt is not None:
        dispatch_task(nxt)


def redispatch_stale(*, older_than_s: float) -> int:
    """Re-send queued tasks that waited longer than ``older_than_s`` seconds in a session with
    nothing running (their message was lost: Redis restarted, the broker was down). Returns how
    many were sent."""
    from sessions.models import Task

    busy = Task.objects.filter(
        session=OuterRef("session"), status__in=[TaskStatus.RUNNING, TaskStatus.WAITING]
    )
    cutoff = timezone.now() - timedelta(seconds=older_than_s)
    stale = (
        Task.objects.filter(status=TaskStatus.QUEUED, updated_at__lt=cutoff)
        .annotate(busy=Exists(busy))
        .filter(busy=False)
        .order_by("session_id", "created_at")
        .values_list("session_id", "uuid")
    )
    sent: set[int] = set()
    for session_id, task_uuid in stale:
        if session_id not in sent:  # the oldest of each session; the rest follow it
            sent.add(session_id)
            dispatch_task(task_uuid)
    return len(sent)


async def sweep() -> None:
    """The safety net of the celery executor, run by beat and by each web process: recover
    tasks whose worker died (expired leases), re-send lost messages, reap sandboxes."""
    from sandboxes.services import sandbox_reap
    from sessions.execution import db_call
    from sessions.services.tasks import task_recover_expired

    await db_call(task_recover_expired)()
    await db_call(redispatch_stale)(older_than_s=max(settings.TASK_LEASE_S, 5.0))
    await sandbox_reap()
