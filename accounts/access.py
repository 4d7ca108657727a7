"""Who may do what: team roles and credential scopes, checked by every selector and view.

The authenticated user object carries the restrictions of the credential it came with (set by
:func:`bind_credential` in ``accounts.authentication``):

- ``credential_scopes``: a frozenset of :class:`accounts.models.Scope` values, or ``None`` for
  a browser session (cookie login), which has every scope;
- ``credential_team_id``: the only team an API key acts in, or ``None`` (every team of the user);
- ``credential_label``: e.g. ``"api_key:AbCd1234"`` (for the audit log; never the secret).

Roles answer "may this user touch this team's objects" (a stranger gets 404, a viewer 403 on
writes); scopes answer "may this credential call this endpoint" (403 ``insufficient_scope``,
RFC 6750 §3.1's error name).
"""

from __future__ import annotations

from typing import Any

from accounts.models import ROLE_RANK, Membership, Role, Scope
from runtime_project.exceptions import Forbidden, NotFound

_ROLES_ATTR = "_team_roles"
MEMBERSHIPS_ATTR = "_memberships"  # read with the roles, for accounts.selectors.default_team
DEFAULT_TEAM_ATTR = "_default_team"  # accounts.selectors.default_team


def bind_credential(
    user: Any, *, scopes: frozenset[str] | None, team_id: int | None, label: str
) -> Any:
    """Attach a credential's restrictions to ``user`` (a fresh instance per request)."""
    user.credential_scopes = scopes
    user.credential_team_id = team_id
    user.credential_label = label
    forget_roles(user)
    return user


def credential_label(user: Any) -> str:
    """How ``user`` authenticated (``"session"`` for a cookie login)."""
    return str(getattr(user, "credential_label", "") or "session")


def team_roles(user: Any) -> dict[int, str]:
    """``{team pk: role}`` of ``user``'s memberships, narrowed to the credential's team.

    One query (the memberships with their teams, also kept for ``default_team``), cached on
    the user instance, which lives for one request or one WebSocket connection.
    """
    if user is None or not getattr(user, "is_authenticated", False):
        return {}
    cached = user.__dict__.get(_ROLES_ATTR)
    if cached is not None:
        return cached
    rows = Membership.objects.filter(user_id=user.pk).select_related("team").order_by()
    only = getattr(user, "credential_team_id", None)
    if only is not None:
        rows = rows.filter(team_id=only)
    memberships = list(rows)
    roles = {m.team_id: m.role for m in memberships}
    user.__dict__[MEMBERSHIPS_ATTR] = memberships
    user.__dict__[_ROLES_ATTR] = roles
    return roles


def memberships(user: Any) -> list[Membership]:
    """``user``'s memberships (their ``team`` loaded), narrowed like :func:`team_roles`."""
    team_roles(user)
    return list(user.__dict__.get(MEMBERSHIPS_ATTR, []))


def forget_roles(user: Any) -> None:
    """Drop the cached roles (after a membership of ``user`` changed)."""
    if user is not None:
        for attr in (_ROLES_ATTR, MEMBERSHIPS_ATTR, DEFAULT_TEAM_ATTR):
            user.__dict__.pop(attr, None)


def team_ids(user: Any, *, min_role: str = Role.VIEWER) -> list[int]:
    """Pks of the teams where ``user`` has at least ``min_role``."""
    floor = ROLE_RANK[min_role]
    return [team for team, role in team_roles(user).items() if ROLE_RANK[role] >= floor]


def role_in(user: Any, team_id: int) -> str | None:
    return team_roles(user).get(team_id)


def require_role(user: Any, team_id: int, min_role: str, *, what: str = "Object") -> str:
    """The role of ``user`` in team ``team_id``, which must be at least ``min_role``.

    Raises:
        NotFound: ``user`` is not a member (a stranger must not learn the object exists).
        Forbidden: ``forbidden``: a member whose role is below ``min_role``.
    """
    role = role_in(user, team_id)
    if role is None:
        raise NotFound(f"{what} not found.")
    if ROLE_RANK[role] < ROLE_RANK[min_role]:
        raise Forbidden(
            f"Your role in this team ({role}) may not do this; it needs {min_role} or above.",
            details={"role": role, "required_role": str(min_role)},
        )
    return role


def has_scope(user: Any, scope: str) -> bool:
    """Whether ``user``'s credential grants ``scope`` (``admin`` grants all, ``x:write``
    grants ``x:read``)."""
    scopes = getattr(user, "credential_scopes", None)
    if scopes is None:
        return True
    if Scope.ADMIN in scopes or scope in scopes:
        return True
    if scope.endswith(":read"):
        return scope.removesuffix(":read") + ":write" in scopes
    return False


def require_scope(user: Any, scope: str) -> None:
    """Raises ``Forbidden`` (``insufficient_scope``) unless the credential grants ``scope``."""
    if not has_scope(user, scope):
        raise Forbidden(
            f"This credential lacks the '{scope}' scope.",
            code="insufficient_scope",
            details={"required_scope": scope},
        )


def writes(request: Any) -> bool:
    """Whether ``request`` changes something (any method but GET, HEAD, OPTIONS): object
    lookups for it need a role that may write (``for_write`` in the selectors)."""
    return request.method not in ("GET", "HEAD", "OPTIONS")
