"""Row locks of tasks and sessions, taken in the one order that cannot deadlock with event writes.

Two rules, each learnt from a deadlock seen in CI on PostgreSQL:

1. **Session row before task row.** ``events_append`` locks the session row (it owns the
   ``seq`` counter) and its projectors may then update the task row (``task_phase_project``
   follows a runner's phase). A writer that locked the task first and then appended an event
   waited for the session while the event batch waited for the task. :func:`lock_task` takes
   the session row first, so every writer queues on the same row first.
2. **``FOR NO KEY UPDATE OF`` the row itself.** Every event insert references its session and
   task, so PostgreSQL takes a ``FOR KEY SHARE`` lock on both rows for the foreign keys. A plain
   ``select_for_update()`` (``FOR UPDATE``) conflicts with it, and through ``select_related``
   it would also lock the joined rows. ``FOR NO KEY UPDATE`` still serialises our writers but
   lets foreign-key checks through, since we never change a key.

SQLite has no row locks: its transactions begin ``IMMEDIATE`` (settings), which takes the
database's write lock at once and serialises writers for the whole transaction, so
:func:`lock_session` does nothing there.
"""

from __future__ import annotations

from django.db import connection
from django.db.models import QuerySet

from sessions.models import Session, Task


def lock_sessions() -> QuerySet[Session]:
    """``Session.objects`` locking the selected session rows (``FOR NO KEY UPDATE``)."""
    return Session.objects.select_for_update(no_key=True)


def lock_session(pk: int) -> None:
    """Hold session ``pk``'s row lock (``FOR NO KEY UPDATE``) until the open transaction ends;
    on SQLite, nothing (see the module docstring). Call inside ``transaction.atomic()``."""
    if connection.vendor != "sqlite":
        lock_sessions().filter(pk=pk).values_list("pk", flat=True).first()


def lock_task(*, pk: int, session_id: int, related: tuple[str, ...] = ("session",)) -> Task:
    """Lock task ``pk`` for the rest of the open transaction and return it fresh, with
    ``related`` joined (not locked). ``session_id`` is the task's session (it never changes);
    that row is locked first (rule 1 above). Call inside ``transaction.atomic()``.

    Raises:
        Task.DoesNotExist: no task ``pk``.
    """
    lock_session(session_id)
    return (
        Task.objects.select_for_update(no_key=True, of=("self",))
        .select_related(*related)
        .get(pk=pk)
    )
