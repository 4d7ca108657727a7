from __future__ import annotations

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """Teams, memberships and roles, API keys, secrets and the audit log."""

    name = "accounts"
    verbose_name = "Accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from accounts import schema, signals  # noqa: F401  (sign-up receiver, OpenAPI scheme)
