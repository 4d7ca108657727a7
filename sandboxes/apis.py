"""REST for a session's sandbox: state, idle policy, start/stop, exec, background processes.

``/api/v1/sessions/{id}/sandbox`` and below. Views are thin: input is validated here, the work
is done by ``sandboxes.services`` and the backend. Commands given as a string run through
``/bin/sh -c``; ``argv`` runs a program directly. Streams (``exec`` with ``stream: true``,
``processes/{pid}/output``) are Server-Sent Events: ``event: stdout`` / ``event: stderr`` with
``data: {"data": "<text>"}`` (UTF-8, invalid bytes replaced), then one ``event: exit`` with
``{"exit_code", "timed_out", "killed", "limit", "duration_ms"}``; a failure to start is one
``event: error`` with the error body.
"""

from __future__ import annotations

import codecs
import json
import signal as signals
import time
from collections.abc import AsyncIterator
from typing import Any

from asgiref.sync import async_to_sync
from django.http import StreamingHttpResponse
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.access import writes
from accounts.models import Scope
from runtime_project.api import SSE_EVENT_REF, error_responses
from runtime_project.db import release_request_connections
from runtime_project.exceptions import ApplicationError
from sandboxes import selectors, services
from sandboxes.base import ExecEvent, Execution, ProcessInfo
from sandboxes.models import IdlePolicy
from sessions.apis.common import SESSION_ID
from sessions.models import Session
from sessions.selectors import session_get

TAGS = ["sandbox"]
MAX_OUTPUT_BYTES = 16 * 1024 * 1024
PROCESS_ID = OpenApiParameter(
    "process_id", str, OpenApiParameter.PATH, description="From the process list."
)
SIGNALS = {
    "TERM": signals.SIGTERM,
    "KILL": signals.SIGKILL,
    "INT": signals.SIGINT,
    "HUP": signals.SIGHUP,
}


class CommandSerializer(serializers.Serializer):
    command = serializers.CharField(required=False, help_text="Run with `/bin/sh -c`.")
    argv = serializers.ListField(
        child=serializers.CharField(), required=False, min_length=1, help_text="Program and args."
    )
    cwd = serializers.CharField(
        required=False, default="", allow_blank=True, help_text="Relative to the workspace."
    )
    env = serializers.DictField(
        child=serializers.CharField(allow_blank=True), required=False, default=dict
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("command" in attrs) == ("argv" in attrs):
            raise serializers.ValidationError("Give exactly one of `command` and `argv`.")
        if "command" in attrs:
            attrs["argv"] = ["/bin/sh", "-c", attrs.pop("command")]
        return attrs


class ExecSerializer(CommandSerializer):
    stdin = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
    timeout_s = serializers.FloatField(
        required=False, min_value=0.1, max_value=24 * 3600, help_text="Seconds."
    )
    stream = serializers.BooleanField(default=False, help_text="Answer with an SSE stream.")
    max_output_bytes = serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=MAX_OUTPUT_BYTES,
        default=1024 * 1024,
        help_text="Per stream, non-streaming mode; the rest is dropped and `truncated` set.",
    )


class ProcessSerializer(serializers.Serializer):
    process_id = serializers.CharField()
    argv = serializers.ListField(child=serializers.CharField())
    started_at = serializers.FloatField(help_text="Epoch seconds.")
    running = serializers.BooleanField()
    exit_code = serializers.IntegerField(allow_null=True)
    output_bytes = serializers.IntegerField(help_text="Bytes of stdout+stderr so far.")


class SandboxStateSerializer(serializers.Serializer):
    session = serializers.UUIDField()
    state = serializers.ChoiceField(choices=["running", "stopped"])
    backend = serializers.CharField()
    tier = serializers.CharField()
    isolated = serializers.BooleanField()
    idle_policy = serializers.ChoiceField(choices=IdlePolicy.choices)
    idle_timeout_s = serializers.IntegerField(help_text="Seconds (policy `stop`).")
    network = serializers.CharField()
    limits = serializers.DictField(help_text="memory_mb, cpu_s, pids, file_size_mb, tmp_mb.")
    usage = serializers.DictField(help_text="memory_bytes, pids (running sandboxes).")
    processes = ProcessSerializer(many=True)
    started_at = serializers.FloatField(allow_null=True, help_text="Epoch seconds.")
    last_active_at = serializers.FloatField(allow_null=True, help_text="Epoch seconds.")
    start_count = serializers.IntegerField()
    last_started_at = serializers.DateTimeField(allow_null=True)
    last_stopped_at = serializers.DateTimeField(allow_null=True)


