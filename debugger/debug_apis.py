"""The debugger API: a run's debug state, commands (pause, continue, step, abort,
edit-and-continue) and breakpoints on tasks and agents (``docs/debugger.md``)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.access import writes
from accounts.audit import audit_request
from accounts.models import Scope
from debugger import selectors as debug_selectors
from debugger.config import STEP_KINDS, debug_settings
from debugger.debugging import (
    breakpoint_create,
    breakpoint_delete,
    debug_command_send,
    is_debug_paused,
)
from debugger.models import Breakpoint, DebugAction, DebugCommand
from runtime_project.api import error_responses
from sessions import selectors
from sessions.apis.common import TASK_ID

TAGS = ["debugger"]
AGENT_ID = OpenApiParameter("agent_id", str, OpenApiParameter.PATH, description="Agent id or slug.")
BREAKPOINT_ID = OpenApiParameter("breakpoint_id", str, OpenApiParameter.PATH)
AGENT_BREAKPOINT_ID = OpenApiParameter("agent_breakpoint_id", str, OpenApiParameter.PATH)
ACTION = OpenApiParameter(
    "action", str, OpenApiParameter.PATH, enum=["continue", "step", "abort"],
    description="`continue` runs on to the next breakpoint; `step` runs the pending step and "
    "pauses before the next one; `abort` stops the run (`cancelled`, code `debug_aborted`).",
)  # fmt: skip


class BreakpointOutputSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="uuid", read_only=True)
    agent_id = serializers.SerializerMethodField()
    task_id = serializers.SerializerMethodField()

    class Meta:
        model = Breakpoint
        ref_name = "Breakpoint"
        fields = ("id", "agent_id", "task_id", "step_kind", "name", "enabled", "hit_count",
                  "created_at")  # fmt: skip
        read_only_fields = fields

    def get_agent_id(self, bp: Breakpoint) -> str | None:
        return str(bp.agent.uuid) if bp.agent is not None else None

    def get_task_id(self, bp: Breakpoint) -> str | None:
        return str(bp.task.uuid) if bp.task is not None else None


class BreakpointInputSerializer(serializers.Serializer):
    step_kind = serializers.ChoiceField(
        choices=["", *STEP_KINDS], default="", allow_blank=True,
        help_text="Pause before steps of this kind; empty: any kind.",
    )  # fmt: skip
    name = serializers.CharField(
        max_length=255, default="", allow_blank=True,
        help_text="A component id, tool name, cell index (`\"2\"`), model name or step id "
        "(`llm-3`); empty: any. Both empty: before every step.",
    )  # fmt: skip

    class Meta:
        ref_name = "BreakpointInput"


class DebugCommandOutputSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="uuid", read_only=True)
    by = serializers.CharField(source="created_by.username", allow_null=True, default=None)

    class Meta:
        model = DebugCommand
        ref_name = "DebugCommand"
        fields = ("id", "action", "input", "by", "created_at", "consumed_at")
        read_only_fields = fields


class DebugStateSerializer(serializers.Serializer):
    task_id = serializers.UUIDField()
    status = serializers.CharField()
    debug = serializers.BooleanField(help_text="A debug run (breakpoints are honoured).")
    pause_timeout_s = serializers.FloatField(help_text="Seconds an unattended pause lasts.")
    on_pause_timeout = serializers.ChoiceField(choices=["continue", "abort"])
    paused = serializers.JSONField(
        allow_null=True,
        help_text="The pending step when paused: `{step_id, step_kind, name, input, reason, "
        "breakpoint_id?, editable, input_schema?}`; null otherwise.",
    )
    breakpoints = BreakpointOutputSerializer(many=True)
    commands = DebugCommandOutputSerializer(many=True, help_text="The last 50, oldest first.")

    class Meta:
        ref_name = "DebugState"


class DebugCommandInputSerializer(serializers.Serializer):
    input = serializers.JSONField(
        required=False,
        help_text="Edit-and-continue: the pending step's new input (`continue` and `step` "
        "only), checked against the `input_schema` the paused step declared.",
    )

    class Meta:
        ref_name = "DebugCommandInput"


def _state(task: Any) -> dict[str, Any]:
    options = debug_settings(task.config)
    return {
        "task_id": str(task.uuid),
        "status": task.status,
        "debug": options.enabled,
        "pause_timeout_s": options.pause_timeout_s,
        "on_pause_timeout": options.on_pause_timeout,
        "paused": task.pending_action if is_debug_paused(task) else None,
        "breakpoints": BreakpointOutputSerializer(
            debug_selectors.breakpoint_list_for_task(task=task), many=True
        ).data,
        "commands": DebugCommandOutputSerializer(
            debug_selectors.debug_command_list(task=task), many=True
        ).data,
    }


class TaskDebugApi(APIView):
    required_scope = Scope.SESSIONS_READ

    @extend_schema(
        operation_id="tasks_debug_read",
        summary="Read a run's debug state",
        description="Whether it is a debug run, the pending step when it is paused, the "
        "breakpoints it honours (the task's and its agent's) and the debugger commands sent.",
        parameters=[TASK_ID],
        responses={200: DebugStateSerializer, **error_responses(404)},
        tags=TAGS,
    )
    def get(self, request: Request, task_id: str) -> Response:
        task = selectors.task_get(user=request.user, task_id=task_id)
        return Response(_state(task))


def _command(request: Request, task_id: str, action: str) -> Response:
    task = selectors.task_get(user=request.user, task_id=task_id, for_write=writes(request))
    data = DebugCommandInputSerializer(data=request.data or {})
    data.is_valid(raise_exception=True)
    has_input = "input" in (request.data or {})
    command = debug_command_send(
        task=task, user=request.user, action=action,
        input=data.validated_data.get("input"), has_input=has_input,
    )  # fmt: skip
    audit_request(request, f"task.debug.{action}", task, edited=has_input)
    return Response(DebugCommandOutputSerializer(command).data, status=status.HTTP_202_ACCEPTED)


class TaskDebugCommandApi(APIView):
    required_scope = Scope.TASKS_WRITE
    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="tasks_debug_command",
        summary="Continue, step or abort a paused run",
        description=(
            "For a task paused in the debugger (`status: waiting`, `pending_action.kind: "
            "debug`). With `input`, the pending step runs with it instead (edit-and-continue). "
            "The run applies the command within about a second; `debug.resumed` follows. "
            "409 `not_paused` when the task is not paused."
        ),
        parameters=[TASK_ID, ACTION],
        request=DebugCommandInputSerializer,
        responses={202: DebugCommandOutputSerializer, **error_responses(400, 404, 409)},
        tags=TAGS,
    )
    def post(self, request: Request, task_id: str, action: str) -> Response:
        if action not in (DebugAction.CONTINUE, DebugAction.STEP, DebugAction.ABORT):
            from runtime_project.exceptions import NotFound

            raise NotFound("No such debugger action.", details={"action": action})
        return _command(request, task_id, action)


class TaskPauseApi(APIView):
    required_scope = Scope.TASKS_WRITE

    @extend_schema(
        operation_id="tasks_pause",
        summary="Pause a task after its current step",
        description=(
            "Unlike cancel, which stops the run now, pause lets the current step finish and "
            "parks the run before its next one (`waiting`, `debug.paused` with reason "
            "`pause`); continue it with `POST /tasks/{id}/debug/continue`. Works for any run, "
            "not only debug runs; a queued task pauses before its first step. 409 "
            "`already_paused`, `not_running` (waiting for an answer) or `task_finished`."
        ),
        parameters=[TASK_ID],
        request=None,
        responses={202: DebugCommandOutputSerializer, **error_responses(404, 409)},
        tags=["tasks"],
    )
    def post(self, request: Request, task_id: str) -> Response:
        return _command(request, task_id, DebugAction.PAUSE)


class TaskBreakpointListApi(APIView):
    required_scope = Scope.SESSIONS_READ

    @extend_schema(
        operation_id="tasks_breakpoints_list",
        summary="List a task's breakpoints",
        description="The breakpoints set on this task (its agent's are at "
        "`/agents/{id}/breakpoints`; `GET /tasks/{id}/debug` lists both).",
        parameters=[TASK_ID],
        responses={200: BreakpointOutputSerializer(many=True), **error_responses(404)},
        tags=TAGS,
    )
    def get(self, request: Request, task_id: str) -> Response:
        task = selectors.task_get(user=request.user, task_id=task_id)
        found = debug_selectors.breakpoint_list(task=task)
        return Response(BreakpointOutputSerializer(found, many=True).data)


class TaskBreakpointCreateApi(APIView):
    required_scope = Scope.TASKS_WRITE
    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="tasks_breakpoints_create",
        summary="Set a breakpoint on a task",
        description="Honoured by the task if it is a debug run, from its next step on (a "
        "queued task from its first).",
        parameters=[TASK_ID],
        request=BreakpointInputSerializer,
        responses={201: BreakpointOutputSerializer, **error_responses(400, 404)},
        tags=TAGS,
    )
    def post(self, request: Request, task_id: str) -> Response:
        task = selectors.task_get(user=request.user, task_id=task_id, for_write=writes(request))
        data = BreakpointInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        created = breakpoint_create(user=request.user, task=task, **data.validated_data)
        audit_request(request, "breakpoint.create", task, breakpoint=str(created.uuid))
        return Response(BreakpointOutputSerializer(created).data, status=status.HTTP_201_CREATED)


class TaskBreakpointDeleteApi(APIView):
    required_scope = Scope.TASKS_WRITE

    @extend_schema(
        operation_id="tasks_breakpoints_delete",
        summary="Remove a task's breakpoint",
        parameters=[TASK_ID, BREAKPOINT_ID],
        request=None,
        responses={204: None, **error_responses(404)},
        tags=TAGS,
    )
    def delete(self, request: Request, task_id: str, breakpoint_id: str) -> Response:
        task = selectors.task_get(user=request.user, task_id=task_id, for_write=writes(request))
        found = debug_selectors.breakpoint_get(task=task, breakpoint_id=breakpoint_id)
        breakpoint_delete(breakpoint=found)
        audit_request(request, "breakpoint.delete", task, breakpoint=breakpoint_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class AgentBreakpointListApi(APIView):
    required_scope = Scope.AGENTS_READ

    @extend_schema(
        operation_id="agents_breakpoints_list",
        summary="List an agent's breakpoints",
        description="Honoured by every debug run of the agent.",
        parameters=[AGENT_ID],
        responses={200: BreakpointOutputSerializer(many=True), **error_responses(404)},
        tags=TAGS,
    )
    def get(self, request: Request, agent_id: str) -> Response:
        agent = selectors.agent_get(user=request.user, agent_id=agent_id)
        found = debug_selectors.breakpoint_list(agent=agent)
        return Response(BreakpointOutputSerializer(found, many=True).data)


class AgentBreakpointCreateApi(APIView):
    required_scope = Scope.AGENTS_WRITE
    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="agents_breakpoints_create",
        summary="Set a breakpoint on an agent",
        description="Every debug run of the agent (started with `config.debug` or "
        "`X-DEBUG-RUN: true`) pauses there. Needs write access to the agent.",
        parameters=[AGENT_ID],
        request=BreakpointInputSerializer,
        responses={201: BreakpointOutputSerializer, **error_responses(400, 403, 404)},
        tags=TAGS,
    )
    def post(self, request: Request, agent_id: str) -> Response:
        agent = selectors.agent_get(user=request.user, agent_id=agent_id, for_write=True)
        data = BreakpointInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        created = breakpoint_create(user=request.user, agent=agent, **data.validated_data)
        audit_request(request, "breakpoint.create", agent, breakpoint=str(created.uuid))
        return Response(BreakpointOutputSerializer(created).data, status=status.HTTP_201_CREATED)


class AgentBreakpointDeleteApi(APIView):
    required_scope = Scope.AGENTS_WRITE

    @extend_schema(
        operation_id="agents_breakpoints_delete",
        summary="Remove an agent's breakpoint",
        parameters=[AGENT_ID, AGENT_BREAKPOINT_ID],
        request=None,
        responses={204: None, **error_responses(403, 404)},
        tags=TAGS,
    )
    def delete(self, request: Request, agent_id: str, agent_breakpoint_id: str) -> Response:
        agent = selectors.agent_get(user=request.user, agent_id=agent_id, for_write=True)
        found = debug_selectors.breakpoint_get(agent=agent, breakpoint_id=agent_breakpoint_id)
        breakpoint_delete(breakpoint=found)
        audit_request(request, "breakpoint.delete", agent, breakpoint=agent_breakpoint_id)
        return Response(status=status.HTTP_204_NO_CONTENT)
