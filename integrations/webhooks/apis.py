"""REST of outbound webhooks (``/api/v1/webhooks``): endpoints, their secret, a test ping,
their deliveries with attempts, and redelivery. Thin views: the services check URLs (400
``outbound_refused`` for a private or loopback target) and event types, the selectors check
access: team admins and owners only (a stranger gets 404, a member or viewer 403). Reads need
the ``sessions:read`` scope (deliveries carry task results), writes the ``admin`` scope.

The signing secret is in the answer of create and rotate-secret only, never in a list, a read,
a log or the audit log.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.audit import audit_request
from accounts.models import Scope
from accounts.selectors import team_for_write
from integrations.webhooks import selectors, services
from integrations.webhooks.dispatch import delivery_send_now
from integrations.webhooks.models import EVENT_TYPES, DeliveryStatus
from runtime_project.api import Pagination, error_responses
from runtime_project.exceptions import InvalidInput
from sessions.apis.common import TEAM_FIELD, TeamRefSerializer, paginated_response, uuid_path
from sessions.selectors import agent_get

TAGS = ["webhooks"]
TEST_SEND_GRACE_S = 60.0  # a test ping is sent by its request; dispatchers only after this
WEBHOOK_ID = uuid_path("webhook_id", "webhook")
DELIVERY_ID = uuid_path("delivery_id", "delivery")
URL_HELP = (
    "Where events are POSTed: an http(s) URL whose host resolves to public addresses only "
    "(checked now and at every send; 400 `outbound_refused` otherwise)."
)
EVENTS_HELP = f'Event types to deliver, or `["*"]` for all: {", ".join(EVENT_TYPES)}.'
AGENT_HELP = "Only events of sessions on this agent (id or slug); null: every agent of the team."
SIGNING_KEY_HELP = (
    "The signing secret (`whsec_` + base64), shown only in this answer: store it to verify "
    "`Webhook-Signature` (Standard Webhooks)."
)


class _AgentRefSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="uuid")
    slug = serializers.SlugField()

    class Meta:
        ref_name = "WebhookAgent"


class WebhookOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="uuid")
    url = serializers.CharField(help_text=URL_HELP)
    description = serializers.CharField()
    event_types = serializers.ListField(child=serializers.CharField(), help_text=EVENTS_HELP)
    agent = _AgentRefSerializer(allow_null=True, help_text=AGENT_HELP)
    team = TeamRefSerializer()
    enabled = serializers.BooleanField()
    disabled_reason = serializers.CharField(
        help_text="Why it is disabled (a 410 Gone from the receiver, or a user); empty if not."
    )
    created_by = serializers.CharField(source="created_by.username", allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    class Meta:
        ref_name = "Webhook"


class WebhookWithSecretSerializer(WebhookOutputSerializer):
    secret = serializers.CharField(help_text=SIGNING_KEY_HELP)

    class Meta:
        ref_name = "WebhookWithSecret"


class AttemptOutputSerializer(serializers.Serializer):
    number = serializers.IntegerField(help_text="1 for the first attempt.")
    started_at = serializers.DateTimeField()
    duration_ms = serializers.IntegerField()
    status_code = serializers.IntegerField(allow_null=True, help_text="null: no answer.")
    response_body = serializers.CharField(help_text="The first 2 KiB of the receiver's answer.")
    error = serializers.CharField(help_text="Why there was no answer (refused, timeout, ...).")

    class Meta:
        ref_name = "WebhookAttempt"


class DeliveryOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="uuid")
    event_id = serializers.CharField(
        help_text="The `Webhook-Id` header and the payload's `id`; kept by redeliveries."
    )
    event_type = serializers.CharField()
    status = serializers.ChoiceField(choices=DeliveryStatus.choices)
    attempt_count = serializers.IntegerField(source="attempts", help_text="Attempts started.")
    max_attempts = serializers.IntegerField()
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    last_status_code = serializers.IntegerField(allow_null=True)
    last_error = serializers.CharField()
    payload = serializers.JSONField(help_text="The JSON body sent.")
    redelivery_of = serializers.UUIDField(source="redelivery_of.uuid", allow_null=True)
    created_at = serializers.DateTimeField()
    attempts = AttemptOutputSerializer(source="attempt_set", many=True)

    class Meta:
        ref_name = "WebhookDelivery"


def _agent(request: Request, value: Any) -> Any:
    return None if value in (None, "") else agent_get(user=request.user, agent_id=value)


def _with_secret(endpoint: Any, secret: str) -> dict[str, Any]:
    return {**WebhookOutputSerializer(endpoint).data, "secret": secret}


class WebhookListApi(APIView):
    required_scope = Scope.SESSIONS_READ
    pagination_class = Pagination

    @extend_schema(
        operation_id="webhooks_list",
        summary="List webhooks",
        description="The webhooks of the teams where you are an admin, newest first. No secrets.",
        responses={200: WebhookOutputSerializer(many=True), **error_responses()},
        tags=TAGS,
    )
    def get(self, request: Request) -> Response:
        return paginated_response(
            queryset=selectors.endpoint_list(user=request.user),
            serializer_class=WebhookOutputSerializer,
            request=request,
            view=self,
        )


class WebhookCreateApi(APIView):
    required_scope = Scope.ADMIN
    parser_classes = [JSONParser]

    class InputSerializer(serializers.Serializer):
        url = serializers.CharField(max_length=2000, help_text=URL_HELP)
        event_types = serializers.ListField(
            child=serializers.CharField(max_length=64), help_text=EVENTS_HELP
        )
        description = serializers.CharField(max_length=500, default="", allow_blank=True)
        agent = serializers.CharField(required=False, allow_null=True, help_text=AGENT_HELP)
        enabled = serializers.BooleanField(default=True)
        team = TEAM_FIELD

        class Meta:
            ref_name = "WebhookCreateInput"

    @extend_schema(
        operation_id="webhooks_create",
        summary="Create a webhook",
        description=(
            "Events of the team's sessions (`event_types`, optionally one agent's only) are "
            "POSTed to `url`, signed per Standard Webhooks with the `secret` in this answer "
            "(shown once). You need the admin role in `team`."
        ),
        request=InputSerializer,
        responses={201: WebhookWithSecretSerializer, **error_responses(400, 404)},
        tags=TAGS,
    )
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        team = team_for_write(
            user=request.user, team_id=data.pop("team", None), min_role=selectors.MANAGE_ROLE
        )
        data["agent"] = _agent(request, data.get("agent"))
        endpoint, secret = services.endpoint_create(team=team, user=request.user, **data)
        audit_request(request, "webhook.create", endpoint, event_types=endpoint.event_types)
        return Response(_with_secret(endpoint, secret), status=status.HTTP_201_CREATED)


class WebhookDetailApi(APIView):
    required_scope = Scope.SESSIONS_READ

    @extend_schema(
        operation_id="webhooks_retrieve",
        summary="Get a webhook",
        parameters=[WEBHOOK_ID],
        responses={200: WebhookOutputSerializer, **error_responses(404)},
        tags=TAGS,
    )
    def get(self, request: Request, webhook_id: str) -> Response:
        endpoint = selectors.endpoint_get(user=request.user, endpoint_id=webhook_id)
        return Response(WebhookOutputSerializer(endpoint).data)


class WebhookUpdateApi(APIView):
    required_scope = Scope.ADMIN
    parser_classes = [JSONParser]

    class InputSerializer(serializers.Serializer):
        url = serializers.CharField(max_length=2000, required=False, help_text=URL_HELP)
        event_types = serializers.ListField(
            child=serializers.CharField(max_length=64), required=False, help_text=EVENTS_HELP
        )
        description = serializers.CharField(max_length=500, required=False, allow_blank=True)
        agent = serializers.CharField(required=False, allow_null=True, help_text=AGENT_HELP)
        enabled = serializers.BooleanField(required=False)

        class Meta:
            ref_name = "WebhookUpdateInput"

    @extend_schema(
        operation_id="webhooks_partial_update",
        summary="Change a webhook",
        description=(
            "Changes the given fields. `enabled: true` re-enables a webhook disabled by a 410 "
            "Gone (and clears `disabled_reason`)."
        ),
        parameters=[WEBHOOK_ID],
        request=InputSerializer,
        responses={200: WebhookOutputSerializer, **error_responses(400, 404)},
        tags=TAGS,
    )
    def patch(self, request: Request, webhook_id: str) -> Response:
        endpoint = selectors.endpoint_get(user=request.user, endpoint_id=webhook_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        changes = dict(serializer.validated_data)
        if not changes:
            raise InvalidInput(
                "Nothing to change.",
                details={"fields": {"non_field_errors": ["Give at least one field to change."]}},
            )
        if "agent" in changes:
            changes["agent"] = _agent(request, changes["agent"])
        endpoint = services.endpoint_update(endpoint=endpoint, **changes)
        audit_request(request, "webhook.update", endpoint, fields=sorted(changes))
        return Response(WebhookOutputSerializer(endpoint).data)


class WebhookDeleteApi(APIView):
    required_scope = Scope.ADMIN

    @extend_schema(
        operation_id="webhooks_destroy",
        summary="Delete a webhook",
        description="Deletes the webhook with its deliveries; nothing more is sent to it.",
        parameters=[WEBHOOK_ID],
        responses={204: OpenApiResponse(description="Deleted"), **error_responses(404)},
        tags=TAGS,
    )
    def delete(self, request: Request, webhook_id: str) -> Response:
        endpoint = selectors.endpoint_get(user=request.user, endpoint_id=webhook_id)
        audit_request(request, "webhook.delete", endpoint)
        services.endpoint_delete(endpoint=endpoint)
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookRotateSecretApi(APIView):
    required_scope = Scope.ADMIN

    @extend_schema(
        operation_id="webhooks_rotate_secret",
        summary="Rotate a webhook's secret",
        description=(
            "A new signing secret, shown only in this answer. For "
            "`WEBHOOK_SECRET_ROTATION_GRACE_S` (default 24 h) requests carry two signatures, "
            "with the new and the old secret, so receivers can switch without a gap."
        ),
        request=None,
        parameters=[WEBHOOK_ID],
        responses={200: WebhookWithSecretSerializer, **error_responses(404)},
        tags=TAGS,
    )
    def post(self, request: Request, webhook_id: str) -> Response:
        endpoint = selectors.endpoint_get(user=request.user, endpoint_id=webhook_id)
        endpoint, secret = services.endpoint_rotate_secret(endpoint=endpoint)
        audit_request(request, "webhook.rotate_secret", endpoint)
        return Response(_with_secret(endpoint, secret))


class WebhookTestApi(APIView):
    required_scope = Scope.ADMIN

    @extend_schema(
        operation_id="webhooks_test",
        summary="Send a test event",
        description=(
            "Sends a signed `ping` event now (one attempt, no retries; also to a disabled "
            "webhook) and answers with the delivery and its attempt: what the receiver "
            "answered, or why it could not be reached."
        ),
        request=None,
        parameters=[WEBHOOK_ID],
        responses={200: DeliveryOutputSerializer, **error_responses(404)},
        tags=TAGS,
    )
    def post(self, request: Request, webhook_id: str) -> Response:
        endpoint = selectors.endpoint_get(user=request.user, endpoint_id=webhook_id)
        delivery = services.ping_create(endpoint=endpoint, due_in_s=TEST_SEND_GRACE_S)
        audit_request(request, "webhook.test", endpoint)
        delivery_send_now(delivery=delivery)
        delivery = selectors.delivery_get(endpoint=endpoint, delivery_id=delivery.uuid)
        return Response(DeliveryOutputSerializer(delivery).data)


class WebhookDeliveryListApi(APIView):
    required_scope = Scope.SESSIONS_READ
    pagination_class = Pagination

    @extend_schema(
        operation_id="webhooks_deliveries_list",
        summary="List a webhook's deliveries",
        description="Newest first, each with its payload and attempts.",
        parameters=[WEBHOOK_ID],
        responses={200: DeliveryOutputSerializer(many=True), **error_responses(404)},
        tags=TAGS,
    )
    def get(self, request: Request, webhook_id: str) -> Response:
        endpoint = selectors.endpoint_get(user=request.user, endpoint_id=webhook_id)
        return paginated_response(
            queryset=selectors.delivery_list(endpoint=endpoint),
            serializer_class=DeliveryOutputSerializer,
            request=request,
            view=self,
        )


class WebhookRedeliverApi(APIView):
    required_scope = Scope.ADMIN

    @extend_schema(
        operation_id="webhooks_deliveries_redeliver",
        summary="Redeliver a delivery",
        description=(
            "Queues the same message again (same `Webhook-Id` and payload, new signature and "
            "timestamp) as a new delivery with its own retries; it is sent within moments. "
            "409 `endpoint_disabled` while the webhook is disabled."
        ),
        request=None,
        parameters=[WEBHOOK_ID, DELIVERY_ID],
        responses={202: DeliveryOutputSerializer, **error_responses(404, 409)},
        tags=TAGS,
    )
    def post(self, request: Request, webhook_id: str, delivery_id: str) -> Response:
        endpoint = selectors.endpoint_get(user=request.user, endpoint_id=webhook_id)
        original = selectors.delivery_get(endpoint=endpoint, delivery_id=delivery_id)
        copy = services.delivery_redeliver(delivery=original)
        audit_request(request, "webhook.redeliver", endpoint, delivery=str(original.uuid))
        copy = selectors.delivery_get(endpoint=endpoint, delivery_id=copy.uuid)
        return Response(DeliveryOutputSerializer(copy).data, status=status.HTTP_202_ACCEPTED)
