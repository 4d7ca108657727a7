"""Every new user gets a personal team (owner role), however the user was created: the sign-up
form, ``createsuperuser``, the admin, or a test factory."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models.signals import post_save
from django.dispatch import receiver


@receiver(post_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="accounts.personal_team")
def create_personal_team(
    sender: Any, instance: Any, created: bool, raw: bool = False, **_: Any
) -> None:
    if created and not raw:
        from accounts.services import team_create_personal

        team_create_personal(user=instance)
