"""``manage.py rotate_secret_keys``: re-encrypt every team and session secret under the first
key of ``CREDENTIALS_ENCRYPTION_KEYS`` (the middle step of a key rotation, like
``rotate_credential_keys`` for provider credentials; run both before dropping the old key)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from accounts.secrets import secrets_rotate


class Command(BaseCommand):
    help = "Re-encrypt team and session secrets under the first configured key."

    def handle(self, *args: Any, **options: Any) -> None:
        done, unreadable = secrets_rotate()
        self.stdout.write(f"re-encrypted {done} secret(s)")
        if unreadable:
            raise CommandError(
                f"{len(unreadable)} secret(s) cannot be decrypted with the configured keys "
                f"(ids: {', '.join(unreadable[:20])}); keep the old key until they are stored "
                "again"
            )
