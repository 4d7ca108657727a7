"""Workspace snapshots: a session's workspace as a ``.tar.gz`` in Django's storage, and back.

Snapshots go through ``django.core.files.storage.default_storage`` (local ``MEDIA_ROOT`` by
default; S3 or any django-storages backend when configured), under
``snapshots/<session uuid>/<name>.tar.gz``, so a session can move to another machine: snapshot
on one, restore on the other (E2B's pause/resume and Modal's filesystem snapshots keep the
same promise; ours covers the workspace, not process memory).

Writing walks the workspace with :func:`sandboxes._archive.pack` (no symlink is followed;
links are stored as links). Restoring stops the sandbox, empties the workspace and unpacks
with :func:`sandboxes.paths.extract_archive`, which refuses absolute paths, ``..``, links
leaving the workspace and device files, so a tampered snapshot cannot write outside it.
"""

from __future__ import annotations

import os
import re
import tempfile
from datetime import UTC, datetime
from typing import Any, BinaryIO, cast

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage

from runtime_project.exceptions import InvalidInput, NotFound
from sandboxes import _archive, paths
from sandboxes.services import sandbox_stop_sync
from sessions.models import Session

NAME = re.compile(r"^[0-9]{8}T[0-9]{6}Z(-[0-9a-f]{6})?$")


def _folder(session: Session) -> str:
    return f"snapshots/{session.uuid}"


def snapshot_create(*, session: Session) -> dict[str, Any]:
    """Archive the session's workspace; returns ``{"name", "size", "created_at"}`` (bytes).

    Raises:
        PayloadTooLarge: the workspace is larger than ``WORKSPACE_MAX_BYTES``.
    """
    root = session.workspace_path
    root.mkdir(parents=True, exist_ok=True)
    name = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + os.urandom(3).hex()
    with tempfile.TemporaryFile() as spool:
        _archive.pack(root, cast(BinaryIO, spool), max_bytes=settings.WORKSPACE_MAX_BYTES)
        spool.seek(0)
        stored = default_storage.save(f"{_folder(session)}/{name}.tar.gz", File(spool))
    return {
        "name": name,
        "size": default_storage.size(stored),
        "created_at": datetime.now(UTC),
    }


def snapshot_list(*, session: Session) -> list[dict[str, Any]]:
    """The session's snapshots, newest first: ``[{"name", "size", "created_at"}]``."""
    try:
        _, files = default_storage.listdir(_folder(session))
    except FileNotFoundError:
        return []
    found = []
    for filename in files:
        name = filename.removesuffix(".tar.gz")
        if filename.endswith(".tar.gz") and NAME.match(name):
            path = f"{_folder(session)}/{filename}"
            found.append(
                {
                    "name": name,
                    "size": default_storage.size(path),
                    "created_at": default_storage.get_created_time(path),
                }
            )
    return sorted(found, key=lambda s: s["name"], reverse=True)


def snapshot_restore(*, session: Session, name: str) -> list[str]:
    """Replace the workspace with snapshot ``name``; stops the sandbox first (its processes
    would see files vanish). Returns the restored paths.

    Raises:
        NotFound: no such snapshot. WorkspacePathError: a member the extractor refuses.
    """
    if not NAME.match(name):
        raise InvalidInput("Invalid snapshot name.", details={"fields": {"name": [name[:60]]}})
    path = f"{_folder(session)}/{name}.tar.gz"
    if not default_storage.exists(path):
        raise NotFound("Snapshot not found.", details={"name": name})
    sandbox_stop_sync(session=session)
    root = session.workspace_path
    root.mkdir(parents=True, exist_ok=True)
    for entry in paths.list_dir(root, "", limit=100_000):
        paths.remove(root, entry.path, recursive=True)
    with default_storage.open(path, "rb") as fh:
        # extract_archive spools a stream that cannot seek (e.g. some remote storages)
        return paths.extract_archive(
            root, "", cast(BinaryIO, fh), max_bytes=settings.WORKSPACE_MAX_BYTES, max_files=100_000
        )
