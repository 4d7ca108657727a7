"""Reads of the accounts app; every one takes the requesting user."""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import QuerySet

from accounts import access
from accounts.models import ApiKey, AuditEntry, Membership, Role, Team
from runtime_project.exceptions import NotFound


def team_list(*, user: Any) -> QuerySet[Team]:
    """Teams ``user`` belongs to (only the key's team for an API key)."""
    return Team.objects.filter(pk__in=access.team_ids(user))


def team_get(*, user: Any, team_id: Any, min_role: str = Role.VIEWER) -> Team:
    """One of ``user``'s teams by uuid or slug.

    Raises:
        NotFound: unknown, or ``user`` is not a member.
        Forbidden: a member below ``min_role``.
    """
    qs = Team.objects.all()
    try:
        team = qs.filter(uuid=uuid.UUID(str(team_id))).first()
    except ValueError:
        team = qs.filter(slug=str(team_id)).first()
    if team is None or access.role_in(user, team.pk) is None:
        raise NotFound("Team not found.", details={"id": str(team_id)})
    access.require_role(user, team.pk, min_role, what="Team")
    return team


def default_team(*, user: Any) -> Team:
    """The team a create goes to when none is named: the API key's team, else the user's
    personal team, else their oldest membership. Chosen from the memberships the roles were
    read with (``accounts.access.team_roles``: no query of its own), and remembered on the user
    instance (one request or one WebSocket connection).

    Raises:
        NotFound: ``user`` belongs to no team (``no_team``).
    """
    cached = user.__dict__.get(access.DEFAULT_TEAM_ATTR)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    rows = access.memberships(user)  # narrowed to an API key's team
    if not rows:
        raise NotFound("You belong to no team.", code="no_team")
    membership = min(
        rows,
        key=lambda m: (not (m.team.is_personal and m.role == Role.OWNER), m.created_at, m.pk),
    )
    user.__dict__[access.DEFAULT_TEAM_ATTR] = membership.team
    return membership.team


def team_for_write(*, user: Any, team_id: Any | None, min_role: str = Role.MEMBER) -> Team:
    """The team a new object goes to: ``team_id`` (uuid or slug) or :func:`default_team`;
    ``user`` must have ``min_role`` there.

    Raises:
        NotFound: no such team of the user's. Forbidden: the role is too low.
    """
    if team_id in (None, ""):
        team = default_team(user=user)
        access.require_role(user, team.pk, min_role, what="Team")
        return team
    return team_get(user=user, team_id=team_id, min_role=min_role)


def membership_list(*, user: Any, team: Team) -> QuerySet[Membership]:
    access.require_role(user, team.pk, Role.VIEWER, what="Team")
    return team.memberships.select_related("user").order_by("created_at")


def api_key_list(*, user: Any, team: Team | None = None) -> QuerySet[ApiKey]:
    """The user's own keys, plus every team key of the teams where they are admin (a team-bound
    credential sees only keys of its team)."""
    admin_teams = access.team_ids(user, min_role=Role.ADMIN)
    qs = ApiKey.objects.select_related("user", "team")
    qs = qs.filter(user=user) | qs.filter(team_id__in=admin_teams)
    bound = getattr(user, "credential_team_id", None)
    if bound is not None:
        qs = qs.filter(team_id=bound)
    if team is not None:
        qs = qs.filter(team=team)
    return qs.distinct().order_by("-created_at")


def api_key_get(*, user: Any, key_id: Any) -> ApiKey:
    """One key by uuid or prefix, if :func:`api_key_list` shows it to ``user``.

    Raises:
        NotFound: unknown or not visible.
    """
    qs = api_key_list(user=user)
    try:
        row = qs.filter(uuid=uuid.UUID(str(key_id))).first()
    except ValueError:
        row = qs.filter(prefix=str(key_id)).first()
    if row is None:
        raise NotFound("API key not found.", details={"id": str(key_id)})
    return row


def audit_list(
    *,
    user: Any,
    team: Team,
    action: str | None = None,
    target_type: str | None = None,
    actor: str | None = None,
) -> QuerySet[AuditEntry]:
    """``team``'s audit entries, newest first (team admins only).

    Raises:
        NotFound: not a member. Forbidden: below admin.
    """
    access.require_role(user, team.pk, Role.ADMIN, what="Team")
    qs = AuditEntry.objects.filter(team=team).select_related("actor")
    if action:
        qs = qs.filter(action=action)
    if target_type:
        qs = qs.filter(target_type=target_type)
    if actor:
        qs = qs.filter(actor__username=actor)
    return qs.order_by("-created_at", "-id")
