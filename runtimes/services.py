"""Writes of the runtimes app: attach (with displacement), detach, heartbeat.

Each attach or detach is also written to the session's event log (``runtime.attached``,
``runtime.displaced``, ``runtime.detached``), in the same transaction as the row change, so
clients watching the session see who runs its work.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts import access
from runtimes.models import Runtime, RuntimeStatus
from runtimes.protocol import Registration
from sessions.models import Session
from sessions.services.events import event_append
from sessions.services.locks import lock_session


def runtime_attach(
    *, user: Any, session: Session, registration: Registration, channel_name: str
) -> tuple[Runtime, Runtime | None]:
    """Record that the runtime of ``registration`` (reachable at ``channel_name``) is now the
    session's runtime; returns ``(runtime, displaced)``.

    The runtime connected to the session before, if any, is marked ``displaced`` (the caller
    tells its consumer to close), with a ``runtime.displaced`` event ``{runtime_id, by}``; then
    ``runtime.attached`` ``{runtime_id, kinds, capabilities}`` is appended. The caller checked
    that ``user`` may write to ``session``.
    """
    now = timezone.now()
    with transaction.atomic():
        # The session lock serialises two runtimes registering at once: one displaces the other.
        lock_session(session.pk)
        old = Runtime.objects.filter(session=session, status=RuntimeStatus.CONNECTED).first()
        if old is not None:
            old.status = RuntimeStatus.DISPLACED
            old.disconnected_at = now
            old.detach_reason = "displaced"
            old.save(update_fields=["status", "disconnected_at", "detach_reason", "updated_at"])
        runtime = Runtime.objects.create(
            runtime_id=registration.runtime_id,
            session=session,
            team_id=session.team_id,
            user=user,
            credential=access.credential_label(user)[:100],
            channel_name=channel_name,
            kinds=registration.kinds,
            capabilities=registration.capabilities,
            connected_at=now,
            last_seen_at=now,
        )
        if old is not None:
            old.displaced_by = runtime
            old.save(update_fields=["displaced_by"])
            event_append(
                session=session,
                type="runtime.displaced",
                data={"runtime_id": old.runtime_id, "by": runtime.runtime_id},
            )
        event_append(
            session=session,
            type="runtime.attached",
            data={
                "runtime_id": runtime.runtime_id,
                "kinds": runtime.kinds,
                "capabilities": runtime.capabilities,
            },
        )
    return runtime, old


def runtime_detach(*, runtime: Runtime, reason: str = "disconnected") -> bool:
    """The runtime's socket closed: mark it ``disconnected`` and append ``runtime.detached``
    ``{runtime_id, reason}``. Returns ``False`` (and writes nothing) when it was no longer the
    session's runtime (displaced, or detached already)."""
    with transaction.atomic():
        changed = Runtime.objects.filter(pk=runtime.pk, status=RuntimeStatus.CONNECTED).update(
            status=RuntimeStatus.DISCONNECTED,
            disconnected_at=timezone.now(),
            detach_reason=reason[:32],
            updated_at=timezone.now(),
        )
        if changed:
            event_append(
                session=runtime.session,
                type="runtime.detached",
                data={"runtime_id": runtime.runtime_id, "reason": reason},
            )
    return bool(changed)


def runtime_touch(*, runtime: Runtime) -> str:
    """Heartbeat of an open socket: refresh ``last_seen_at`` while the row is ``connected``.
    Returns the row's status (``displaced`` when a newer runtime took over and the message
    telling this connection was lost)."""
    Runtime.objects.filter(pk=runtime.pk, status=RuntimeStatus.CONNECTED).update(
        last_seen_at=timezone.now()
    )
    status = Runtime.objects.filter(pk=runtime.pk).values_list("status", flat=True).first()
    return str(status or RuntimeStatus.DISCONNECTED)
