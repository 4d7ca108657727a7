"""The audit log: who (user and credential) created, changed, cancelled or deleted what.

API writes record an entry through :func:`audit_record` from the view or consumer that knows
the caller; the Django admin's additions, changes and deletions go through
:class:`AuditedAdmin` (the base of every ``ModelAdmin`` here) and its custom actions call
:func:`audit_request`, so operators' clicks are in the same log. Team admins read their
team's entries (``GET /api/v1/teams/{id}/audit``).

Details never hold secrets: callers pass ids, names and changed field *names*, not values.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.contrib import admin

from accounts.access import credential_label
from accounts.models import AuditEntry, Team


def _client_ip(request: Any) -> str | None:
    meta = getattr(request, "META", None) or {}
    return meta.get("REMOTE_ADDR") or None


def _target_fields(target: Any) -> dict[str, Any]:
    if target is None:
        return {}
    public_id = getattr(target, "uuid", None) or getattr(target, "pk", "")
    return {
        "target_type": target._meta.model_name,
        "target_id": str(public_id),
        "target_repr": str(target)[:200],
    }


def _team_id_of(target: Any) -> int | None:
    if isinstance(target, Team):
        return target.pk
    for path in ("team_id", "session.team_id", "agent.team_id"):
        obj = target
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if isinstance(obj, int):
            return obj
    return None


def audit_record(
    *,
    actor: Any,
    action: str,
    target: Any = None,
    team: Any = None,
    details: dict[str, Any] | None = None,
    request: Any = None,
) -> AuditEntry:
    """Record ``action`` (e.g. ``"session.delete"``) by ``actor`` on ``target``.

    ``team`` defaults to the target's team (``target.team``, ``target.session.team`` or
    ``target.agent.team``). ``request`` supplies the client IP.
    """
    team_id = getattr(team, "pk", team) if team is not None else _team_id_of(target)
    user = actor if getattr(actor, "is_authenticated", False) else None
    return AuditEntry.objects.create(
        team_id=team_id,
        actor=user,
        credential=credential_label(actor) if user is not None else "",
        action=action,
        details=details or {},
        ip=_client_ip(request),
        **_target_fields(target),
    )


def audit_request(request: Any, action: str, target: Any = None, **details: Any) -> AuditEntry:
    """:func:`audit_record` for a view: the actor and IP come from ``request``."""
    return audit_record(
        actor=request.user, action=action, target=target, details=details, request=request
    )


class ReadOnlyAdminMixin:
    """Admin pages that only show rows (logs, traces, records written by the system): no add,
    no change, and no delete unless ``deletable``. Put it before the ``ModelAdmin`` base."""

    deletable: ClassVar[bool] = False

    def has_add_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return self.deletable and super().has_delete_permission(request, obj)  # type: ignore[misc]


class AuditedAdmin(admin.ModelAdmin):
    """A ``ModelAdmin`` whose additions, changes and deletions (one object or a bulk "delete
    selected") also go to the audit log, as ``admin.add`` / ``admin.change`` /
    ``admin.delete`` by the signed-in operator. Custom admin actions call
    :func:`audit_request` themselves."""

    def log_addition(self, request: Any, obj: Any, message: Any) -> Any:
        entry = super().log_addition(request, obj, message)
        audit_record(actor=request.user, action="admin.add", target=obj, request=request,
                     details={"credential": "admin"})  # fmt: skip
        return entry

    def log_change(self, request: Any, obj: Any, message: Any) -> Any:
        entry = super().log_change(request, obj, message)
        changed = sorted({f for m in message or [] for f in m.get("changed", {}).get("fields", [])})
        audit_record(actor=request.user, action="admin.change", target=obj, request=request,
                     details={"fields": changed})  # fmt: skip
        return entry

    def log_deletions(self, request: Any, queryset: Any) -> Any:
        entries = super().log_deletions(request, queryset)
        for obj in queryset:
            audit_record(actor=request.user, action="admin.delete", target=obj, request=request)
        return entries
