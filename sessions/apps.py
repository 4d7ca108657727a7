from __future__ import annotations

from django.apps import AppConfig


class AgentSessionsConfig(AppConfig):
    """Sessions, tasks and the event log. Label ``agent_sessions``: the default label
    ``sessions`` clashes with ``django.contrib.sessions``."""

    name = "sessions"
    label = "agent_sessions"
    verbose_name = "Agent sessions"
    default_auto_field = "django.db.models.BigAutoField"