def _session(request: Request, session_id: str) -> Session:
    return session_get(user=request.user, session_id=session_id, for_write=writes(request))


def _state(session: Session) -> dict[str, Any]:
    return async_to_sync(selectors.sandbox_state)(session=session)


def _process(p: ProcessInfo) -> dict[str, Any]:
    return {
        "process_id": p.process_id,
        "argv": list(p.argv),
        "started_at": p.started_at,
        "running": p.running,
        "exit_code": p.exit_code,
        "output_bytes": p.output_bytes,
    }


class SandboxDetailApi(APIView):
    required_scope = Scope.SESSIONS_READ

    @extend_schema(
        tags=TAGS,
        operation_id="sandbox_get",
        summary="The session's sandbox",
        parameters=[SESSION_ID],
        responses={200: SandboxStateSerializer, **error_responses(401, 404)},
    )
    def get(self, request: Request, session_id: str) -> Response:
        return Response(_state(_session(request, session_id)))

    class UpdateSerializer(serializers.Serializer):
        idle_policy = serializers.ChoiceField(choices=IdlePolicy.choices, required=False)
        idle_timeout_s = serializers.IntegerField(
            required=False, min_value=1, max_value=7 * 24 * 3600
        )

        class Meta:
            ref_name = "SandboxUpdate"

    @extend_schema(
        tags=TAGS,
        operation_id="sandbox_update",
        summary="Set the idle policy",
        parameters=[SESSION_ID],
        request=UpdateSerializer,
        responses={200: SandboxStateSerializer, **error_responses(400, 401, 404)},
    )
    def patch(self, request: Request, session_id: str) -> Response:
        session = _session(request, session_id)
        data = self.UpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.sandbox_update(session=session, **data.validated_data)
        return Response(_state(session))


class SandboxStartApi(APIView):
    required_scope = Scope.TASKS_WRITE

    @extend_schema(
        tags=TAGS,
        operation_id="sandbox_start",
        summary="Start it now (pre-warm)",
        parameters=[SESSION_ID],
        request=None,
        responses={200: SandboxStateSerializer, **error_responses(401, 404, 503)},
    )
    def post(self, request: Request, session_id: str) -> Response:
        session = _session(request, session_id)
        spec = services.sandbox_spec(session=session)
        async_to_sync(services.sandbox_ensure)(session=session, spec=spec)
        return Response(_state(session))


class SandboxStopApi(APIView):
    required_scope = Scope.TASKS_WRITE

    @extend_schema(
        tags=TAGS,
        operation_id="sandbox_stop",
        summary="Stop it (the workspace stays)",
        parameters=[SESSION_ID],
        request=None,
        responses={
            200: inline_serializer("SandboxStopped", {"stopped": serializers.BooleanField()}),
            **error_responses(401, 404),
        },
    )
    def post(self, request: Request, session_id: str) -> Response:
        session = _session(request, session_id)
        return Response({"stopped": async_to_sync(services.sandbox_stop)(session=session)})


async def _sse_events(execution: Execution, started: float) -> AsyncIterator[str]:
    decoders = {
        s: codecs.getincrementaldecoder("utf-8")(errors="replace") for s in ("stdout", "stderr")
    }
    completed = False
    try:
        async for event in execution:
            if event.stream == "exit":
                completed = True
                yield _frame("exit", _exit_body(event, started))
                return
            text = decoders[event.stream].decode(event.data)
            if text:
                yield _frame(event.stream, {"data": text})
    finally:
        if not completed:  # the client went away: never leave the command running
            await execution.terminate(grace_s=0)


def _frame(name: str, body: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(body)}\n\n"


