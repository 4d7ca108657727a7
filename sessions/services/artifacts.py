"""Artifacts: files a run produced, stored through Django's storage API (DESIGN §2)."""

from __future__ import annotations

import hashlib
from typing import Any

from django.core.files.base import ContentFile

from sessions.models import Artifact, Session


def artifact_create(
    *,
    session: Session,
    name: str,
    content: bytes,
    content_type: str = "application/octet-stream",
    task_id: int | None = None,
) -> Artifact:
    """Store ``content`` (bytes) as an artifact of ``session`` (and of the task ``task_id``).

    ``name`` is the file name shown to clients (a storage path is derived from it and the
    artifact's uuid, so two artifacts may share a name). Returns the saved row.
    """
    artifact = Artifact(
        session=session,
        task_id=task_id,
        name=name[:255],
        content_type=content_type[:200],
        size=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
    )
    artifact.file.save(artifact.name, ContentFile(content), save=False)
    artifact.save()
    return artifact


def artifact_reference(artifact: Artifact) -> dict[str, Any]:
    """How an event refers to an artifact: ``{"id", "name", "size", "content_type"}``
    (size in bytes); clients fetch it from ``/api/v1/artifacts/{id}/content``."""
    return {
        "id": str(artifact.uuid),
        "name": artifact.name,
        "size": artifact.size,
        "content_type": artifact.content_type,
    }
