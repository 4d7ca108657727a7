"""Reads of OAuth providers and connections, each scoped to the requesting user.

Providers belong to a team: its members list and read them (never the client secret), its
admins change them (``for_write``); a stranger gets 404. Connections belong to one user: only
that user lists and revokes them (a team admin does not see the tokens of the team's users;
deleting the provider removes every connection of it).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.db.models import Q, QuerySet

from accounts import access
from accounts.models import Role, Team
from integrations.connections.models import OAuthConnection, OAuthProvider
from runtime_project.exceptions import InvalidInput, NotFound

WRITE_ROLE = Role.ADMIN  # who may register, change and delete a team's providers


def _uuid(value: Any) -> UUID | None:
    try:
        return UUID(str(value))
    except (ValueError, TypeError, AttributeError):
        return None


def provider_list(*, user: Any) -> QuerySet[OAuthProvider]:
    """The providers of ``user``'s teams (only the API key's team for a key), by name."""
    return (
        OAuthProvider.objects.filter(team_id__in=access.team_ids(user))
        .select_related("team")
        .order_by("name", "created_at")
    )


def provider_get(*, user: Any, provider_id: Any, for_write: bool = False) -> OAuthProvider:
    """One provider of ``user``'s teams by its public id; ``for_write`` needs team admin.

    Raises:
        NotFound: ``oauth_provider_not_found``: not a UUID, unknown, or of another team.
        Forbidden: ``for_write`` and the user's role there is below admin.
    """
    key = _uuid(provider_id)
    provider = provider_list(user=user).filter(uuid=key).first() if key else None
    if provider is None:
        raise NotFound(
            "OAuth provider not found.",
            code="oauth_provider_not_found",
            details={"id": str(provider_id)},
        )
    if for_write:
        access.require_role(user, provider.team_id, WRITE_ROLE, what="OAuth provider")
    return provider


def provider_for_connect(*, user: Any, name: str, team: str | None = None) -> OAuthProvider:
    """The provider called ``name`` in one of ``user``'s teams, for ``/oauth/connect/<name>``;
    ``team`` (uuid or slug) picks the team when several of them have one of that name.

    Raises:
        NotFound: ``oauth_provider_not_found``: no such provider in the user's teams (or in
            ``team``).
        InvalidInput: ``ambiguous_provider``: several teams have one and ``team`` is not given
            (details ``{"teams": [slugs]}``).
    """
    providers = provider_list(user=user).filter(name=name)
    if team:
        key = _uuid(team)
        providers = providers.filter(Q(team__uuid=key) if key else Q(team__slug=team))
    found = list(providers[:20])
    if not found:
        raise NotFound(
            f"No OAuth provider called {name!r} in your teams.",
            code="oauth_provider_not_found",
            details={"name": name},
        )
    if len(found) > 1:
        teams = sorted(p.team.slug for p in found)
        raise InvalidInput(
            f"Several of your teams have a provider called {name!r}; add ?team=<slug>.",
            code="ambiguous_provider",
            details={"name": name, "teams": teams},
        )
    return found[0]


def connection_list(*, user: Any) -> QuerySet[OAuthConnection]:
    """``user``'s own connections at providers of their teams (an API key: of its team only),
    newest first."""
    if getattr(user, "pk", None) is None:
        return OAuthConnection.objects.none()
    return (
        OAuthConnection.objects.filter(user_id=user.pk, provider__team_id__in=access.team_ids(user))
        .select_related("provider", "provider__team")
        .order_by("-created_at")
    )


def connection_get(*, user: Any, connection_id: Any) -> OAuthConnection:
    """One of ``user``'s own connections by its public id.

    Raises:
        NotFound: ``connection_not_found``: not a UUID, unknown, or another user's.
    """
    key = _uuid(connection_id)
    connection = connection_list(user=user).filter(uuid=key).first() if key else None
    if connection is None:
        raise NotFound(
            "Connection not found.",
            code="connection_not_found",
            details={"id": str(connection_id)},
        )
    return connection


def team_provider(*, team: Team | int, name: str) -> OAuthProvider | None:
    """The provider ``name`` of ``team`` (a Team or its pk), or None (for runs)."""
    team_id: int = team.pk if isinstance(team, Team) else team
    return OAuthProvider.objects.filter(team_id=team_id, name=name).first()
