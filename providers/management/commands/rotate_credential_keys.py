"""``manage.py rotate_credential_keys``: re-encrypt every stored credential under the first key
of ``CREDENTIALS_ENCRYPTION_KEYS``, the middle step of a key rotation (new key first → run this
→ drop the old key)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from providers.services import credentials_reencrypt_all


class Command(BaseCommand):
    help = "Re-encrypt stored provider credentials under the first configured key."

    def handle(self, *args: Any, **options: Any) -> None:
        done, failed = credentials_reencrypt_all()
        self.stdout.write(f"re-encrypted {done} credential(s)")
        if failed:
            raise CommandError(
                f"{failed} credential(s) cannot be decrypted with the configured keys; keep the "
                "old key until their secrets are stored again"
            )
