"""Observability: Prometheus metrics at ``/metrics``, JSON logs, OpenTelemetry spans and the
analytics export (docs/observability.md)."""

from __future__ import annotations

from django.apps import AppConfig


class ObservabilityConfig(AppConfig):
    name = "observability"
    label = "observability"
    verbose_name = "Observability"

    def ready(self) -> None:
        from observability import analytics, tracing
        from observability.collectors import register_collector
        from observability.projectors import task_status_projector
        from sessions.services.events import event_projector_register

        event_projector_register(types=frozenset({"task.status"}), projector=task_status_projector)
        register_collector()
        # Both are off (no thread, no projector) unless their endpoint setting is set.
        tracing.configure()
        analytics.configure()
