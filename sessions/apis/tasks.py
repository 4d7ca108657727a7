"""Tasks: queue one on a session (multitask strategy, Idempotency-Key, optional live stream),
list a session's tasks with the queue order, read one, cancel it, fetch its result."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.access import writes
from accounts.audit import audit_request
from accounts.models import Scope
from debugger.headers import run_config_with_headers
from runtime_project.api import SSE_EVENT_REF, Pagination, error_responses
from runtime_project.exceptions import Conflict, InvalidInput
from sessions import selectors
from sessions.apis.common import (
    SESSION_ID,
    TASK_ID,
    CommaSeparatedListField,
    paginated_response,
    validated_query,
)
from sessions.choices import (
    TERMINAL_STATUSES,
    MultitaskStrategy,
    OnDisconnect,
    TaskStatus,
    TaskType,
)
from sessions.models import Session, Task
from sessions.services.tasks import task_cancel, task_create
from sessions.services.waiting import task_resume

TAGS = ["tasks"]
IDEMPOTENCY_KEY_MAX = 255

IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description=(
        f"Retry-safe creation (at most {IDEMPOTENCY_KEY_MAX} characters): a key you already "
        "used returns the task it created (200) instead of queueing another one; the same key "
        "on another session is a 409 `idempotency_key_reused`."
    ),
)
SSE_DESCRIPTION = (
    "`text/event-stream` (with `stream: true`): the task's events as Server-Sent Events "
    "(`id:` = seq, `event:` = type, `data:` = the event envelope), ending after the task's "
    "terminal `task.status`."
)


def idempotency_key(request: Any) -> str | None:
    """The request's ``Idempotency-Key`` header, or None (a retry with a used key answers for
    the earlier task; also read by agent endpoints and ChatGPT actions).

    Raises:
        InvalidInput: longer than ``IDEMPOTENCY_KEY_MAX`` characters.
    """
    key = request.headers.get("Idempotency-Key") or None
    if key is not None and len(key) > IDEMPOTENCY_KEY_MAX:
        raise InvalidInput(
            "The Idempotency-Key header is too long.",
            details={"fields": {"Idempotency-Key": [f"max {IDEMPOTENCY_KEY_MAX} characters"]}},
        )
    return key


class TaskOutputSerializer(serializers.Serializer):
    class AgentRefSerializer(serializers.Serializer):
        id = serializers.UUIDField(source="uuid")
        slug = serializers.SlugField()

        class Meta:
            ref_name = "TaskAgent"

    id = serializers.UUIDField(source="uuid")
    session_id = serializers.UUIDField(source="session.uuid")
    agent = AgentRefSerializer()
    agent_version = serializers.IntegerField(help_text="The agent version this task runs.")
    task_type = serializers.ChoiceField(choices=TaskType.choices)
    input = serializers.JSONField()
    config = serializers.JSONField()
    status = serializers.ChoiceField(choices=TaskStatus.choices)
    current_phase = serializers.CharField()
    result = serializers.JSONField(allow_null=True)
    error = serializers.JSONField(
        allow_null=True, help_text='`{"code", "message", "details"}` when the task failed.'
    )
    usage = serializers.JSONField()
    multitask_strategy = serializers.ChoiceField(choices=MultitaskStrategy.choices)
    on_disconnect = serializers.ChoiceField(choices=OnDisconnect.choices)
    attempt = serializers.IntegerField()
    queue_position = serializers.SerializerMethodField(
        help_text="0-based place among the session's queued tasks; null when not queued."
    )
    idempotency_key = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    duration_ms = serializers.IntegerField(allow_null=True)
    cancel_requested_at = serializers.DateTimeField(allow_null=True)
    pending_action = serializers.JSONField(
        allow_null=True,
        help_text='While `waiting`: `{"kind": "ask_user"|"approval", "call_id", "name", '
        '"arguments", "question"?}`; answer it with `POST /tasks/{id}/resume`.',
    )
    parent_task_id = serializers.UUIDField(
        source="parent.uuid", allow_null=True, default=None,
        help_text="The task that started this one (an agent's `call_agent`), if any.",
    )  # fmt: skip
    forked_from = serializers.UUIDField(
        source="forked_from.uuid", allow_null=True, default=None,
        help_text="The task this one re-runs (`POST /tasks/{id}/fork`) or was copied from "
        "(`POST /sessions/{id}/copy`), if any.",
    )  # fmt: skip
    forked_from_step = serializers.CharField(
        allow_blank=True, help_text='The step id the fork started from (`""`: the start).'
    )

    class Meta:
        ref_name = "Task"

    def get_queue_position(self, task: Task) -> int | None:
        positions = self.context.get("queue_positions")
        if positions is not None:
            return positions.get(task.pk)
        return selectors.task_queue_position(task=task)


def queue_positions(session: Session) -> dict[int, int]:
    """``{task pk: queue position}`` of the session's queued tasks, in one query."""
    queued = [
        t.pk
        for t in selectors.task_active_for_session(session=session).only("pk", "status")
        if t.status == TaskStatus.QUEUED
    ]
    return {pk: index for index, pk in enumerate(queued)}


