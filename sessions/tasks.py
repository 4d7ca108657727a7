"""Celery tasks of ``TASK_EXECUTOR=celery`` (see ``sessions.dispatch``)."""

from __future__ import annotations

import asyncio

from celery import shared_task


@shared_task(name="sessions.execute_task", ignore_result=True)
def execute_task_job(task_id: str) -> None:
    """Claim ``task_id`` if it is still the next runnable task of its session and run it here
    (a stale or duplicate message does nothing); then send the session's next queued task."""
    from sessions.execution import execute_task

    execute_task(task_id)


@shared_task(name="sessions.sweep", ignore_result=True)
def sweep_job() -> None:
    """Periodic (beat): recover lost workers' tasks, re-send lost messages, reap sandboxes."""
    from sessions.dispatch import sweep

    asyncio.run(sweep())
