"""REST for workspace snapshots (``sandboxes.snapshots``): list, create, restore."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.access import writes
from accounts.models import Scope
from runtime_project.api import error_responses
from sandboxes import snapshots
from sessions.apis.common import SESSION_ID
from sessions.selectors import session_get

TAGS = ["sandbox"]
SNAPSHOT_NAME = OpenApiParameter("name", str, OpenApiParameter.PATH, description="From the list.")


class SnapshotSerializer(serializers.Serializer):
    name = serializers.CharField()
    size = serializers.IntegerField(help_text="Bytes (compressed).")
    created_at = serializers.DateTimeField()


class SnapshotListApi(APIView):
    required_scope = Scope.SESSIONS_READ

    @extend_schema(
        tags=TAGS,
        operation_id="sandbox_snapshots",
        summary="Workspace snapshots",
        parameters=[SESSION_ID],
        responses={200: SnapshotSerializer(many=True), **error_responses(401, 404)},
    )
    def get(self, request: Request, session_id: str) -> Response:
        session = session_get(user=request.user, session_id=session_id, for_write=writes(request))
        return Response(
            SnapshotSerializer(snapshots.snapshot_list(session=session), many=True).data
        )

    @extend_schema(
        tags=TAGS,
        operation_id="sandbox_snapshot_create",
        request=None,
        summary="Snapshot the workspace to storage (a .tar.gz through Django's storage API)",
        parameters=[SESSION_ID],
        responses={201: SnapshotSerializer, **error_responses(401, 404, 413)},
    )
    def post(self, request: Request, session_id: str) -> Response:
        session = session_get(user=request.user, session_id=session_id, for_write=writes(request))
        created = snapshots.snapshot_create(session=session)
        return Response(SnapshotSerializer(created).data, status=status.HTTP_201_CREATED)


class SnapshotRestoreApi(APIView):
    required_scope = Scope.SESSIONS_WRITE

    @extend_schema(
        tags=TAGS,
        operation_id="sandbox_snapshot_restore",
        request=None,
        summary="Replace the workspace with a snapshot (stops the sandbox first)",
        parameters=[SESSION_ID, SNAPSHOT_NAME],
        responses={
            200: inline_serializer("SnapshotRestored", {"files": serializers.IntegerField()}),
            **error_responses(400, 401, 404, 413),
        },
    )
    def post(self, request: Request, session_id: str, name: str) -> Response:
        session = session_get(user=request.user, session_id=session_id, for_write=writes(request))
        restored = snapshots.snapshot_restore(session=session, name=name)
        return Response({"files": len(restored)})
