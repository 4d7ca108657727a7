"""Changelist filters the dashboard links to: tasks of one team (``?team=<id>``) and tasks that
finished recently (``?finished=1h|24h|7d``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from accounts.models import Team
from sessions.choices import ACTIVE_STATUSES
from sessions.models import Task

TEAMS_LISTED = 50
WINDOWS = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}


class TeamFilter(admin.SimpleListFilter):
    """Rows of one team. Lists the teams with active tasks (a server has a personal team per
    user: listing them all would drown the sidebar) and the selected one; any team id works
    as ``?team=<id>``."""

    title = "team (with active tasks)"
    parameter_name = "team"
    team_path = "session__team"  # from the model of the changelist to Team

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        busy = Task.objects.filter(status__in=ACTIVE_STATUSES).values("session__team_id")
        selected = self.value() if (self.value() or "").isdigit() else None
        teams = Team.objects.filter(Q(pk__in=busy) | Q(pk=selected)).order_by("slug")
        return [(str(pk), slug) for pk, slug in teams.values_list("pk", "slug")[:TEAMS_LISTED]]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if not value:
            return queryset
        if not value.isdigit():
            return queryset.none()
        return queryset.filter(**{f"{self.team_path}_id": int(value)})


class SessionTeamFilter(TeamFilter):
    """:class:`TeamFilter` for the session list."""

    team_path = "team"


class FinishedFilter(admin.SimpleListFilter):
    """Tasks that finished within the last hour, day or week."""

    title = "finished"
    parameter_name = "finished"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("1h", "in the last hour"), ("24h", "in the last 24 hours"), ("7d", "in 7 days")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        window = WINDOWS.get(self.value() or "")
        if window is None:
            return queryset
        return queryset.filter(finished_at__gte=timezone.now() - window)
