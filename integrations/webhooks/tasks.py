"""Celery task of the scale-out placement (``TASK_EXECUTOR=celery``): send due webhooks.

Beat runs it every ``WEBHOOK_DISPATCH_INTERVAL_S`` (``WEBHOOKS_BEAT_SCHEDULE``, merged into
``CELERY_BEAT_SCHEDULE`` by ``runtime_project/settings.py``), and a commit that queued
deliveries sends one message at once (``integrations.webhooks.dispatch.wake``). Any number may
run at once, next to the in-process dispatcher too: each attempt is claimed once
(``dispatch.deliveries_claim``).
"""

from __future__ import annotations

import time

from celery import shared_task

from integrations.webhooks.dispatch import dispatch_due

PASS_BUDGET_S = 50.0  # a call keeps going while passes are full, for at most this long


@shared_task(name="webhooks.tasks.dispatch_due_webhooks", ignore_result=True)
def dispatch_due_webhooks() -> int:
    """Send due deliveries, pass after pass while there are more; returns the attempts made."""
    from django.conf import settings

    made, deadline = 0, time.monotonic() + PASS_BUDGET_S
    while time.monotonic() < deadline:
        sent = dispatch_due()
        made += sent
        if sent < settings.WEBHOOK_CONCURRENCY:
            break
    return made
