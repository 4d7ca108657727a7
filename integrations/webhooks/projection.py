"""From the event log to webhook deliveries: the projector registered with
``sessions.services.events.event_projector_register`` (``WebhooksConfig.ready``).

It runs inside the transaction that appends the events, so a delivery exists exactly when its
event does; it only inserts rows (the dispatcher sends them later, after commit), so a task is
never slowed by a receiver. A team without an enabled endpoint that wants the batch's events
costs one indexed query per batch.

Mapping: a ``task.status`` event whose status differs from the task's previous ``task.status``
becomes ``task.<status>`` (a runner's phase updates repeat ``running`` and are not webhook
events); the task's first one (it carries ``task_type``) is also ``task.created``; and
``session.created`` is itself. Payloads (docs/integrations/webhooks.md)::

    {"id": "<uuid>", "type": "task.succeeded", "created_at": "2025-01-01T12:00:00.123Z",
     "data": {"task": {"id", "status", "phase", "task_type", "agent": {"id", "slug"},
                       "session": "<uuid>", "created_at", "started_at", "finished_at",
                       "result", "error", "usage"},
              "session": {"id": "<uuid>"}}}

``result`` and ``error`` above ``RESULT_MAX_CHARS`` of JSON become
``{"truncated": true, "preview": "<first 1024 chars of the JSON>"}``.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.conf import settings
from django.db import transaction

from integrations.webhooks.models import WebhookDelivery, WebhookEndpoint
from integrations.webhooks.services import envelope, matching
from sessions.models import Event, Session, Task

TYPES = frozenset({"task.status", "session.created"})
RESULT_MAX_CHARS = 16 * 1024
PREVIEW_CHARS = 1024
_IDS = uuid.UUID("6f1d3c1e-4b7a-4a55-9f7e-0b7d2f1c9a10")  # namespace of message ids


def _iso(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def _summary(value: Any) -> Any:
    """``value``, or a preview of its JSON when that is longer than ``RESULT_MAX_CHARS``."""
    if value is None:
        return None
    text = json.dumps(value, default=str, ensure_ascii=False)
    if len(text) <= RESULT_MAX_CHARS:
        return value
    return {"truncated": True, "preview": text[:PREVIEW_CHARS]}


def _message_id(session: Session, event: Event, event_type: str) -> str:
    """Stable per (session, seq, webhook type): every endpoint gets the same id for a message."""
    return str(uuid.uuid5(_IDS, f"{session.uuid}:{event.seq}:{event_type}"))


def _previous_status(task_id: int, before_seq: int) -> str | None:
    row = (
        Event.objects.filter(task_id=task_id, type="task.status", seq__lt=before_seq)
        .order_by("-seq")
        .values_list("data", flat=True)
        .first()
    )
    return row.get("status") if isinstance(row, dict) else None


def _webhook_types(events: list[Event]) -> list[tuple[Event, str]]:
    """``(event, webhook type)`` pairs of a batch (see the module docstring)."""
    out: list[tuple[Event, str]] = []
    last: dict[int, str | None] = {}
    for event in sorted(events, key=lambda e: e.seq):
        if event.type == "session.created":
            out.append((event, "session.created"))
            continue
        status = event.data.get("status")
        if event.task_id is None or not isinstance(status, str):
            continue
        if event.task_id not in last:
            last[event.task_id] = _previous_status(event.task_id, event.seq)
        if last[event.task_id] == status:
            continue
        last[event.task_id] = status
        if "task_type" in event.data and status == "queued":
            out.append((event, "task.created"))
        out.append((event, f"task.{status}"))
    return out


def _task_data(task: Task, session: Session, event: Event) -> dict[str, Any]:
    terminal = task.is_terminal
    return {
        "task": {
            "id": str(task.uuid),
            "status": event.data.get("status"),
            "phase": event.data.get("phase", ""),
            "task_type": task.task_type,
            "agent": {"id": str(task.agent.uuid), "slug": task.agent.slug},
            "session": str(session.uuid),
            "created_at": _iso(task.created_at),
            "started_at": _iso(task.started_at),
            "finished_at": _iso(task.finished_at),
            "result": _summary(task.result) if terminal else None,
            "error": _summary(task.error) if terminal else None,
            "usage": task.usage if terminal else {},
        },
        "session": {"id": str(session.uuid)},
    }


def _session_data(session: Session) -> dict[str, Any]:
    agent = session.agent
    return {
        "session": {
            "id": str(session.uuid),
            "name": session.name,
            "agent": {"id": str(agent.uuid), "slug": agent.slug},
        }
    }


def deliveries_project(session: Session, events: list[Event]) -> None:
    """The projector: queue a delivery per (webhook event, enabled endpoint of the session's
    team that wants it). Called inside ``events_append``'s transaction."""
    if not settings.WEBHOOKS_ENABLED:
        return
    endpoints = list(
        WebhookEndpoint.objects.filter(team_id=session.team_id, enabled=True)
        .only("id", "event_types", "agent_id")
        .order_by()  # on every batch: no sort, nor its compile
    )
    if not endpoints:
        return
    candidates = {"session.created"} | {f"task.{e.data.get('status')}" for e in events}
    if not any(matching(endpoints, t, session.agent_id) for t in candidates | {"task.created"}):
        return
    pairs = _webhook_types(events)
    task_ids = {e.task_id for e, _ in pairs if e.task_id is not None}
    tasks = Task.objects.select_related("agent").in_bulk(task_ids) if task_ids else {}
    rows: list[WebhookDelivery] = []
    for event, event_type in pairs:
        targets = matching(endpoints, event_type, session.agent_id)
        if not targets:
            continue
        task = tasks.get(event.task_id) if event.task_id is not None else None
        if event_type.startswith("task.") and task is None:
            continue
        data = _task_data(task, session, event) if task else _session_data(session)
        event_id = _message_id(session, event, event_type)
        body = envelope(
            event_id=event_id, event_type=event_type, created_at=event.created_at, data=data
        )
        rows += [
            WebhookDelivery(
                endpoint_id=endpoint.pk,
                event_id=event_id,
                event_type=event_type,
                payload=body,
                max_attempts=settings.WEBHOOK_MAX_ATTEMPTS,
                next_attempt_at=event.created_at,
            )
            for endpoint in targets
        ]
    if rows:
        WebhookDelivery.objects.bulk_create(rows)
        from integrations.webhooks.dispatch import wake

        transaction.on_commit(wake)
