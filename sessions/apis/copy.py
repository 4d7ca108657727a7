"""``POST /api/v1/sessions/{id}/copy``: branch a session (history, metadata, workspace)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import access
from accounts.audit import audit_request
from accounts.models import Role, Scope
from runtime_project.api import error_responses
from sessions import selectors
from sessions.apis.common import SESSION_ID
from sessions.apis.sessions import SessionOutputSerializer
from sessions.services.copy import session_copy


class SessionCopyApi(APIView):
    required_scope = Scope.SESSIONS_WRITE
    parser_classes = [JSONParser]

    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(
            required=False, max_length=200, allow_blank=True,
            help_text='Default: the source\'s name + " (copy)".',
        )  # fmt: skip
        upto_seq = serializers.IntegerField(
            required=False, min_value=0,
            help_text="Copy only the events with `seq <= upto_seq` (branch at that point).",
        )  # fmt: skip
        include_workspace = serializers.BooleanField(
            default=True, help_text="Copy the workspace files too (not the sandbox)."
        )

        class Meta:
            ref_name = "SessionCopyInput"

    @extend_schema(
        operation_id="sessions_copy",
        summary="Copy a session (branch the conversation)",
        description=(
            "A new session of the same agent and team, owned by you, with the source's tags, "
            "metadata, event log (re-sequenced from 1, up to `upto_seq`), its tasks (new ids, "
            "`forked_from` = the source task) and a snapshot of its workspace files. A task cut "
            "by `upto_seq` is copied as `cancelled` (`copy_cut`). Share links are not copied. "
            "Needs read access to the source and member rights in its team."
        ),
        parameters=[SESSION_ID],
        request=InputSerializer,
        responses={201: SessionOutputSerializer, **error_responses(400, 404, 413)},
        tags=["sessions"],
    )
    def post(self, request: Request, session_id: str) -> Response:
        session = selectors.session_get(user=request.user, session_id=session_id)
        access.require_role(request.user, session.team_id, Role.MEMBER, what="Session")
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        copy = session_copy(session=session, user=request.user, **serializer.validated_data)
        audit_request(request, "session.copy", copy, source=str(session.uuid))
        return Response(SessionOutputSerializer(copy).data, status=status.HTTP_201_CREATED)
