"""Celery tasks of ``TASK_EXECUTOR=celery`` (see ``sessions.dispatch``)."""

from __future__ import annotations

import asyncio

from celery import shared_task

_runner: asyncio.Runner | None = None


def _loop_runner() -> asyncio.Runner:
    """One event loop per pool process, kept across tasks: the database connections of its
    thread pool, the channel-layer connection and the shared SDK clients stay warm (a fresh
    loop per task opened them all again; bench/executors.py)."""
    global _runner
    if _runner is None:
        _runner = asyncio.Runner()
    return _runner


@shared_task(name="sessions.execute_task", ignore_result=True)
def execute_task_job(task_id: str) -> None:
    """Claim ``task_id`` if it is still the next runnable task of its session and run it here
    (a stale or duplicate message does nothing); then send the session's next queued task."""
    from sessions.execution import execute_task_async

    _loop_runner().run(execute_task_async(task_id))


@shared_task(name="sessions.sweep", ignore_result=True)
def sweep_job() -> None:
    """Periodic (beat): recover lost workers' tasks, re-send lost messages, reap sandboxes."""
    from sessions.dispatch import sweep

    asyncio.run(sweep())
