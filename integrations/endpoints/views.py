"""Agent endpoints over HTTP (docs/integrations/endpoints.md).

Routes (``integrations/endpoints/urls.py``; on an agent host, ``agent_urls.py`` serves the same
views without the ``/api/agents/{slug}`` prefix, the agent coming from ``request.agent_slug``):

- ``POST /api/agents/{slug}/{endpoint}`` and ``POST …/run``: :func:`endpoint_view` — 200
  ``{session, task}`` when the task finished within the wait, else 202 with the same body and
  ``Location: /api/v1/tasks/{id}``. Scope ``tasks:write``.
- ``GET /api/agents/{slug}/endpoints``: the operations, scope ``agents:read``.
- ``GET /api/agents/{slug}/openapi.json``: :func:`integrations.endpoints.openapi.agent_openapi`.
  A public agent's document is served to anyone (``AGENT_ENDPOINTS_PUBLIC_DOCS``); any other
  needs a credential (bearer or session cookie, ``agents:read``) that sees the agent: 401
  without one (whether or not the agent exists), 404 with one that does not see it.
- ``GET /api/agents/{slug}/docs/``: Swagger UI (drf-spectacular's page) on that document. The
  page is a static shell holding no agent data; the document it loads enforces the access.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from drf_spectacular.settings import spectacular_settings
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularSwaggerView
from rest_framework import exceptions as drf_exceptions
from rest_framework import status
from rest_framework.parsers import JSONParser
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import access
from accounts.models import Scope
from integrations.endpoints.calls import (
    PendingRun,
    ServedMixin,
    agent_for,
    agent_slug_of,
    mark_async_view,
    operation_get,
    serve_run,
    start_operation,
    validate_body,
    wait_preference,
)
from integrations.endpoints.openapi import agent_openapi, operations
from runtime_project.exceptions import NotFound
from sessions import selectors
from sessions.apis.oneshot import OneshotOutputSerializer, task_location
from sessions.models import Agent, Task

API_PREFIX = "/api/agents/{slug}"
LIST_NAME = "endpoints"


def on_agent_host(request: Any) -> bool:
    """Whether the request came in on ``<slug>.<AGENT_DOMAIN>`` (no path prefix there)."""
    return bool(getattr(request, "agent_slug", None))


def paths_prefix(request: Any) -> str:
    """The prefix of the agent's operation paths as this request sees them."""
    return "" if on_agent_host(request) else API_PREFIX


def base_url(request: Any) -> str:
    """The absolute server URL for documents: ``PUBLIC_BASE_URL`` when set (not on an agent
    host, whose own host name is the base), else the request's scheme and host (behind a proxy
    that needs ``TRUST_X_FORWARDED_PROTO``)."""
    configured = str(getattr(settings, "PUBLIC_BASE_URL", "") or "")
    if configured and not on_agent_host(request):
        return configured.rstrip("/")
    return str(request.build_absolute_uri("/")).rstrip("/")


def agent_prefix(request: Any, agent: Agent) -> str:
    return paths_prefix(request).replace("{slug}", agent.slug)


def document_agent(request: Request, slug: str | None) -> Agent:
    """The agent whose document a caller asks for (see the module docstring for the rule).

    Raises:
        NotAuthenticated: no credential and no public agent of that id.
        Forbidden: the credential lacks ``agents:read``.
        NotFound: the credential does not see the agent.
    """
    agent_id = agent_slug_of(request, slug)
    user = request.user
    if user is not None and user.is_authenticated:
        access.require_scope(user, Scope.AGENTS_READ)
        return selectors.agent_get(user=user, agent_id=agent_id)
    if settings.AGENT_ENDPOINTS_PUBLIC_DOCS:
        try:
            return selectors.agent_get(user=AnonymousUser(), agent_id=agent_id)
        except NotFound:
            pass
    raise drf_exceptions.NotAuthenticated(
        "Authenticate to read this agent's document (it is not public)."
    )


class EndpointCallApi(ServedMixin, APIView):
    """The synchronous half of an endpoint call (see :mod:`integrations.endpoints.calls`)."""

    required_scope = Scope.TASKS_WRITE
    parser_classes = [JSONParser]
    renderer_classes = [JSONRenderer]

    @extend_schema(exclude=True)  # documented per agent, by its own OpenAPI document
    def post(self, request: Request, endpoint: str, slug: str | None = None) -> Response:
        agent = agent_for(request, slug)
        op = operation_get(agent, endpoint)
        body = validate_body(request.data, op["input_schema"])
        wait_s, applied = wait_preference(request, op)
        run = start_operation(request, agent=agent, op=op, body=body, integration="endpoint")
        headers = {"Location": task_location(run.task)}
        if applied:
            headers["Preference-Applied"] = ", ".join(applied)
        response = Response(
            OneshotOutputSerializer({"session": run.session, "task": run.task}).data,
            status=status.HTTP_202_ACCEPTED,
            headers=headers,
        )
        response.pending_run = PendingRun(run=run, wait_s=wait_s)  # type: ignore[attr-defined]
        return response


