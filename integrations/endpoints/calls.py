"""Calling an agent operation over HTTP: the pieces agent endpoints (``/api/agents/{slug}/…``,
agent hosts) and ChatGPT actions (``/chatgpt/{agent}/…``) share.

A call is served in two halves, like ``POST /api/v1/oneshot`` (sessions/apis/oneshot.py): a DRF
``APIView`` run in a thread authenticates, resolves the agent and the operation, validates the
body, queues the task (``integrations.runs.run_start``) and returns a 202 response carrying a
:class:`PendingRun`; then :func:`serve_run`, on the event loop, waits for the task
(``run_wait``) and renders the answer. A wait therefore holds no thread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase
from rest_framework.request import Request

from integrations.endpoints.openapi import operations
from integrations.runs import Run, run_start, run_wait
from runtime_project.exceptions import InvalidInput, NotFound
from runtime_project.modes import serves
from sessions import selectors
from sessions.apis.tasks import idempotency_key
from sessions.models import Agent, Task


@dataclass(frozen=True)
class PendingRun:
    """A queued run and how long (seconds) the async half should wait for it (0: not at all)."""

    run: Run
    wait_s: float


class ServedMixin:
    """For DRF views: 404 (in the error envelope, before authentication) while ``feature``
    (``runtime_project.modes.FEATURES``) is not served by this process or is switched off."""

    feature = "endpoints"

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        if not serves(self.feature):
            raise NotFound("Not served by this server.", details={"path": request.path})
        super().initial(request, *args, **kwargs)  # type: ignore[misc]


def agent_slug_of(request: Any, slug: str | None) -> str:
    """The agent a request is about: the URL's ``slug`` (``/api/agents/{slug}/…``), else the one
    :class:`integrations.endpoints.domains.AgentDomainMiddleware` read from the host name."""
    value = slug or getattr(request, "agent_slug", None)
    if not value:
        raise NotFound("Agent not found.", details={"id": ""})
    return str(value)


def agent_for(request: Any, slug: str | None) -> Agent:
    """The agent (uuid or slug) as the caller may see it (``sessions.selectors.agent_get``).

    Raises:
        NotFound: unknown, deleted, or not visible to the caller (another team's private agent).
    """
    return selectors.agent_get(user=request.user, agent_id=agent_slug_of(request, slug))


def operation_get(agent: Agent, name: str) -> dict[str, Any]:
    """The operation ``name`` of ``agent``: a declared endpoint or the built-in ``run``, as
    :func:`integrations.endpoints.openapi.operations` describes it.

    Raises:
        NotFound: ``endpoint_not_found``, with the operations that exist.
    """
    ops = operations(agent)
    for op in ops:
        if op["name"] == name:
            return op
    raise NotFound(
        f"The agent '{agent.slug}' has no endpoint '{name}'.",
        code="endpoint_not_found",
        details={"endpoint": name, "endpoints": [op["name"] for op in ops]},
    )


def validate_body(data: Any, schema: dict[str, Any] | None) -> dict[str, Any]:
    """The request body as the task input: a JSON object valid against ``schema``.

    Raises:
        InvalidInput: ``details.fields`` maps each offending field (dotted path; a missing
            required property under its own name; ``body`` for the whole body) to messages.
    """
    import jsonschema

    if not isinstance(data, dict):
        raise InvalidInput(
            "The body must be a JSON object.", details={"fields": {"body": ["expected an object"]}}
        )
    if not schema:
        return data
    validator = jsonschema.Draft202012Validator(schema)
    fields: dict[str, list[str]] = {}
    for error in sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))[:20]:
        path = [str(p) for p in error.absolute_path]
        if error.validator == "required" and isinstance(error.instance, dict):
            missing = [r for r in error.validator_value if r not in error.instance]
            for name in missing:
                fields.setdefault(".".join([*path, name]), []).append("This field is required.")
            continue
        fields.setdefault(".".join(path) or "body", []).append(error.message)
    if fields:
        raise InvalidInput("The body does not match the endpoint's input schema.",
                           details={"fields": fields})  # fmt: skip
    return data


def _seconds(raw: str, field: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise InvalidInput(
            f"Invalid {field}.", details={"fields": {field: ["expected seconds (a number >= 0)"]}}
        )
    return value


def wait_preference(request: Any, op: dict[str, Any]) -> tuple[float, list[str]]:
    """How long to wait for the result (seconds) and the ``Preference-Applied`` tokens.

    ``?wait=<s>`` wins, then ``Prefer: wait=<s>`` (RFC 7240); ``Prefer: respond-async`` alone
    means 0; else the operation's ``timeout_s`` when its mode is ``sync``, 0 when ``async``.
    Everything is capped by ``AGENT_ENDPOINTS_MAX_WAIT_S``.

    Raises:
        InvalidInput: a ``wait`` that is not a number of seconds.
    """
    cap = float(settings.AGENT_ENDPOINTS_MAX_WAIT_S)
    prefer: dict[str, str] = {}
    for preference in request.headers.get("Prefer", "").split(","):
        token, _, value = preference.split(";", 1)[0].strip().partition("=")
        if token:
            prefer[token.strip().lower()] = value.strip().strip('"')
    query = request.GET.get("wait")
    if query is not None:
        return min(_seconds(query, "wait"), cap), []
    if "wait" in prefer:
        wait = min(_seconds(prefer["wait"], "Prefer"), cap)
        applied = ["respond-async"] if "respond-async" in prefer else []
        return wait, [*applied, f"wait={wait:g}"]
    if "respond-async" in prefer:
        return 0.0, ["respond-async"]
    if op["mode"] == "async":
        return 0.0, []
    return min(float(op["timeout_s"]), cap), []


def start_operation(
    request: Any, *, agent: Agent, op: dict[str, Any], body: dict[str, Any], integration: str
) -> Run:
    """Queue the task of ``op`` with ``body`` as its input (``integrations.runs.run_start``):
    ``task_type`` from the declaration, ``config.endpoint`` = the endpoint's name (none for the
    built-in ``run``), ``session.metadata.endpoint`` likewise.

    Raises:
        InvalidInput: the body does not match the agent's own input schema either.
        TooManyRequests, Conflict: as ``sessions.services.tasks.task_create``.
    """
    extra = {} if op["builtin"] else {"endpoint": op["name"]}
    return run_start(
        user=request.user,
        agent=agent,
        integration=integration,
        input=body,
        task_type=op["task_type"],
        config=extra,
        session_name=f"{agent.slug} {op['name']}",
        session_metadata=extra,
        idempotency_key=idempotency_key(request),
        request=request,
    )


async def serve_run(
    request: HttpRequest,
    view: Callable[..., HttpResponseBase],
    render: Callable[[Task, bool], HttpResponseBase],
    *args: Any,
    **kwargs: Any,
) -> HttpResponseBase:
    """Run the sync half ``view`` in a thread; when it returned a :class:`PendingRun` to wait
    for, wait on the event loop and answer ``render(task, finished)`` (called in a thread: it
    may read the database). Any other response (an error, a 202 with nothing to wait for) is
    returned as it is. A client that goes away stops the wait, not the task."""
    response = await sync_to_async(view)(request, *args, **kwargs)
    pending: PendingRun | None = getattr(response, "pending_run", None)
    if pending is None or pending.wait_s <= 0:
        return response
    task = await run_wait(pending.run, timeout_s=pending.wait_s)
    from sessions.choices import TERMINAL_STATUSES

    finished = task.status in TERMINAL_STATUSES
    answer = await sync_to_async(render)(task, finished)
    if response.has_header("Preference-Applied"):
        answer["Preference-Applied"] = response["Preference-Applied"]
    return answer


def mark_async_view(view: Any, cls: type) -> None:
    """Attributes Django, DRF and drf-spectacular read on an async wrapper of ``cls``'s view:
    CSRF is checked by the DRF view (session-cookie callers), not by the middleware."""
    view.cls = cls
    view.initkwargs = {}
    view.csrf_exempt = True
