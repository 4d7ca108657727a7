from __future__ import annotations

from django.apps import AppConfig


class DebuggerConfig(AppConfig):
    """Traces (the step projection of the event log), later breakpoints and replay (issue 10).
    ``ready()`` registers :func:`debugger.services.steps_project` with the event log."""

    name = "debugger"
    verbose_name = "Debugger"

    def ready(self) -> None:
        from debugger.services import STEP_EVENT_TYPES, steps_project
        from sessions.services.events import event_projector_register

        event_projector_register(types=STEP_EVENT_TYPES, projector=steps_project)
