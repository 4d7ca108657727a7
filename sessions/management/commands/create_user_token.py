from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from accounts.models import Scope
from accounts.services import api_key_create, api_key_revoke


class Command(BaseCommand):
    help = (
        "Create (or reuse) a user and print a new API key for it (all scopes, all the user's "
        "teams, named 'cli'). Keys are hashed at rest: the key is only shown here."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("username")
        parser.add_argument("--superuser", action="store_true", help="make the user an admin")
        parser.add_argument("--password", default=None, help="set this password (admin login)")
        parser.add_argument("--rotate", action="store_true", help="revoke earlier 'cli' keys")
        parser.add_argument(
            "--scope", action="append", default=None, help="a scope (repeatable; default admin)"
        )

    def handle(
        self,
        *args: Any,
        username: str,
        superuser: bool,
        password: str | None,
        rotate: bool,
        scope: list[str] | None,
        **options: Any,
    ) -> None:
        User = get_user_model()
        user, created = User.objects.get_or_create(username=username)
        if superuser:
            user.is_staff = user.is_superuser = True
        if password:
            user.set_password(password)
        elif created:
            user.set_unusable_password()
        user.save()
        if rotate:
            for old in user.api_keys.filter(name="cli", revoked_at__isnull=True):
                api_key_revoke(api_key=old)
        _, key = api_key_create(user=user, team=None, name="cli", scopes=scope or [Scope.ADMIN])
        self.stdout.write(key)
