"""A task whose worker died is recovered: requeued when retry-safe, else failed with worker_lost."""

from __future__ import annotations

import signal
import time
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from sandboxes.backends._procs import descendants
from sessions.models import Task
from sessions.services.tasks import task_claim_next, task_recover_expired
from tests import procs
from tests.helpers import stdout_of, wait_terminal

pytestmark = [pytest.mark.django_db(transaction=True)]


def _claim_and_expire(task: Task) -> Task:
    claimed = task_claim_next(worker="dead-worker", limit=1)
    assert [t.pk for t in claimed] == [task.pk]
    Task.objects.filter(pk=task.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    return Task.objects.get(pk=task.pk)


def test_expired_lease_fails_with_worker_lost(make_task: Any) -> None:
    task = _claim_and_expire(make_task("sleep 1"))
    recovered = task_recover_expired()
    assert [t.pk for t in recovered] == [task.pk]
    task.refresh_from_db()
    assert task.status == "failed"
    assert task.error["code"] == "worker_lost"
    assert task.error["details"]["worker"] == "dead-worker"
    last = task.events.order_by("-seq").first()
    assert last.type == "task.status" and last.data["status"] == "failed"


def test_live_lease_is_not_touched(make_task: Any) -> None:
    task = make_task("sleep 1")
    task_claim_next(worker="alive", limit=1)
    assert task_recover_expired() == []
    task.refresh_from_db()
    assert task.status == "running"


@pytest.mark.sandbox
async def test_retry_safe_task_is_requeued_and_runs_again(make_task: Any, executor: Any) -> None:
    await executor.stop()  # keep the executor out of the way while we fake the dead worker
    task = await sync_to_async(make_task)("echo second-life", config={"retry_safe": True})
    task = await sync_to_async(_claim_and_expire)(task)
    await sync_to_async(task_recover_expired)()
    refreshed = await sync_to_async(Task.objects.get)(pk=task.pk)
    assert refreshed.status == "queued" and refreshed.current_phase == "requeued"
    await executor.start()
    task = await wait_terminal(task)
    assert task.status == "succeeded"
    assert task.attempt == 2
    assert "second-life" in await sync_to_async(stdout_of)(task)


@pytest.mark.sandbox
def test_sigkilled_worker_process_is_recovered(make_task: Any, tmp_path: Any) -> None:
    """A real `run_worker` process is SIGKILLed mid-task; its sandbox dies with it, and the
    lease expiry turns the task into failed/worker_lost instead of leaving it running."""
    task = make_task("echo working; sleep 120")
    worker = procs.start_worker(tmp_path / "worker.log", TASK_LEASE_S=1.5)
    try:
        deadline = time.monotonic() + 30
        while not Task.objects.filter(pk=task.pk, status="running").exists():
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()
            time.sleep(0.1)
        while "working" not in stdout_of(task):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        sandbox_pids = descendants(worker.pid)
        assert sandbox_pids, "the task's sandbox processes should be the worker's descendants"
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    finally:
        procs.stop(worker)
    # The sandbox dies with its worker (bwrap --die-with-parent). Its processes are re-parented
    # to the nearest subreaper, which is this test process once a sandbox ran here: reap them.
    assert procs.reap_orphans(sandbox_pids, timeout=10) == [], "sandbox outlived its worker"
    time.sleep(1.6)
    recovered = task_recover_expired()
    assert task.pk in [t.pk for t in recovered]
    task.refresh_from_db()
    assert task.status == "failed" and task.error["code"] == "worker_lost"


def _wait_running(task: Task, worker: Any, log: Any) -> None:
    deadline = time.monotonic() + 30
    while "started" not in stdout_of(task):
        assert worker.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)


@pytest.mark.sandbox
def test_sigterm_drains_a_task_that_finishes_in_time(make_task: Any, tmp_path: Any) -> None:
    task = make_task("echo started; sleep 1; echo finished")
    log = tmp_path / "worker.log"
    worker = procs.start_worker(log, TASK_DRAIN_S=30)
    try:
        _wait_running(task, worker, log)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0, log.read_text()
    finally:
        procs.stop(worker)
    task.refresh_from_db()
    assert task.status == "succeeded"
    assert "finished" in stdout_of(task)


@pytest.mark.sandbox
@pytest.mark.parametrize("retry_safe", [False, True])
def test_sigterm_hands_back_a_task_that_outlives_the_drain(
    make_task: Any, tmp_path: Any, retry_safe: bool
) -> None:
    """After the drain, a running task is never left `running` for lease recovery to find:
    it is requeued when retry-safe, else failed with worker_shutdown, and its process is gone."""
    task = make_task("echo started; sleep 120", config={"retry_safe": retry_safe})
    log = tmp_path / "worker.log"
    worker = procs.start_worker(log, TASK_DRAIN_S=0.5)
    try:
        _wait_running(task, worker, log)
        sandbox_pids = descendants(worker.pid)
        started = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0, log.read_text()
        assert time.monotonic() - started < 15
    finally:
        procs.stop(worker)
    assert procs.reap_orphans(sandbox_pids, timeout=10) == []
    task.refresh_from_db()
    last = task.events.order_by("-seq").first()
    if retry_safe:
        assert (task.status, task.current_phase) == ("queued", "requeued")
        assert last.data["status"] == "queued" and last.data["reason"] == "worker_shutdown"
    else:
        assert task.status == "failed"
        assert task.error["code"] == "worker_shutdown"
        assert last.data["status"] == "failed"
