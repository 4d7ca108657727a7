from __future__ import annotations

from django.conf import settings
from django.db import models

from sessions.choices import AgentKind
from sessions.models.base import TimeStampedModel


class Agent(TimeStampedModel):
    """A registered, versioned agent. ``spec`` is validated per ``kind`` (see
    ``sessions.runners``); every change of ``spec``/``input_schema`` bumps ``version`` and writes
    an :class:`AgentVersion` row, and a task pins the version it ran."""

    slug = models.SlugField(max_length=64)
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=32, choices=AgentKind.choices, default=AgentKind.COMMAND)
    description = models.TextField(blank=True, default="")
    spec = models.JSONField(default=dict, blank=True)
    input_schema = models.JSONField(default=dict, blank=True)
    version = models.PositiveIntegerField(default=1)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="agents",
        help_text="The user who created the agent (it belongs to its team).",
    )
    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, related_name="agents")
    is_public = models.BooleanField(
        default=False, help_text="Visible to (and usable by) every signed-in user."
    )
    endpoints = models.JSONField(
        default=list,
        blank=True,
        help_text="Named HTTP endpoints (POST /api/agents/{slug}/{name}); see "
        "sessions.endpoints.ENDPOINTS_SCHEMA.",
    )
    integrations = models.JSONField(
        default=dict,
        blank=True,
        help_text='Exposure flags per integration, e.g. {"openai": true, "mcp": true, '
        '"chatgpt": false}; a missing key means the integration\'s default.',
    )
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("slug",)
        constraints = [
            models.UniqueConstraint(
                fields=("team", "slug"),
                condition=models.Q(deleted_at__isnull=True),
                name="agent_slug_unique_per_team",
            )
        ]

    def __str__(self) -> str:
        return f"{self.slug} v{self.version}"


class AgentVersion(models.Model):
    """One immutable version of an agent's spec (history; a task pins ``agent_version``)."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    kind = models.CharField(max_length=32, choices=AgentKind.choices)
    spec = models.JSONField(default=dict)
    input_schema = models.JSONField(default=dict)
    description = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )

    class Meta:
        ordering = ("agent", "-version")
        constraints = [
            models.UniqueConstraint(fields=("agent", "version"), name="agent_version_unique")
        ]

    def __str__(self) -> str:
        return f"{self.agent.slug} v{self.version}"
