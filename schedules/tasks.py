"""Celery task of the scale-out placement: Celery beat fires due schedules.

It needs this beat entry, in ``CELERY_BEAT_SCHEDULE`` (``runtime_project/settings.py``; the
Celery app reads the ``CELERY_*`` settings) or ``app.conf.beat_schedule``::

    "fire-due-schedules": {
        "task": "schedules.tasks.fire_due_schedules",
        "schedule": SCHEDULER_INTERVAL_S,  # seconds
    },

and run one ``celery beat`` next to the workers. Running several beats, or beat next to the
embedded scheduler (``schedules.scheduler``), is safe: each tick fires at most once
(``schedules.services``). ``SCHEDULER_ENABLED`` governs the embedded scheduler only; this task
always fires when it is called.
"""

from __future__ import annotations

from celery import shared_task

from schedules.services import schedules_fire_due


@shared_task(name="schedules.tasks.fire_due_schedules", ignore_result=True)
def fire_due_schedules() -> list[str]:
    """Fire every due schedule now; returns the ids (UUID strings) of the tasks queued."""
    return [str(task.uuid) for task in schedules_fire_due()]
