"""One row per attachment of an external runtime to a session (docs/remote-runtimes.md).

A row is created when a runtime registers on ``/ws/runtimes/`` and never deleted by the
protocol: its ``status`` ends ``disconnected`` (the socket closed) or ``displaced`` (a newer
runtime took the session over), so the admin shows the history of who ran a session's work.
At most one row per session is ``connected`` (a partial unique constraint backs the rule).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from sessions.models.base import TimeStampedModel


class RuntimeStatus(models.TextChoices):
    CONNECTED = "connected", "Connected"
    DISCONNECTED = "disconnected", "Disconnected"
    DISPLACED = "displaced", "Displaced"


class Runtime(TimeStampedModel):
    """An external runtime's connection to one session.

    ``runtime_id`` is the name the runtime chose (1-100 of ``[A-Za-z0-9._:-]``; several rows may
    share it: one per connection). ``user``/``credential`` say who it acts as (the credential
    label, e.g. ``api_key:AbCd1234``, never a secret), ``team`` is the session's team.
    ``channel_name`` is the channel-layer address of the consumer holding the socket, where
    runners send ``task.assign`` and ``task.cancel``. ``last_seen_at`` is refreshed every
    ``RUNTIME_HEARTBEAT_S`` while the socket is open: a ``connected`` row not seen for three
    heartbeats belongs to a server process that died, and counts as gone.
    """

    runtime_id = models.CharField(max_length=100, db_index=True)
    session = models.ForeignKey(
        "agent_sessions.Session", on_delete=models.CASCADE, related_name="runtimes"
    )
    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, related_name="runtimes")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    credential = models.CharField(max_length=100, blank=True, default="")
    channel_name = models.CharField(max_length=200)
    kinds = models.JSONField(default=list, blank=True)
    capabilities = models.JSONField(default=dict, blank=True)
    status = models.CharField(
        max_length=16,
        choices=RuntimeStatus.choices,
        default=RuntimeStatus.CONNECTED,
        db_index=True,
    )
    connected_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    disconnected_at = models.DateTimeField(null=True, blank=True)
    detach_reason = models.CharField(max_length=32, blank=True, default="")
    displaced_by = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ("-connected_at",)
        constraints = [
            models.UniqueConstraint(
                fields=("session",),
                condition=models.Q(status="connected"),
                name="runtime_one_connected_per_session",
            )
        ]
        indexes = [models.Index(fields=("session", "status"), name="runtime_session_status")]

    def __str__(self) -> str:
        return f"{self.runtime_id} ({self.status})"

    @property
    def is_connected(self) -> bool:
        return self.status == RuntimeStatus.CONNECTED
