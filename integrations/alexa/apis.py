"""REST of the Alexa app (``/api/v1/alexa-skills``): bindings of Alexa skills to agents.

A binding belongs to a team: its members see it; all but viewers may create, change and delete
one (a viewer gets 403, a stranger 404). Its conversations run as the member who created it,
with that member's access, checked again at every Alexa request. Thin views: serializers check
shapes, the services check values (``details.fields``), the selectors check access.
"""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Scope
from accounts.selectors import team_for_write
from integrations.alexa import selectors
from integrations.alexa.models import (
    DEFAULT_FALLBACK_SPEECH,
    DEFAULT_HELP_SPEECH,
    DEFAULT_LAUNCH_SPEECH,
    DEFAULT_STOP_SPEECH,
    AlexaSkill,
)
from integrations.alexa.services import (
    alexa_skill_create,
    alexa_skill_delete,
    alexa_skill_update,
)
from runtime_project.api import Pagination, error_responses
from runtime_project.exceptions import InvalidInput
from sessions.apis.common import TEAM_FIELD, TeamRefSerializer, paginated_response, uuid_path

TAGS = ["alexa"]
SKILL_ID = uuid_path("skill_id", "Alexa skill")
APP_ID_HELP = "The skill's id in the Alexa developer console (`amzn1.ask.skill.…`)."
AGENT_HELP = (
    "The agent's id (UUID) or slug: an agent of the skill's team or a public one, visible to you."
)
MAPPING_HELP = (
    "How intent slots become the task input. Default: each filled slot becomes the input key of "
    'the same name. `{"intents": {"<Intent>": {"slots": {"<slot>": "<input key>" | null}, '
    '"input": {…template…}}}, "input": {…template…}}`; a template\'s `{key}` placeholders name '
    "input keys (after the slot mapping), `{intent}` or `{locale}`. See docs/integrations/alexa.md."
)
END_HELP = "End the Alexa session after each answer (default: keep it open for a follow-up)."


class _AgentRefSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="uuid")
    slug = serializers.SlugField()

    class Meta:
        ref_name = "AlexaSkillAgent"


class AlexaSkillOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="uuid")
    name = serializers.CharField()
    application_id = serializers.CharField(help_text=APP_ID_HELP)
    agent = _AgentRefSerializer()
    team = TeamRefSerializer(help_text="The team the binding and its sessions belong to.")
    owner = serializers.CharField(
        source="owner.username", help_text="Who created it; conversations run as this user."
    )
    endpoint_url = serializers.SerializerMethodField(
        help_text="The HTTPS endpoint to enter in the skill's manifest (Build > Endpoint)."
    )
    slot_mapping = serializers.DictField(help_text=MAPPING_HELP)
    launch_speech = serializers.CharField()
    help_speech = serializers.CharField()
    stop_speech = serializers.CharField()
    fallback_speech = serializers.CharField()
    end_session_after_answer = serializers.BooleanField(help_text=END_HELP)
    enabled = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    class Meta:
        ref_name = "AlexaSkill"

    def get_endpoint_url(self, skill: AlexaSkill) -> str:
        path = reverse("alexa:endpoint", kwargs={"agent": str(skill.agent.uuid)})
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path


class _SkillFieldsSerializer(serializers.Serializer):
    """The writable fields; the create serializer sets defaults, the update one none."""

    name = serializers.CharField(max_length=200)
    application_id = serializers.CharField(max_length=200, help_text=APP_ID_HELP)
    agent = serializers.CharField(help_text=AGENT_HELP)
    slot_mapping = serializers.DictField(help_text=MAPPING_HELP)
    launch_speech = serializers.CharField(help_text=f"Default: {DEFAULT_LAUNCH_SPEECH!r}")
    help_speech = serializers.CharField(help_text=f"Default: {DEFAULT_HELP_SPEECH!r}")
    stop_speech = serializers.CharField(help_text=f"Default: {DEFAULT_STOP_SPEECH!r}")
    fallback_speech = serializers.CharField(help_text=f"Default: {DEFAULT_FALLBACK_SPEECH!r}")
    end_session_after_answer = serializers.BooleanField(help_text=END_HELP)
    enabled = serializers.BooleanField()


class AlexaSkillListApi(APIView):
    required_scope = Scope.SESSIONS_READ
    pagination_class = Pagination

    @extend_schema(
        operation_id="alexa_skills_list",
        summary="List Alexa skills",
        description="The Alexa skill bindings of your teams, ordered by name.",
        responses={200: AlexaSkillOutputSerializer(many=True), **error_responses()},
        tags=TAGS,
    )
    def get(self, request: Request) -> Response:
        return paginated_response(
            queryset=selectors.alexa_skill_list(user=request.user),
            serializer_class=AlexaSkillOutputSerializer,
            request=request,
            view=self,
        )


