"""The Celery application of ``TASK_EXECUTOR=celery`` (issue 6; Celery's "First steps with
Django" layout). Configuration comes from the ``CELERY_*`` Django settings.

Run workers with ``celery -A runtime_project worker -Q default,sandbox,llm`` (``--concurrency``
or ``--autoscale=MAX,MIN``) and one ``celery -A runtime_project beat`` for the periodic sweep.
"""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "runtime_project.settings")

app = Celery("agent_runtime")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
def _preload(**_: object) -> None:
    """Import every agent kind's runner (and the SDKs they use) in the worker's parent process,
    before the pool forks: otherwise each pool process imports them on its first task, all at
    once, which took ~7 s on 2 cores (bench/executors.py)."""
    from importlib import import_module

    from sessions.runners import RUNNERS

    import_module("sessions.execution")
    for path in RUNNERS.values():
        import_module(path.rpartition(".")[0])
