from __future__ import annotations

from django.apps import AppConfig


class DebuggerConfig(AppConfig):
    """Traces (the step projection of the event log), breakpoints, monitors and replay.
    ``ready()`` registers :func:`debugger.services.steps_project` and
    :func:`debugger.mirror.monitor_project` with the event log."""

    name = "debugger"
    verbose_name = "Debugger"

    def ready(self) -> None:
        from debugger.frames import register_monitor_frames
        from debugger.mirror import monitor_project
        from debugger.services import STEP_EVENT_TYPES, steps_project
        from sessions.services.events import event_projector_register

        # The step trace is the log's own read model: a copied session's history builds it too.
        event_projector_register(types=STEP_EVENT_TYPES, projector=steps_project, history=True)
        # Runs started with X-MONITOR-ID: their events to /ws/monitor/<id>/ (debugger.mirror).
        event_projector_register(types=None, projector=monitor_project)  # every type
        # debug.* frames (continue, step, abort, pause, breakpoints) on /ws/monitor/<id>/.
        register_monitor_frames()
