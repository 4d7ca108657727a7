"""Django app config of ``providers`` (stored provider credentials, the model catalogue)."""

from __future__ import annotations

from django.apps import AppConfig


class ProvidersConfig(AppConfig):
    """``providers``: API keys of model providers, encrypted at rest, used by the llm kind."""

    name = "providers"
    label = "providers"
    verbose_name = "Model providers"
    default_auto_field = "django.db.models.BigAutoField"
