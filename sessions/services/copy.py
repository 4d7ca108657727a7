"""Session copy: branch a conversation (issue 10, item 5; ``docs/replay.md``).

:func:`session_copy` makes a new session of the same agent and team with the source's name,
tags and metadata, its event log (re-sequenced from 1, optionally cut at ``upto_seq``), the
tasks those events belong to, and a snapshot of its workspace files. The copy's history is
coherent on its own: every copied task is a new row (``forked_from`` = the source task) whose
events point at it, so the llm loop's history rebuild, the step trace and the message list
read it as if it had run there. Share links, the sandbox and monitors are not copied, and the
copied events are history (``events_append(history=True)``): they build the copy's step trace
but send no webhook, reach no monitor and count in no metric, trace or analytics export.
"""

from __future__ import annotations

import logging
import shutil
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from runtime_project.exceptions import ApplicationError, InvalidInput, PayloadTooLarge
from sandboxes import paths
from sessions.choices import TERMINAL_STATUSES, SessionStatus, TaskStatus
from sessions.models import Event, Session, Task
from sessions.services.events import EventDraft, events_append

logger = logging.getLogger(__name__)

COPY_BATCH = 500  # events per events_append call (one transaction holds them all)
COPY_SUFFIX = " (copy)"
# Task fields a copied task keeps (the rest: new uuid, no lease, no idempotency key).
_TASK_FIELDS = (
    "agent_id", "agent_version", "created_by_id", "task_type", "input", "config", "status",
    "current_phase", "result", "error", "usage", "multitask_strategy", "on_disconnect",
    "timeout_s", "attempt", "started_at", "finished_at", "cancel_requested_at", "cancel_reason",
)  # fmt: skip


def session_copy(
    *,
    session: Session,
    user: Any,
    name: str | None = None,
    upto_seq: int | None = None,
    include_workspace: bool = True,
) -> Session:
    """Copy ``session`` into a new session owned by ``user`` (same agent and team).

    Args:
        name: the copy's name; default ``"<source name> (copy)"``.
        upto_seq: copy only the events with ``seq <= upto_seq`` (``0``: none); default all.
        include_workspace: copy the workspace's regular files (symlinks and special files are
            skipped; the sandbox is not copied).

    A task whose terminal ``task.status`` event is not among the copied events (cut by
    ``upto_seq``, or still active) is copied as ``cancelled`` with the error ``copy_cut`` and a
    terminal ``task.status`` event closing its log. Events keep their type, data and
    ``created_at``; references to artifacts keep pointing at the source's artifacts.

    Raises:
        InvalidInput: ``upto_seq`` is negative.
        PayloadTooLarge: the workspace is larger than ``WORKSPACE_MAX_BYTES`` or has more than
            ``WORKSPACE_MAX_FILES`` entries (copy with ``include_workspace=False``).
    """
    if upto_seq is not None and upto_seq < 0:
        raise InvalidInput(
            "upto_seq must be 0 or more.", details={"fields": {"upto_seq": ["min 0"]}}
        )
    last = session.last_seq if upto_seq is None else min(upto_seq, session.last_seq)
    entries = _workspace_entries(session) if include_workspace else []
    with transaction.atomic():
        copy = Session.objects.create(
            owner=user, team_id=session.team_id, agent_id=session.agent_id,
            name=(name if name is not None else f"{session.name}{COPY_SUFFIX}")[:200],
            tags=list(session.tags or []), metadata=dict(session.metadata or {}),
            status=SessionStatus.IDLE,
        )  # fmt: skip
        _copy_log(session, copy, last)
    try:
        copy.workspace_path.mkdir(parents=True, exist_ok=True)
        _copy_files(session, copy, entries)
    except BaseException:
        # The copy is useless without the files it promised: take it back whole.
        shutil.rmtree(copy.workspace_path, ignore_errors=True)
        copy.delete()
        raise
    return copy


