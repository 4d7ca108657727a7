"""Reads of the schedules app. The user-facing ones take the requesting user and only return
that user's schedules, so a stranger gets 404, not 403. ``schedules_due`` is the schedulers'."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.db.models import QuerySet

from runtime_project.exceptions import NotFound
from schedules.models import Schedule, ScheduleRun


def schedule_list(*, user: Any) -> QuerySet[Schedule]:
    """The user's schedules, ordered by name (agent, reused session and last task loaded)."""
    return (
        Schedule.objects.filter(owner=user)
        .select_related("agent", "session", "last_task")
        .order_by("name", "created_at")
    )


def schedule_get(*, user: Any, schedule_id: Any) -> Schedule:
    """One of the user's schedules by its public id.

    Raises:
        NotFound: not a UUID, unknown, or another user's schedule.
    """
    try:
        key = uuid.UUID(str(schedule_id))
    except (ValueError, TypeError, AttributeError):
        key = None
    schedule = schedule_list(user=user).filter(uuid=key).first() if key else None
    if schedule is None:
        raise NotFound("Schedule not found.", details={"id": str(schedule_id)})
    return schedule


def schedule_runs(*, schedule: Schedule) -> QuerySet[ScheduleRun]:
    """The schedule's runs, newest first (their tasks loaded). Check access with
    :func:`schedule_get` first."""
    return ScheduleRun.objects.filter(schedule=schedule).select_related("task__session")


def schedules_due(*, now: datetime, limit: int) -> list[tuple[int, datetime]]:
    """``(pk, next_run_at)`` of up to ``limit`` enabled schedules due at ``now``, the most
    overdue first. Not access-checked: for the schedulers only."""
    rows = (
        Schedule.objects.filter(enabled=True, next_run_at__lte=now)
        .order_by("next_run_at", "pk")
        .values_list("pk", "next_run_at")[:limit]
    )
    # next_run_at__lte excludes NULLs, so every tick here is a datetime.
    return [(pk, tick) for pk, tick in rows if tick is not None]