class TaskListApi(APIView):
    required_scope = Scope.SESSIONS_READ
    pagination_class = Pagination

    class FilterSerializer(serializers.Serializer):
        status = CommaSeparatedListField(
            child=serializers.ChoiceField(choices=TaskStatus.choices),
            required=False,
            help_text="Only these statuses, e.g. `queued,running` (or repeat the parameter).",
        )

        class Meta:
            ref_name = "TaskListFilter"

    @extend_schema(
        operation_id="sessions_tasks_list",
        summary="List a session's tasks",
        description=(
            "Newest first. Queued tasks show their `queue_position` (0 runs next), so the "
            "queue of waiting tasks is visible."
        ),
        parameters=[SESSION_ID, FilterSerializer],
        responses={200: TaskOutputSerializer(many=True), **error_responses(400, 404)},
        tags=TAGS,
    )
    def get(self, request: Request, session_id: str) -> Response:
        session = selectors.session_get(
            user=request.user, session_id=session_id, for_write=writes(request)
        )
        filters = validated_query(self.FilterSerializer, request)
        tasks = selectors.task_list(
            user=request.user, session=session, status=filters.get("status") or None
        ).order_by("-created_at", "-pk")
        return paginated_response(
            queryset=tasks,
            serializer_class=TaskOutputSerializer,
            request=request,
            view=self,
            context={"queue_positions": queue_positions(session)},
        )


