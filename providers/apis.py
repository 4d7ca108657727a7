"""REST of the providers app: stored credentials (``/api/v1/credentials``) and the models a
caller may use (``/api/v1/models``). Thin views: serializers check shapes, services and
selectors do the work. No response ever holds a secret or its ciphertext, only ``hint``.

Credentials belong to a team: its members read them (scope ``agents:read``), its admins
create, change and delete them (scope ``admin``, role admin or owner: a lower role gets 403,
a stranger 404)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import (
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Scope
from accounts.selectors import team_for_write
from providers import selectors
from providers.models import CredentialProvider
from providers.services import (
    SECRET_MAX_BYTES,
    credential_create,
    credential_delete,
    credential_update,
)
from runtime_project.api import Pagination, error_responses
from runtime_project.exceptions import InvalidInput
from sessions.apis.common import TeamRefSerializer, paginated_response, uuid_path
from sessions.models import Agent

TAGS = ["credentials"]
CREDENTIAL_ID = uuid_path("credential_id", "credential")
SECRET_HELP = (
    f"The provider's API key (at most {SECRET_MAX_BYTES} bytes). Write-only: stored encrypted, "
    "never returned (responses show `hint`, its last four characters)."
)
AGENT_HELP = (
    "Restrict the credential to one agent of its team (the agent's id or slug); `null` or "
    "absent: any agent of the team may use it."
)
CREDENTIAL_TEAM_FIELD = serializers.CharField(
    required=False,
    help_text=(
        "Team (UUID or slug) the credential belongs to; default: the API key's team, else "
        "your personal team. You need the admin role or above there."
    ),
)


class CredentialOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="uuid")
    name = serializers.SlugField(help_text="Referenced by an llm agent's `spec.model.credential`.")
    provider = serializers.ChoiceField(choices=CredentialProvider.choices)
    agent = serializers.UUIDField(
        source="agent.uuid", allow_null=True, help_text="The only agent that may use it, or null."
    )
    team = TeamRefSerializer(help_text="The team whose agents may use it.")
    hint = serializers.CharField(help_text="`…` and the secret's last four characters.")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    last_used_at = serializers.DateTimeField(allow_null=True)

    class Meta:
        ref_name = "Credential"


def _agent(team: Any, agent_id: str | None) -> Agent | None:
    """The live agent ``agent_id`` (id or slug) of ``team`` (404 ``not_found`` otherwise), or
    ``None``."""
    if agent_id is None:
        return None
    return selectors.credential_agent_get(team=team, agent_id=agent_id)


class CredentialListApi(APIView):
    required_scope = Scope.AGENTS_READ
    pagination_class = Pagination

    @extend_schema(
        operation_id="credentials_list",
        summary="List credentials",
        description="Your teams' stored provider credentials, by name (secrets never shown).",
        responses={200: CredentialOutputSerializer(many=True), **error_responses()},
        tags=TAGS,
    )
    def get(self, request: Request) -> Response:
        return paginated_response(
            queryset=selectors.credential_list(user=request.user),
            serializer_class=CredentialOutputSerializer,
            request=request,
            view=self,
        )


class CredentialCreateApi(APIView):
    required_scope = Scope.ADMIN
    parser_classes = [JSONParser]

    class InputSerializer(serializers.Serializer):
        name = serializers.SlugField(max_length=64)
        provider = serializers.ChoiceField(
            choices=CredentialProvider.choices, default=CredentialProvider.OPENAI
        )
        secret = serializers.CharField(
            write_only=True, allow_blank=True, trim_whitespace=False, help_text=SECRET_HELP
        )
        agent = serializers.CharField(required=False, allow_null=True, help_text=AGENT_HELP)
        team = CREDENTIAL_TEAM_FIELD

        class Meta:
            ref_name = "CredentialCreateInput"

    @extend_schema(
        operation_id="credentials_create",
        summary="Store a credential",
        description=(
            "Stores a provider API key of a team (you need the admin role there), encrypted "
            "at rest, under a `name` unique among the team's credentials (a taken name is a "
            "409 `credential_name_taken`). The team's llm agents use it with "
            '`"model": {"credential": "<name>", ...}` in their spec.'
        ),
        request=InputSerializer,
        responses={201: CredentialOutputSerializer, **error_responses(400, 403, 404, 409)},
        tags=TAGS,
    )
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        team = team_for_write(
            user=request.user, team_id=data.get("team"), min_role=selectors.WRITE_ROLE
        )
        credential = credential_create(
            owner=request.user,
            team=team,
            name=data["name"],
            provider=data["provider"],
            secret=data["secret"],
            agent=_agent(team, data.get("agent")),
        )
        return Response(CredentialOutputSerializer(credential).data, status=status.HTTP_201_CREATED)


class CredentialDetailApi(APIView):
    required_scope = Scope.AGENTS_READ

    @extend_schema(
        operation_id="credentials_retrieve",
        summary="Get a credential",
        parameters=[CREDENTIAL_ID],
        responses={200: CredentialOutputSerializer, **error_responses(404)},
        tags=TAGS,
    )
    def get(self, request: Request, credential_id: str) -> Response:
        credential = selectors.credential_get(user=request.user, uuid=credential_id)
        return Response(CredentialOutputSerializer(credential).data)


class CredentialUpdateApi(APIView):
    required_scope = Scope.ADMIN
    parser_classes = [JSONParser]

    class InputSerializer(serializers.Serializer):
        secret = serializers.CharField(
            write_only=True,
            required=False,
            allow_blank=True,
            trim_whitespace=False,
            help_text="A new secret (rotation). " + SECRET_HELP,
        )
        agent = serializers.CharField(required=False, allow_null=True, help_text=AGENT_HELP)

        class Meta:
            ref_name = "CredentialUpdateInput"

    @extend_schema(
        operation_id="credentials_partial_update",
        summary="Rotate a credential or change its agent",
        description=(
            "Replace the secret (`secret`) and/or the agent restriction (`agent`, `null` lifts "
            "it). The stored secret is re-encrypted under the server's current key either way. "
            "Team admins only."
        ),
        parameters=[CREDENTIAL_ID],
        request=InputSerializer,
        responses={200: CredentialOutputSerializer, **error_responses(400, 403, 404, 409)},
        tags=TAGS,
    )
    def patch(self, request: Request, credential_id: str) -> Response:
        credential = selectors.credential_get(user=request.user, uuid=credential_id, for_write=True)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        if not data:
            raise InvalidInput(
                "Nothing to change: give `secret` and/or `agent`.",
                details={"fields": {"non_field_errors": ["Give `secret` and/or `agent`."]}},
            )
        changes: dict[str, Any] = {"secret": data.get("secret")}
        if "agent" in data:
            changes["agent"] = _agent(credential.team, data["agent"])
        credential = credential_update(credential=credential, **changes)
        return Response(CredentialOutputSerializer(credential).data)


class CredentialDeleteApi(APIView):
    required_scope = Scope.ADMIN

    @extend_schema(
        operation_id="credentials_destroy",
        summary="Delete a credential",
        description=(
            "Agents that reference it fail with `credential_not_found` from then on. Team "
            "admins only."
        ),
        parameters=[CREDENTIAL_ID],
        responses={204: OpenApiResponse(description="Deleted"), **error_responses(403, 404)},
        tags=TAGS,
    )
    def delete(self, request: Request, credential_id: str) -> Response:
        credential = selectors.credential_get(user=request.user, uuid=credential_id, for_write=True)
        credential_delete(credential=credential)
        return Response(status=status.HTTP_204_NO_CONTENT)


# Models ----------------------------------------------------------------------------------------


class _PricingSerializer(serializers.Serializer):
    prompt_per_mtok = serializers.FloatField(help_text="USD per million prompt tokens.")
    completion_per_mtok = serializers.FloatField(help_text="USD per million completion tokens.")

    class Meta:
        ref_name = "ModelPricing"


class _AgentModelSerializer(serializers.Serializer):
    provider = serializers.CharField()
    name = serializers.CharField()

    class Meta:
        ref_name = "AgentModel"


class AgentEntrySerializer(serializers.Serializer):
    id = serializers.SlugField(help_text="The agent's slug (use it as the model to run it).")
    object = serializers.ChoiceField(choices=["agent"])
    owned_by = serializers.CharField(help_text="Username of the agent's owner.")
    kind = serializers.CharField(help_text="`command`, `llm`, …")
    name = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    version = serializers.IntegerField()
    model = _AgentModelSerializer(required=False, help_text="llm agents: the model they use.")

    class Meta:
        ref_name = "ModelListAgent"


class ModelEntrySerializer(serializers.Serializer):
    id = serializers.CharField(help_text="The model's name at its provider.")
    object = serializers.ChoiceField(choices=["model"])
    provider = serializers.CharField()
    agents = serializers.ListField(
        child=serializers.SlugField(), help_text="Slugs of your usable agents on this model."
    )
    pricing = _PricingSerializer(required=False, help_text="From the configured catalogue.")

    class Meta:
        ref_name = "ModelListModel"


ModelListResponse = inline_serializer(
    name="ModelList",
    fields={
        "object": serializers.ChoiceField(choices=["list"]),
        "data": PolymorphicProxySerializer(
            component_name="ModelListEntry",
            serializers={"agent": AgentEntrySerializer, "model": ModelEntrySerializer},
            resource_type_field_name="object",
            many=True,
        ),
    },
)


class ModelListApi(APIView):
    required_scope = Scope.AGENTS_READ

    @extend_schema(
        operation_id="models_list",
        summary="List usable agents and models",
        description=(
            "What you may use, in the shape of OpenAI's `GET /v1/models`: one `agent` entry "
            "per agent you can run (your teams' and public ones), then one `model` entry per "
            "distinct model of those agents and of the server's catalogue (`LLM_MODELS`, with "
            "`pricing` in USD per million tokens when configured). Endpoints and keys are "
            "never listed. Team model access narrows it: agents whose model the team that "
            "would run them may not use, and catalogue models none of your teams may use, "
            "are left out (`GET /api/v1/teams/{id}/models`)."
        ),
        responses={200: ModelListResponse, **error_responses()},
        tags=["models"],
    )
    def get(self, request: Request) -> Response:
        return Response({"object": "list", "data": selectors.model_list(user=request.user)})
