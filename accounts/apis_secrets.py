"""REST for team and session secrets (values are write-only: no response ever carries one).

- ``/api/v1/teams/{team_id}/secrets[/{name}]``: members (scope ``sessions:read``) list names;
  admins (scope ``admin``) set and delete.
- ``/api/v1/sessions/{session_id}/secrets[/{name}]``: members of the session's team list
  (scope ``sessions:read``), set and delete (scope ``sessions:write``). The list shows what the
  session's runs see: its own secrets and the team secrets they do not override.

A stranger gets 404, a viewer 403 (``forbidden``). ``PUT`` answers 201 when it created the
secret, 200 when it replaced its value. Agents get secrets by naming them in their spec
(``spec.secrets``, see docs/secrets.md).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import access
from accounts import secrets as service
from accounts.audit import audit_request
from accounts.models import Role, Scope
from accounts.selectors import team_get
from runtime_project.api import Pagination, error_responses
from sessions.apis.common import SESSION_ID, paginated_response
from sessions.selectors import session_get

TAGS = ["secrets"]
TEAM_ID = OpenApiParameter(
    "team_id", OpenApiTypes.STR, OpenApiParameter.PATH, description="The team's id or slug."
)
NAME = OpenApiParameter(
    "name",
    OpenApiTypes.STR,
    OpenApiParameter.PATH,
    description="The secret's name (an environment-variable name: [A-Z_][A-Z0-9_]*).",
)


class SecretOutputSerializer(serializers.Serializer):
    name = serializers.CharField()
    scope = serializers.ChoiceField(
        choices=["team", "session"], help_text="Where the secret is stored."
    )
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField(help_text="When the value was last set.")
    created_by = serializers.CharField(allow_null=True, help_text="Username of its creator.")

    class Meta:
        ref_name = "Secret"


class SecretInputSerializer(serializers.Serializer):
    value = serializers.CharField(
        trim_whitespace=False,
        write_only=True,
        help_text="The secret value (1 byte to 64 KiB of UTF-8 text, no NUL); never returned.",
    )

    class Meta:
        ref_name = "SecretInput"


def _team(request: Request, team_id: str, min_role: str) -> Any:
    return team_get(user=request.user, team_id=team_id, min_role=min_role)


def _session(request: Request, session_id: str, *, write: bool) -> Any:
    session = session_get(user=request.user, session_id=session_id, for_write=write)
    access.require_role(request.user, session.team_id, Role.MEMBER, what="Session")
    return session


def _out(row: Any) -> dict[str, Any]:
    return SecretOutputSerializer(service.secret_info(row)).data


def _put(request: Request, *, team: Any, session: Any, name: str) -> Response:
    service.validate_name(name)
    data = SecretInputSerializer(data=request.data)
    data.is_valid(raise_exception=True)
    row, created = service.secret_set(
        team=team, session=session, name=name, value=data.validated_data["value"], user=request.user
    )
    audit_request(request, "secret.set", row, name=name, scope=_scope(session), created=created)
    code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return Response(_out(row), status=code)


def _delete(request: Request, *, team: Any, session: Any, name: str) -> Response:
    row = service.secret_delete(team=team, session=session, name=name)
    audit_request(request, "secret.delete", row, name=name, scope=_scope(session))
    return Response(status=status.HTTP_204_NO_CONTENT)


def _scope(session: Any) -> str:
    return "team" if session is None else "session"


class TeamSecretListApi(APIView):
    required_scope = Scope.SESSIONS_READ
    pagination_class = Pagination

    @extend_schema(
        operation_id="team_secrets_list",
        summary="List a team's secrets",
        description="Names and timestamps, never values. Members and above.",
        parameters=[TEAM_ID],
        responses={200: SecretOutputSerializer(many=True), **error_responses(403, 404)},
        tags=TAGS,
    )
    def get(self, request: Request, team_id: str) -> Response:
        team = _team(request, team_id, Role.MEMBER)
        return paginated_response(
            queryset=service.secret_list(team=team),
            serializer_class=SecretOutputSerializer,
            request=request,
            view=self,
        )


class TeamSecretDetailApi(APIView):
    required_scope = Scope.SESSIONS_READ

    @extend_schema(
        operation_id="team_secrets_retrieve",
        summary="Get a team secret's metadata",
        description="Name and timestamps, never the value. Members and above.",
        parameters=[TEAM_ID, NAME],
        responses={200: SecretOutputSerializer, **error_responses(403, 404)},
        tags=TAGS,
    )
    def get(self, request: Request, team_id: str, name: str) -> Response:
        team = _team(request, team_id, Role.MEMBER)
        return Response(_out(service.secret_get(team=team, name=name)))


class TeamSecretPutApi(APIView):
    required_scope = Scope.ADMIN
    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="team_secrets_set",
        summary="Set a team secret",
        description=(
            "Creates the secret (201) or replaces its value (200); the value is encrypted at "
            "rest and never returned. Admins and owners; scope `admin`."
        ),
        parameters=[TEAM_ID, NAME],
        request=SecretInputSerializer,
        responses={
            200: SecretOutputSerializer,
            201: SecretOutputSerializer,
            **error_responses(400, 403, 404),
        },
        tags=TAGS,
    )
    def put(self, request: Request, team_id: str, name: str) -> Response:
        team = _team(request, team_id, Role.ADMIN)
        return _put(request, team=team, session=None, name=name)


class TeamSecretDeleteApi(APIView):
    required_scope = Scope.ADMIN

    @extend_schema(
        operation_id="team_secrets_delete",
        summary="Delete a team secret",
        description="Admins and owners; scope `admin`. Unknown names are 404 `secret_not_found`.",
        parameters=[TEAM_ID, NAME],
        responses={204: None, **error_responses(403, 404)},
        tags=TAGS,
    )
    def delete(self, request: Request, team_id: str, name: str) -> Response:
        team = _team(request, team_id, Role.ADMIN)
        return _delete(request, team=team, session=None, name=name)


class SessionSecretListApi(APIView):
    required_scope = Scope.SESSIONS_READ
    pagination_class = Pagination

    @extend_schema(
        operation_id="session_secrets_list",
        summary="List the secrets a session's runs see",
        description=(
            "The session's own secrets and the team secrets they do not override (`scope` "
            "tells which), names and timestamps only. Members of the session's team."
        ),
        parameters=[SESSION_ID],
        responses={200: SecretOutputSerializer(many=True), **error_responses(403, 404)},
        tags=TAGS,
    )
    def get(self, request: Request, session_id: str) -> Response:
        session = _session(request, session_id, write=False)
        return paginated_response(
            queryset=service.secret_list(team=session.team, session=session),
            serializer_class=SecretOutputSerializer,
            request=request,
            view=self,
        )


class SessionSecretDetailApi(APIView):
    required_scope = Scope.SESSIONS_READ

    @extend_schema(
        operation_id="session_secrets_retrieve",
        summary="Get a session secret's metadata",
        description="Name and timestamps of the session's own secret, never the value.",
        parameters=[SESSION_ID, NAME],
        responses={200: SecretOutputSerializer, **error_responses(403, 404)},
        tags=TAGS,
    )
    def get(self, request: Request, session_id: str, name: str) -> Response:
        session = _session(request, session_id, write=False)
        return Response(_out(service.secret_get(team=session.team, session=session, name=name)))


class SessionSecretPutApi(APIView):
    required_scope = Scope.SESSIONS_WRITE
    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="session_secrets_set",
        summary="Set a session secret",
        description=(
            "Creates (201) or replaces (200) a secret of this session only; it overrides the "
            "team secret of the same name in the session's runs. Members; scope "
            "`sessions:write`."
        ),
        parameters=[SESSION_ID, NAME],
        request=SecretInputSerializer,
        responses={
            200: SecretOutputSerializer,
            201: SecretOutputSerializer,
            **error_responses(400, 403, 404),
        },
        tags=TAGS,
    )
    def put(self, request: Request, session_id: str, name: str) -> Response:
        session = _session(request, session_id, write=True)
        return _put(request, team=session.team, session=session, name=name)


class SessionSecretDeleteApi(APIView):
    required_scope = Scope.SESSIONS_WRITE

    @extend_schema(
        operation_id="session_secrets_delete",
        summary="Delete a session secret",
        description="Members; scope `sessions:write`. Team secrets are deleted on the team.",
        parameters=[SESSION_ID, NAME],
        responses={204: None, **error_responses(403, 404)},
        tags=TAGS,
    )
    def delete(self, request: Request, session_id: str, name: str) -> Response:
        session = _session(request, session_id, write=True)
        return _delete(request, team=session.team, session=session, name=name)