class AlexaSkillCreateApi(APIView):
    required_scope = Scope.TASKS_WRITE
    parser_classes = [JSONParser]

    class InputSerializer(_SkillFieldsSerializer):
        slot_mapping = serializers.DictField(default=dict, help_text=MAPPING_HELP)
        launch_speech = serializers.CharField(required=False)
        help_speech = serializers.CharField(required=False)
        stop_speech = serializers.CharField(required=False)
        fallback_speech = serializers.CharField(required=False)
        end_session_after_answer = serializers.BooleanField(default=False, help_text=END_HELP)
        enabled = serializers.BooleanField(default=True)
        team = TEAM_FIELD

        class Meta:
            ref_name = "AlexaSkillCreateInput"

    @extend_schema(
        operation_id="alexa_skills_create",
        summary="Bind an Alexa skill to an agent",
        description=(
            "Requests of the Alexa skill `application_id` sent to `endpoint_url` "
            "(`POST /alexa/{agent}`, verified as Amazon's) run the agent as you, in sessions of "
            "`team` (you need the member role there), with your access: the binding stops "
            "working when you lose access to the agent or the team. Anyone who can talk to the "
            "skill can run the agent this way. 409 `alexa_skill_exists` when this skill is "
            "already bound to this agent."
        ),
        request=InputSerializer,
        responses={201: AlexaSkillOutputSerializer, **error_responses(400, 404, 409)},
        tags=TAGS,
    )
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        team = team_for_write(
            user=request.user, team_id=data.pop("team", None), min_role=selectors.WRITE_ROLE
        )
        agent = selectors.alexa_skill_agent_get(
            user=request.user, team=team, agent_id=data.pop("agent")
        )
        skill = alexa_skill_create(owner=request.user, team=team, agent=agent, **data)
        return Response(
            AlexaSkillOutputSerializer(skill, context={"request": request}).data,
            status=status.HTTP_201_CREATED,
        )


class AlexaSkillDetailApi(APIView):
    required_scope = Scope.SESSIONS_READ

    @extend_schema(
        operation_id="alexa_skills_retrieve",
        summary="Get an Alexa skill",
        parameters=[SKILL_ID],
        responses={200: AlexaSkillOutputSerializer, **error_responses(404)},
        tags=TAGS,
    )
    def get(self, request: Request, skill_id: str) -> Response:
        skill = selectors.alexa_skill_get(user=request.user, skill_id=skill_id)
        return Response(AlexaSkillOutputSerializer(skill, context={"request": request}).data)


class AlexaSkillUpdateApi(APIView):
    required_scope = Scope.TASKS_WRITE
    parser_classes = [JSONParser]

    class InputSerializer(_SkillFieldsSerializer):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            for field in self.fields.values():
                field.required = False

        class Meta:
            ref_name = "AlexaSkillUpdateInput"

    @extend_schema(
        operation_id="alexa_skills_partial_update",
        summary="Change an Alexa skill",
        description=(
            "Changes the given fields. The owner stays the member who created the binding; a "
            "new `agent` must be one you can see, of the skill's team or public."
        ),
        parameters=[SKILL_ID],
        request=InputSerializer,
        responses={200: AlexaSkillOutputSerializer, **error_responses(400, 404, 409)},
        tags=TAGS,
    )
    def patch(self, request: Request, skill_id: str) -> Response:
        skill = selectors.alexa_skill_get(user=request.user, skill_id=skill_id, for_write=True)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        changes = dict(serializer.validated_data)
        if not changes:
            raise InvalidInput(
                "Nothing to change.",
                details={"fields": {"non_field_errors": ["Give at least one field to change."]}},
            )
        if "agent" in changes:
            changes["agent"] = selectors.alexa_skill_agent_get(
                user=request.user, team=skill.team_id, agent_id=changes["agent"]
            )
        skill = alexa_skill_update(skill=skill, **changes)
        return Response(AlexaSkillOutputSerializer(skill, context={"request": request}).data)


class AlexaSkillDeleteApi(APIView):
    required_scope = Scope.TASKS_WRITE

    @extend_schema(
        operation_id="alexa_skills_destroy",
        summary="Delete an Alexa skill",
        description="Deletes the binding; the sessions of its conversations stay.",
        parameters=[SKILL_ID],
        responses={204: OpenApiResponse(description="Deleted"), **error_responses(403, 404)},
        tags=TAGS,
    )
    def delete(self, request: Request, skill_id: str) -> Response:
        skill = selectors.alexa_skill_get(user=request.user, skill_id=skill_id, for_write=True)
        alexa_skill_delete(skill=skill)
        return Response(status=status.HTTP_204_NO_CONTENT)
