"""Writers that lock a task and append its events never deadlock with a runner's event batch
(``sessions.services.locks``), on PostgreSQL where rows are locked.

CI once failed with ``deadlock detected``: ``task_cancel`` held the task row and waited for the
session row, while the runner's event batch held the session row and its phase projector waited
to update the task row. Here the batch's transaction is held open between its two steps, so the
interleaving that deadlocked happens every time instead of once in a few hundred runs.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.db import connection, connections, transaction

from sessions.choices import TaskStatus
from sessions.models import Event, Task
from sessions.services.events import EventDraft, events_append
from sessions.services.tasks import task_cancel, task_claim_next

pytestmark = pytest.mark.django_db(transaction=True)


def _backend_pid() -> int:
    handle = connections["default"]
    handle.ensure_connection()
    return int(handle.connection.info.backend_pid)


def _waits_for_a_lock(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid])
        row = cursor.fetchone()
    return bool(row) and row[0] == "Lock"


def test_a_cancel_during_an_event_batch_that_moves_the_phase_waits_instead_of_deadlocking(
    make_task: Any,
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("row locks exist on PostgreSQL only (CI runs this on PostgreSQL)")
    task = make_task("sleep 60")
    [claimed] = task_claim_next(worker="test-worker", limit=1, session_id=task.session_id)
    drafts = {
        step: EventDraft(type=t, data=d, task_id=task.pk, task_uuid=str(task.uuid))
        for step, t, d in [
            ("log", "log", {"text": "working"}),
            ("phase", "task.status", {"status": "running", "phase": "tool_call"}),
        ]
    }
    batch_holds_session, cancel_waiting = threading.Event(), threading.Event()
    cancel_pid: list[int] = []
    errors: list[BaseException] = []

    def runner_batch() -> None:
        try:
            with transaction.atomic():
                events_append(session=claimed.session, drafts=[drafts["log"]])
                batch_holds_session.set()
                assert cancel_waiting.wait(30), "the cancel never queued for a lock"
                events_append(session=claimed.session, drafts=[drafts["phase"]])
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            connections.close_all()

    def cancel() -> None:
        try:
            cancel_pid.append(_backend_pid())
            task_cancel(task=claimed, reason="stop")
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    batch = threading.Thread(target=runner_batch)
    batch.start()
    assert batch_holds_session.wait(30)
    canceller = threading.Thread(target=cancel)
    canceller.start()
    deadline = time.monotonic() + 30
    while not (cancel_pid and _waits_for_a_lock(cancel_pid[0])):
        assert time.monotonic() < deadline, "the cancel did not wait for the batch's lock"
        time.sleep(0.02)
    cancel_waiting.set()
    batch.join(60)
    canceller.join(60)
    assert not errors, errors

    task = Task.objects.get(pk=task.pk)
    assert task.cancel_requested_at is not None
    assert task.current_phase == "cancelling"  # the cancel came after the batch's phase
    log = list(Event.objects.filter(task=task).order_by("seq").values_list("type", "data"))
    tail = [(t, d.get("phase")) for t, d in log[-3:]]
    assert tail == [("log", None), ("task.status", "tool_call"), ("task.status", "cancelling")]
    assert task.status == TaskStatus.RUNNING  # the executor, not the cancel, ends a running task
