from __future__ import annotations

from django.db import models

from sessions.models.base import TimeStampedModel
from sessions.models.session import Session


def _artifact_path(instance: Artifact, filename: str) -> str:
    return f"artifacts/{instance.session.uuid}/{instance.uuid}/{filename}"


class Artifact(TimeStampedModel):
    """A file produced by a run (or an event payload too large to inline), stored through
    Django's storage API (``FileSystemStorage`` by default, S3 through django-storages)."""

    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="artifacts")
    task = models.ForeignKey(
        "agent_sessions.Task",
        on_delete=models.SET_NULL,
        related_name="artifacts",
        null=True,
        blank=True,
    )
    name = models.CharField(max_length=255)
    file = models.FileField(upload_to=_artifact_path, max_length=500)
    size = models.BigIntegerField(default=0)
    content_type = models.CharField(max_length=200, default="application/octet-stream")
    sha256 = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return self.name
