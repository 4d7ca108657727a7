"""Reads of the schedules app. The user-facing ones take the requesting user and only return
schedules of the user's teams (only the API key's team for a key): a stranger gets 404, a
viewer of the team 403 on writes (``for_write``). ``schedules_due`` is the schedulers'."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet

from accounts import access
from accounts.models import Role
from runtime_project.exceptions import NotFound
from schedules.models import Schedule, ScheduleRun
from sessions.models import Agent

WRITE_ROLE = Role.MEMBER  # who may create, change, delete and run a team's schedules


def schedule_list(*, user: Any) -> QuerySet[Schedule]:
    """The schedules of ``user``'s teams, ordered by name (agent, team, owner, reused session
    and last task loaded)."""
    return (
        Schedule.objects.filter(team_id__in=access.team_ids(user))
        .select_related("agent", "team", "owner", "session", "last_task")
        .order_by("name", "created_at")
    )


def schedule_get(*, user: Any, schedule_id: Any, for_write: bool = False) -> Schedule:
    """One schedule of ``user``'s teams by its public id. With ``for_write`` the user must be a
    member (not a viewer) of its team.

    Raises:
        NotFound: not a UUID, unknown, or a schedule of a team the user is not in.
        Forbidden: ``for_write`` and the user is a viewer of its team.
    """
    try:
        key = uuid.UUID(str(schedule_id))
    except (ValueError, TypeError, AttributeError):
        key = None
    schedule = schedule_list(user=user).filter(uuid=key).first() if key else None
    if schedule is None:
        raise NotFound("Schedule not found.", details={"id": str(schedule_id)})
    if for_write:
        access.require_role(user, schedule.team_id, WRITE_ROLE, what="Schedule")
    return schedule


def schedule_agent_get(*, team: Any, agent_id: Any) -> Agent:
    """The agent ``agent_id`` (uuid or slug) a schedule of ``team`` may run: a live agent of
    ``team`` or a public one (for a slug, the team's own agent wins over a public one).

    Raises:
        NotFound: no such live agent of ``team``, nor a public one.
    """
    team_pk = getattr(team, "pk", team)
    qs = Agent.objects.filter(Q(team_id=team_pk) | Q(is_public=True), deleted_at__isnull=True)
    try:
        agent = qs.filter(uuid=uuid.UUID(str(agent_id))).first()
    except ValueError:
        matches = qs.filter(slug=str(agent_id)).order_by("created_at")
        agent = matches.filter(team_id=team_pk).first() or matches.first()
    if agent is None:
        raise NotFound("Agent not found.", details={"id": str(agent_id)})
    return agent


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