def _copy_log(source: Session, copy: Session, last: int) -> None:
    """Copy the tasks with events up to ``last`` and those events (inside a transaction)."""
    events = Event.objects.filter(session=source, seq__lte=last).order_by("seq")
    task_ids = set(events.filter(task__isnull=False).values_list("task_id", flat=True).distinct())
    finished = set(
        events.filter(task_id__in=task_ids, type="task.status",
                      data__status__in=list(TERMINAL_STATUSES))
        .values_list("task_id", flat=True)
    )  # fmt: skip
    mapping: dict[int, Task] = {}
    cut: list[Task] = []
    for task in Task.objects.filter(pk__in=task_ids).order_by("created_at", "pk"):
        if task.parent_id is not None and task.parent_id not in mapping:
            continue  # its parent ran elsewhere: not part of this conversation
        new = Task(session=copy, forked_from=task, idempotency_key=None)
        for field in _TASK_FIELDS:
            setattr(new, field, getattr(task, field))
        new.parent = mapping.get(task.parent_id) if task.parent_id else None
        if task.pk not in finished:
            new.status, new.current_phase, new.result = TaskStatus.CANCELLED, "cancelled", None
            new.error = {"code": "copy_cut", "details": {"upto_seq": last},
                         "message": "The session was copied before the task finished."}  # fmt: skip
            new.finished_at = new.finished_at or timezone.now()
            cut.append(new)
        new.save()
        Task.objects.filter(pk=new.pk).update(created_at=task.created_at)  # keep the order
        mapping[task.pk] = new
    batch: list[EventDraft] = []
    for event in events.iterator(chunk_size=COPY_BATCH):
        if event.task_id is not None and event.task_id not in mapping:
            continue
        target = mapping.get(event.task_id) if event.task_id is not None else None
        batch.append(
            EventDraft(
                type=event.type, data=event.data, created_at=event.created_at,
                task_id=target.pk if target else None,
                task_uuid=str(target.uuid) if target else None, masked=True,
            )
        )  # fmt: skip
        if len(batch) >= COPY_BATCH:
            events_append(session=copy, drafts=batch, history=True)
            batch = []
    for task in cut:
        batch.append(
            EventDraft(
                type="task.status", task_id=task.pk, task_uuid=str(task.uuid), masked=True,
                data={"status": task.status, "phase": task.current_phase, "result": None,
                      "error": task.error, "usage": task.usage},
            )
        )  # fmt: skip
    events_append(session=copy, drafts=batch, history=True)


def _workspace_entries(session: Session) -> list[paths.FileEntry]:
    """The source workspace's directories and regular files, checked against the limits.

    Raises:
        PayloadTooLarge: over ``WORKSPACE_MAX_FILES`` entries or ``WORKSPACE_MAX_BYTES``.
    """
    root = session.workspace_path
    if not root.is_dir():
        return []
    limit = settings.WORKSPACE_MAX_FILES
    try:
        entries = paths.list_dir(root, "", recursive=True, limit=limit + 1)
    except ApplicationError:
        return []
    size = sum(e.size for e in entries if e.type == "file")
    if len(entries) > limit or size > settings.WORKSPACE_MAX_BYTES:
        raise PayloadTooLarge(
            "The workspace is too large to copy; copy the session without it.",
            details={"bytes": size, "max_bytes": settings.WORKSPACE_MAX_BYTES,
                     "max_files": limit, "include_workspace": False},
        )  # fmt: skip
    return [e for e in entries if e.type in ("file", "directory")]


def _copy_files(source: Session, copy: Session, entries: list[paths.FileEntry]) -> None:
    """Copy ``entries`` through ``sandboxes.paths`` (never following a planted symlink);
    files that vanished or changed type meanwhile are skipped. Stops at the byte limit."""
    budget = settings.WORKSPACE_MAX_BYTES
    src, dst = source.workspace_path, copy.workspace_path
    for entry in entries:
        if entry.type == "directory":
            paths.make_dirs(dst, entry.path)
            continue
        try:
            with paths.open_read(src, entry.path) as reader, paths.open_write(dst, entry.path) as w:
                while chunk := reader.read(min(1024 * 1024, budget + 1)):
                    budget -= len(chunk)
                    if budget < 0:
                        raise PayloadTooLarge(
                            "The workspace grew past WORKSPACE_MAX_BYTES while it was copied.",
                            details={"max_bytes": settings.WORKSPACE_MAX_BYTES},
                        )
                    w.write(chunk)
        except PayloadTooLarge:
            raise
        except (ApplicationError, OSError) as exc:
            logger.info("session copy skipped %s: %s", entry.path, exc)
