"""The numbers on the admin index: active and recently failed tasks per agent and per team,
and the latest failures. Three queries whatever the number of agents, teams or tasks (two
grouped counts and one list); every number links to the task list filtered to those tasks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django.db.models import Count, Q
from django.urls import reverse
from django.utils import timezone

from sessions.choices import ACTIVE_STATUSES, TaskStatus
from sessions.models import Task

FAILURE_WINDOW = timedelta(hours=24)
FAILED = (TaskStatus.FAILED, TaskStatus.TIMED_OUT)
# The changelist's "finished" filter value matching FAILURE_WINDOW (sessions.admin.filters).
FAILURE_WINDOW_PARAM = "24h"
COLUMNS = ("running", "queued", "waiting", "failed")
RECENT_FAILURES = 10


@dataclass
class Cell:
    """One number, the column it is in, and the task list it counts."""

    column: str
    count: int
    url: str


@dataclass
class Row:
    """One agent or team: its label, a link to its admin page, and one cell per column."""

    label: str
    url: str
    cells: list[Cell] = field(default_factory=list)


@dataclass
class Dashboard:
    """What ``templates/admin/index.html`` shows (``failures``: ``Task`` rows, newest first)."""

    columns: tuple[str, ...]
    by_agent: list[Row]
    by_team: list[Row]
    totals: list[Cell]
    failures: list[Task]
    since: datetime


def _tasks_url(**params: Any) -> str:
    return f"{reverse('admin:agent_sessions_task_changelist')}?{urlencode(params)}"


def _column_filter(column: str) -> dict[str, str]:
    if column == "failed":
        return {"status__in": ",".join(FAILED), "finished": FAILURE_WINDOW_PARAM}
    return {"status__exact": column}


def _cells(counts: Mapping[str, Any], **scope: Any) -> list[Cell]:
    return [
        Cell(column=c, count=counts[c], url=_tasks_url(**scope, **_column_filter(c)))
        for c in COLUMNS
    ]


def dashboard_data(*, now: datetime | None = None) -> Dashboard:
    """Counts of running, queued and waiting tasks (now) and of tasks that failed or timed out
    in the last 24 hours, grouped by agent and by team, plus the latest failures.

    Agents and teams with nothing to count are left out."""
    since = (now or timezone.now()) - FAILURE_WINDOW
    relevant = Task.objects.filter(
        Q(status__in=ACTIVE_STATUSES) | Q(status__in=FAILED, finished_at__gte=since)
    )
    counts = {
        "running": Count("pk", filter=Q(status=TaskStatus.RUNNING)),
        "queued": Count("pk", filter=Q(status=TaskStatus.QUEUED)),
        "waiting": Count("pk", filter=Q(status=TaskStatus.WAITING)),
        "failed": Count("pk", filter=Q(status__in=FAILED)),
    }
    # order_by() replaces Task's default ordering, which would otherwise join the GROUP BY.
    agent_rows = (
        relevant.values("agent_id", "agent__slug", "agent__team__slug")
        .annotate(**counts)
        .order_by("agent__slug", "agent__team__slug")
    )
    team_rows = (
        relevant.values("session__team_id", "session__team__slug")
        .annotate(**counts)
        .order_by("session__team__slug")
    )
    by_agent = [
        Row(
            label=f"{r['agent__slug']} ({r['agent__team__slug']})",
            url=reverse("admin:agent_sessions_agent_change", args=[r["agent_id"]]),
            cells=_cells(r, agent__id__exact=r["agent_id"]),
        )
        for r in agent_rows
    ]
    by_team = [
        Row(
            label=r["session__team__slug"],
            url=reverse("admin:accounts_team_change", args=[r["session__team_id"]]),
            cells=_cells(r, team=r["session__team_id"]),
        )
        for r in team_rows
    ]
    totals = _cells({c: sum(row.cells[i].count for row in by_team) for i, c in enumerate(COLUMNS)})
    failures = list(
        Task.objects.filter(status__in=FAILED, finished_at__gte=since)
        .select_related("agent", "session__team")
        .order_by("-finished_at")[:RECENT_FAILURES]
    )
    return Dashboard(COLUMNS, by_agent, by_team, totals, failures, since)
