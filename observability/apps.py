"""Observability: Prometheus metrics at ``/metrics`` and JSON logs (docs/observability.md)."""

from __future__ import annotations

from django.apps import AppConfig


class ObservabilityConfig(AppConfig):
    name = "observability"
    label = "observability"
    verbose_name = "Observability"

    def ready(self) -> None:
        from observability.collectors import register_collector
        from observability.projectors import task_status_projector
        from sessions.services.events import event_projector_register

        event_projector_register(types=frozenset({"task.status"}), projector=task_status_projector)
        register_collector()
