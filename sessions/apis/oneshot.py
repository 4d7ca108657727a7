"""``POST /oneshot``: create a session and a task in one call, then wait for the result or
stream the events.

DRF views are synchronous, and waiting for a task in a worker thread would hold that thread
for up to ``ONESHOT_MAX_WAIT_S``. So the URL is served by :func:`oneshot_view`, an async
Django view: it runs :class:`OneshotCreateApi` (authentication, validation, creation, errors in
the usual shape, and the schema) in a thread, then waits on the event loop for the task's
terminal ``task.status`` event, subscribed to the session's channel-layer group.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import JSONParser
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.audit import audit_request
from accounts.models import Scope
from accounts.selectors import team_for_write
from debugger.headers import run_config_with_headers
from runtime_project.api import SSE_EVENT_REF, error_responses
from runtime_project.db import db_call
from runtime_project.exceptions import ApplicationError
from sessions import selectors
from sessions.apis.common import TEAM_FIELD
from sessions.apis.sessions import SessionOutputSerializer
from sessions.apis.tasks import SSE_DESCRIPTION, TaskOutputSerializer
from sessions.broadcast import session_group
from sessions.choices import TERMINAL_STATUSES, OnDisconnect, TaskType
from sessions.models import Task
from sessions.services.sessions import session_create
from sessions.services.tasks import task_cancel, task_create

# The channel layer is at-most-once (a full channel drops messages), so while waiting the task
# row is also re-read this often even when no message arrives.
SAFETY_RECHECK_S = 5.0


class OneshotOutputSerializer(serializers.Serializer):
    session = SessionOutputSerializer()
    task = TaskOutputSerializer()

    class Meta:
        ref_name = "OneshotResult"


class OneshotCreateApi(APIView):
    """Validates and creates; the waiting is done by :func:`oneshot_view`. Called on its own it
    answers like a wait that timed out (202)."""

    required_scope = Scope.TASKS_WRITE

    parser_classes = [JSONParser]

    class InputSerializer(serializers.Serializer):
        class SessionInputSerializer(serializers.Serializer):
            name = serializers.CharField(max_length=200, allow_blank=True, default="")
            tags = serializers.ListField(
                child=serializers.CharField(max_length=64), max_length=50, default=list
            )
            metadata = serializers.DictField(default=dict)

            class Meta:
                ref_name = "OneshotSessionInput"

        agent = serializers.CharField(help_text="Agent id (UUID) or slug.")
        input = serializers.DictField(default=dict)
        task_type = serializers.ChoiceField(choices=TaskType.choices, default=TaskType.RUN)
        config = serializers.DictField(default=dict)
        session = SessionInputSerializer(required=False, help_text="The new session's fields.")
        team = TEAM_FIELD
        mode = serializers.ChoiceField(
            choices=["wait", "stream"],
            default="wait",
            help_text="`wait` for the result as JSON, or `stream` the events (SSE).",
        )
        wait_timeout_s = serializers.FloatField(
            min_value=0,
            default=60.0,
            help_text="`wait`: give up after this many seconds (max ONESHOT_MAX_WAIT_S).",
        )
        on_disconnect = serializers.ChoiceField(
            choices=OnDisconnect.choices,
            default=OnDisconnect.CONTINUE,
            help_text="Cancel the task when the client goes away before it finished, or not.",
        )

        class Meta:
            ref_name = "OneshotInput"

        def validate_wait_timeout_s(self, value: float) -> float:
            if value > settings.ONESHOT_MAX_WAIT_S:
                raise serializers.ValidationError(f"max {settings.ONESHOT_MAX_WAIT_S}")
            return value

    OK_200 = "JSON (`mode: wait`): the finished task. " + SSE_DESCRIPTION.replace(
        "with `stream: true`", "`mode: stream`"
    )

    @extend_schema(
        operation_id="oneshot_create",
        summary="Run an agent once",
        description=(
            "Creates a session and a task on `agent`. `mode: wait` answers 200 with the "
            "finished task (result or error), or 202 with the still active task and a "
            "`Location` header when `wait_timeout_s` passes first. `mode: stream` answers "
            "with the task's events as Server-Sent Events."
        ),
        request=InputSerializer,
        responses={
            (200, "application/json"): OpenApiResponse(OneshotOutputSerializer, description=OK_200),
            (200, "text/event-stream"): OpenApiResponse(SSE_EVENT_REF, description=OK_200),
            202: OpenApiResponse(
                OneshotOutputSerializer, description="Still running when the wait ended"
            ),
            **error_responses(400, 404),
        },
        tags=["oneshot"],
    )
    def post(self, request: Request) -> HttpResponseBase:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        team = team_for_write(user=request.user, team_id=data.get("team"))
        agent = selectors.agent_get(user=request.user, agent_id=data["agent"])
        config = run_config_with_headers(  # X-MONITOR-ID, X-DEBUG-RUN (docs/monitors.md)
            data["config"], headers=request.headers, user=request.user
        )
        # TODO(services): a ``oneshot_create`` service should own this transaction.
        with transaction.atomic():  # a task refused (bad input) must not leave a session
            session = session_create(
                owner=request.user, team=team, agent=agent, **data.get("session", {})
            )
            task, _ = task_create(
                session=session,
                user=request.user,
                task_type=data["task_type"],
                input=data["input"],
                config=config,
                on_disconnect=data["on_disconnect"],
            )
        audit_request(request, "task.create", task, oneshot=True)
        if data["mode"] == "stream":
            from sessions.streaming import sse_response  # the lead's module; imports us back

            return sse_response(
                request._request,
                session=session,
                task=task,
                cancel_on_disconnect=data["on_disconnect"] == OnDisconnect.CANCEL,
            )
        response = Response(
            OneshotOutputSerializer({"session": session, "task": task}).data,
            status=status.HTTP_202_ACCEPTED,
            headers={"Location": task_location(task)},
        )
        response.oneshot_wait = (task, data["wait_timeout_s"])  # type: ignore[attr-defined]
        return response


def task_location(task: Task) -> str:
    return reverse("sessions_api:task-detail", kwargs={"task_id": str(task.uuid)})


def _is_finished(task_pk: int) -> bool:
    return Task.objects.filter(pk=task_pk, status__in=TERMINAL_STATUSES).exists()


def _finished_body(user: Any, task: Task) -> bytes:
    task = selectors.task_get(user=user, task_id=task.uuid)
    data = OneshotOutputSerializer({"session": task.session, "task": task}).data
    return JSONRenderer().render(data)


def _concerns(message: dict[str, Any], task_uuid: str) -> bool:
    """Could this ``events.appended`` message announce the task's end? (A batch too large to
    be sent inline carries no events: then it could.)"""
    events = message.get("events")
    if events is None:
        return True
    return any(e.get("type") == "task.status" and e.get("task_id") == task_uuid for e in events)


async def wait_until_finished(task: Task, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for ``task`` to reach a terminal status.

    Subscribes to the session's group first and then checks the database, so an end that
    happens in between is not missed; the row is re-read on every message that may concern
    the task and at least every ``SAFETY_RECHECK_S``.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    layer = get_channel_layer()
    group = session_group(task.session.uuid)
    channel = await layer.new_channel() if layer is not None else None
    if layer is not None:
        await layer.group_add(group, channel)
    try:
        while True:
            if await db_call(_is_finished)(task.pk):
                return True
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                wake_in = min(remaining, SAFETY_RECHECK_S)
                if layer is None:
                    await asyncio.sleep(wake_in)
                    break
                try:
                    message = await asyncio.wait_for(layer.receive(channel), wake_in)
                except TimeoutError:
                    break
                if _concerns(message, str(task.uuid)):
                    break
    finally:
        if layer is not None:
            with contextlib.suppress(Exception):
                await layer.group_discard(group, channel)


_create = OneshotCreateApi.as_view()


async def oneshot_view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
    """``POST /oneshot`` (see the module docstring)."""
    response = await sync_to_async(_create)(request, *args, **kwargs)
    pending = getattr(response, "oneshot_wait", None)
    if pending is None:  # an error, another method, or a stream
        return response
    task, timeout = pending
    try:
        finished = await wait_until_finished(task, timeout)
    except asyncio.CancelledError:  # the client went away
        if task.on_disconnect == OnDisconnect.CANCEL:
            with contextlib.suppress(Exception):
                await asyncio.shield(db_call(_cancel_if_active)(task))
        raise
    if not finished:
        return response
    try:
        body = await db_call(_finished_body)(request.user, task)
    except ApplicationError as exc:  # e.g. the session was deleted meanwhile
        return JsonResponse(exc.as_dict(), status=exc.status_code)
    return HttpResponse(body, status=status.HTTP_200_OK, content_type="application/json")


def _cancel_if_active(task: Task) -> None:
    if not _is_finished(task.pk):
        task_cancel(task=task, reason="client disconnected")


# drf-spectacular finds the operation through ``cls``; CSRF is checked by the DRF view.
oneshot_view.cls = OneshotCreateApi  # type: ignore[attr-defined]
oneshot_view.initkwargs = {}  # type: ignore[attr-defined]
oneshot_view.csrf_exempt = True  # type: ignore[attr-defined]
