"""The sessions list (``/console/sessions/``) with its "New session" form, which
``sessions.js`` submits to ``POST /api/v1/sessions`` before opening the new session's page."""

from __future__ import annotations

import uuid

from django.core.paginator import Paginator
from django.db.models import Max
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.views import View

from accounts.selectors import team_list
from console.views.base import ConsoleLoginRequired, console_render
from sessions.choices import SessionStatus
from sessions.selectors import agent_list, session_list

PAGE_SIZE = 25
AGENT_CHOICES_MAX = 500  # the agent pickers list at most this many (slug order)


def _uuid_param(value: str) -> str:
    """``value`` as a canonical uuid string, or ``""`` if it is none (then ignored)."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return ""


class SessionListPage(ConsoleLoginRequired, View):
    """Sessions of the user's teams, newest first, 25 a page, with the "New session" form.

    Query: ``q`` (part of the name, case-insensitive), ``status`` (active/idle/closed),
    ``agent`` (an agent uuid: filters the list and preselects the agent in the form),
    ``page`` (1-based; out of range shows the last page). Unknown values are ignored.
    "Last activity" is the newest change of one of the session's tasks, else of the session.
    """

    http_method_names = ["get", "head"]

    def get(self, request: HttpRequest) -> HttpResponse:
        agents = list(agent_list(user=request.user).order_by("slug", "pk")[:AGENT_CHOICES_MAX])
        q = request.GET.get("q", "").strip()
        status = request.GET.get("status", "")
        if status not in SessionStatus.values:
            status = ""
        agent_id = _uuid_param(request.GET.get("agent", ""))

        sessions = session_list(user=request.user)
        if q:
            sessions = sessions.filter(name__icontains=q)
        if status:
            sessions = sessions.filter(status=status)
        if agent_id:
            sessions = sessions.filter(agent__uuid=agent_id)
        sessions = sessions.annotate(
            last_activity=Coalesce(Max("tasks__updated_at"), "updated_at")
        ).order_by("-created_at", "-pk")
        page = Paginator(sessions, PAGE_SIZE).get_page(request.GET.get("page"))
        teams = list(team_list(user=request.user).order_by("-is_personal", "name"))
        context = {
            "nav": "sessions",
            "page": page,
            "q": q,
            "status": status,
            "statuses": SessionStatus.choices,
            "agent_id": agent_id,
            "agents": agents,
            "teams": teams if len(teams) > 1 else [],
            "filtered": bool(q or status or agent_id),
        }
        config = {"api": "/api/v1/sessions", "session_url": "/console/sessions/{id}/"}
        return console_render(request, "console/sessions.html", context, config=config)
