"""In-process Prometheus metrics, updated where things happen (cheap: one ``inc``/``observe``).

Each process has its own values; a multi-process deployment (web + worker processes) exposes
per-process counters and histograms, summed by Prometheus (``sum by (...)``). The database-wide
gauges (tasks, queue depth, sandboxes) are read at scrape time by
:mod:`observability.collectors` instead. Imported by hot paths (``events_append``, consumers):
no Django model imports here.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

EVENTS = Counter(
    "agent_runtime_events",
    "Events appended to the event log, by type prefix (task, process, message, tool, ...).",
    ["type"],
)
TASK_DURATION = Histogram(
    "agent_runtime_task_duration_seconds",
    "Run time of tasks (started_at to finished_at) observed when they reach a terminal status.",
    ["status"],
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, float("inf")),
)
WEBSOCKETS = Gauge(
    "agent_runtime_websocket_connections",
    "Open WebSocket connections of this process, by consumer (session, task, runtime).",
    ["consumer"],
)
SANDBOX_START = Histogram(
    "agent_runtime_sandbox_start_seconds",
    "Time to start a sandbox (backend create), by backend.",
    ["backend"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, float("inf")),
)


def count_events(events: Iterable[Any]) -> None:
    """Count a written batch by type prefix (``task.status`` → ``task``): one ``inc`` per prefix."""
    for prefix, n in Tally(str(e.type).split(".", 1)[0] for e in events).items():
        EVENTS.labels(prefix).inc(n)


def _consumer_label(consumer: object) -> str:
    """``SessionStreamConsumer`` → ``session``, ``RuntimeConsumer`` → ``runtime``."""
    name = type(consumer).__name__
    return name.removesuffix("Consumer").removesuffix("Stream").lower() or "unknown"


def websocket_opened(consumer: Any) -> None:
    """Count ``consumer``'s connection as open (call it once the handshake is accepted)."""
    if not getattr(consumer, "_metrics_open", False):
        consumer._metrics_open = True
        WEBSOCKETS.labels(_consumer_label(consumer)).inc()


def websocket_closed(consumer: Any) -> None:
    """Count it closed (from ``disconnect``; a no-op if it was never counted open)."""
    if getattr(consumer, "_metrics_open", False):
        consumer._metrics_open = False
        WEBSOCKETS.labels(_consumer_label(consumer)).dec()


def observe_sandbox_start(backend: str, seconds: float) -> None:
    SANDBOX_START.labels(backend or "unknown").observe(seconds)


# The analytics export (observability/analytics.py); zero while ANALYTICS_EXPORT_URL is unset.
ANALYTICS_EXPORTED = Counter(
    "analytics_events_exported",
    "Events the analytics collector accepted (2xx).",
)
ANALYTICS_DROPPED = Counter(
    "analytics_events_dropped",
    "Events not exported, by reason: overflow (queue full, the oldest dropped), refused (the "
    "outbound guard refused the URL), rejected (a 4xx answer), retries (attempts exhausted), "
    "shutdown (still queued when the process exited).",
    ["reason"],
)
ANALYTICS_BATCHES_FAILED = Counter(
    "analytics_batches_failed",
    "Batches given up (refused, rejected or out of attempts); their events count as dropped.",
)
