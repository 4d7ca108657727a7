"""``GET /api/v1/sessions/{id}/runtime``: the external runtime attached to a session."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Scope
from runtime_project.api import error_responses
from runtimes.models import RuntimeStatus
from runtimes.selectors import runtime_for_session
from sessions.apis.common import SESSION_ID


class RuntimeOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="uuid", help_text="This attachment's id.")
    runtime_id = serializers.CharField(help_text="The name the runtime registered with.")
    session_id = serializers.UUIDField(source="session.uuid")
    kinds = serializers.ListField(child=serializers.CharField())
    capabilities = serializers.DictField()
    status = serializers.ChoiceField(choices=RuntimeStatus.choices)
    user = serializers.CharField(
        source="user.username", allow_null=True, help_text="Who the runtime acts as."
    )
    connected_at = serializers.DateTimeField()
    last_seen_at = serializers.DateTimeField(
        help_text="Refreshed every RUNTIME_HEARTBEAT_S seconds while the socket is open."
    )

    class Meta:
        ref_name = "Runtime"


class SessionRuntimeApi(APIView):
    required_scope = Scope.SESSIONS_READ

    @extend_schema(
        tags=["runtimes"],
        operation_id="session_runtime_get",
        summary="The runtime attached to the session",
        description=(
            "The external runtime currently attached over `/ws/runtimes/` (it runs the tasks "
            "of `remote` agents; docs/remote-runtimes.md). 404 `no_runtime` when none is."
        ),
        parameters=[SESSION_ID],
        responses={200: RuntimeOutputSerializer, **error_responses(404)},
    )
    def get(self, request: Request, session_id: str) -> Response:
        runtime = runtime_for_session(user=request.user, session_id=session_id)
        return Response(RuntimeOutputSerializer(runtime).data)
