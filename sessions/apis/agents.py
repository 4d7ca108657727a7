"""Agents: list, create, read, update (a new version on every spec change), soft delete,
version history; and ``models``, the agents a caller can use, in the shape model pickers use."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.audit import audit_request
from accounts.models import Scope
from accounts.selectors import team_for_write
from runtime_project.api import Pagination, error_responses
from sessions import selectors
from sessions.apis.common import AGENT_ID, TEAM_FIELD, TeamRefSerializer, paginated_response
from sessions.choices import AgentKind
from sessions.runners import get_runner_class
from sessions.services.agents import agent_create, agent_delete, agent_update

TAGS = ["agents"]
ENDPOINTS_HELP = (
    "Named HTTP endpoints, each `{name, description?, input_schema?, task_type?, "
    "mode?: sync|async, timeout_s?}`, served at `POST /api/agents/{slug}/{name}`."
)
INTEGRATIONS_HELP = (
    'Exposure flags: `{"openai"?, "mcp"?, "chatgpt"?: bool}`; a missing key is exposed.'
)


class AgentOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="uuid")
    slug = serializers.SlugField()
    name = serializers.CharField()
    kind = serializers.ChoiceField(choices=AgentKind.choices)
    description = serializers.CharField()
    spec = serializers.JSONField(help_text="Kind-specific configuration, validated per kind.")
    input_schema = serializers.JSONField(help_text="JSON Schema of a task's input ({} = any).")
    version = serializers.IntegerField(help_text="Bumped on every change of kind/spec/schema.")
    is_public = serializers.BooleanField()
    endpoints = serializers.JSONField(help_text=ENDPOINTS_HELP)
    integrations = serializers.JSONField(help_text=INTEGRATIONS_HELP)
    owner = serializers.CharField(source="owner.username", help_text="Who created it.")
    team = TeamRefSerializer()
    capabilities = serializers.SerializerMethodField(
        help_text="What the agent can do: can_execute_code, can_execute_sql, can_execute_ai."
    )
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    class Meta:
        ref_name = "Agent"

    @extend_schema_field(
        {"type": "object", "additionalProperties": {"type": "boolean"},
         "example": {"can_execute_code": True, "can_execute_sql": False, "can_execute_ai": False}}
    )  # fmt: skip
    def get_capabilities(self, agent: Any) -> dict[str, bool]:
        return get_runner_class(agent.kind).capabilities(agent.spec or {})


class AgentListApi(APIView):
    required_scope = Scope.AGENTS_READ
    pagination_class = Pagination

    @extend_schema(
        operation_id="agents_list",
        summary="List agents",
        description="Your agents and every public agent, ordered by slug.",
        responses={200: AgentOutputSerializer(many=True), **error_responses()},
        tags=TAGS,
    )
    def get(self, request: Request) -> Response:
        agents = selectors.agent_list(user=request.user).select_related("owner", "team")
        return paginated_response(
            queryset=agents, serializer_class=AgentOutputSerializer, request=request, view=self
        )


class AgentCreateApi(APIView):
    required_scope = Scope.AGENTS_WRITE
    parser_classes = [JSONParser]

    class InputSerializer(serializers.Serializer):
        slug = serializers.SlugField(max_length=64)
        name = serializers.CharField(max_length=200)
        kind = serializers.ChoiceField(choices=AgentKind.choices, default=AgentKind.COMMAND)
        spec = serializers.DictField(default=dict)
        description = serializers.CharField(allow_blank=True, default="")
        input_schema = serializers.DictField(default=dict)
        is_public = serializers.BooleanField(default=False)
        endpoints = serializers.ListField(
            child=serializers.DictField(), default=list, help_text=ENDPOINTS_HELP
        )
        integrations = serializers.DictField(default=dict, help_text=INTEGRATIONS_HELP)
        team = TEAM_FIELD

        class Meta:
            ref_name = "AgentCreateInput"

    @extend_schema(
        operation_id="agents_create",
        summary="Register an agent",
        description=(
            "Creates the agent at version 1. `spec` is validated against the kind's JSON "
            "Schema and `input_schema` must itself be a valid JSON Schema; a slug you already "
            "use is a 409 `slug_taken`."
        ),
        request=InputSerializer,
        responses={201: AgentOutputSerializer, **error_responses(400, 404, 409)},
        tags=TAGS,
    )
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        team = team_for_write(user=request.user, team_id=data.pop("team", None))
        agent = agent_create(owner=request.user, team=team, **data)
        audit_request(request, "agent.create", agent)
        return Response(AgentOutputSerializer(agent).data, status=status.HTTP_201_CREATED)


class AgentDetailApi(APIView):
    required_scope = Scope.AGENTS_READ

    @extend_schema(
        operation_id="agents_retrieve",
        summary="Get an agent",
        parameters=[AGENT_ID],
        responses={200: AgentOutputSerializer, **error_responses(404)},
        tags=TAGS,
    )
    def get(self, request: Request, agent_id: str) -> Response:
        agent = selectors.agent_get(user=request.user, agent_id=agent_id)
        return Response(AgentOutputSerializer(agent).data)


class AgentUpdateApi(APIView):
    required_scope = Scope.AGENTS_WRITE
    parser_classes = [JSONParser]

    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=200, required=False)
        kind = serializers.ChoiceField(choices=AgentKind.choices, required=False)
        spec = serializers.DictField(required=False)
        description = serializers.CharField(allow_blank=True, required=False)
        input_schema = serializers.DictField(required=False)
        is_public = serializers.BooleanField(required=False)
        endpoints = serializers.ListField(
            child=serializers.DictField(), required=False, help_text=ENDPOINTS_HELP
        )
        integrations = serializers.DictField(required=False, help_text=INTEGRATIONS_HELP)

        class Meta:
            ref_name = "AgentUpdateInput"

    @extend_schema(
        operation_id="agents_partial_update",
        summary="Update an agent",
        description=(
            "Only your own agents. A change of `kind`, `spec` or `input_schema` is validated, "
            "bumps `version` and is recorded in the version history; tasks keep the version "
            "they were created with."
        ),
        parameters=[AGENT_ID],
        request=InputSerializer,
        responses={200: AgentOutputSerializer, **error_responses(400, 404)},
        tags=TAGS,
    )
    def patch(self, request: Request, agent_id: str) -> Response:
        agent = selectors.agent_get(user=request.user, agent_id=agent_id, for_write=True)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        agent = agent_update(agent=agent, user=request.user, **serializer.validated_data)
        audit_request(request, "agent.update", agent, fields=sorted(serializer.validated_data))
        return Response(AgentOutputSerializer(agent).data)


class AgentDeleteApi(APIView):
    required_scope = Scope.AGENTS_WRITE

    @extend_schema(
        operation_id="agents_destroy",
        summary="Delete an agent",
        description=(
            "Soft delete of your own agent: it disappears from lists and cannot get new "
            "sessions; existing sessions and tasks stay readable."
        ),
        parameters=[AGENT_ID],
        responses={204: OpenApiResponse(description="Deleted"), **error_responses(404)},
        tags=TAGS,
    )
    def delete(self, request: Request, agent_id: str) -> Response:
        agent = selectors.agent_get(user=request.user, agent_id=agent_id, for_write=True)
        agent_delete(agent=agent)
        audit_request(request, "agent.delete", agent)
        return Response(status=status.HTTP_204_NO_CONTENT)


class AgentVersionListApi(APIView):
    required_scope = Scope.AGENTS_READ
    pagination_class = Pagination

    class OutputSerializer(serializers.Serializer):
        version = serializers.IntegerField()
        kind = serializers.CharField()
        spec = serializers.JSONField()
        input_schema = serializers.JSONField()
        description = serializers.CharField()
        created_at = serializers.DateTimeField()
        created_by = serializers.CharField(source="created_by.username", allow_null=True)

        class Meta:
            ref_name = "AgentVersion"

    @extend_schema(
        operation_id="agents_versions_list",
        summary="List an agent's versions",
        description="The recorded versions of the agent, newest first.",
        parameters=[AGENT_ID],
        responses={200: OutputSerializer(many=True), **error_responses(404)},
        tags=TAGS,
    )
    def get(self, request: Request, agent_id: str) -> Response:
        agent = selectors.agent_get(user=request.user, agent_id=agent_id)
        # TODO(selectors): an ``agent_version_list(*, user, agent)`` selector would own this.
        versions = agent.versions.select_related("created_by").order_by("-version")
        return paginated_response(
            queryset=versions, serializer_class=self.OutputSerializer, request=request, view=self
        )
