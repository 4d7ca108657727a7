"""Database-wide gauges read at scrape time (:class:`RuntimeCollector`).

A few aggregate queries per scrape (each one ``GROUP BY`` or ``COUNT``); a failing query never
fails the scrape: its metric is left out, ``agent_runtime_collector_up`` becomes 0 and the error
is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import timedelta

from django.db.models import Count, F, Q
from django.utils import timezone
from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sessions.choices import ACTIVE_STATUSES, TERMINAL_STATUSES, TaskStatus

logger = logging.getLogger(__name__)

TERMINAL_WINDOW = timedelta(hours=24)
"""Terminal tasks are counted when they finished within this window (active ones always)."""


def _tasks() -> Iterator[Metric]:
    from sessions.models import Task

    since = timezone.now() - TERMINAL_WINDOW
    rows = (
        Task.objects.filter(
            Q(status__in=ACTIVE_STATUSES) | Q(status__in=TERMINAL_STATUSES, finished_at__gte=since)
        )
        .values("status", "agent__slug")
        .annotate(n=Count("id"))
        .order_by()
    )
    family = GaugeMetricFamily(
        "agent_runtime_tasks",
        "Tasks by status and agent slug: active statuses (queued, running, waiting) all, "
        "terminal statuses finished in the last 24 h.",
        labels=["status", "agent"],
    )
    for row in rows:
        family.add_metric([row["status"], row["agent__slug"]], row["n"])
    yield family


def _queue_depth() -> Iterator[Metric]:
    from sessions.models import Task

    yield GaugeMetricFamily(
        "agent_runtime_task_queue_depth",
        "Tasks waiting for a worker (status queued).",
        value=Task.objects.filter(status=TaskStatus.QUEUED).count(),
    )


def _sandboxes() -> Iterator[Metric]:
    from sandboxes.models import Sandbox

    rows = (
        Sandbox.objects.filter(last_started_at__isnull=False)
        .filter(Q(last_stopped_at__isnull=True) | Q(last_stopped_at__lt=F("last_started_at")))
        .values("backend")
        .annotate(n=Count("id"))
        .order_by()
    )
    family = GaugeMetricFamily(
        "agent_runtime_sandboxes",
        "Sandboxes recorded as running (started and not stopped since), by backend.",
        labels=["backend"],
    )
    for row in rows:
        family.add_metric([row["backend"] or "unknown"], row["n"])
    yield family


class RuntimeCollector(Collector):
    """Yields the database gauges; registered once in ``ObservabilityConfig.ready``."""

    parts: tuple[Callable[[], Iterator[Metric]], ...] = (_tasks, _queue_depth, _sandboxes)

    def collect(self) -> Iterator[Metric]:
        up = 1
        for part in self.parts:
            try:
                metrics = list(part())  # evaluate now: a query error must not escape below
            except Exception:
                logger.warning("metrics: %s failed", part.__name__, exc_info=True)
                up = 0
                continue
            yield from metrics
        yield GaugeMetricFamily(
            "agent_runtime_collector_up",
            "1 if every database metric of this scrape was read, 0 if one failed (see logs).",
            value=up,
        )

    def describe(self) -> Iterator[Metric]:
        # No queries at registration time (the database may not exist yet).
        return iter(())


_registered: RuntimeCollector | None = None


def register_collector() -> RuntimeCollector:
    """Add :class:`RuntimeCollector` to the default registry once per process."""
    global _registered
    if _registered is None:
        _registered = RuntimeCollector()
        REGISTRY.register(_registered)
    return _registered
