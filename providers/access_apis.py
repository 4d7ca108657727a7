"""REST of team model access (``/api/v1/teams/{team_id}/models``; ``providers.access``).

Members of a team (viewers included, scope ``agents:read``) read its policy; its admins and
owners (scope ``admin``) replace it (``PUT``) or drop it back to the server default
(``DELETE``); a lower role gets 403, a stranger 404.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.audit import audit_request
from accounts.models import Role, Scope, Team
from accounts.selectors import team_get
from providers.access import (
    MAX_PATTERN_CHARS,
    MAX_PATTERNS,
    team_model_policy,
    team_models_reset,
    team_models_set,
)
from providers.models import ModelAccessMode, TeamModelAccess
from runtime_project.api import error_responses
from sessions.apis.common import TeamRefSerializer

TAGS = ["models"]
WRITE_ROLE = Role.ADMIN
TEAM_ID = OpenApiParameter(
    "team_id", str, OpenApiParameter.PATH, description="The team's id (UUID) or slug."
)


class _CatalogueEntrySerializer(serializers.Serializer):
    id = serializers.CharField(help_text="A model of the server catalogue (`LLM_MODELS`).")
    allowed = serializers.BooleanField(help_text="Whether the team may use it.")

    class Meta:
        ref_name = "TeamModelsCatalogueEntry"


class TeamModelsOutputSerializer(serializers.Serializer):
    team = TeamRefSerializer()
    mode = serializers.ChoiceField(
        choices=ModelAccessMode.choices,
        help_text="`all`: every model; `listed`: only names matching `allowed_models`.",
    )
    allowed_models = serializers.ListField(
        child=serializers.CharField(),
        help_text="Exact model names or globs (`*`, `?`, `[…]`), matched case-sensitively.",
    )
    origin = serializers.ChoiceField(
        choices=["team", "default"],
        help_text="`team`: the team's own policy; `default`: the server's "
        "`TEAM_MODELS_DEFAULT` (every model when unset).",
    )
    updated_at = serializers.DateTimeField(allow_null=True)
    catalogue = _CatalogueEntrySerializer(
        many=True, help_text="The server catalogue and what this policy makes of it."
    )

    class Meta:
        ref_name = "TeamModels"


def _body(team: Team) -> dict[str, Any]:
    policy = team_model_policy(team=team)
    row = TeamModelAccess.objects.filter(team=team).first()
    return TeamModelsOutputSerializer(
        {
            "team": team,
            # A team row keeps its list in `all` mode too; show what is stored.
            "mode": policy.mode,
            "allowed_models": list(row.allowed_models) if row else list(policy.patterns),
            "origin": policy.source,
            "updated_at": row.updated_at if row else None,
            "catalogue": [
                {"id": entry["id"], "allowed": policy.allows(entry["id"])}
                for entry in settings.LLM_MODELS
            ],
        }
    ).data


class TeamModelsDetailApi(APIView):
    required_scope = Scope.AGENTS_READ

    @extend_schema(
        operation_id="teams_models_retrieve",
        summary="Get a team's model access",
        description=(
            "Which models the team's runs may use: its own policy, or the server default "
            "(`origin`). Any member may read it."
        ),
        parameters=[TEAM_ID],
        responses={200: TeamModelsOutputSerializer, **error_responses(404)},
        tags=TAGS,
    )
    def get(self, request: Request, team_id: str) -> Response:
        team = team_get(user=request.user, team_id=team_id)
        return Response(_body(team))


class TeamModelsUpdateApi(APIView):
    required_scope = Scope.ADMIN
    parser_classes = [JSONParser]

    class InputSerializer(serializers.Serializer):
        mode = serializers.ChoiceField(choices=ModelAccessMode.choices)
        allowed_models = serializers.ListField(
            child=serializers.CharField(max_length=MAX_PATTERN_CHARS),
            max_length=MAX_PATTERNS,
            default=list,
            help_text="Model names or globs such as `gpt-4o*` (with `listed`; an empty list "
            "allows no model).",
        )

        class Meta:
            ref_name = "TeamModelsInput"

    @extend_schema(
        operation_id="teams_models_update",
        summary="Set a team's model access",
        description=(
            "Replaces the team's policy (team admins and owners). From then on agents, "
            "sessions and tasks of the team that name another model are refused with 403 "
            "`model_not_allowed`, and runs already queued fail with that code before any "
            "model call."
        ),
        parameters=[TEAM_ID],
        request=InputSerializer,
        responses={200: TeamModelsOutputSerializer, **error_responses(400, 403, 404)},
        tags=TAGS,
    )
    def put(self, request: Request, team_id: str) -> Response:
        team = team_get(user=request.user, team_id=team_id, min_role=WRITE_ROLE)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        row = team_models_set(
            team=team, user=request.user, mode=data["mode"], allowed_models=data["allowed_models"]
        )
        audit_request(
            request, "team.models_set", team, mode=row.mode, allowed_models=row.allowed_models
        )
        return Response(_body(team))


class TeamModelsResetApi(APIView):
    required_scope = Scope.ADMIN

    @extend_schema(
        operation_id="teams_models_destroy",
        summary="Reset a team's model access",
        description="Drops the team's own policy: it follows the server default again.",
        parameters=[TEAM_ID],
        responses={204: OpenApiResponse(description="Reset"), **error_responses(403, 404)},
        tags=TAGS,
    )
    def delete(self, request: Request, team_id: str) -> Response:
        team = team_get(user=request.user, team_id=team_id, min_role=WRITE_ROLE)
        team_models_reset(team=team)
        audit_request(request, "team.models_reset", team)
        return Response(status=status.HTTP_204_NO_CONTENT)
