"""Monitors: ``GET/POST /api/v1/monitors``, ``GET/DELETE /api/v1/monitors/{id}``,
``GET /api/v1/monitors/{id}/tasks`` (issue 10, item 4; docs/monitors.md).

Only the owner sees a monitor (anyone else: 404 ``monitor_not_found``). Runs are attached with
``X-MONITOR-ID`` (``debugger.headers``), watched on ``/ws/monitor/{id}/``."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.audit import audit_request
from accounts.models import Scope
from debugger import monitors
from debugger.models import Monitor
from runtime_project.api import Pagination, error_responses
from sessions.apis.common import TeamRefSerializer, paginated_response
from sessions.apis.tasks import TaskOutputSerializer

TAGS = ["monitors"]
MONITOR_ID = OpenApiParameter(
    "monitor_id",
    OpenApiTypes.UUID,
    OpenApiParameter.PATH,
    description="Public id of the monitor (a UUID; anything else is 404).",
)


class MonitorOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="uuid")
    name = serializers.CharField()
    team = TeamRefSerializer(
        allow_null=True, help_text="Members of this team may attach their runs (X-MONITOR-ID)."
    )
    websocket = serializers.SerializerMethodField(help_text="Path of the live mirror.")
    created_at = serializers.DateTimeField()

    class Meta:
        ref_name = "Monitor"

    def get_websocket(self, monitor: Monitor) -> str:
        return f"/ws/monitor/{monitor.uuid}/"


class MonitorListApi(APIView):
    required_scope = Scope.SESSIONS_READ
    pagination_class = Pagination

    @extend_schema(
        operation_id="monitors_list",
        summary="List your monitors",
        description="The monitors you own, newest first.",
        responses={200: MonitorOutputSerializer(many=True), **error_responses()},
        tags=TAGS,
    )
    def get(self, request: Request) -> Response:
        return paginated_response(
            queryset=monitors.monitor_list(user=request.user),
            serializer_class=MonitorOutputSerializer,
            request=request,
            view=self,
        )


class MonitorCreateApi(APIView):
    required_scope = Scope.SESSIONS_WRITE
    parser_classes = [JSONParser]

    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=200, required=False, default="", allow_blank=True)
        team = serializers.CharField(
            required=False,
            allow_null=True,
            help_text=(
                "Team (UUID or slug) whose members may attach their runs to the monitor; "
                "default none (only you). You need the member role there."
            ),
        )

        class Meta:
            ref_name = "MonitorCreateInput"

    @extend_schema(
        operation_id="monitors_create",
        summary="Create a monitor",
        description=(
            "A monitor mirrors the runs started with `X-MONITOR-ID: <id>` (on the REST API, "
            "the OpenAI API, MCP, ChatGPT actions, Alexa and agent endpoints) to "
            "`/ws/monitor/{id}/`, which only you may open."
        ),
        request=InputSerializer,
        responses={201: MonitorOutputSerializer, **error_responses(400, 404)},
        tags=TAGS,
    )
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        monitor = monitors.monitor_create(
            owner=request.user, name=data["name"], team_id=data.get("team")
        )
        audit_request(request, "monitor.create", monitor)
        return Response(MonitorOutputSerializer(monitor).data, status=status.HTTP_201_CREATED)


class MonitorDetailApi(APIView):
    required_scope = Scope.SESSIONS_READ

    @extend_schema(
        operation_id="monitors_retrieve",
        summary="Get a monitor",
        parameters=[MONITOR_ID],
        responses={200: MonitorOutputSerializer, **error_responses(404)},
        tags=TAGS,
    )
    def get(self, request: Request, monitor_id: str) -> Response:
        monitor = monitors.monitor_get(user=request.user, monitor_id=monitor_id)
        return Response(MonitorOutputSerializer(monitor).data)


class MonitorDeleteApi(APIView):
    required_scope = Scope.SESSIONS_WRITE

    @extend_schema(
        operation_id="monitors_destroy",
        summary="Delete a monitor",
        description="Runs already attached keep running; nobody can watch them here any more.",
        parameters=[MONITOR_ID],
        responses={204: OpenApiResponse(description="Deleted"), **error_responses(404)},
        tags=TAGS,
    )
    def delete(self, request: Request, monitor_id: str) -> Response:
        monitor = monitors.monitor_get(user=request.user, monitor_id=monitor_id)
        audit_request(request, "monitor.delete", monitor)
        monitors.monitor_delete(monitor=monitor)
        return Response(status=status.HTTP_204_NO_CONTENT)


class MonitorTaskListApi(APIView):
    required_scope = Scope.SESSIONS_READ
    pagination_class = Pagination

    @extend_schema(
        operation_id="monitors_tasks_list",
        summary="List a monitor's tasks",
        description="The tasks mirrored to the monitor (started with its `X-MONITOR-ID`), "
        "newest first.",
        parameters=[MONITOR_ID],
        responses={200: TaskOutputSerializer(many=True), **error_responses(404)},
        tags=TAGS,
    )
    def get(self, request: Request, monitor_id: str) -> Response:
        monitor = monitors.monitor_get(user=request.user, monitor_id=monitor_id)
        return paginated_response(
            queryset=monitors.monitor_task_list(monitor=monitor),
            serializer_class=TaskOutputSerializer,
            request=request,
            view=self,
        )