def _exit_body(event: ExecEvent, started: float) -> dict[str, Any]:
    return {
        "exit_code": event.exit_code,
        "timed_out": event.timed_out,
        "killed": event.killed,
        "limit": event.limit,
        "duration_ms": round((time.monotonic() - started) * 1000, 1),
    }


def _sse_response(body: AsyncIterator[str]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(body, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


async def _start_exec(session: Session, data: dict[str, Any]) -> tuple[Execution, float]:
    stdin = data.get("stdin")
    started = time.monotonic()
    execution = await services.sandbox_exec(
        session=session, argv=data["argv"], cwd=data["cwd"], env=data["env"],
        stdin=stdin.encode() if stdin is not None else None, timeout_s=data.get("timeout_s"),
    )  # fmt: skip
    return execution, started


async def _exec_collect(session: Session, data: dict[str, Any]) -> dict[str, Any]:
    execution, started = await _start_exec(session, data)
    limit = data["max_output_bytes"]
    out = {"stdout": bytearray(), "stderr": bytearray()}
    truncated = False
    async for event in execution:
        if event.stream == "exit":
            return {
                **_exit_body(event, started),
                "stdout": out["stdout"].decode(errors="replace"),
                "stderr": out["stderr"].decode(errors="replace"),
                "truncated": truncated,
            }
        room = limit - len(out[event.stream])
        truncated = truncated or len(event.data) > room
        out[event.stream] += event.data[: max(0, room)]
    raise AssertionError("an execution always ends with an exit event")


class SandboxExecApi(APIView):
    required_scope = Scope.TASKS_WRITE

    @extend_schema(
        tags=TAGS,
        operation_id="sandbox_exec",
        summary="Run a command in the sandbox",
        description="Starts the sandbox if needed. With `stream: true` the answer is an SSE "
        "stream (`stdout`, `stderr`, `exit`); otherwise the collected result.",
        parameters=[SESSION_ID],
        request=ExecSerializer,
        responses={
            (200, "application/json"): inline_serializer(
                "SandboxExecResult",
                {
                    "exit_code": serializers.IntegerField(allow_null=True),
                    "stdout": serializers.CharField(),
                    "stderr": serializers.CharField(),
                    "truncated": serializers.BooleanField(),
                    "timed_out": serializers.BooleanField(),
                    "killed": serializers.BooleanField(),
                    "limit": serializers.CharField(allow_null=True),
                    "duration_ms": serializers.FloatField(),
                },
            ),
            (200, "text/event-stream"): OpenApiResponse(
                SSE_EVENT_REF,
                description='With `stream: true`: `stdout`/`stderr` events (`{"data": text}`), '
                "then one `exit` (the result without the output), or one `error` (the error "
                "envelope) if the command could not start.",
            ),
            **error_responses(400, 401, 404, 503),
        },
    )
    def post(self, request: Request, session_id: str) -> Response | StreamingHttpResponse:
        session = _session(request, session_id)
        serializer = ExecSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        if not data["stream"]:
            return Response(async_to_sync(_exec_collect)(session, data))
        return _sse_response(_exec_stream(session, data))


async def _exec_stream(session: Session, data: dict[str, Any]) -> AsyncIterator[str]:
    try:
        execution, started = await _start_exec(session, data)
    except ApplicationError as exc:
        yield _frame("error", exc.as_dict())
        return
    await release_request_connections()  # the command may run for minutes
    async for frame in _sse_events(execution, started):
        yield frame


class ProcessListApi(APIView):
    required_scope = Scope.SESSIONS_READ

    @extend_schema(
        tags=TAGS,
        operation_id="sandbox_processes",
        summary="Background processes",
        parameters=[SESSION_ID],
        responses={200: ProcessSerializer(many=True), **error_responses(401, 404)},
    )
    def get(self, request: Request, session_id: str) -> Response:
        session = _session(request, session_id)
        found = async_to_sync(selectors.sandbox_processes)(session=session)
        return Response([_process(p) for p in found])

    @extend_schema(
        tags=TAGS,
        operation_id="sandbox_process_start",
        summary="Start a background process",
        parameters=[SESSION_ID],
        request=CommandSerializer,
        responses={201: ProcessSerializer, **error_responses(400, 401, 404, 503)},
    )
    def post(self, request: Request, session_id: str) -> Response:
        session = _session(request, session_id)
        serializer = CommandSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        process = async_to_sync(services.sandbox_start_process)(
            session=session, argv=data["argv"], cwd=data["cwd"], env=data["env"]
        )
        return Response(_process(process), status=status.HTTP_201_CREATED)


class ProcessStdinApi(APIView):
    required_scope = Scope.TASKS_WRITE

    class InputSerializer(serializers.Serializer):
        data = serializers.CharField(allow_blank=True, trim_whitespace=False, default="")  # type: ignore[assignment]
        eof = serializers.BooleanField(default=False, help_text="Close stdin afterwards.")

        class Meta:
            ref_name = "ProcessStdin"

    @extend_schema(
        tags=TAGS,
        operation_id="sandbox_process_stdin",
        summary="Write to its stdin",
        description="409 `stdin_closed` once a write has sent `eof`.",
        parameters=[SESSION_ID, PROCESS_ID],
        request=InputSerializer,
        responses={204: None, **error_responses(400, 401, 404, 409)},
    )
    def post(self, request: Request, session_id: str, process_id: str) -> Response:
        session = _session(request, session_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        async_to_sync(services.sandbox_write_stdin)(
            session=session, process_id=process_id, data=data["data"].encode(), eof=data["eof"]
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class ProcessKillApi(APIView):
    required_scope = Scope.TASKS_WRITE

    class InputSerializer(serializers.Serializer):
        signal = serializers.ChoiceField(choices=sorted(SIGNALS), default="KILL")

        class Meta:
            ref_name = "ProcessKill"

    @extend_schema(
        tags=TAGS,
        operation_id="sandbox_process_kill",
        summary="Signal its process tree",
        parameters=[SESSION_ID, PROCESS_ID],
        request=InputSerializer,
        responses={204: None, **error_responses(400, 401, 404)},
    )
    def post(self, request: Request, session_id: str, process_id: str) -> Response:
        session = _session(request, session_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        sig = SIGNALS[serializer.validated_data["signal"]]
        async_to_sync(services.sandbox_kill_process)(
            session=session, process_id=process_id, signal=sig
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class ProcessOutputApi(APIView):
    required_scope = Scope.SESSIONS_READ

    @extend_schema(
        tags=TAGS,
        operation_id="sandbox_process_output",
        summary="Attach to its output (SSE: retained output, then live, then exit)",
        parameters=[SESSION_ID, PROCESS_ID],
        responses={
            (200, "text/event-stream"): OpenApiResponse(
                SSE_EVENT_REF,
                description='`stdout`/`stderr` events (`{"data": text}`), then `exit`; or one '
                "`error` (the error envelope) if the process is gone.",
            ),
            **error_responses(401, 404),
        },
    )
    def get(self, request: Request, session_id: str, process_id: str) -> StreamingHttpResponse:
        session = _session(request, session_id)
        # A 404 before the stream starts (the stream itself re-checks: it may have exited).
        async_to_sync(selectors.sandbox_process)(session=session, process_id=process_id)
        return _sse_response(_attach_stream(session, process_id))


async def _attach_stream(session: Session, process_id: str) -> AsyncIterator[str]:
    # Attach inside the stream: the execution's reader belongs to the loop that serves it.
    try:
        execution = await services.sandbox_attach(session=session, process_id=process_id)
    except ApplicationError as exc:
        yield _frame("error", exc.as_dict())
        return
    await release_request_connections()  # the process may run for hours
    started = time.monotonic()
    decoders = {
        s: codecs.getincrementaldecoder("utf-8")(errors="replace") for s in ("stdout", "stderr")
    }
    async for event in execution:  # leaving early detaches; the process keeps running
        if event.stream == "exit":
            yield _frame("exit", _exit_body(event, started))
            return
        text = decoders[event.stream].decode(event.data)
        if text:
            yield _frame(event.stream, {"data": text})
