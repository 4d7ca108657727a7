"""Reads of the runtimes app. ``runtime_for_session`` takes the requesting user (a stranger gets
404, like every selector); the others serve the consumer and the runner, which checked access
when the runtime registered."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from runtime_project.exceptions import NotFound
from runtimes.models import Runtime, RuntimeStatus
from sessions.choices import TaskStatus
from sessions.models import Task
from sessions.selectors import session_get

STALE_HEARTBEATS = 3
"""A ``connected`` row not refreshed for this many heartbeats belongs to a dead server process."""


def runtime_fresh_since() -> datetime:
    """Rows last seen before this instant no longer count as connected."""
    return timezone.now() - timedelta(seconds=STALE_HEARTBEATS * settings.RUNTIME_HEARTBEAT_S)


def runtime_attached(*, session_id: int) -> Runtime | None:
    """The runtime attached to the session (pk ``session_id``): ``connected`` and seen within
    three heartbeats; ``None`` when there is none."""
    return (
        Runtime.objects.filter(
            session_id=session_id,
            status=RuntimeStatus.CONNECTED,
            last_seen_at__gte=runtime_fresh_since(),
        )
        .select_related("user")
        .first()
    )


def runtime_is_attached(*, channel_name: str) -> bool:
    """Whether the consumer at ``channel_name`` still holds a live attachment (for a runner
    checking that the runtime it assigned a task to is still there)."""
    return Runtime.objects.filter(
        channel_name=channel_name,
        status=RuntimeStatus.CONNECTED,
        last_seen_at__gte=runtime_fresh_since(),
    ).exists()


def runtime_for_session(*, user: Any, session_id: Any) -> Runtime:
    """The runtime attached to one of ``user``'s sessions.

    Raises:
        NotFound: unknown or not visible session (``not_found``), or no runtime attached
            (``no_runtime``).
    """
    session = session_get(user=user, session_id=session_id)
    runtime = runtime_attached(session_id=session.pk)
    if runtime is None:
        raise NotFound(
            "No runtime is attached to this session.",
            code="no_runtime",
            details={"session_id": str(session.uuid)},
        )
    runtime.session = session
    return runtime


def runtime_resumable_tasks(*, session_id: int, task_ids: list[str]) -> list[str]:
    """Which of ``task_ids`` a runtime registering on the session (pk ``session_id``) may go on
    with: running tasks of that session whose agent is of the ``remote`` kind. Finished,
    unknown or foreign tasks are left out (their later frames get error frames)."""
    if not task_ids:
        return []
    found = Task.objects.filter(
        session_id=session_id,
        uuid__in=task_ids,
        status=TaskStatus.RUNNING,
        agent__kind="remote",
    ).values_list("uuid", flat=True)
    return [str(u) for u in found]


def runtime_displaced_by(*, runtime_pk: int) -> str | None:
    """The ``runtime_id`` of the runtime that displaced this one (None if none did)."""
    value = (
        Runtime.objects.filter(pk=runtime_pk)
        .values_list("displaced_by__runtime_id", flat=True)
        .first()
    )
    return str(value) if value is not None else None
