from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from sessions.models.base import TimeStampedModel
from sessions.models.session import Session


class ShareLink(TimeStampedModel):
    """A revocable, optionally expiring, read-only link to one session (its events, messages
    and files). Only a SHA-256 digest of the token is stored; the token is shown once."""

    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="share_links")
    token_digest = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(max_length=12, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return f"share {self.prefix}… of {self.session_id}"

    @property
    def is_usable(self) -> bool:
        now = timezone.now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)
