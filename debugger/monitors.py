"""Monitors (issue 10, item 4): services and selectors.

A :class:`debugger.models.Monitor` is a named mirror. Runs started with
``X-MONITOR-ID: <uuid>`` carry ``config["monitor_id"]`` and their events are published to the
channel-layer group :func:`monitor_group` (``debugger.mirror``); ``/ws/monitor/<uuid>/``
(``debugger.consumers``) streams that group to the monitor's owner.

Who may do what:
- read, delete, subscribe: the owner only (anyone else gets 404, so a stranger cannot even learn
  that the id exists);
- attach a run (the header): the owner, or a member of the monitor's ``team``
  (:func:`monitor_for_run`).
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import QuerySet

from accounts import access
from accounts.selectors import team_for_write
from debugger.models import Monitor
from runtime_project.exceptions import NotFound
from sessions.models import Task

MONITOR_NOT_FOUND = "monitor_not_found"


def monitor_group(monitor_uuid: Any) -> str:
    """Channel-layer group of a monitor's subscribers: ``monitor.<uuid hex>`` (group names
    allow only ASCII letters, digits, ``-``, ``_`` and ``.``)."""
    return f"monitor.{uuid.UUID(str(monitor_uuid)).hex}"


def _parse(monitor_id: Any) -> uuid.UUID:
    try:
        return uuid.UUID(str(monitor_id))
    except (TypeError, ValueError, AttributeError):
        raise NotFound(
            "Monitor not found.", code=MONITOR_NOT_FOUND, details={"monitor": str(monitor_id)}
        ) from None


# Services ---------------------------------------------------------------------------------------


def monitor_create(*, owner: Any, name: str = "", team_id: Any | None = None) -> Monitor:
    """A new monitor of ``owner``; with ``team_id`` (uuid or slug) the members of that team may
    attach their runs to it (``owner`` needs the member role there).

    Raises:
        NotFound: no such team of the owner's. Forbidden: the owner's role there is too low.
    """
    team = team_for_write(user=owner, team_id=team_id) if team_id not in (None, "") else None
    return Monitor.objects.create(owner=owner, name=name, team=team)


def monitor_delete(*, monitor: Monitor) -> None:
    """Delete ``monitor`` (from :func:`monitor_get`). Runs already attached keep their
    ``config.monitor_id``; nobody can subscribe to it any more."""
    monitor.delete()


# Selectors --------------------------------------------------------------------------------------


def monitor_list(*, user: Any) -> QuerySet[Monitor]:
    """The monitors ``user`` owns, newest first."""
    return Monitor.objects.filter(owner=user).select_related("team").order_by("-created_at", "-pk")


def monitor_get(*, user: Any, monitor_id: Any) -> Monitor:
    """``user``'s monitor ``monitor_id`` (a UUID).

    Raises:
        NotFound: ``monitor_not_found`` — not a UUID, unknown, or someone else's.
    """
    found = monitor_list(user=user).filter(uuid=_parse(monitor_id)).first()
    if found is None:
        raise NotFound(
            "Monitor not found.", code=MONITOR_NOT_FOUND, details={"monitor": str(monitor_id)}
        )
    return found


def monitor_for_run(*, user: Any, monitor_id: Any) -> Monitor:
    """The monitor ``user`` may attach a run to: one they own, or one of a team they are a
    member of (any role).

    Raises:
        NotFound: ``monitor_not_found`` — not a UUID, unknown, or neither theirs nor their
            team's (the same answer, so the header cannot probe for ids).
    """
    found = Monitor.objects.filter(uuid=_parse(monitor_id)).first()
    if found is not None and (
        found.owner_id == user.pk
        or (found.team_id is not None and access.role_in(user, found.team_id) is not None)
    ):
        return found
    raise NotFound(
        "Monitor not found.", code=MONITOR_NOT_FOUND, details={"monitor": str(monitor_id)}
    )


def monitor_task_list(*, monitor: Monitor) -> QuerySet[Task]:
    """The tasks mirrored to ``monitor`` (``config.monitor_id``), newest first. The caller
    owns the monitor (:func:`monitor_get`); the tasks were attached by the owner or a member of
    the monitor's team."""
    return (
        Task.objects.filter(config__monitor_id=str(monitor.uuid))
        .select_related("session", "agent", "parent")
        .order_by("-created_at", "-pk")
    )
