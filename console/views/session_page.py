"""The session page (``/console/sessions/<id>/``) and the read-only share view
(``/console/shared/<token>/``).

Both pages are server-rendered frames; their modules (``session.js``, ``shared.js``) read the
history and the live stream from the REST API, the WebSocket (session page) or SSE (share view)
with the URLs given in the ``page-config`` JSON. Writes (new tasks, messages, cancel) go through
the REST API from JavaScript, so the page shows the API's own errors.
"""

from __future__ import annotations

from typing import Any

from django.http import Http404, HttpRequest, HttpResponse
from django.views import View

from console.views.base import ConsoleLoginRequired, console_render
from runtime_project.exceptions import Forbidden, NotFound
from sessions.choices import AgentKind, TaskType
from sessions.models import Agent
from sessions.selectors import session_get
from sessions.services.sharing import ShareNotFound, share_link_resolve

# History: the page loads this many of the newest events, and "Load earlier" this many more.
PAGE_EVENTS = 300
# The timeline keeps at most this many rendered events (older ones are trimmed).
MAX_RENDERED = 2000
# Task types offered for non-chat agents (``chat`` is what the message box sends).
FORM_TASK_TYPES = [t for t in TaskType.values if t != TaskType.CHAT]


def input_form(agent: Agent) -> dict[str, Any]:
    """How the page's input box looks for ``agent``: ``{"mode": "message"}`` for ``llm``
    agents (the chat shortcut), else ``{"mode": "task", "fields": [{"name", "label", "hint",
    "required", "rows"}], "json_open": bool}``: one textarea per string property of the
    agent's ``input_schema`` (or the kind's usual one when the schema names none:
    ``instructions`` for a coding-agent CLI (``spec.architecture``), ``command`` for command
    agents that accept it, ``code`` for python agents), and a raw JSON editor for
    everything else (open when there is no field)."""
    if agent.kind == AgentKind.LLM:
        return {"mode": "message"}
    schema = agent.input_schema if isinstance(agent.input_schema, dict) else {}
    props = schema.get("properties")
    props = props if isinstance(props, dict) else {}
    required = set(schema.get("required") or [])
    fields: list[dict[str, Any]] = []
    others: list[str] = []
    for name, prop in props.items():
        prop = prop if isinstance(prop, dict) else {}
        if prop.get("type") == "string":
            hint = prop.get("description") or ""
            if isinstance(prop.get("enum"), list):
                hint = f"{hint} One of: {', '.join(map(str, prop['enum']))}.".strip()
            fields.append(
                {
                    "name": str(name),
                    "label": str(prop.get("title") or name),
                    "hint": hint,
                    "required": name in required,
                    "rows": 4,
                }
            )
        else:
            others.append(str(name))
    if not props:
        spec = agent.spec if isinstance(agent.spec, dict) else {}
        architecture = spec.get("architecture", "generic")
        if agent.kind == AgentKind.COMMAND and architecture != "generic":
            hint = (
                f"What {architecture} should do in the workspace; the task type (fix, plan, "
                "generate…) shapes its prompt. More (files, specs, app_url, test_command) as "
                '{"configuration": {…}} in the JSON input.'
            )
            fields.append({"name": "instructions", "label": "Instructions", "hint": hint,
                           "required": True, "rows": 4})  # fmt: skip
        elif agent.kind == AgentKind.COMMAND and spec.get("allow_input_command"):
            hint = "A bash script, run in the session's sandbox."
            fields.append(
                {"name": "command", "label": "Command", "hint": hint, "required": True, "rows": 4}
            )
        elif agent.kind == AgentKind.PYTHON:
            hint = "One notebook cell; variables persist between the session's tasks."
            fields.append({"name": "code", "label": "Code", "hint": hint, "required": True,
                           "rows": 6})  # fmt: skip
    return {"mode": "task", "fields": fields, "others": others, "json_open": not fields}


class SessionPage(ConsoleLoginRequired, View):
    """One session: its tasks and live events, the input box, files and the debugger panel.
    404 for a session outside the user's teams; viewers see it read-only (no input, no
    cancel)."""

    http_method_names = ["get", "head"]

    def get(self, request: HttpRequest, session_id: Any) -> HttpResponse:
        try:
            session = session_get(user=request.user, session_id=session_id)
        except NotFound:
            raise Http404("No such session.") from None
        try:
            session_get(user=request.user, session_id=session_id, for_write=True)
            can_write = True
        except Forbidden:
            can_write = False
        sid = str(session.uuid)
        agent = session.agent
        form = input_form(agent)
        config = {
            "session_id": sid,
            "session_status": session.status,
            "last_seq": session.last_seq,
            "can_write": can_write,
            "read_only": not can_write,
            "ws_path": f"/ws/sessions/{sid}/",
            "events_api": f"/api/v1/sessions/{sid}/events",
            "tasks_api": f"/api/v1/sessions/{sid}/tasks",
            "messages_api": f"/api/v1/sessions/{sid}/messages",
            "task_api": "/api/v1/tasks/",
            "files_api": f"/api/v1/sessions/{sid}/workspace/files",
            "artifact_url": "/api/v1/artifacts/{id}/content",
            "page_events": PAGE_EVENTS,
            "max_rendered": MAX_RENDERED,
            "input": form,
            "agent": {
                "id": str(agent.uuid),
                "slug": agent.slug,
                "name": agent.name,
                "kind": agent.kind,
                "input_schema": agent.input_schema,
            },
        }
        context = {
            "session": session,
            "nav": "sessions",
            "read_only": not can_write,
            "form": form,
            "task_types": FORM_TASK_TYPES,
        }
        return console_render(request, "console/session.html", context, config=config)


class SharedSessionPage(View):
    """A shared session, read-only, for anyone holding the share token (no sign-in): the
    timeline (live over SSE) and the workspace files, without the input box or the debugger.
    An unknown, revoked or expired token (or a deleted session) gets the same 404 page."""

    http_method_names = ["get", "head"]

    def get(self, request: HttpRequest, token: str) -> HttpResponse:
        try:
            link = share_link_resolve(token)
        except ShareNotFound:
            response = console_render(
                request, "console/shared.html", {"not_found": True}, status=404
            )
            response["X-Robots-Tag"] = "noindex, nofollow"
            return response
        session = link.session
        base = f"/api/v1/shared/{token}"
        config = {
            "token": token,
            "session_id": str(session.uuid),
            "session_status": session.status,
            "last_seq": session.last_seq,
            "read_only": True,
            "can_write": False,
            "summary_api": base,
            "events_api": f"{base}/events",
            "stream": f"{base}/events/stream",
            "files_api": f"{base}/files",
            "artifact_url": f"{base}/artifacts/{{id}}/content",
            "page_events": PAGE_EVENTS,
            "max_rendered": MAX_RENDERED,
        }
        context = {"session": session, "expires_at": link.expires_at, "read_only": True}
        response = console_render(request, "console/shared.html", context, config=config)
        # The URL is the secret: keep it out of caches, search engines and Referer headers.
        response["Referrer-Policy"] = "no-referrer"
        response["X-Robots-Tag"] = "noindex, nofollow"
        return response
