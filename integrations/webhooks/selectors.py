"""Reads of the webhooks app. Webhook endpoints are team configuration that sends the team's
data out and holds signing secrets, so only team admins (and owners) see and manage them: a
stranger gets 404, a member or viewer of the team 403 (``forbidden``)."""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import Prefetch, QuerySet

from accounts import access
from accounts.models import Role
from integrations.webhooks.models import DeliveryAttempt, WebhookDelivery, WebhookEndpoint
from runtime_project.exceptions import NotFound

MANAGE_ROLE = Role.ADMIN  # who may see, create, change, delete and test a team's webhooks


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except (ValueError, TypeError, AttributeError):
        return None


def endpoint_list(*, user: Any) -> QuerySet[WebhookEndpoint]:
    """The endpoints of the teams where ``user`` is an admin, newest first (team, creator and
    agent loaded)."""
    return WebhookEndpoint.objects.filter(
        team_id__in=access.team_ids(user, min_role=MANAGE_ROLE)
    ).select_related("team", "created_by", "agent")


def endpoint_get(*, user: Any, endpoint_id: Any) -> WebhookEndpoint:
    """One endpoint of ``user``'s teams by its public id; ``user`` must be an admin there.

    Raises:
        NotFound: not a UUID, unknown, or an endpoint of a team the user is not in.
        Forbidden: the user's role in its team is below admin.
    """
    key = _uuid(endpoint_id)
    endpoint = (
        WebhookEndpoint.objects.select_related("team", "created_by", "agent")
        .filter(uuid=key, team_id__in=access.team_ids(user))
        .first()
        if key
        else None
    )
    if endpoint is None:
        raise NotFound("Webhook not found.", details={"id": str(endpoint_id)})
    access.require_role(user, endpoint.team_id, MANAGE_ROLE, what="Webhook")
    return endpoint


def delivery_list(*, endpoint: WebhookEndpoint) -> QuerySet[WebhookDelivery]:
    """The endpoint's deliveries, newest first, each with its attempts (in order). Check
    access with :func:`endpoint_get` first."""
    attempts = Prefetch("attempt_set", queryset=DeliveryAttempt.objects.order_by("number"))
    return (
        WebhookDelivery.objects.filter(endpoint=endpoint)
        .select_related("endpoint", "redelivery_of")
        .prefetch_related(attempts)
        .order_by("-created_at", "-id")
    )


def delivery_get(*, endpoint: WebhookEndpoint, delivery_id: Any) -> WebhookDelivery:
    """One delivery of ``endpoint`` by its public id.

    Raises:
        NotFound: not a UUID, unknown, or a delivery of another endpoint.
    """
    key = _uuid(delivery_id)
    delivery = delivery_list(endpoint=endpoint).filter(uuid=key).first() if key else None
    if delivery is None:
        raise NotFound("Delivery not found.", details={"id": str(delivery_id)})
    return delivery
