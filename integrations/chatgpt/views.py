"""ChatGPT actions (docs/integrations/chatgpt.md). Every route answers 404 while
``CHATGPT_ENABLED`` is off (or ``SERVER_MODE`` does not serve ``embodiment``), and per agent
while its ``integrations.chatgpt`` flag is false.

- ``GET /chatgpt/{agent}/openapi.json``: the GPT Actions schema of one agent. Like the agent's
  own document: public agents to anyone (the GPT builder imports it without a key), others
  need a credential that sees the agent.
- ``POST /chatgpt/{agent}/run`` and ``POST /chatgpt/{agent}/{endpoint}``: run and wait up to
  ``CHATGPT_MAX_WAIT_S`` (≤ 45 s), answer 200 ``{status, task_id, session_id, text, result,
  error}``; bearer credential with ``tasks:write``.
- ``GET /chatgpt/tasks/{task_id}/result``: the same answer for an earlier run, waiting again up
  to ``CHATGPT_MAX_WAIT_S``; ``sessions:read``.
- ``GET /chatgpt/openapi.json``: every public exposed agent's ``run``; and
  ``GET /.well-known/ai-plugin.json``, the legacy plugin manifest pointing at it (or at
  ``CHATGPT_PLUGIN_AGENT``'s document). Both unauthenticated: they list public agents only.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.parsers import JSONParser
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Scope
from integrations.chatgpt.documents import action_result, chatgpt_openapi, plugin_manifest
from integrations.chatgpt.documents import server_openapi as build_server_openapi
from integrations.endpoints.calls import (
    PendingRun,
    ServedMixin,
    agent_for,
    mark_async_view,
    operation_get,
    serve_run,
    start_operation,
    validate_body,
)
from integrations.endpoints.views import base_url, document_agent
from integrations.runs import Run
from runtime_project.exceptions import NotFound
from runtime_project.modes import serves
from sessions import selectors
from sessions.endpoints import is_exposed
from sessions.models import Agent, Task

LOGO_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64" width="512" height="512">'
    '<rect width="64" height="64" rx="12" fill="#1f6feb"/>'
    '<path d="M16 22l10 10-10 10M30 44h18" stroke="#fff" stroke-width="5" fill="none" '
    'stroke-linecap="round" stroke-linejoin="round"/></svg>'
)


def exposed(agent: Agent) -> Agent:
    """``agent`` unless its ``integrations.chatgpt`` flag is false (then 404)."""
    if not is_exposed(agent, "chatgpt"):
        raise NotFound("Agent not found.", details={"id": agent.slug})
    return agent


class ChatGPTMixin(ServedMixin):
    feature = "chatgpt"


class ActionOpenApiApi(ChatGPTMixin, APIView):
    permission_classes: list[Any] = []  # public agents to anyone; see document_agent
    renderer_classes = [JSONRenderer]

    @extend_schema(exclude=True)
    def get(self, request: Request, agent: str) -> Response:
        found = exposed(document_agent(request, agent))
        return Response(chatgpt_openapi(found, base_url=base_url(request)))


def public_agents() -> list[Agent]:
    agents = Agent.objects.filter(is_public=True, deleted_at__isnull=True).order_by("slug")
    return [a for a in agents if is_exposed(a, "chatgpt")]


class ServerOpenApiApi(ChatGPTMixin, APIView):
    authentication_classes: list[Any] = []
    permission_classes: list[Any] = []
    renderer_classes = [JSONRenderer]

    @extend_schema(exclude=True)
    def get(self, request: Request) -> Response:
        return Response(build_server_openapi(public_agents(), base_url=base_url(request)))


class PluginManifestApi(ChatGPTMixin, APIView):
    authentication_classes: list[Any] = []
    permission_classes: list[Any] = []
    renderer_classes = [JSONRenderer]

    @extend_schema(exclude=True)
    def get(self, request: Request) -> Response:
        return Response(plugin_manifest(base_url=base_url(request)))


def logo(request: HttpRequest) -> HttpResponseBase:
    """The default ``logo_url`` of the manifest."""
    if not serves("chatgpt"):
        return JsonResponse(NotFound("Not served by this server.").as_dict(), status=404)
    return HttpResponse(LOGO_SVG, content_type="image/svg+xml")


class ActionRunApi(ChatGPTMixin, APIView):
    """The synchronous half of an action call (see :mod:`integrations.endpoints.calls`)."""

    required_scope = Scope.TASKS_WRITE
    parser_classes = [JSONParser]
    renderer_classes = [JSONRenderer]

    @extend_schema(exclude=True)
    def post(self, request: Request, agent: str, endpoint: str) -> Response:
        from django.conf import settings

        found = exposed(agent_for(request, agent))
        op = operation_get(found, endpoint)
        body = validate_body(request.data, op["input_schema"])
        run = start_operation(request, agent=found, op=op, body=body, integration="chatgpt")
        response = Response(action_result(run.task), status=status.HTTP_200_OK)
        wait_s = float(settings.CHATGPT_MAX_WAIT_S)
        response.pending_run = PendingRun(run=run, wait_s=wait_s)  # type: ignore[attr-defined]
        return response


class ActionTaskResultApi(ChatGPTMixin, APIView):
    required_scope = Scope.SESSIONS_READ
    renderer_classes = [JSONRenderer]

    @extend_schema(exclude=True)
    def get(self, request: Request, task_id: str) -> Response:
        from django.conf import settings

        task = selectors.task_get(user=request.user, task_id=task_id)
        response = Response(action_result(task), status=status.HTTP_200_OK)
        run = Run(session=task.session, task=task)
        wait_s = float(settings.CHATGPT_MAX_WAIT_S)
        response.pending_run = PendingRun(run=run, wait_s=wait_s)  # type: ignore[attr-defined]
        return response


def _render(task: Task, finished: bool) -> HttpResponseBase:
    return HttpResponse(
        JSONRenderer().render(action_result(task)),
        status=status.HTTP_200_OK,
        content_type="application/json",
    )


_run = ActionRunApi.as_view()
_result = ActionTaskResultApi.as_view()


async def action_run_view(request: HttpRequest, agent: str, endpoint: str) -> HttpResponseBase:
    """``POST /chatgpt/{agent}/{endpoint}``."""
    return await serve_run(request, _run, _render, agent=agent, endpoint=endpoint)


async def action_result_view(request: HttpRequest, task_id: str) -> HttpResponseBase:
    """``GET /chatgpt/tasks/{task_id}/result``."""
    return await serve_run(request, _result, _render, task_id=task_id)


mark_async_view(action_run_view, ActionRunApi)
mark_async_view(action_result_view, ActionTaskResultApi)
