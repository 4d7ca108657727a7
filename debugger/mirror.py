"""Mirroring runs to monitors (issue 10, item 4): the event projector and the database reads of
``/ws/monitor/{id}/``.

:func:`monitor_project` is registered with ``sessions.services.events.event_projector_register``
(``DebuggerConfig.ready``). For each batch it reads the ``config.monitor_id`` of the batch's tasks
in ONE query (a batch normally holds one task; events are never looked at one by one) and, for
the events of mirrored tasks, publishes after commit ONE message per monitor to the group
``monitor.<uuid hex>``::

    {"type": "monitor.events", "session_id": "<uuid>", "first_seq", "last_seq",
     "events": [<envelope>, …] | null}

— ``sessions.broadcast.events_message`` with the session id added: ``events`` is null for a
batch over ``EVENT_BROADCAST_MAX_BYTES`` (a doorbell; the consumer reads the rows). ``first_seq``
/``last_seq`` are of the mirrored events only (a session's other tasks are not mirrored, so the
seqs a monitor sees may have gaps).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections import defaultdict
from typing import Any

from django.db import transaction
from django.db.models import Q

from debugger.monitors import monitor_group
from sessions.broadcast import events_message, send_group
from sessions.choices import TERMINAL_STATUSES
from sessions.models import Event, Session, Task

MESSAGE_TYPE = "monitor.events"
CATCH_UP_MAX_EVENTS = 5000  # per connect: a console wants the live runs, not an archive


# task pk → (task uuid, monitor uuid), or None for a task without a monitor. A task's config
# never changes after it is created, so this process remembers the answer: the projector runs
# on every batch of every task, and most tasks have no monitor. Entries are added after commit
# only: a rolled-back task's pk can be reused (SQLite), a committed one's cannot.
_KNOWN: dict[int, tuple[str, str] | None] = {}
_KNOWN_MAX = 50_000


def _remember(found: dict[int, tuple[str, str] | None]) -> None:
    if len(_KNOWN) > _KNOWN_MAX:
        _KNOWN.clear()
    _KNOWN.update(found)


def _monitored(task_pks: set[int]) -> dict[int, tuple[str, str]]:
    """task pk → (task uuid, monitor uuid) for the tasks of ``task_pks`` that have a monitor
    (a query only for tasks this process has not seen committed yet)."""
    known = {pk: _KNOWN[pk] for pk in task_pks if pk in _KNOWN}
    unknown = task_pks - known.keys()
    if unknown:
        found: dict[int, tuple[str, str] | None] = {}
        for pk, uuid, config in Task.objects.filter(pk__in=unknown).values_list(
            "pk", "uuid", "config"
        ):
            monitor = (config or {}).get("monitor_id")
            found[pk] = (str(uuid), str(monitor)) if monitor else None
        known.update(found)
        transaction.on_commit(functools.partial(_remember, found))
    return {pk: value for pk, value in known.items() if value is not None}


def monitor_project(session: Session, events: list[Event]) -> None:
    """Publish the events of ``session``'s mirrored tasks to their monitors after commit (one
    message per monitor per batch). One query per batch, none per event."""
    task_pks = {e.task_id for e in events if e.task_id is not None}
    if not task_pks:
        return
    monitored = _monitored(task_pks)
    if not monitored:
        return
    session_uuid = str(session.uuid)
    by_monitor: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        found = monitored.get(event.task_id) if event.task_id is not None else None
        if found is not None:
            task_uuid, monitor = found
            by_monitor[monitor].append(
                event.envelope(session_uuid=session_uuid, task_uuid=task_uuid)
            )
    for monitor, envelopes in by_monitor.items():
        message = {**events_message(envelopes), "type": MESSAGE_TYPE, "session_id": session_uuid}
        transaction.on_commit(functools.partial(send_group, monitor_group(monitor), message))


# Reads of the consumer (sync; call through runtime_project.db.db_call) --------------------------


def mirrored_task(*, monitor_uuid: str, task_uuid: str) -> Task | None:
    """The task ``task_uuid`` when it is mirrored to ``monitor_uuid`` (else None)."""
    return (
        Task.objects.select_related("session", "agent")
        .filter(uuid=task_uuid, config__monitor_id=monitor_uuid)
        .first()
    )


def mirrored_events(
    *, monitor_uuid: str, session_uuid: str, after: int, upto: int
) -> list[dict[str, Any]]:
    """Envelopes of ``session_uuid``'s events with ``after < seq <= upto`` of tasks mirrored to
    ``monitor_uuid``, in ``seq`` order (a doorbell's rows, or a gap's)."""
    rows = (
        Event.objects.filter(
            session__uuid=session_uuid,
            seq__gt=after,
            seq__lte=upto,
            task__config__monitor_id=monitor_uuid,
        )
        .select_related("session", "task")
        .order_by("seq")
    )
    return [e.envelope() for e in rows[:CATCH_UP_MAX_EVENTS]]


def catch_up(*, monitor_uuid: str, since: dt.datetime | None) -> list[dict[str, Any]]:
    """Envelopes of the tasks mirrored to ``monitor_uuid`` that are still active (and, with
    ``since``, those that finished since then; only their events since then), ordered by
    session and ``seq``; at most :data:`CATCH_UP_MAX_EVENTS` (the newest ones)."""
    tasks = Task.objects.filter(config__monitor_id=monitor_uuid)
    active = ~Q(status__in=TERMINAL_STATUSES)
    tasks = tasks.filter(active | Q(finished_at__gte=since)) if since else tasks.filter(active)
    events = Event.objects.filter(task__in=tasks.values("pk"))
    if since is not None:
        events = events.filter(created_at__gte=since)
    rows = list(
        events.select_related("session", "task").order_by("-created_at", "-seq")[
            :CATCH_UP_MAX_EVENTS
        ]
    )
    rows.sort(key=lambda e: (e.session_id, e.seq))
    return [e.envelope() for e in rows]
