"""Outbound webhooks (DESIGN §2): where to send (:class:`WebhookEndpoint`), what to send
(:class:`WebhookDelivery`, one event for one endpoint) and each try (:class:`DeliveryAttempt`).

Life of a delivery (``integrations.webhooks.dispatch``): created ``pending`` and due at once;
a dispatcher claims it (``attempts`` + 1, ``next_attempt_at`` pushed past the send's lease) and
posts it; a 2xx makes it ``succeeded``; anything else makes it ``retrying`` (due again after
the retry schedule's delay) until ``max_attempts``, then ``failed``. A 410 Gone disables the
endpoint and fails the delivery.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from sessions.models.base import TimeStampedModel

# Event types an endpoint may subscribe to ("*": all of them). ``ping`` is only sent by the
# "test" API call, to the endpoint it names.
TASK_EVENT_TYPES = (
    "task.created",  # once, when the task is created (queued)
    "task.queued",  # at creation and whenever it is queued again (requeued after a lost worker)
    "task.running",
    "task.waiting",
    "task.succeeded",
    "task.failed",
    "task.cancelled",
    "task.timed_out",
)
EVENT_TYPES = (*TASK_EVENT_TYPES, "session.created")
ALL_EVENTS = "*"
PING = "ping"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RETRYING = "retrying", "Retrying"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


DUE_STATUSES = (DeliveryStatus.PENDING, DeliveryStatus.RETRYING)


class WebhookEndpoint(TimeStampedModel):
    """A team's receiver URL and the events it wants. ``secret_encrypted`` is the signing
    secret (``whsec_<base64>``) encrypted with ``providers.crypto``: it must be recoverable to
    sign, and it is shown only when created or rotated. After a rotation the previous secret
    signs too until ``previous_secret_expires_at``."""

    team = models.ForeignKey(
        "accounts.Team", on_delete=models.CASCADE, related_name="webhook_endpoints"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    url = models.URLField(max_length=2000)
    description = models.CharField(max_length=500, blank=True, default="")
    event_types = models.JSONField(
        default=list, help_text='Event types delivered ("task.succeeded", ...), or ["*"].'
    )
    agent = models.ForeignKey(
        "agent_sessions.Agent",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        help_text="Only events of sessions on this agent (empty: every agent).",
    )
    secret_encrypted = models.TextField(editable=False)
    previous_secret_encrypted = models.TextField(blank=True, default="", editable=False)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=500, blank=True, default="")

    class Meta:
        ordering = ("-created_at", "-id")
        indexes = [models.Index(fields=("team", "enabled"), name="webhook_team_enabled")]

    def __str__(self) -> str:
        return self.url

    def wants(self, event_type: str) -> bool:
        """Whether this endpoint subscribes to ``event_type``."""
        return ALL_EVENTS in self.event_types or event_type in self.event_types


class WebhookDelivery(models.Model):
    """One event for one endpoint. ``event_id`` is the ``Webhook-Id`` header and the payload's
    ``id``: the same for every attempt and for redeliveries (receivers deduplicate on it)."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    event_id = models.CharField(max_length=64)
    event_type = models.CharField(max_length=64)
    payload = models.JSONField()
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0, help_text="Attempts started.")
    max_attempts = models.PositiveIntegerField()
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    redelivery_of = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("-created_at", "-id")
        verbose_name_plural = "webhook deliveries"
        indexes = [
            models.Index(fields=("status", "next_attempt_at"), name="webhook_delivery_due"),
            models.Index(fields=("endpoint", "-created_at"), name="webhook_delivery_endpoint"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} → {self.endpoint_id} ({self.status})"


class DeliveryAttempt(models.Model):
    """One POST of a delivery: when, how long, the answer (status and the first 2 KiB of the
    body) or the error that kept it from getting one (refused target, timeout, ...)."""

    delivery = models.ForeignKey(
        WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_set"
    )
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(default=0)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True, default="", help_text="At most 2 KiB.")
    error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ("delivery", "number")
        constraints = [
            models.UniqueConstraint(fields=("delivery", "number"), name="webhook_attempt_once")
        ]

    def __str__(self) -> str:
        return f"attempt {self.number} of {self.delivery_id}"
