"""REST of the schedules app (``/api/v1/schedules``): cron schedules that queue a task on an
agent, their runs, and "run now". Thin views: serializers check shapes, the services check
cron expressions, time zones and inputs (``details.fields``), the selectors check access.

A schedule belongs to a team: its members see it, and all but viewers may change, delete and
run it (a viewer gets 403, a stranger 404)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Scope
from accounts.selectors import team_for_write
from runtime_project.api import Pagination, error_responses
from runtime_project.exceptions import InvalidInput
from schedules import selectors
from schedules.models import RunTrigger, SessionMode
from schedules.services import (
    schedule_create,
    schedule_delete,
    schedule_fire,
    schedule_update,
)
from sessions.apis.common import TEAM_FIELD, TeamRefSerializer, paginated_response, uuid_path
from sessions.choices import TaskStatus

TAGS = ["schedules"]
SCHEDULE_ID = uuid_path("schedule_id", "schedule")
CRON_HELP = (
    "Five fields, minute hour day-of-month month day-of-week (croniter syntax: `*/15`, `1-5`, "
    "`MON`, `L`, `1#2`), or `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`. Read as "
    "wall-clock time in `timezone`."
)
TIMEZONE_HELP = "IANA time zone name, e.g. `Europe/Berlin` (default `UTC`)."
AGENT_HELP = "The agent's id (UUID) or slug: an agent of the schedule's team or a public one."
INPUT_HELP = "The input of every task, validated against the agent's input schema."
CONFIG_HELP = "The config of every task (`timeout_s` in seconds, `env`, ...)."
MODE_HELP = (
    "`new`: each run gets a new session; `reuse`: every run goes to one session kept on the "
    "schedule (created by the first run; its tasks queue behind each other)."
)


class _AgentRefSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="uuid")
    slug = serializers.SlugField()

    class Meta:
        ref_name = "ScheduleAgent"


class ScheduleOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="uuid")
    name = serializers.CharField()
    agent = _AgentRefSerializer()
    team = TeamRefSerializer(help_text="The team the schedule and its sessions belong to.")
    owner = serializers.CharField(
        source="owner.username", help_text="Who created it; its tasks run as this user."
    )
    cron = serializers.CharField(help_text=CRON_HELP)
    timezone = serializers.CharField(help_text=TIMEZONE_HELP)
    input = serializers.DictField(help_text=INPUT_HELP)
    config = serializers.DictField(help_text=CONFIG_HELP)
    session_mode = serializers.ChoiceField(choices=SessionMode.choices, help_text=MODE_HELP)
    session_id = serializers.UUIDField(
        source="session.uuid",
        allow_null=True,
        help_text="`reuse`: the session runs go to (null until the first run).",
    )
    enabled = serializers.BooleanField()
    next_run_at = serializers.DateTimeField(
        allow_null=True, help_text="The next cron tick (UTC); null while disabled."
    )
    last_run_at = serializers.DateTimeField(allow_null=True, help_text="When it last fired.")
    last_task_id = serializers.UUIDField(
        source="last_task.uuid", allow_null=True, help_text="The task its last run queued."
    )
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    class Meta:
        ref_name = "Schedule"


class ScheduleRunOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="uuid")
    tick = serializers.DateTimeField(
        help_text="The cron tick it fired for (UTC); for `manual` runs, when it was asked."
    )
    trigger = serializers.ChoiceField(choices=RunTrigger.choices)
    task_id = serializers.UUIDField(
        source="task.uuid", allow_null=True, help_text="The task it queued (null on error)."
    )
    session_id = serializers.UUIDField(source="task.session.uuid", allow_null=True)
    task_status = serializers.ChoiceField(
        source="task.status", choices=TaskStatus.choices, allow_null=True
    )
    error = serializers.JSONField(
        allow_null=True, help_text='`{"code", "message", "details"}` when no task was queued.'
    )
    created_at = serializers.DateTimeField()

    class Meta:
        ref_name = "ScheduleRun"


def _agent(team: Any, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with ``agent`` (an id or slug) resolved to an agent a schedule of ``team`` may
    run: the team's or a public one (404 ``not_found`` otherwise)."""
    if "agent" in data:
        data = {**data, "agent": selectors.schedule_agent_get(team=team, agent_id=data["agent"])}
    return data


