from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from rest_framework.authtoken.models import Token


class Command(BaseCommand):
    help = "Create (or reuse) a user and print an API token for it."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("username")
        parser.add_argument("--superuser", action="store_true", help="make the user an admin")
        parser.add_argument("--password", default=None, help="set this password (admin login)")
        parser.add_argument("--rotate", action="store_true", help="replace an existing token")

    def handle(
        self,
        *args: Any,
        username: str,
        superuser: bool,
        password: str | None,
        rotate: bool,
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
            Token.objects.filter(user=user).delete()
        token, _ = Token.objects.get_or_create(user=user)
        self.stdout.write(token.key)