def _render_result(task: Task, finished: bool) -> HttpResponseBase:
    """200 ``{session, task}`` for a finished task, 202 with ``Location`` for one still going."""
    data = OneshotOutputSerializer({"session": task.session, "task": task}).data
    response = HttpResponse(
        JSONRenderer().render(data),
        status=status.HTTP_200_OK if finished else status.HTTP_202_ACCEPTED,
        content_type="application/json",
    )
    if not finished:
        response["Location"] = task_location(task)
    return response


_call = EndpointCallApi.as_view()


async def endpoint_view(
    request: HttpRequest, endpoint: str, slug: str | None = None
) -> HttpResponseBase:
    """``POST /api/agents/{slug}/{endpoint}`` (and ``POST /{endpoint}`` on an agent host);
    ``GET …/endpoints`` goes to :class:`EndpointListApi` (one URL pattern for both, so that an
    endpoint may be named ``endpoints``)."""
    if endpoint == LIST_NAME and request.method in ("GET", "HEAD"):
        return await sync_to_async(_list)(request, slug=slug)
    return await serve_run(request, _call, _render_result, endpoint=endpoint, slug=slug)


class EndpointListApi(ServedMixin, APIView):
    required_scope = Scope.AGENTS_READ
    renderer_classes = [JSONRenderer]

    @extend_schema(exclude=True)
    def get(self, request: Request, slug: str | None = None) -> Response:
        """``{"agent": {id, slug, name}, "endpoints": [{name, description, method, url,
        input_schema, task_type, mode, timeout_s, builtin}], "openapi_url", "docs_url"}``."""
        agent = agent_for(request, slug)
        root = base_url(request) + agent_prefix(request, agent)
        return Response(
            {
                "agent": {"id": str(agent.uuid), "slug": agent.slug, "name": agent.name},
                "endpoints": [
                    {
                        "name": op["name"],
                        "description": op["description"],
                        "method": "POST",
                        "url": f"{root}/{op['name']}",
                        "input_schema": op["input_schema"],
                        "task_type": op["task_type"],
                        "mode": op["mode"],
                        "timeout_s": op["timeout_s"],
                        "builtin": op["builtin"],
                    }
                    for op in operations(agent)
                ],
                "openapi_url": f"{root}/openapi.json",
                "docs_url": f"{root}/docs/",
            }
        )


_list = EndpointListApi.as_view()
mark_async_view(endpoint_view, EndpointCallApi)


class AgentOpenApiApi(ServedMixin, APIView):
    permission_classes: list[Any] = []  # public agents to anyone; see document_agent
    renderer_classes = [JSONRenderer]

    @extend_schema(exclude=True)
    def get(self, request: Request, slug: str | None = None) -> Response:
        agent = document_agent(request, slug)
        document = agent_openapi(
            agent, base_url=base_url(request), paths_prefix=paths_prefix(request)
        )
        return Response(document, headers={"Cache-Control": "private, no-cache"})


class AgentSwaggerView(ServedMixin, SpectacularSwaggerView):
    """Swagger UI on the agent's document. ``Authorize`` with a bearer token is kept in the
    browser (``persistAuthorization``) and re-sent when the document is loaded, so a private
    agent's page works with a token as well as with a session cookie."""

    permission_classes: list[Any] = []

    def _get_schema_url(self, request: Any) -> str:
        slug = self.kwargs.get("slug")
        if on_agent_host(request):
            return "/openapi.json"
        return f"{API_PREFIX.replace('{slug}', str(slug))}/openapi.json"

    def _get_schema_auth_names(self) -> list[str]:
        return ["tokenAuth"]

    @extend_schema(exclude=True)
    def get(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        self.title = f"{agent_slug_of(request, kwargs.get('slug'))} — agent API"
        response = super().get(request, *args, **kwargs)
        ui_settings = spectacular_settings.SWAGGER_UI_SETTINGS
        if isinstance(ui_settings, dict):
            response.data["settings"] = self._dump({**ui_settings, "persistAuthorization": True})
        return response
