"""Row locks of tasks and sessions, taken the one way that cannot deadlock with event writes.

Every event insert references its session and task, so PostgreSQL takes a ``FOR KEY SHARE``
lock on both rows for the foreign keys. A plain ``select_for_update()`` (``FOR UPDATE``)
conflicts with it, and through ``select_related`` it also locks the joined session row: a
task cancel holding the task and waiting for the session, while an event batch holds the
session and waits for the task, was a deadlock (seen in CI). ``FOR NO KEY UPDATE`` on the row
itself (``of=("self",)``) still serialises our writers but lets foreign-key checks through,
since we never change a key. SQLite has no row locks and ignores all of this.
"""

from __future__ import annotations

from django.db.models import QuerySet

from sessions.models import Session, Task


def lock_tasks() -> QuerySet[Task]:
    """``Task.objects`` locking the selected task rows only (``FOR NO KEY UPDATE OF`` task)."""
    return Task.objects.select_for_update(no_key=True, of=("self",))


def lock_sessions() -> QuerySet[Session]:
    """``Session.objects`` locking the selected session rows (``FOR NO KEY UPDATE``)."""
    return Session.objects.select_for_update(no_key=True)
