"""Accounts: teams with role-based memberships, API keys, secrets and the audit log.

Everything a user creates (agents, sessions, provider credentials, schedules, secrets) belongs
to a :class:`Team`; users reach it through a :class:`Membership` with a role. Every user gets a
personal team on sign-up (``accounts.signals``). Roles are ordered
``viewer < member < admin < owner`` (:data:`ROLE_RANK`): viewers read, members write, admins
manage members, keys of others, secrets and the audit log, owners may delete the team.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from sessions.models.base import TimeStampedModel


class Role(models.TextChoices):
    VIEWER = "viewer", "Viewer"
    MEMBER = "member", "Member"
    ADMIN = "admin", "Admin"
    OWNER = "owner", "Owner"


ROLE_RANK: dict[str, int] = {Role.VIEWER: 0, Role.MEMBER: 1, Role.ADMIN: 2, Role.OWNER: 3}


class Team(TimeStampedModel):
    """A group of users sharing agents, sessions, credentials and secrets.

    The limit fields override the server-wide defaults for this team (``None``: the setting).
    """

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True)
    is_personal = models.BooleanField(
        default=False, help_text="Created for one user at sign-up; cannot be deleted."
    )
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="Membership", related_name="teams"
    )
    max_running_tasks = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Active (queued, running, waiting) tasks (empty: TEAM_MAX_RUNNING_TASKS).",
    )
    max_sandboxes = models.PositiveIntegerField(
        null=True, blank=True, help_text="Live sandboxes (empty: TEAM_MAX_SANDBOXES)."
    )
    rate_limit = models.CharField(
        max_length=32,
        blank=True,
        default="",
        help_text="Requests per period for the whole team, e.g. '600/min' (empty: THROTTLE_TEAM).",
    )

    class Meta:
        ordering = ("name",)

    def __str__(self) -> str:
        return self.slug


class Membership(models.Model):
    """``user`` belongs to ``team`` with ``role``."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("team", "user")
        constraints = [
            models.UniqueConstraint(fields=("team", "user"), name="membership_unique_per_team")
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} ({self.role})"


class Scope(models.TextChoices):
    """What a credential (API key, OAuth2 token) may do; ``admin`` implies every other scope
    and team administration, ``*:write`` implies the matching ``*:read``."""

    AGENTS_READ = "agents:read", "Read agents and models"
    AGENTS_WRITE = "agents:write", "Create, change and delete agents"
    SESSIONS_READ = "sessions:read", "Read sessions, tasks, events, messages and files"
    SESSIONS_WRITE = "sessions:write", "Create, change and delete sessions and their files"
    TASKS_WRITE = "tasks:write", "Start, cancel and resume tasks"
    ADMIN = "admin", "Everything, including team, key, secret and credential management"


class ApiKey(TimeStampedModel):
    """A hashed API key of ``user`` with ``scopes``, acting in ``team`` only (a team key) or in
    every team of the user (``team`` empty: a user key).

    The key is ``<prefix>.<secret>`` (djangorestframework-api-key's generator: 8 + 32 random
    characters); only the prefix and a SHA-512 hash are stored, so a lost key cannot be shown
    again. A key works while it is not revoked and not expired, with the permissions of its user's
    role in each team (a team key stops working there when the user leaves), narrowed by the
    scopes.
    """

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    hashed_key = models.CharField(max_length=200, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys"
    )
    team = models.ForeignKey(
        Team,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="api_keys",
        help_text="The only team the key acts in (empty: every team of its user).",
    )
    scopes = models.JSONField(default=list)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at",)
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()


class SecretScope(models.TextChoices):
    TEAM = "team", "Team"
    SESSION = "session", "Session"


class Secret(TimeStampedModel):
    """A named secret of a team, or of one session (a session secret wins over a team secret of
    the same name). The value is Fernet-encrypted (``providers.crypto``'s key ring) and never
    returned by the API; agents receive it in their sandbox when their spec names it."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="secrets")
    session = models.ForeignKey(
        "agent_sessions.Session",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="secrets",
    )
    name = models.CharField(max_length=128)
    ciphertext = models.TextField(editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )

    class Meta:
        ordering = ("name",)
        constraints = [
            models.UniqueConstraint(
                fields=("team", "name"),
                condition=models.Q(session__isnull=True),
                name="secret_name_unique_per_team",
            ),
            models.UniqueConstraint(
                fields=("session", "name"),
                condition=models.Q(session__isnull=False),
                name="secret_name_unique_per_session",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class AuditEntry(models.Model):
    """One recorded action: who (user and the credential used) did what to which object."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    team = models.ForeignKey(
        Team, on_delete=models.CASCADE, null=True, blank=True, related_name="audit_entries"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    credential = models.CharField(
        max_length=64, blank=True, default="", help_text="e.g. 'api_key:AbCd1234', 'oauth2:app'"
    )
    action = models.CharField(max_length=64, db_index=True)
    target_type = models.CharField(max_length=64, blank=True, default="")
    target_id = models.CharField(max_length=64, blank=True, default="")
    target_repr = models.CharField(max_length=200, blank=True, default="")
    details = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ("-created_at", "-id")
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.action} {self.target_type}:{self.target_id}"
