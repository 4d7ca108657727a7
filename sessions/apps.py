from __future__ import annotations

from django.apps import AppConfig


class AgentSessionsConfig(AppConfig):
    """Sessions, tasks and the event log. Label ``agent_sessions``: the default label
    ``sessions`` clashes with ``django.contrib.sessions``."""

    name = "sessions"
    label = "agent_sessions"
    verbose_name = "Agent sessions"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from sessions.services.events import event_projector_register
        from sessions.services.tasks import task_phase_project

        # A runner's progress (``ctx.set_phase``: a CLI's planning/editing/testing) is an event;
        # the task row follows it so GET /tasks/{id} shows ``current_phase``.
        event_projector_register(types=frozenset({"task.status"}), projector=task_phase_project)
