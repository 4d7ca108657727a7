"""Sessions: list, create, read, update, soft delete, restore, and cancel everything active."""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.db.models import Count, Q, QuerySet
from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.access import writes
from accounts.audit import audit_request
from accounts.models import Scope
from accounts.selectors import team_for_write
from runtime_project.api import Pagination, error_responses
from sessions import selectors
from sessions.apis.common import (
    SESSION_ID,
    TEAM_FIELD,
    CommaSeparatedListField,
    TeamRefSerializer,
    paginated_response,
    validated_query,
)
from sessions.apis.tasks import TaskOutputSerializer
from sessions.choices import ACTIVE_STATUSES, SessionStatus
from sessions.models import Session
from sessions.services.sessions import (
    session_create,
    session_delete,
    session_restore,
    session_update,
)
from sessions.services.tasks import task_cancel_all

TAGS = ["sessions"]
MAX_TAGS = 50


def _tags_field(**kwargs: Any) -> serializers.ListField:
    return serializers.ListField(
        child=serializers.CharField(max_length=64),
        max_length=MAX_TAGS,
        help_text=f"Free-form labels (at most {MAX_TAGS}, 64 characters each).",
        **kwargs,
    )


class _SessionLinksSerializer(serializers.Serializer):
    self = serializers.CharField()
    tasks = serializers.CharField()
    events = serializers.CharField()
    events_stream = serializers.CharField()
    files = serializers.CharField()

    class Meta:
        ref_name = "SessionLinks"


class SessionOutputSerializer(serializers.Serializer):
    class AgentRefSerializer(serializers.Serializer):
        id = serializers.UUIDField(source="uuid")
        slug = serializers.SlugField()
        version = serializers.IntegerField(help_text="The agent's current version.")

        class Meta:
            ref_name = "SessionAgent"

    id = serializers.UUIDField(source="uuid")
    name = serializers.CharField()
    agent = AgentRefSerializer()
    team = TeamRefSerializer()
    status = serializers.ChoiceField(choices=SessionStatus.choices)
    tags = serializers.ListField(child=serializers.CharField())
    metadata = serializers.DictField()
    last_seq = serializers.IntegerField(help_text="Seq of the newest event (0: none yet).")
    active_task_count = serializers.SerializerMethodField(
        help_text="Tasks queued, running or waiting."
    )
    links = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    deleted_at = serializers.DateTimeField(allow_null=True)

    class Meta:
        ref_name = "Session"

    def get_active_task_count(self, session: Session) -> int:
        count = getattr(session, "active_task_count", None)
        if count is None:
            count = selectors.task_active_for_session(session=session).count()
        return int(count)

    @extend_schema_field(_SessionLinksSerializer)
    def get_links(self, session: Session) -> dict[str, str]:
        sid = str(session.uuid)

        def url(name: str) -> str:
            return reverse(f"sessions_api:{name}", kwargs={"session_id": sid})

        return {
            "self": url("session-detail"),
            "tasks": url("session-tasks"),
            "events": url("session-events"),
            "events_stream": url("session-events") + "/stream",
            "files": url("workspace-files"),
        }


def _with_tag(sessions: QuerySet[Session], tag: str) -> QuerySet[Session]:
    """Sessions whose ``tags`` list contains ``tag``.

    TODO(selectors): belongs in ``session_list(tag=...)``. PostgreSQL answers it with jsonb
    containment; Django has no ``contains`` lookup for JSON on SQLite, so use ``json_each``.
    """
    if connection.vendor == "postgresql":
        return sessions.filter(tags__contains=[tag])
    table = connection.ops.quote_name(Session._meta.db_table)
    # Constant SQL (the table name is ours); the tag is a bound parameter.
    return sessions.extra(  # noqa: S610
        where=[f"EXISTS (SELECT 1 FROM json_each({table}.tags) WHERE json_each.value = %s)"],  # noqa: S608
        params=[tag],
    )


class SessionListApi(APIView):
    required_scope = Scope.SESSIONS_READ
    pagination_class = Pagination

    class FilterSerializer(serializers.Serializer):
        status = CommaSeparatedListField(
            child=serializers.ChoiceField(choices=SessionStatus.choices),
            required=False,
            help_text="Only these statuses (comma-separated or repeated).",
        )
        tag = serializers.CharField(required=False, help_text="Only sessions with this tag.")
        deleted = serializers.BooleanField(
            default=False, help_text="List soft-deleted sessions (the ones you can restore)."
        )

        class Meta:
            ref_name = "SessionListFilter"

    @extend_schema(
        operation_id="sessions_list",
        summary="List sessions",
        description="Your sessions, newest first.",
        parameters=[FilterSerializer],
        responses={200: SessionOutputSerializer(many=True), **error_responses(400)},
        tags=TAGS,
    )
    def get(self, request: Request) -> Response:
        filters = validated_query(self.FilterSerializer, request)
        sessions = selectors.session_list(user=request.user, deleted=filters["deleted"])
        if filters.get("status"):
            sessions = sessions.filter(status__in=filters["status"])
        if filters.get("tag"):
            sessions = _with_tag(sessions, filters["tag"])
        sessions = sessions.annotate(
            active_task_count=Count("tasks", filter=Q(tasks__status__in=ACTIVE_STATUSES))
        )
        return paginated_response(
            queryset=sessions, serializer_class=SessionOutputSerializer, request=request, view=self
        )


