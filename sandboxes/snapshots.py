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

A remote storage that fails (S3 unreachable, bucket missing, access denied) surfaces as
:class:`~runtime_project.exceptions.ServiceUnavailable` (503, code ``storage_unavailable``),
never as a 500.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, BinaryIO, cast

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage

from runtime_project.exceptions import InvalidInput, NotFound, ServiceUnavailable
from sandboxes import _archive, paths
from sandboxes.services import sandbox_stop_sync
from sessions.models import Session

logger = logging.getLogger(__name__)
NAME = re.compile(r"^[0-9]{8}T[0-9]{6}Z(-[0-9a-f]{6})?$")


@functools.cache
def _remote_errors() -> tuple[type[BaseException], ...]:
    """What boto3/botocore raise when S3 fails; empty if they are not installed (then only the
    filesystem storage can be configured, and its errors are real server faults)."""
    try:
        from boto3.exceptions import Boto3Error  # S3UploadFailedError, RetriesExceededError
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:  # pragma: no cover - boto3 is a dependency
        return ()
    return (BotoCoreError, ClientError, Boto3Error)


@contextlib.contextmanager
def _storage_errors(operation: str) -> Iterator[None]:
    """Turn a storage backend failure into ``ServiceUnavailable`` (503, ``storage_unavailable``).

    Details: ``{"operation", "reason"}``; the reason is the S3 error code or the exception class,
    never the endpoint or a key (the full error is logged).
    """
    try:
        yield
    except _remote_errors() as exc:
        logger.warning("snapshot storage failed during %s: %s", operation, exc)
        # ClientError carries the S3 error code; transport errors have no (or a None) response.
        response = getattr(exc, "response", None)
        code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
        reason = str(code or exc.__class__.__name__)[:100]
        raise ServiceUnavailable(
            "The snapshot storage is unavailable; try again later.",
            code="storage_unavailable",
            details={"operation": operation, "reason": reason},
        ) from None


def _folder(session: Session) -> str:
    return f"snapshots/{session.uuid}"


def snapshot_create(*, session: Session) -> dict[str, Any]:
    """Archive the session's workspace; returns ``{"name", "size", "created_at"}`` (bytes).

    Raises:
        PayloadTooLarge: the workspace is larger than ``WORKSPACE_MAX_BYTES``.
        ServiceUnavailable: the storage failed (``storage_unavailable``).
    """
    root = session.workspace_path
    root.mkdir(parents=True, exist_ok=True)
    name = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + os.urandom(3).hex()
    with tempfile.TemporaryFile() as spool:
        _archive.pack(root, cast(BinaryIO, spool), max_bytes=settings.WORKSPACE_MAX_BYTES)
        size = spool.tell()  # what we upload; saves asking a remote storage afterwards
        spool.seek(0)
        with _storage_errors("snapshot_create"):
            default_storage.save(f"{_folder(session)}/{name}.tar.gz", File(spool))
    return {"name": name, "size": size, "created_at": datetime.now(UTC)}


def _created_time(path: str) -> datetime:
    # S3Storage has no creation time (NotImplementedError); its objects are never overwritten
    # (file_overwrite=False), so the last-modified time is the creation time.
    try:
        return default_storage.get_created_time(path)
    except NotImplementedError:
        return default_storage.get_modified_time(path)


def snapshot_list(*, session: Session) -> list[dict[str, Any]]:
    """The session's snapshots, newest first: ``[{"name", "size", "created_at"}]``.

    Raises:
        ServiceUnavailable: the storage failed (``storage_unavailable``).
    """
    with _storage_errors("snapshot_list"):
        try:
            _, files = default_storage.listdir(_folder(session))
        except FileNotFoundError:  # the filesystem storage; S3 lists an absent prefix as empty
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
                        "created_at": _created_time(path),
                    }
                )
    return sorted(found, key=lambda s: s["name"], reverse=True)


def snapshot_restore(*, session: Session, name: str) -> list[str]:
    """Replace the workspace with snapshot ``name``; stops the sandbox first (its processes
    would see files vanish). Returns the restored paths.

    Raises:
        InvalidInput: a malformed name. NotFound: no such snapshot. WorkspacePathError: a member
        the extractor refuses. ServiceUnavailable: the storage failed (``storage_unavailable``);
        the workspace is then left as it was.
    """
    if not NAME.match(name):
        raise InvalidInput("Invalid snapshot name.", details={"fields": {"name": [name[:60]]}})
    path = f"{_folder(session)}/{name}.tar.gz"
    with _storage_errors("snapshot_restore"):
        try:
            fh = default_storage.open(path, "rb")
        except FileNotFoundError:  # both the filesystem and S3 storages raise it
            raise NotFound("Snapshot not found.", details={"name": name}) from None
    with fh:
        with _storage_errors("snapshot_restore"):
            # Fetch the whole archive before the workspace is emptied, so a storage failure
            # cannot leave it empty: an S3File downloads (to a spool) on its first access, a
            # local file is just rewound. Only file-object calls are used, never ``.path``.
            fh.seek(0)
        sandbox_stop_sync(session=session)
        root = session.workspace_path
        root.mkdir(parents=True, exist_ok=True)
        for entry in paths.list_dir(root, "", limit=100_000):
            paths.remove(root, entry.path, recursive=True)
        # extract_archive spools a stream that cannot seek (e.g. some remote storages)
        return paths.extract_archive(
            root, "", cast(BinaryIO, fh), max_bytes=settings.WORKSPACE_MAX_BYTES, max_files=100_000
        )
