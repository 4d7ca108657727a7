"""Agent pages: the list (``/console/agents/``), one agent (``/console/agents/<id>/``) and the
create/edit form (``/console/agents/new/``, ``/console/agents/<id>/edit/``).

Reads go through ``sessions.selectors`` with the signed-in user; the form and the delete button
write through the REST API from ``agent-form.js`` / ``agent-page.js``, so the page shows the
API's own validation errors (the spec is checked against the kind's JSON Schema there).
"""

from __future__ import annotations

import json
from typing import Any

from django.core.paginator import Paginator
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import reverse
from django.views import View

from accounts.selectors import team_list
from console.views.base import ConsoleLoginRequired, console_render
from runtime_project.exceptions import Forbidden, NotFound
from sessions.choices import AgentKind
from sessions.models import Agent
from sessions.selectors import agent_get, agent_list

PAGE_SIZE = 25
VERSIONS_SHOWN = 50


def _pretty(value: Any) -> str:
    """``value`` as indented JSON for a <pre> or a textarea."""
    return json.dumps(value, indent=2, ensure_ascii=False)


def _visible_agent(user: Any, agent_id: Any) -> Agent:
    """The agent if ``user`` sees it, else 404 (the same answer for unknown and foreign)."""
    try:
        return agent_get(user=user, agent_id=agent_id)
    except NotFound:
        raise Http404("No such agent.") from None


def _can_write(user: Any, agent: Agent) -> bool:
    try:
        agent_get(user=user, agent_id=agent.uuid, for_write=True)
    except (Forbidden, NotFound):
        return False
    return True


class AgentListPage(ConsoleLoginRequired, View):
    """Agents the user can see (their teams' and public ones), 25 a page, ordered by slug.

    Query: ``q`` (part of the slug or name, case-insensitive), ``kind`` (one of the kinds;
    anything else is ignored), ``page`` (1-based; out of range shows the last page),
    ``deleted`` (a slug the page reports as just deleted).
    """

    http_method_names = ["get", "head"]

    def get(self, request: HttpRequest) -> HttpResponse:
        agents = agent_list(user=request.user).select_related("team")
        q = request.GET.get("q", "").strip()
        kind = request.GET.get("kind", "")
        if kind not in AgentKind.values:
            kind = ""
        if q:
            agents = agents.filter(Q(slug__icontains=q) | Q(name__icontains=q))
        if kind:
            agents = agents.filter(kind=kind)
        page = Paginator(agents.order_by("slug", "pk"), PAGE_SIZE).get_page(request.GET.get("page"))
        context = {
            "nav": "agents",
            "page": page,
            "q": q,
            "kind": kind,
            "kinds": AgentKind.choices,
            "filtered": bool(q or kind),
            # Set by agent-page.js after a delete, to say so here (a slug: shown escaped).
            "deleted": request.GET.get("deleted", "")[:64],
        }
        return console_render(request, "console/agents.html", context)


class AgentDetailPage(ConsoleLoginRequired, View):
    """One agent: facts, description, spec and input schema, the version history (newest
    first, the last 50) and the actions its user may take. 404 if the user cannot see it."""

    http_method_names = ["get", "head"]

    def get(self, request: HttpRequest, agent_id: Any) -> HttpResponse:
        agent = _visible_agent(request.user, agent_id)
        can_write = _can_write(request.user, agent)
        # The agent was authorised above; its history has no selector of its own yet.
        versions = agent.versions.select_related("created_by").order_by("-version")
        context = {
            "nav": "agents",
            "agent": agent,
            "can_write": can_write,
            "spec_json": _pretty(agent.spec),
            "input_schema_json": _pretty(agent.input_schema),
            "versions": versions[:VERSIONS_SHOWN],
            "version_count": versions.count(),
        }
        config = {
            "agent_id": str(agent.uuid),
            "slug": agent.slug,
            "api": f"/api/v1/agents/{agent.uuid}",
            "list_url": reverse("console:agents"),
        }
        return console_render(request, "console/agent_detail.html", context, config=config)


class AgentEditPage(ConsoleLoginRequired, View):
    """The agent form: a new agent (no ``agent_id``) or a change to one the user may write.

    404 for an agent the user cannot see; 403 with an explanation for one they can only read
    (a public agent of another team, or a team where they are a viewer).
    """

    http_method_names = ["get", "head"]

    def get(self, request: HttpRequest, agent_id: Any = None) -> HttpResponse:
        agent = None
        if agent_id is not None:
            agent = _visible_agent(request.user, agent_id)
            try:
                agent_get(user=request.user, agent_id=agent.uuid, for_write=True)
            except Forbidden as exc:
                context = {"nav": "agents", "agent": agent, "reason": exc.message}
                return console_render(request, "console/agent_form.html", context, status=403)
        teams = list(team_list(user=request.user).order_by("-is_personal", "name"))
        context = {
            "nav": "agents",
            "agent": agent,
            "editable": True,
            "kinds": AgentKind.choices,
            "kind": agent.kind if agent else AgentKind.COMMAND,
            "teams": teams if agent is None and len(teams) > 1 else [],
            "spec_json": _pretty(agent.spec if agent else {}),
            "input_schema_json": _pretty(agent.input_schema if agent else {}),
        }
        config = {
            "mode": "edit" if agent else "create",
            "api": f"/api/v1/agents/{agent.uuid}" if agent else "/api/v1/agents",
            "agent_url": "/console/agents/{id}/",
        }
        return console_render(request, "console/agent_form.html", context, config=config)