class TaskCreateApi(APIView):
    required_scope = Scope.TASKS_WRITE
    parser_classes = [JSONParser]

    class InputSerializer(serializers.Serializer):
        task_type = serializers.ChoiceField(choices=TaskType.choices, default=TaskType.RUN)
        input = serializers.DictField(
            default=dict, help_text="Validated against the agent's input schema."
        )
        config = serializers.DictField(
            default=dict,
            help_text="Run options: `timeout_s` (seconds), `env`, `retry_safe`, debug flags.",
        )
        multitask_strategy = serializers.ChoiceField(
            choices=MultitaskStrategy.choices,
            default=MultitaskStrategy.ENQUEUE,
            help_text=(
                "When the session already has an active task: `enqueue` waits its turn, "
                "`reject` answers 409 `session_busy`, `interrupt` cancels the active tasks."
            ),
        )
        on_disconnect = serializers.ChoiceField(
            choices=OnDisconnect.choices,
            default=OnDisconnect.CONTINUE,
            help_text="With `stream`: cancel the task when the client goes away, or not.",
        )
        stream = serializers.BooleanField(
            default=False, help_text="Answer with the task's live event stream (SSE)."
        )

        class Meta:
            ref_name = "TaskCreateInput"

    OK_200 = (
        "JSON: the task an earlier request with this Idempotency-Key created. " + SSE_DESCRIPTION
    )

    @extend_schema(
        operation_id="sessions_tasks_create",
        summary="Queue a task",
        description=(
            "Queues a task on the session. The session runs one task at a time; see "
            "`multitask_strategy`. With `stream: true` the response is the task's event "
            "stream (`text/event-stream`) instead of JSON."
        ),
        parameters=[SESSION_ID, IDEMPOTENCY_KEY],
        request=InputSerializer,
        responses={
            201: OpenApiResponse(TaskOutputSerializer, description="Queued"),
            (200, "application/json"): OpenApiResponse(TaskOutputSerializer, description=OK_200),
            (200, "text/event-stream"): OpenApiResponse(SSE_EVENT_REF, description=OK_200),
            **error_responses(400, 404, 409),
        },
        tags=TAGS,
    )
    def post(self, request: Request, session_id: str) -> Any:
        session = selectors.session_get(
            user=request.user, session_id=session_id, for_write=writes(request)
        )
        key = idempotency_key(request)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        stream = data.pop("stream")
        data["config"] = run_config_with_headers(  # X-MONITOR-ID, X-DEBUG-RUN (docs/monitors.md)
            data["config"], headers=request.headers, user=request.user
        )
        task, created = task_create(session=session, user=request.user, idempotency_key=key, **data)
        if created:
            audit_request(request, "task.create", task)
        if stream:
            from sessions.streaming import sse_response  # the lead's module; imports us back

            return sse_response(
                request._request,
                session=session,
                task=task,
                cancel_on_disconnect=task.on_disconnect == OnDisconnect.CANCEL,
                initial=[task.created_envelope] if task.created_envelope else None,  # new only
            )
        return Response(
            TaskOutputSerializer(task).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class TaskDetailApi(APIView):
    required_scope = Scope.SESSIONS_READ

    @extend_schema(
        operation_id="tasks_retrieve",
        summary="Get a task",
        parameters=[TASK_ID],
        responses={200: TaskOutputSerializer, **error_responses(404)},
        tags=TAGS,
    )
    def get(self, request: Request, task_id: str) -> Response:
        task = selectors.task_get(user=request.user, task_id=task_id, for_write=writes(request))
        return Response(TaskOutputSerializer(task).data)


class TaskCancelApi(APIView):
    required_scope = Scope.TASKS_WRITE

    @extend_schema(
        operation_id="tasks_cancel",
        summary="Cancel a task",
        description=(
            "A queued task is cancelled at once. A running one is asked to stop (then stopped "
            "by force after a grace period) and becomes `cancelled` when it has; until then "
            "`cancel_requested_at` is set. A finished task answers 409 `illegal_transition`."
        ),
        parameters=[TASK_ID],
        request=None,
        responses={202: TaskOutputSerializer, **error_responses(404, 409)},
        tags=TAGS,
    )
    def post(self, request: Request, task_id: str) -> Response:
        task = selectors.task_get(user=request.user, task_id=task_id, for_write=writes(request))
        task = task_cancel(task=task)
        audit_request(request, "task.cancel", task)
        return Response(TaskOutputSerializer(task).data, status=status.HTTP_202_ACCEPTED)


class TaskResumeApi(APIView):
    required_scope = Scope.TASKS_WRITE
    parser_classes = [JSONParser]

    class InputSerializer(serializers.Serializer):
        reply = serializers.CharField(
            required=False, allow_blank=True, help_text="The answer to an `ask_user` question."
        )
        decision = serializers.ChoiceField(
            choices=["approve", "deny", "edit"], required=False,
            help_text="For an approval: run the call, refuse it (the model is told), or run "
            "it with `arguments` instead.",
        )  # fmt: skip
        arguments = serializers.DictField(required=False, help_text="With `decision: edit`.")
        reason = serializers.CharField(required=False, help_text="With `deny`: told the model.")

        class Meta:
            ref_name = "TaskResumeInput"

    @extend_schema(
        operation_id="tasks_resume",
        summary="Answer a waiting task",
        description=(
            "A task in `waiting` shows what it waits for in `pending_action`: an `ask_user` "
            "question (answer with `reply`) or a tool call that needs approval (answer with "
            "`decision`). The task is queued again and continues where it stopped. 409 "
            "`not_waiting` when it is not waiting."
        ),
        parameters=[TASK_ID],
        request=InputSerializer,
        responses={202: TaskOutputSerializer, **error_responses(400, 404, 409)},
        tags=TAGS,
    )
    def post(self, request: Request, task_id: str) -> Response:
        task = selectors.task_get(user=request.user, task_id=task_id, for_write=writes(request))
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        task = task_resume(task=task, answer=dict(serializer.validated_data))
        audit_request(request, "task.resume", task)
        return Response(TaskOutputSerializer(task).data, status=status.HTTP_202_ACCEPTED)


class TaskResultApi(APIView):
    required_scope = Scope.SESSIONS_READ

    class OutputSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=TaskStatus.choices)
        result = serializers.JSONField(allow_null=True)
        error = serializers.JSONField(allow_null=True)
        usage = serializers.JSONField()

        class Meta:
            ref_name = "TaskResult"

    @extend_schema(
        operation_id="tasks_result",
        summary="Get a task's result",
        description="The outcome of a finished task; 409 `task_not_finished` while it is active.",
        parameters=[TASK_ID],
        responses={200: OutputSerializer, **error_responses(404, 409)},
        tags=TAGS,
    )
    def get(self, request: Request, task_id: str) -> Response:
        task = selectors.task_get(user=request.user, task_id=task_id, for_write=writes(request))
        if task.status not in TERMINAL_STATUSES:
            raise Conflict(
                "The task has not finished yet.",
                code="task_not_finished",
                details={"status": task.status, "current_phase": task.current_phase},
            )
        return Response(self.OutputSerializer(task).data)
