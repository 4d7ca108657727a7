"""Admission of a new task: the team's active-task quota and the server's exclusive mode
(docs/limits.md). :func:`task_admit` runs inside :func:`sessions.services.tasks.task_create`'s
transaction, after the session lock, so every path that creates a task (REST, messages,
oneshot, WebSocket ``task.create`` frames, schedules, retries) is checked the same way.

"Active" is queued, running or waiting: a burst of creates cannot queue unbounded work, and a
task paused for an answer still holds its sandbox and its slot. Not counted:

- child tasks of ``call_agent`` (they run inside their parent, which already holds a slot);
- a running task of the same session whose cancel was requested (``multitask_strategy:
  interrupt``): the session runs one task at a time, so the new one cannot start before it ends.

Atomicity: PostgreSQL takes a row lock on the team (``FOR NO KEY UPDATE``, which foreign-key
checks of concurrent inserts do not wait for) and, in exclusive mode, a transaction-level
advisory lock for the whole server before counting; both are released at commit, when the new
task is visible to the next creator. SQLite runs every write transaction ``IMMEDIATE``
(settings), so creates are serialised already. Lock order is always session, server, team.
"""

from __future__ import annotations

import zlib
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Q, QuerySet

from accounts import access
from accounts.limits import max_active_tasks
from accounts.models import Team
from runtime_project.db import unique_or_none
from runtime_project.exceptions import Conflict, TooManyRequests
from sessions.choices import ACTIVE_STATUSES
from sessions.models import Session, Task

# Seconds a client is told to wait after team_task_limit (Retry-After): tasks are short-lived
# compared with a client's patience, and a poll every few seconds is cheap.
TASK_LIMIT_RETRY_AFTER_S = 5
# pg_advisory_xact_lock key of exclusive mode (a fixed 32-bit number, derived from a name so it
# does not collide with another application's key by accident).
EXCLUSIVE_LOCK_KEY = zlib.crc32(b"agent-runtime:exclusive-mode")


def active_tasks(*, session: Session) -> QuerySet[Task]:
    """Active top-level tasks, except the ones of ``session`` already being cancelled."""
    return Task.objects.filter(status__in=ACTIVE_STATUSES, parent__isnull=True).exclude(
        Q(session=session) & Q(cancel_requested_at__isnull=False)
    )


def task_admit(*, session: Session, user: Any) -> None:
    """Check that one more task may be created in ``session``. Call inside the creating
    transaction, holding the session's row lock; the locks it takes last until commit.

    Raises:
        Conflict: ``server_busy`` (409): ``EXCLUSIVE_MODE`` is on and a task is active
            anywhere; ``details.active_task_id`` only when that task is in one of ``user``'s
            teams.
        TooManyRequests: ``team_task_limit`` (429, ``Retry-After``): the session's team has
            its limit of active tasks; ``details``: ``{"limit", "active", "retry_after_s"}``.
    """
    if settings.EXCLUSIVE_MODE:
        _lock_server()
        busy = active_tasks(session=session).values("uuid", "session__team_id").first()
        if busy is not None:
            visible = busy["session__team_id"] in access.team_ids(user)
            raise Conflict(
                "The server runs one task at a time (exclusive mode) and one is active; "
                "retry when it has finished.",
                code="server_busy",
                details={"active_task_id": str(busy["uuid"])} if visible else {},
            )
    team = unique_or_none(Team.objects.select_for_update(no_key=True).filter(pk=session.team_id))
    limit = max_active_tasks(team)
    if limit is None:
        return
    active = active_tasks(session=session).filter(session__team_id=session.team_id).count()
    if active >= limit:
        raise TooManyRequests(
            f"The team has {active} active tasks, its limit; retry when one has finished.",
            code="team_task_limit",
            retry_after_s=TASK_LIMIT_RETRY_AFTER_S,
            details={"limit": limit, "active": active},
        )


def _lock_server() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [EXCLUSIVE_LOCK_KEY])