class ScheduleListApi(APIView):
    required_scope = Scope.SESSIONS_READ
    pagination_class = Pagination

    @extend_schema(
        operation_id="schedules_list",
        summary="List schedules",
        description="The schedules of your teams, ordered by name.",
        responses={200: ScheduleOutputSerializer(many=True), **error_responses()},
        tags=TAGS,
    )
    def get(self, request: Request) -> Response:
        return paginated_response(
            queryset=selectors.schedule_list(user=request.user),
            serializer_class=ScheduleOutputSerializer,
            request=request,
            view=self,
        )


class ScheduleCreateApi(APIView):
    required_scope = Scope.TASKS_WRITE
    parser_classes = [JSONParser]

    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=200)
        agent = serializers.CharField(help_text=AGENT_HELP)
        cron = serializers.CharField(max_length=200, help_text=CRON_HELP)
        timezone = serializers.CharField(max_length=64, default="UTC", help_text=TIMEZONE_HELP)
        input = serializers.DictField(default=dict, help_text=INPUT_HELP)
        config = serializers.DictField(default=dict, help_text=CONFIG_HELP)
        session_mode = serializers.ChoiceField(
            choices=SessionMode.choices, default=SessionMode.NEW, help_text=MODE_HELP
        )
        enabled = serializers.BooleanField(default=True)
        team = TEAM_FIELD

        class Meta:
            ref_name = "ScheduleCreateInput"

    @extend_schema(
        operation_id="schedules_create",
        summary="Create a schedule",
        description=(
            "At every tick of `cron` (wall-clock time in `timezone`, daylight-saving changes "
            "included) the schedule queues a `run` task on the agent with `input` and `config`. "
            "`next_run_at` is the next tick. Ticks missed while no scheduler ran are skipped: "
            "the schedule fires once when scheduling resumes, not once per missed tick. An "
            "invalid `cron`, `timezone`, `input` or `config` is a 400 naming the fields under "
            "`details.fields`. The schedule belongs to `team` (you need the member role "
            "there); its tasks run as you, in sessions of that team."
        ),
        request=InputSerializer,
        responses={201: ScheduleOutputSerializer, **error_responses(400, 403, 404)},
        tags=TAGS,
    )
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        team = team_for_write(
            user=request.user, team_id=data.pop("team", None), min_role=selectors.WRITE_ROLE
        )
        schedule = schedule_create(owner=request.user, team=team, **_agent(team, data))
        return Response(ScheduleOutputSerializer(schedule).data, status=status.HTTP_201_CREATED)


class ScheduleDetailApi(APIView):
    required_scope = Scope.SESSIONS_READ

    @extend_schema(
        operation_id="schedules_retrieve",
        summary="Get a schedule",
        parameters=[SCHEDULE_ID],
        responses={200: ScheduleOutputSerializer, **error_responses(404)},
        tags=TAGS,
    )
    def get(self, request: Request, schedule_id: str) -> Response:
        schedule = selectors.schedule_get(user=request.user, schedule_id=schedule_id)
        return Response(ScheduleOutputSerializer(schedule).data)