class SessionCreateApi(APIView):
    required_scope = Scope.SESSIONS_WRITE
    parser_classes = [JSONParser]

    class InputSerializer(serializers.Serializer):
        agent = serializers.CharField(help_text="Agent id (UUID) or slug.")
        name = serializers.CharField(max_length=200, allow_blank=True, default="")
        tags = _tags_field(default=list)
        metadata = serializers.DictField(
            default=dict, help_text="Free-form JSON, e.g. `model_config` for LLM agents."
        )
        team = TEAM_FIELD

        class Meta:
            ref_name = "SessionCreateInput"

    @extend_schema(
        operation_id="sessions_create",
        summary="Open a session",
        description="A session on one of your agents or a public one, with an empty workspace.",
        request=InputSerializer,
        responses={201: SessionOutputSerializer, **error_responses(400, 404)},
        tags=TAGS,
    )
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        team = team_for_write(user=request.user, team_id=data.pop("team", None))
        agent = selectors.agent_get(user=request.user, agent_id=data.pop("agent"))
        session = session_create(owner=request.user, team=team, agent=agent, **data)
        session.active_task_count = 0  # type: ignore[attr-defined]  # a new session: no query
        audit_request(request, "session.create", session)
        return Response(SessionOutputSerializer(session).data, status=status.HTTP_201_CREATED)


class SessionDetailApi(APIView):
    required_scope = Scope.SESSIONS_READ

    @extend_schema(
        operation_id="sessions_retrieve",
        summary="Get a session",
        parameters=[SESSION_ID],
        responses={200: SessionOutputSerializer, **error_responses(404)},
        tags=TAGS,
    )
    def get(self, request: Request, session_id: str) -> Response:
        session = selectors.session_get(
            user=request.user, session_id=session_id, for_write=writes(request)
        )
        return Response(SessionOutputSerializer(session).data)


class SessionUpdateApi(APIView):
    required_scope = Scope.SESSIONS_WRITE
    parser_classes = [JSONParser]

    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=200, allow_blank=True, required=False)
        tags = _tags_field(required=False)
        metadata = serializers.DictField(required=False)

        class Meta:
            ref_name = "SessionUpdateInput"

    @extend_schema(
        operation_id="sessions_partial_update",
        summary="Update a session",
        description="Changes only the fields given; `tags` and `metadata` are replaced whole.",
        parameters=[SESSION_ID],
        request=InputSerializer,
        responses={200: SessionOutputSerializer, **error_responses(400, 404)},
        tags=TAGS,
    )
    def patch(self, request: Request, session_id: str) -> Response:
        session = selectors.session_get(
            user=request.user, session_id=session_id, for_write=writes(request)
        )
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        session = session_update(session=session, **serializer.validated_data)
        return Response(SessionOutputSerializer(session).data)


class SessionDeleteApi(APIView):
    required_scope = Scope.SESSIONS_WRITE

    @extend_schema(
        operation_id="sessions_destroy",
        summary="Delete a session",
        description=(
            "Soft delete: active tasks are cancelled and the session is hidden; "
            "`POST /sessions/{id}/restore` brings it back (list them with `?deleted=true`)."
        ),
        parameters=[SESSION_ID],
        responses={204: OpenApiResponse(description="Deleted"), **error_responses(404)},
        tags=TAGS,
    )
    def delete(self, request: Request, session_id: str) -> Response:
        session = selectors.session_get(
            user=request.user, session_id=session_id, for_write=writes(request)
        )
        session_delete(session=session)
        audit_request(request, "session.delete", session)
        return Response(status=status.HTTP_204_NO_CONTENT)


class SessionRestoreApi(APIView):
    required_scope = Scope.SESSIONS_WRITE

    @extend_schema(
        operation_id="sessions_restore",
        summary="Restore a deleted session",
        description="Undoes a soft delete (a session that is not deleted is returned as is).",
        parameters=[SESSION_ID],
        request=None,
        responses={200: SessionOutputSerializer, **error_responses(404)},
        tags=TAGS,
    )
    def post(self, request: Request, session_id: str) -> Response:
        session = selectors.session_get(
            user=request.user, session_id=session_id, include_deleted=True, for_write=True
        )
        if session.deleted_at is not None:
            session = session_restore(session=session)
            audit_request(request, "session.restore", session)
        return Response(SessionOutputSerializer(session).data)


class SessionCancelApi(APIView):
    required_scope = Scope.TASKS_WRITE

    class OutputSerializer(serializers.Serializer):
        tasks = TaskOutputSerializer(many=True)

        class Meta:
            ref_name = "SessionCancelResult"

    @extend_schema(
        operation_id="sessions_cancel",
        summary="Cancel the session's active tasks",
        description=(
            "Queued tasks are cancelled at once; running ones are asked to stop and reach "
            "`cancelled` when their executor has stopped them (watch the events)."
        ),
        parameters=[SESSION_ID],
        request=None,
        responses={202: OutputSerializer, **error_responses(404)},
        tags=TAGS,
    )
    def post(self, request: Request, session_id: str) -> Response:
        session = selectors.session_get(
            user=request.user, session_id=session_id, for_write=writes(request)
        )
        tasks = task_cancel_all(session=session)
        audit_request(request, "session.cancel", session, tasks=len(tasks))
        data = self.OutputSerializer({"tasks": tasks}).data
        return Response(data, status=status.HTTP_202_ACCEPTED)
