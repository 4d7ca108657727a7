"""REST for teams, memberships, API keys and the audit log (``/api/v1/teams``, ``/api-keys``).

Roles: any member reads a team and its members; admins add, change and remove members (only
owners touch owners) and read the audit log; owners delete shared teams. Managing teams and keys
through the API needs the ``admin`` scope (a browser session has every scope).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import access, selectors, services
from accounts.audit import audit_request
from accounts.models import Role, Scope
from runtime_project.api import Pagination, error_responses
from runtime_project.exceptions import NotFound
from sessions.apis.common import TeamRefSerializer, paginated_response

TEAM_ID = OpenApiParameter(
    "team_id", OpenApiTypes.STR, OpenApiParameter.PATH, description="The team's id or slug."
)
USERNAME = OpenApiParameter("username", OpenApiTypes.STR, OpenApiParameter.PATH)
KEY_ID = OpenApiParameter(
    "key_id", OpenApiTypes.STR, OpenApiParameter.PATH, description="The key's id or prefix."
)


class TeamOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="uuid")
    slug = serializers.SlugField()
    name = serializers.CharField()
    is_personal = serializers.BooleanField()
    role = serializers.SerializerMethodField(help_text="Your role in the team.")
    max_running_tasks = serializers.IntegerField(allow_null=True)
    max_sandboxes = serializers.IntegerField(allow_null=True)
    rate_limit = serializers.CharField()
    created_at = serializers.DateTimeField()

    class Meta:
        ref_name = "Team"

    def get_role(self, team: Any) -> str | None:
        return access.role_in(self.context["request"].user, team.pk)


class TeamListApi(APIView):
    required_scope = None  # any credential may see which teams it acts in
    pagination_class = Pagination  # the schema documents the page envelope

    @extend_schema(
        operation_id="teams_list",
        summary="List your teams",
        description="Your teams with your role in each (an API key sees only its own team).",
        responses={200: TeamOutputSerializer(many=True), **error_responses()},
        tags=["teams"],
    )
    def get(self, request: Request) -> Response:
        teams = selectors.team_list(user=request.user).order_by("name")
        return paginated_response(
            queryset=teams, serializer_class=TeamOutputSerializer, request=request, view=self
        )


class TeamCreateApi(APIView):
    required_scope = Scope.ADMIN
    parser_classes = [JSONParser]

    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=200)
        slug = serializers.SlugField(
            max_length=80, required=False, help_text="Default: derived from the name."
        )

        class Meta:
            ref_name = "TeamCreateInput"

    @extend_schema(
        operation_id="teams_create",
        summary="Create a team",
        description="A shared team; you become its owner. A taken slug is 409 `slug_taken`.",
        request=InputSerializer,
        responses={201: TeamOutputSerializer, **error_responses(400, 403, 409)},
        tags=["teams"],
    )
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        team = services.team_create(user=request.user, **serializer.validated_data)
        audit_request(request, "team.create", team)
        body = TeamOutputSerializer(team, context={"request": request}).data
        return Response(body, status=status.HTTP_201_CREATED)


class TeamDetailApi(APIView):
    required_scope = None

    @extend_schema(
        operation_id="teams_retrieve",
        summary="Get a team",
        parameters=[TEAM_ID],
        responses={200: TeamOutputSerializer, **error_responses(404)},
        tags=["teams"],
    )
    def get(self, request: Request, team_id: str) -> Response:
        team = selectors.team_get(user=request.user, team_id=team_id)
        return Response(TeamOutputSerializer(team, context={"request": request}).data)


class TeamUpdateApi(APIView):
    required_scope = Scope.ADMIN
    parser_classes = [JSONParser]

    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=200, required=False)
        slug = serializers.SlugField(max_length=80, required=False)

        class Meta:
            ref_name = "TeamUpdateInput"

    @extend_schema(
        operation_id="teams_partial_update",
        summary="Rename a team",
        description="Admins and owners. Limits are set by operators in the admin.",
        parameters=[TEAM_ID],
        request=InputSerializer,
        responses={200: TeamOutputSerializer, **error_responses(400, 403, 404, 409)},
        tags=["teams"],
    )
    def patch(self, request: Request, team_id: str) -> Response:
        team = selectors.team_get(user=request.user, team_id=team_id, min_role=Role.ADMIN)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        team = services.team_update(team=team, **serializer.validated_data)
        audit_request(request, "team.update", team, fields=sorted(serializer.validated_data))
        return Response(TeamOutputSerializer(team, context={"request": request}).data)


class TeamDeleteApi(APIView):
    required_scope = Scope.ADMIN

    @extend_schema(
        operation_id="teams_destroy",
        summary="Delete a team",
        description=(
            "Owners only; deletes the team's agents, sessions, credentials, secrets and keys. "
            "A personal team cannot be deleted (409 `personal_team`)."
        ),
        parameters=[TEAM_ID],
        responses={204: OpenApiResponse(description="Deleted"), **error_responses(403, 404, 409)},
        tags=["teams"],
    )
    def delete(self, request: Request, team_id: str) -> Response:
        team = selectors.team_get(user=request.user, team_id=team_id, min_role=Role.OWNER)
        audit_request(request, "team.delete", None, team=team.slug)
        services.team_delete(team=team)
        return Response(status=status.HTTP_204_NO_CONTENT)


class MemberOutputSerializer(serializers.Serializer):
    username = serializers.CharField(source="user.username")
    role = serializers.ChoiceField(choices=Role.choices)
    created_at = serializers.DateTimeField()

    class Meta:
        ref_name = "TeamMember"


def _user(username: str) -> Any:
    user = get_user_model().objects.filter(username=username, is_active=True).first()
    if user is None:
        raise NotFound("User not found.", details={"username": username})
    return user


class MemberListApi(APIView):
    required_scope = None
    pagination_class = Pagination  # the schema documents the page envelope

    @extend_schema(
        operation_id="teams_members_list",
        summary="List a team's members",
        parameters=[TEAM_ID],
        responses={200: MemberOutputSerializer(many=True), **error_responses(404)},
        tags=["teams"],
    )
    def get(self, request: Request, team_id: str) -> Response:
        team = selectors.team_get(user=request.user, team_id=team_id)
        members = selectors.membership_list(user=request.user, team=team)
        return paginated_response(
            queryset=members, serializer_class=MemberOutputSerializer, request=request, view=self
        )


class MemberInputSerializer(serializers.Serializer):
    username = serializers.CharField()
    role = serializers.ChoiceField(choices=Role.choices, default=Role.MEMBER)

    class Meta:
        ref_name = "TeamMemberInput"


class RoleInputSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=Role.choices)

    class Meta:
        ref_name = "TeamRoleInput"


def _set_member(request: Request, team: Any, username: str, role: str) -> Response:
    membership = services.membership_set(
        team=team, actor=request.user, user=_user(username), role=role
    )
    audit_request(request, "team.member_set", team, username=username, role=role)
    return Response(MemberOutputSerializer(membership).data)


_MEMBER_SET_DOC = (
    "Admins add members and change roles; only owners grant or take away the owner role, and "
    "a team always keeps one owner (409 `last_owner`)."
)


class MemberAddApi(APIView):
    required_scope = Scope.ADMIN
    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="teams_members_create",
        summary="Add a member",
        description=_MEMBER_SET_DOC + " Adding an existing member changes their role.",
        parameters=[TEAM_ID],
        request=MemberInputSerializer,
        responses={200: MemberOutputSerializer, **error_responses(400, 403, 404, 409)},
        tags=["teams"],
    )
    def post(self, request: Request, team_id: str) -> Response:
        team = selectors.team_get(user=request.user, team_id=team_id, min_role=Role.ADMIN)
        serializer = MemberInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        return _set_member(request, team, data["username"], data["role"])


class MemberUpdateApi(APIView):
    required_scope = Scope.ADMIN
    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="teams_members_partial_update",
        summary="Change a member's role",
        description=_MEMBER_SET_DOC,
        parameters=[TEAM_ID, USERNAME],
        request=RoleInputSerializer,
        responses={200: MemberOutputSerializer, **error_responses(400, 403, 404, 409)},
        tags=["teams"],
    )
    def patch(self, request: Request, team_id: str, username: str) -> Response:
        team = selectors.team_get(user=request.user, team_id=team_id, min_role=Role.ADMIN)
        serializer = RoleInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return _set_member(request, team, username, serializer.validated_data["role"])


class MemberRemoveApi(APIView):
    required_scope = Scope.ADMIN

    @extend_schema(
        operation_id="teams_members_destroy",
        summary="Remove a member",
        description="Admins remove members; anyone may leave (remove themselves).",
        parameters=[TEAM_ID, USERNAME],
        responses={204: OpenApiResponse(description="Removed"), **error_responses(403, 404, 409)},
        tags=["teams"],
    )
    def delete(self, request: Request, team_id: str, username: str) -> Response:
        team = selectors.team_get(user=request.user, team_id=team_id)
        target = _user(username)
        if target.pk != request.user.pk:
            access.require_role(request.user, team.pk, Role.ADMIN, what="Team")
        services.membership_remove(team=team, actor=request.user, user=target)
        audit_request(request, "team.member_remove", team, username=username)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ApiKeyOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="uuid")
    name = serializers.CharField()
    prefix = serializers.CharField(help_text="The key's first characters, to recognise it.")
    team = TeamRefSerializer(allow_null=True, help_text="null: every team of the key's user.")
    user = serializers.CharField(source="user.username")
    scopes = serializers.ListField(child=serializers.CharField())
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True)
    last_used_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True)

    class Meta:
        ref_name = "ApiKey"


class ApiKeyListApi(APIView):
    required_scope = Scope.ADMIN
    pagination_class = Pagination  # the schema documents the page envelope

    @extend_schema(
        operation_id="api_keys_list",
        summary="List API keys",
        description="Your keys, and every key of the teams you administer. Never the key.",
        responses={200: ApiKeyOutputSerializer(many=True), **error_responses(403)},
        tags=["api-keys"],
    )
    def get(self, request: Request) -> Response:
        keys = selectors.api_key_list(user=request.user)
        return paginated_response(
            queryset=keys, serializer_class=ApiKeyOutputSerializer, request=request, view=self
        )


class ApiKeyCreateApi(APIView):
    required_scope = Scope.ADMIN
    parser_classes = [JSONParser]

    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=100)
        scopes = serializers.ListField(
            child=serializers.ChoiceField(choices=Scope.choices), allow_empty=False
        )
        team = serializers.CharField(
            required=False,
            help_text="Bind the key to this team (UUID or slug); omit for a key acting in all "
            "your teams.",
        )
        expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)

        class Meta:
            ref_name = "ApiKeyCreateInput"

    class CreatedSerializer(ApiKeyOutputSerializer):
        key = serializers.CharField(help_text="The key. Shown once; only a hash is stored.")

        class Meta:
            ref_name = "ApiKeyCreated"

    @extend_schema(
        operation_id="api_keys_create",
        summary="Create an API key",
        description=(
            "A key acting in one team with the given scopes, optionally expiring. The response "
            "is the only time the key is shown. `admin` keys need the admin role in the team."
        ),
        request=InputSerializer,
        responses={201: CreatedSerializer, **error_responses(400, 403, 404)},
        tags=["api-keys"],
    )
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        team_id = data.pop("team", None)
        team = None
        if team_id:
            team = selectors.team_get(user=request.user, team_id=team_id)
        elif getattr(request.user, "credential_team_id", None) is not None:
            team = selectors.default_team(user=request.user)  # a team key makes team keys
        row, key = services.api_key_create(user=request.user, team=team, **data)
        audit_request(request, "api_key.create", row, prefix=row.prefix, scopes=row.scopes)
        body = {**ApiKeyOutputSerializer(row).data, "key": key}
        return Response(body, status=status.HTTP_201_CREATED)


class ApiKeyRevokeApi(APIView):
    required_scope = Scope.ADMIN

    @extend_schema(
        operation_id="api_keys_revoke",
        summary="Revoke an API key",
        description="Your own keys, or any key of a team you administer. Idempotent.",
        parameters=[KEY_ID],
        responses={200: ApiKeyOutputSerializer, **error_responses(404)},
        tags=["api-keys"],
    )
    def delete(self, request: Request, key_id: str) -> Response:
        row = selectors.api_key_get(user=request.user, key_id=key_id)
        row = services.api_key_revoke(api_key=row)
        audit_request(request, "api_key.revoke", row, prefix=row.prefix)
        return Response(ApiKeyOutputSerializer(row).data)


class AuditEntrySerializer(serializers.Serializer):
    id = serializers.UUIDField(source="uuid")
    created_at = serializers.DateTimeField()
    actor = serializers.CharField(source="actor.username", allow_null=True, default=None)
    credential = serializers.CharField()
    action = serializers.CharField()
    target_type = serializers.CharField()
    target_id = serializers.CharField()
    target_repr = serializers.CharField()
    details = serializers.DictField()
    ip = serializers.CharField(allow_null=True)

    class Meta:
        ref_name = "AuditEntry"


class AuditListApi(APIView):
    required_scope = Scope.ADMIN
    pagination_class = Pagination  # the schema documents the page envelope

    class FilterSerializer(serializers.Serializer):
        action = serializers.CharField(required=False, help_text="e.g. `session.delete`.")
        target_type = serializers.CharField(required=False, help_text="e.g. `session`.")
        actor = serializers.CharField(required=False, help_text="A username.")

    @extend_schema(
        operation_id="teams_audit_list",
        summary="Read a team's audit log",
        description="Team admins: who created, changed, cancelled or deleted what, newest first.",
        parameters=[TEAM_ID, FilterSerializer],
        responses={200: AuditEntrySerializer(many=True), **error_responses(400, 403, 404)},
        tags=["teams"],
    )
    def get(self, request: Request, team_id: str) -> Response:
        team = selectors.team_get(user=request.user, team_id=team_id, min_role=Role.ADMIN)
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        entries = selectors.audit_list(user=request.user, team=team, **filters.validated_data)
        return paginated_response(
            queryset=entries, serializer_class=AuditEntrySerializer, request=request, view=self
        )