class ScheduleUpdateApi(APIView):
    required_scope = Scope.TASKS_WRITE
    parser_classes = [JSONParser]

    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=200, required=False)
        agent = serializers.CharField(required=False, help_text=AGENT_HELP)
        cron = serializers.CharField(max_length=200, required=False, help_text=CRON_HELP)
        timezone = serializers.CharField(max_length=64, required=False, help_text=TIMEZONE_HELP)
        input = serializers.DictField(required=False, help_text=INPUT_HELP)
        config = serializers.DictField(required=False, help_text=CONFIG_HELP)
        session_mode = serializers.ChoiceField(
            choices=SessionMode.choices, required=False, help_text=MODE_HELP
        )
        enabled = serializers.BooleanField(required=False)

        class Meta:
            ref_name = "ScheduleUpdateInput"

    @extend_schema(
        operation_id="schedules_partial_update",
        summary="Change a schedule",
        description=(
            "Changes the given fields. Changing `cron`, `timezone` or `enabled` recomputes "
            "`next_run_at` from now (null when disabled). Only changed fields are validated "
            "(and `input`/`config` when the agent changes), so a schedule whose input its agent "
            "no longer accepts can still be disabled."
        ),
        parameters=[SCHEDULE_ID],
        request=InputSerializer,
        responses={200: ScheduleOutputSerializer, **error_responses(400, 403, 404)},
        tags=TAGS,
    )
    def patch(self, request: Request, schedule_id: str) -> Response:
        schedule = selectors.schedule_get(
            user=request.user, schedule_id=schedule_id, for_write=True
        )
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        if not serializer.validated_data:
            raise InvalidInput(
                "Nothing to change.",
                details={"fields": {"non_field_errors": ["Give at least one field to change."]}},
            )
        changes = _agent(schedule.team_id, serializer.validated_data)
        schedule = schedule_update(schedule=schedule, **changes)
        return Response(ScheduleOutputSerializer(schedule).data)


class ScheduleDeleteApi(APIView):
    required_scope = Scope.TASKS_WRITE

    @extend_schema(
        operation_id="schedules_destroy",
        summary="Delete a schedule",
        description="Deletes the schedule and its run records; the tasks it queued stay.",
        parameters=[SCHEDULE_ID],
        responses={204: OpenApiResponse(description="Deleted"), **error_responses(403, 404)},
        tags=TAGS,
    )
    def delete(self, request: Request, schedule_id: str) -> Response:
        schedule = selectors.schedule_get(
            user=request.user, schedule_id=schedule_id, for_write=True
        )
        schedule_delete(schedule=schedule)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ScheduleRunListApi(APIView):
    required_scope = Scope.SESSIONS_READ
    pagination_class = Pagination

    @extend_schema(
        operation_id="schedules_runs_list",
        summary="List a schedule's runs",
        description=(
            "The schedule's runs, newest first: the tick each fired for, the task it queued, "
            "or the error that kept it from queueing one."
        ),
        parameters=[SCHEDULE_ID],
        responses={200: ScheduleRunOutputSerializer(many=True), **error_responses(404)},
        tags=TAGS,
    )
    def get(self, request: Request, schedule_id: str) -> Response:
        schedule = selectors.schedule_get(user=request.user, schedule_id=schedule_id)
        return paginated_response(
            queryset=selectors.schedule_runs(schedule=schedule),
            serializer_class=ScheduleRunOutputSerializer,
            request=request,
            view=self,
        )


class ScheduleFireApi(APIView):
    required_scope = Scope.TASKS_WRITE

    @extend_schema(
        operation_id="schedules_run_create",
        summary="Run a schedule now",
        description=(
            "Queues the schedule's task now, outside its cron and even when it is disabled; "
            "`next_run_at` does not move. The answer is the run (trigger `manual`, `tick` = "
            "now): its `task_id`, or its `error` when the task could not be queued (e.g. the "
            "input no longer matches the agent's schema)."
        ),
        request=None,
        parameters=[SCHEDULE_ID],
        responses={201: ScheduleRunOutputSerializer, **error_responses(403, 404, 409)},
        tags=TAGS,
    )
    def post(self, request: Request, schedule_id: str) -> Response:
        schedule = selectors.schedule_get(
            user=request.user, schedule_id=schedule_id, for_write=True
        )
        run = schedule_fire(schedule=schedule)
        return Response(ScheduleRunOutputSerializer(run).data, status=status.HTTP_201_CREATED)
