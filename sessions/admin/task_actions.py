"""What the task buttons and bulk actions of the admin do, one task at a time: cancel, retry
(a failed, cancelled or timed-out task), re-run with the same input (any task), and force-kill
(cancel the task and stop its session's sandbox at once). Each goes through the services,
writes an audit entry and returns a sentence for the operator. Also the live timeline's
JSON: the task's status and its events after a ``seq``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet
from django.http import HttpRequest

from accounts.audit import audit_request
from runtime_project.exceptions import ApplicationError
from sandboxes.services import sandbox_stop_sync
from sessions.admin.common import preview
from sessions.choices import TaskStatus
from sessions.models import Event, Task
from sessions.services.tasks import task_cancel, task_retry

RETRYABLE = frozenset({TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.TIMED_OUT})
TIMELINE_TAIL = 100  # events shown when the page opens (the newest)
TIMELINE_PAGE = 200  # events per poll after that
SUMMARY_CHARS = 300


@dataclass
class Outcome:
    """``ok``: the action happened; ``message``: what to tell the operator; ``new_task``: the
    task a retry or re-run queued."""

    ok: bool
    message: str
    new_task: Task | None = None


def cancel(request: HttpRequest, task: Task) -> Outcome:
    """Cancel ``task`` (a queued one at once; a running one is asked to stop, then killed
    after ``TASK_CANCEL_GRACE_S``)."""
    if task.is_terminal:
        return Outcome(False, f"Task {task.uuid} already finished ({task.status}).")
    try:
        task = task_cancel(task=task, reason=f"cancelled by {request.user} (admin)")
    except ApplicationError as exc:  # finished meanwhile
        return Outcome(False, f"Task {task.uuid} was not cancelled: {exc.message}")
    audit_request(request, "admin.task_cancel", task)
    if task.status == TaskStatus.CANCELLED:
        return Outcome(True, f"Task {task.uuid} cancelled.")
    return Outcome(True, f"Cancel requested for task {task.uuid}.")


def retry(request: HttpRequest, task: Task, *, rerun: bool = False) -> Outcome:
    """Queue a new task on the same session with the same type, input and config. A retry is
    for a task that failed, was cancelled or timed out; a re-run (``rerun``) for any task,
    a succeeded one included. The new task runs the agent's current version."""
    if not rerun and task.status not in RETRYABLE:
        return Outcome(
            False,
            f"Task {task.uuid} is {task.status}: only failed, cancelled or timed-out tasks are "
            "retried (use Re-run to run it again).",
        )
    try:
        new = task_retry(task=task, user=request.user)
    except ApplicationError as exc:
        return Outcome(False, f"Task {task.uuid} was not queued again: {exc.message}")
    what = "re-run" if rerun else "retry"
    audit_request(request, f"admin.task_{what.replace('-', '')}", task, new_task=str(new.uuid))
    return Outcome(True, f"Queued task {new.uuid} ({what} of {task.uuid}).", new)


def force_kill(request: HttpRequest, task: Task) -> Outcome:
    """Cancel ``task`` if it is still active, then stop its session's sandbox at once (every
    process in it dies, the workspace stays; the next task starts it again)."""
    cancelled = False
    if not task.is_terminal:
        try:
            task_cancel(task=task, reason=f"force-killed by {request.user} (admin)")
            cancelled = True
        except ApplicationError:  # finished meanwhile: still stop the sandbox
            pass
    stopped = sandbox_stop_sync(session=task.session)
    audit_request(
        request, "admin.sandbox_kill", task.session, task=str(task.uuid),
        task_cancelled=cancelled, sandbox_was_running=stopped,
    )  # fmt: skip
    parts = [f"Task {task.uuid} cancelled" if cancelled else f"Task {task.uuid} was not active"]
    parts.append("its sandbox was stopped" if stopped else "its sandbox was not running")
    return Outcome(True, "; ".join(parts) + ".")


def run_bulk(
    request: HttpRequest, queryset: QuerySet[Task], action: Any, **kwargs: Any
) -> list[Outcome]:
    """``action`` for every task of ``queryset`` (oldest first)."""
    tasks = queryset.select_related("session__agent", "session__team").order_by("created_at")
    return [action(request, task, **kwargs) for task in tasks]


# The live timeline -----------------------------------------------------------------------------


def _summary(event: Event) -> str:
    data = event.data or {}
    if event.type == "task.status":
        text = f"{data.get('status', '')} ({data.get('phase', '')})"
        error = data.get("error")
        if isinstance(error, dict) and error.get("code"):
            text += f": {error.get('code')}: {error.get('message', '')}"
        return preview(text, SUMMARY_CHARS)
    if event.type in ("process.stdout", "process.stderr", "message.delta") and "text" in data:
        return preview(str(data["text"]), SUMMARY_CHARS)
    return preview(data, SUMMARY_CHARS)


def task_state(task: Task) -> dict[str, Any]:
    """The task's live fields as the page shows them (times: ISO 8601, ``None`` when unset)."""
    ms = task.duration_ms
    return {
        "id": str(task.uuid),
        "status": task.status,
        "phase": task.current_phase,
        "terminal": task.is_terminal,
        "cancel_requested": task.cancel_requested_at is not None,
        "started_at": task.started_at.isoformat() if task.started_at else None,
        "finished_at": task.finished_at.isoformat() if task.finished_at else None,
        "duration_s": None if ms is None else round(ms / 1000, 1),
        "error": task.error,
    }


def timeline(task_id: int, *, after: int | None) -> dict[str, Any] | None:
    """``{"task": task_state, "events": [{"seq", "type", "ts", "summary"}], "next_after",
    "more"}``: the task's events with ``seq > after`` (oldest first, at most
    ``TIMELINE_PAGE``; ``more``: there are further ones), or its newest ``TIMELINE_TAIL``
    when ``after`` is ``None``. ``None`` when the task is gone.

    The task is read before its events: a task seen finished has its last event committed,
    so a client that stops polling at a terminal status has seen everything."""
    task = Task.objects.filter(pk=task_id).first()
    if task is None:
        return None
    rows = Event.objects.filter(task_id=task_id).only("seq", "type", "data", "created_at")
    if after is None:
        events = list(rows.order_by("-seq")[:TIMELINE_TAIL])[::-1]
        more = False
    else:
        events = list(rows.filter(seq__gt=after).order_by("seq")[: TIMELINE_PAGE + 1])
        more = len(events) > TIMELINE_PAGE
        events = events[:TIMELINE_PAGE]
    return {
        "task": task_state(task),
        "events": [
            {
                "seq": e.seq,
                "type": e.type,
                "ts": e.created_at.isoformat(),
                "summary": _summary(e),
            }
            for e in events
        ],
        "next_after": events[-1].seq if events else (after or 0),
        "more": more,
    }
