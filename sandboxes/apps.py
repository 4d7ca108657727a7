"""Django app config for the sandbox layer (the Sandbox model; the backend is built lazily)."""

from __future__ import annotations

from django.apps import AppConfig


class SandboxesConfig(AppConfig):
    """``sandboxes``: backends that run commands in isolation (see ``sandboxes.base``)."""

    name = "sandboxes"
    label = "sandboxes"
    verbose_name = "Sandboxes"
    default_auto_field = "django.db.models.BigAutoField"
