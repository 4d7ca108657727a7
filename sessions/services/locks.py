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

from runtime_project.db import unique_or_none
from sessions.models import Session, Task


def lock_sessions() -> QuerySet[Session]:
    """``Session.objects`` locking the selected session rows (``FOR NO KEY UPDATE``)."""
    return Session.objects.select_for_update(no_key=True)


def session_seqs_reserve(*, pk: int, count: int) -> tuple[int, str]:
    """Lock session ``pk``'s row (as :func:`lock_sessions`: an ``UPDATE`` of a non-key column
    takes ``FOR NO KEY UPDATE`` on PostgreSQL) and advance its ``last_seq`` by ``count``, in one
    statement (``UPDATE … RETURNING``; SQLite ≥ 3.35). Returns ``(new last_seq, session uuid
    as text)``: the caller owns seqs ``last_seq - count + 1`` to ``last_seq`` until its
    transaction ends (a rollback gives them back). Call inside ``transaction.atomic()``.

    Raises:
        Session.DoesNotExist: no such session row.
    """
    if not connection.features.can_return_columns_from_insert:  # SQLite < 3.35: two statements
        row = lock_sessions().values_list("last_seq", "uuid").get(pk=pk)
        Session.objects.filter(pk=pk).update(last_seq=row[0] + count)
        return row[0] + count, str(row[1])
    table = connection.ops.quote_name(Session._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET last_seq = last_seq + %s WHERE id = %s "  # noqa: S608 - our table
            "RETURNING last_seq, uuid",
            [count, pk],
        )
        row = cursor.fetchone()
    if row is None:
        raise Session.DoesNotExist(f"session {pk} is gone")
    return int(row[0]), str(Session._meta.get_field("uuid").to_python(row[1]))


def lock_session(pk: int) -> None:
    """Hold session ``pk``'s row lock (``FOR NO KEY UPDATE``) until the open transaction ends;
    on SQLite, nothing (see the module docstring). Call inside ``transaction.atomic()``."""
    if connection.vendor != "sqlite":
        unique_or_none(lock_sessions().filter(pk=pk).values_list("pk", flat=True))


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
