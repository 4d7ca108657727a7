"""Writes of the accounts app: teams, memberships, API keys."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify
from rest_framework_api_key.crypto import KeyGenerator

from accounts import access
from accounts.models import ROLE_RANK, ApiKey, Membership, Role, Scope, Team
from runtime_project.db import unique_or_none
from runtime_project.exceptions import Conflict, Forbidden, InvalidInput

_keys = KeyGenerator(prefix_length=8, secret_key_length=32)


def unique_team_slug(base: str) -> str:
    """``base`` slugified, with ``-2``, ``-3``… appended until no team has it."""
    stem = slugify(base)[:70] or "team"
    slug, n = stem, 1
    while Team.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{stem}-{n}"
    return slug


def team_create_personal(*, user: Any) -> Team:
    """The personal team of a new user (``user`` is its owner); called on sign-up."""
    with transaction.atomic():
        team = Team.objects.create(
            name=user.get_username(), slug=unique_team_slug(user.get_username()), is_personal=True
        )
        Membership.objects.create(team=team, user=user, role=Role.OWNER)
    access.forget_roles(user)
    return team


def team_create(*, user: Any, name: str, slug: str = "") -> Team:
    """A new shared team owned by ``user``.

    Raises:
        Conflict: ``slug_taken``: another team has ``slug``.
    """
    try:
        with transaction.atomic():
            team = Team.objects.create(name=name, slug=slug or unique_team_slug(name))
            Membership.objects.create(team=team, user=user, role=Role.OWNER)
    except IntegrityError:
        raise Conflict(
            "A team with this slug exists.", code="slug_taken", details={"slug": slug}
        ) from None
    access.forget_roles(user)
    return team


def team_update(*, team: Team, **changes: Any) -> Team:
    """Rename a team or change its limits (``name``, ``slug``, ``max_running_tasks``,
    ``max_sandboxes``, ``rate_limit``)."""
    for field, value in changes.items():
        setattr(team, field, value)
    try:
        team.save()
    except IntegrityError:
        raise Conflict(
            "A team with this slug exists.", code="slug_taken", details={"slug": team.slug}
        ) from None
    return team


def team_delete(*, team: Team) -> None:
    """Delete a shared team and everything it owns: sessions (their sandboxes stopped and
    workspaces removed), agents, credentials, schedules, secrets and keys.

    Raises:
        Conflict: ``personal_team``: personal teams live as long as their user;
            ``team_busy``: a task of the team is still queued, running or waiting;
            ``agent_in_use``: another team's session uses one of the team's public agents.
    """
    from sandboxes.services import sandbox_stop_sync
    from sessions.choices import ACTIVE_STATUSES
    from sessions.models import Session, Task
    from sessions.services.sessions import session_purge_workspace

    if team.is_personal:
        raise Conflict("A personal team cannot be deleted.", code="personal_team")
    if Task.objects.filter(session__team=team, status__in=ACTIVE_STATUSES).exists():
        raise Conflict("Cancel the team's active tasks first.", code="team_busy")
    if Session.objects.filter(agent__team=team).exclude(team=team).exists():
        raise Conflict(
            "Sessions of other teams use this team's public agents.", code="agent_in_use"
        )
    sessions = list(Session.objects.filter(team=team).select_related("sandbox"))
    for session in sessions:
        if getattr(session, "sandbox", None) is not None:
            sandbox_stop_sync(session=session)
    with transaction.atomic():
        Session.objects.filter(team=team).delete()
        team.delete()
    for session in sessions:
        session_purge_workspace(session=session)


def _owners(team: Team) -> int:
    return team.memberships.filter(role=Role.OWNER).count()


def membership_set(*, team: Team, actor: Any, user: Any, role: str) -> Membership:
    """Add ``user`` to ``team`` with ``role``, or change their role.

    Only an owner may grant or take away the owner role, and the last owner stays owner.

    Raises:
        Forbidden: ``actor`` (an admin) touches an owner or grants ownership.
        Conflict: ``last_owner``: the team would have no owner.
    """
    actor_role = access.role_in(actor, team.pk)
    with transaction.atomic():
        current = Membership.objects.select_for_update().filter(team=team, user=user).first()
        owner_involved = role == Role.OWNER or (current and current.role == Role.OWNER)
        if owner_involved and actor_role != Role.OWNER:
            raise Forbidden("Only an owner may grant or change the owner role.")
        if current and current.role == Role.OWNER and role != Role.OWNER and _owners(team) <= 1:
            raise Conflict("A team needs at least one owner.", code="last_owner")
        if current is None:
            current = Membership.objects.create(team=team, user=user, role=role)
        else:
            current.role = role
            current.save(update_fields=["role"])
    access.forget_roles(user)
    return current


def membership_remove(*, team: Team, actor: Any, user: Any) -> None:
    """Remove ``user`` from ``team`` (anyone may leave; admins remove non-owners).

    Raises:
        Forbidden: an admin removes an owner.
        Conflict: ``last_owner`` or ``personal_team`` (a user cannot leave their own team).
    """
    membership = Membership.objects.filter(team=team, user=user).first()
    if membership is None:
        return
    if team.is_personal and membership.role == Role.OWNER:
        raise Conflict("Nobody leaves their personal team.", code="personal_team")
    leaving = actor.pk == user.pk
    if membership.role == Role.OWNER:
        if not leaving and access.role_in(actor, team.pk) != Role.OWNER:
            raise Forbidden("Only an owner may remove an owner.")
        if _owners(team) <= 1:
            raise Conflict("A team needs at least one owner.", code="last_owner")
    membership.delete()
    access.forget_roles(user)


def _check_scopes(scopes: Iterable[str]) -> list[str]:
    valid = set(Scope.values)
    chosen = sorted(set(scopes))
    unknown = [s for s in chosen if s not in valid]
    if unknown or not chosen:
        raise InvalidInput(
            "Scopes must be a non-empty list of known scopes.",
            details={"scopes": unknown or ["empty"], "allowed": sorted(valid)},
        )
    return chosen


def api_key_create(
    *,
    user: Any,
    team: Team | None,
    name: str,
    scopes: Iterable[str],
    expires_at: dt.datetime | None = None,
) -> tuple[ApiKey, str]:
    """A new API key of ``user``, for ``team`` only or (``None``) for all the user's teams;
    returns the row and the key (shown once).

    A key never grants more than its creator has: roles still apply per team, an ``admin``
    team key needs the admin role in that team, a credential can only create keys with scopes
    it has itself, and a team-bound credential can only create keys for its own team.

    Raises:
        InvalidInput: unknown or no scopes, or an expiry in the past.
        Forbidden: the scopes exceed the creator's role or credential.
    """
    chosen = _check_scopes(scopes)
    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidInput("The expiry must be in the future.", details={"expires_at": "past"})
    bound = getattr(user, "credential_team_id", None)
    if team is None and bound is not None:
        raise Forbidden("A team key can only create keys for its own team.")
    if team is not None:
        role = access.role_in(user, team.pk)
        if role is None:
            raise Forbidden("You are not a member of this team.")
        if Scope.ADMIN in chosen and ROLE_RANK[role] < ROLE_RANK[Role.ADMIN]:
            raise Forbidden("Only team admins may create admin keys.", details={"role": role})
    missing = [s for s in chosen if not access.has_scope(user, s)]
    if missing:
        raise Forbidden(
            "A key cannot have scopes its creator's credential lacks.",
            code="insufficient_scope",
            details={"scopes": missing},
        )
    key, prefix, hashed = _keys.generate()
    row = ApiKey.objects.create(
        name=name,
        prefix=prefix,
        hashed_key=hashed,
        user=user,
        team=team,
        scopes=chosen,
        expires_at=expires_at,
    )
    return row, key


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    """Revoke a key (idempotent; a revoked key is refused from the next request on)."""
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at", "updated_at"])
    return api_key


def api_key_verify(key: str) -> ApiKey | None:
    """The key row matching ``key`` (any state), or ``None``; constant-time hash comparison."""
    prefix, dot, _ = key.partition(".")
    if not dot or not prefix:
        return None
    row = unique_or_none(ApiKey.objects.select_related("user").filter(prefix=prefix))
    if row is None or not _keys.verify(key, row.hashed_key):
        return None
    return row


def api_key_touch(*, api_key: ApiKey, every_s: float = 60.0) -> None:
    """Record use, at most once per ``every_s`` seconds (no write on every request)."""
    now = timezone.now()
    if api_key.last_used_at is None or (now - api_key.last_used_at).total_seconds() >= every_s:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now
