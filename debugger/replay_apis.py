"""Time travel over REST (``docs/replay.md``): ``POST /tasks/{id}/fork``,
``GET /tasks/{id}/forks`` and ``POST /sessions/{id}/copy``."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import access
from accounts.access import writes
from accounts.audit import audit_request
from accounts.models import Scope
from debugger.replay import FROM_STEP, RERUN, task_fork, task_forks
from runtime_project.api import error_responses
from sessions import selectors
from sessions.apis.common import TASK_ID
from sessions.apis.tasks import TaskOutputSerializer


class ForkOutputSerializer(TaskOutputSerializer):
    """The new task (its ``session_id`` is where it runs) and how much of the origin it
    replays: ``from_step`` (recorded steps before the fork point are reused) or ``rerun``
    (the whole task runs again)."""

    replay_mode = serializers.ChoiceField(choices=[FROM_STEP, RERUN])

    class Meta:
        ref_name = "TaskFork"


def _fork_data(task: Any) -> dict[str, Any]:
    data = dict(TaskOutputSerializer(task).data)
    data["replay_mode"] = (task.config.get("replay") or {}).get("mode", RERUN)
    return data


class TaskForkApi(APIView):
    required_scope = Scope.TASKS_WRITE
    parser_classes = [JSONParser]

    class InputSerializer(serializers.Serializer):
        step_id = serializers.CharField(
            required=False, allow_blank=True, max_length=255,
            help_text="The step to fork from (from `GET /tasks/{id}/steps`); default the start.",
        )  # fmt: skip
        input = serializers.DictField(
            required=False, help_text="A new task input (llm: a new message; starts over)."
        )
        step_input = serializers.JSONField(
            required=False,
            help_text="The fork step's edited input: a component's inputs, a tool call's "
            "arguments (a JSON object).",
        )
        in_place = serializers.BooleanField(
            default=False,
            help_text="Run in the origin's session (queued like any task) instead of a copy "
            "of it taken just before the origin started.",
        )

        class Meta:
            ref_name = "TaskForkInput"

    @extend_schema(
        operation_id="tasks_fork",
        summary="Fork (replay) a finished task",
        description=(
            "Queues a new task that re-runs this one from `step_id` with its recorded state, "
            "optionally with an edited `input` or `step_input`. Workflows reuse the recorded "
            "outputs of the components upstream of the step; llm runs resume at the model "
            "call (`llm-<n>`) or re-run a reply's tool calls (`tool-<call id>`); other kinds "
            "re-run from the start (`replay_mode: rerun`). 409 `task_not_finished` for an "
            "active task; 400 `unknown_step` / `step_not_forkable`."
        ),
        parameters=[TASK_ID],
        request=InputSerializer,
        responses={201: ForkOutputSerializer, **error_responses(400, 404, 409, 413)},
        tags=["tasks"],
    )
    def post(self, request: Request, task_id: str) -> Response:
        task = selectors.task_get(user=request.user, task_id=task_id, for_write=writes(request))
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        edited = {"step_input": data["step_input"]} if "step_input" in data else {}
        fork = task_fork(task=task, user=request.user, step_id=data.get("step_id") or None,
                         in_place=data["in_place"], input=data.get("input"), **edited)  # fmt: skip
        audit_request(request, "task.fork", fork, origin=str(task.uuid))
        return Response(_fork_data(fork), status=status.HTTP_201_CREATED)


class TaskForkListApi(APIView):
    required_scope = Scope.SESSIONS_READ

    @extend_schema(
        operation_id="tasks_forks_list",
        summary="List a task's forks",
        description="The tasks forked from this one that you can see, newest first.",
        parameters=[TASK_ID],
        responses={200: ForkOutputSerializer(many=True), **error_responses(404)},
        tags=["tasks"],
    )
    def get(self, request: Request, task_id: str) -> Response:
        task = selectors.task_get(user=request.user, task_id=task_id, for_write=writes(request))
        forks = task_forks(task=task).filter(session__team_id__in=access.team_ids(request.user))
        return Response([_fork_data(fork) for fork in forks[:500]])
