"""Artifacts: files a run produced, stored through Django's storage API (DESIGN §2)."""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from collections.abc import Iterable
from typing import Any

from django.core.files.base import ContentFile
from django.db import transaction

from sessions.models import Artifact, Session

logger = logging.getLogger(__name__)


def artifact_create(
    *,
    session: Session,
    name: str,
    content: bytes,
    content_type: str = "application/octet-stream",
    task_id: int | None = None,
) -> Artifact:
    """Store ``content`` (bytes) as an artifact of ``session`` (and of the task ``task_id``).

    ``name`` is the file name shown to clients; only its last path component is kept (a
    storage path is derived from it and the artifact's uuid, so two artifacts may share a
    name). Returns the saved row.
    """
    base = os.path.basename(name.replace("\\", "/")).lstrip(".") or "artifact"
    artifact = Artifact(
        session=session,
        task_id=task_id,
        name=base[-255:],
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


def _delete_file(storage: Any, name: str) -> None:
    try:
        storage.delete(name)
    except Exception as exc:  # the row is gone; an orphan file is harmless, a 500 is not
        logger.warning("could not delete artifact file %s: %s", name, exc)


def artifact_files_delete_on_commit(*, artifacts: Iterable[Artifact]) -> None:
    """Remove the stored files of ``artifacts`` once the transaction deleting their rows
    commits (a rollback keeps them). Storage errors are logged, never raised."""
    for artifact in artifacts:
        if artifact.file.name:
            storage, name = artifact.file.storage, artifact.file.name
            transaction.on_commit(functools.partial(_delete_file, storage, name))


def artifact_delete(*, artifact: Artifact) -> None:
    """Delete the artifact's row, then (after commit) its stored file. Events that referred
    to it keep the reference; its content is then 404."""
    with transaction.atomic():
        artifact.delete()
        artifact_files_delete_on_commit(artifacts=[artifact])
