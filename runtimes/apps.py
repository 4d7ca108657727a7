"""Django app config of ``runtimes`` (external runtimes attached to sessions over WebSocket)."""

from __future__ import annotations

from django.apps import AppConfig


class RuntimesConfig(AppConfig):
    """``runtimes``: remote runtimes (``/ws/runtimes/``) that run the tasks of ``remote`` agents
    (docs/remote-runtimes.md)."""

    name = "runtimes"
    label = "runtimes"
    verbose_name = "Remote runtimes"
    default_auto_field = "django.db.models.BigAutoField"
