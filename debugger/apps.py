from __future__ import annotations

from django.apps import AppConfig


class DebuggerConfig(AppConfig):
    """Traces, breakpoints and replay (issue: debugger). Installed now so its models and routes
    can land without touching settings."""

    name = "debugger"
    verbose_name = "Debugger"
