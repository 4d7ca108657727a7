"""Event-log projector feeding the task duration histogram (``event_projector_register``).

It runs inside ``events_append``'s transaction, so the observation is deferred to the commit:
a rolled-back status change is not counted.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from observability.metrics import TASK_DURATION
from sessions.choices import TERMINAL_STATUSES


def task_status_projector(session: Any, events: list[Any]) -> None:
    """Observe ``finished_at - started_at`` of each task whose ``task.status`` event is terminal
    (tasks that never started are not observed). A task whose event came without its instance
    (``sessions.services.events.event_task``) is read: one query per batch."""
    from sessions.models import Task
    from sessions.services.events import event_task

    ended = [e for e in events if e.task_id and e.data.get("status") in TERMINAL_STATUSES]
    if not ended:
        return
    # A service's terminal event comes with the task it saved (event_task): no query for it.
    known = [task for task in map(event_task, ended) if task is not None]
    times = [(t.status, t.started_at, t.finished_at) for t in known]
    ids = {e.task_id for e in ended} - {t.pk for t in known}
    if ids:
        rows = Task.objects.filter(pk__in=ids, started_at__isnull=False, finished_at__isnull=False)
        times += rows.values_list("status", "started_at", "finished_at")
    observed = [
        (status, (finished - started).total_seconds())
        for status, started, finished in times
        if started and finished
    ]

    def observe() -> None:
        for status, seconds in observed:
            TASK_DURATION.labels(status).observe(max(seconds, 0.0))

    transaction.on_commit(observe)
