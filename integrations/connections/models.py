"""OAuth2 connections for tools: the providers a team registers and its users' tokens.

An :class:`OAuthProvider` is an OAuth2 authorization server a team's admins registered (GitHub,
Google, an internal IdP, this very server), with the client this server uses there. Its
``name`` (a slug, unique per team) is what agent specs reference: a workflow ``http_request``
component's ``"connection"``, an llm agent's ``tool_options.http_fetch.connections``.

An :class:`OAuthConnection` is one user's grant at one provider: the tokens the authorization
code flow (``/oauth/connect/<name>``) obtained, refreshed when they expire
(``integrations.connections.services.connection_token``). A run uses the connection of the
user who created the task, at the provider of that name in the session's team.

Secrets (the client secret, both tokens) are only ever stored as Fernet tokens
(``providers.crypto``, the key ring of ``CREDENTIALS_ENCRYPTION_KEYS``); no API response, admin
page, event or log line shows them.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class TokenAuthMethod(models.TextChoices):
    """How this server authenticates to the token endpoint (RFC 6749 §2.3.1, RFC 7591)."""

    BASIC = "client_secret_basic", "HTTP Basic (client_secret_basic)"
    POST = "client_secret_post", "In the form body (client_secret_post)"
    NONE = "none", "None: a public client (PKCE only)"


class ConnectionStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    REVOKED = "revoked", "Revoked"
    ERROR = "error", "Error (connect again)"


class OAuthProvider(models.Model):
    """An OAuth2 authorization server and this server's client registration there."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    team = models.ForeignKey(
        "accounts.Team", on_delete=models.CASCADE, related_name="oauth_providers"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    name = models.SlugField(
        max_length=64, help_text="Referenced by agent specs; unique within the team."
    )
    client_id = models.CharField(max_length=255)
    client_secret = models.TextField(
        blank=True, default="", editable=False, help_text="Fernet token (empty: public client)."
    )
    authorize_url = models.CharField(max_length=2000)
    token_url = models.CharField(max_length=2000)
    userinfo_url = models.CharField(max_length=2000, blank=True, default="")
    revoke_url = models.CharField(
        max_length=2000, blank=True, default="", help_text="RFC 7009 revocation endpoint."
    )
    scopes = models.JSONField(default=list, blank=True, help_text="Scopes asked for.")
    authorize_params = models.JSONField(
        default=dict,
        blank=True,
        help_text='Extra authorize parameters, e.g. {"access_type": "offline", "prompt": '
        '"consent"}.',
    )
    use_pkce = models.BooleanField(default=True, help_text="Send an S256 code challenge.")
    token_endpoint_auth_method = models.CharField(
        max_length=32, choices=TokenAuthMethod.choices, default=TokenAuthMethod.BASIC
    )
    api_hosts = models.JSONField(
        default=list,
        blank=True,
        help_text="Hosts a token of this provider may be sent to (exact, or *.example.com); "
        "empty: the host of the token URL only.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("name",)
        verbose_name = "OAuth provider"
        constraints = [
            models.UniqueConstraint(fields=("team", "name"), name="oauth_provider_name_per_team")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.team_id})"


class OAuthConnection(models.Model):
    """One user's tokens at one provider (at most one row per user and provider)."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    provider = models.ForeignKey(
        OAuthProvider, on_delete=models.CASCADE, related_name="connections"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="oauth_connections"
    )
    access_token = models.TextField(blank=True, default="", editable=False)
    refresh_token = models.TextField(blank=True, default="", editable=False)
    token_type = models.CharField(max_length=40, default="Bearer")
    expires_at = models.DateTimeField(null=True, blank=True)
    scopes = models.JSONField(default=list, blank=True, help_text="Scopes granted.")
    account = models.CharField(
        max_length=200, blank=True, default="", help_text="Who the user is there (userinfo)."
    )
    status = models.CharField(
        max_length=16, choices=ConnectionStatus.choices, default=ConnectionStatus.ACTIVE
    )
    last_error = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    refreshed_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at",)
        verbose_name = "OAuth connection"
        constraints = [
            models.UniqueConstraint(
                fields=("provider", "user"), name="oauth_connection_one_per_user"
            )
        ]

    def __str__(self) -> str:
        return f"{self.provider.name} of {self.user} ({self.status})"
