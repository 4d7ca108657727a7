"""Stored provider credentials (API keys of model providers), encrypted at rest.

A credential belongs to a team (``team``; ``owner`` is the user who stored it) and its name is
unique within the team. Every member of the team may see it (never its secret), its admins
manage it (``providers.selectors``, ``providers.services``). It may be restricted to one agent
of the same team (``agent``); otherwise any agent of the team may use it. The llm runner looks
a credential up in the running agent's team, never in the caller's.

The secret is only ever stored as a Fernet token (``secret``, see ``providers.crypto``); the API
and the admin show ``hint`` (the last four characters) and never the secret or its token.

:class:`TeamModelAccess` is a team's model policy: which model names its runs may use
(``providers.access``).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class CredentialProvider(models.TextChoices):
    """The wire format the key is for (``openai`` covers every OpenAI-compatible endpoint)."""

    OPENAI = "openai", "OpenAI (or OpenAI-compatible)"
    ANTHROPIC = "anthropic", "Anthropic"


class ProviderCredential(models.Model):
    """One API key of a model provider, referenced from an llm agent's
    ``spec.model.credential`` by ``name``."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="provider_credentials"
    )
    team = models.ForeignKey(
        "accounts.Team", on_delete=models.CASCADE, related_name="provider_credentials"
    )
    # CASCADE, never SET_NULL: losing the agent must not widen the credential to every agent.
    agent = models.ForeignKey(
        "agent_sessions.Agent",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="provider_credentials",
        help_text="Only this agent may use the credential (empty: any agent of the team).",
    )
    name = models.SlugField(max_length=64, help_text="Referenced by spec.model.credential.")
    provider = models.CharField(
        max_length=32, choices=CredentialProvider.choices, default=CredentialProvider.OPENAI
    )
    secret = models.TextField(editable=False, help_text="Fernet token of the secret.")
    hint = models.CharField(max_length=8, blank=True, default="", editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ("name",)
        constraints = [
            models.UniqueConstraint(
                fields=("team", "name"), name="provider_credential_name_unique_per_team"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.provider}, {self.hint})"


class ModelAccessMode(models.TextChoices):
    """``all``: every model; ``listed``: only names matching ``allowed_models``."""

    ALL = "all", "Every model"
    LISTED = "listed", "Only the listed models"


class TeamModelAccess(models.Model):
    """Which model names a team's runs may use (``providers.access``; issue 10, item 6).

    A team without a row follows the server default (``TEAM_MODELS_DEFAULT``; unset: every
    model). ``allowed_models`` holds exact names or ``fnmatch`` globs (``gpt-4o*``), matched
    case-sensitively against the model name a run would send to its provider.
    """

    team = models.OneToOneField(
        "accounts.Team", on_delete=models.CASCADE, related_name="model_access"
    )
    mode = models.CharField(
        max_length=16, choices=ModelAccessMode.choices, default=ModelAccessMode.ALL
    )
    allowed_models = models.JSONField(
        default=list,
        blank=True,
        help_text='Model names or glob patterns, e.g. ["gpt-4o*", "claude-3-5-sonnet-latest"] '
        "(used when the mode is 'listed'; an empty list allows nothing).",
    )
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "team model access"
        verbose_name_plural = "team model access"

    def __str__(self) -> str:
        if self.mode == ModelAccessMode.ALL:
            return f"{self.team}: every model"
        return f"{self.team}: {', '.join(self.allowed_models) or 'no model'}"
