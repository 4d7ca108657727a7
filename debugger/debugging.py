"""Debugger writes: breakpoints, commands to a run, and the pause/resume transitions.

A run pauses *in place*: the worker keeps the task (and its lease) and waits inside
``debugger.control.DebugControl.checkpoint`` while the task shows ``waiting`` with
``pending_action = {"kind": "debug", ...}``. Commands (:func:`debug_command_send`) are rows,
so none is lost, plus a doorbell on the channel layer so the worker applies them at once.
This is LangGraph's ``interrupt_before``/``update_state`` for runs that keep their process
(a workflow's concurrent branches, an open kernel, a model stream), with Langfuse-style traces
kept by the step projection.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from debugger.config import STEP_KINDS
from debugger.models import Breakpoint, DebugAction, DebugCommand
from runtime_project.exceptions import Conflict, InvalidInput
from sessions.broadcast import notify_executor
from sessions.choices import TaskStatus
from sessions.models import Agent, Task
from sessions.services.events import event_append
from sessions.services.locks import lock_task
from sessions.services.tasks import _status_event

DEBUG_PENDING = "debug"
RESUMING_ACTIONS = (DebugAction.CONTINUE, DebugAction.STEP, DebugAction.ABORT)


def is_debug_paused(task: Task) -> bool:
    """Whether ``task`` waits at a debugger pause (not for an answer to ``ask_user``)."""
    pending = task.pending_action or {}
    return task.status == TaskStatus.WAITING and pending.get("kind") == DEBUG_PENDING


def breakpoint_create(
    *, user: Any, agent: Agent | None = None, task: Task | None = None,
    step_kind: str = "", name: str = "",
) -> Breakpoint:  # fmt: skip
    """A breakpoint on ``agent`` (its debug runs) or ``task`` (exactly one), before steps of
    ``step_kind`` (``""``: any) named ``name`` (``""``: any).

    Raises:
        InvalidInput: neither or both targets; an unknown ``step_kind``; a task already
            finished (code ``task_finished``).
    """
    if (agent is None) == (task is None):
        raise InvalidInput("A breakpoint belongs to an agent or to a task.")
    if step_kind not in ("", *STEP_KINDS):
        raise InvalidInput(
            "Unknown step kind.",
            details={"fields": {"step_kind": [f"one of {', '.join(STEP_KINDS)} or empty"]}},
        )
    if task is not None and task.is_terminal:
        raise InvalidInput("The task has finished.", code="task_finished",
                           details={"status": task.status})  # fmt: skip
    breakpoint_ = Breakpoint.objects.create(
        agent=agent, task=task, created_by=user, step_kind=step_kind, name=name[:255]
    )
    if task is not None:
        _ring(task)  # a running task reloads its breakpoints at its next step anyway
    return breakpoint_


def breakpoint_delete(*, breakpoint: Breakpoint) -> None:
    """Remove ``breakpoint`` (a run paused at it stays paused until continued)."""
    breakpoint.delete()


def breakpoints_for_run(*, task: Task) -> list[Breakpoint]:
    """The enabled breakpoints a run of ``task`` honours: the task's and its agent's."""
    scope = Q(task_id=task.pk) | Q(agent_id=task.agent_id)
    return list(Breakpoint.objects.filter(scope, enabled=True).order_by("created_at", "id"))


def breakpoint_hit(*, breakpoint_id: int) -> None:
    Breakpoint.objects.filter(pk=breakpoint_id).update(hit_count=F("hit_count") + 1)


def debug_command_send(
    *, task: Task, user: Any, action: str, input: Any = None, has_input: bool = False
) -> DebugCommand:
    """Send ``action`` to ``task``'s run: ``pause`` a queued or running task (it stops before
    its next step, resumable); ``continue``, ``step`` (run one step, pause before the next)
    or ``abort`` a paused one. ``continue``/``step`` with ``has_input`` replace the pending
    step's input with ``input`` (edit-and-continue), checked against the schema the paused
    step declared.

    Raises:
        Conflict: ``not_paused`` (the task is not at a debugger pause), ``already_paused``,
            ``task_finished``.
        InvalidInput: an unknown action; an edit with ``abort`` or ``pause``; an edited input
            that does not fit the pending step (``details.fields.input``).
    """
    from sessions.runners.base import validate_schema

    if action not in DebugAction.values:
        raise InvalidInput("Unknown debugger action.", details={"action": action})
    if has_input and action not in (DebugAction.CONTINUE, DebugAction.STEP):
        raise InvalidInput("Only continue and step take an edited input.")
    with transaction.atomic():
        locked = lock_task(pk=task.pk, session_id=task.session_id, related=())
        if locked.is_terminal:
            raise Conflict("The task has finished.", code="task_finished",
                           details={"status": locked.status})  # fmt: skip
        paused = is_debug_paused(locked)
        if action == DebugAction.PAUSE:
            if paused:
                raise Conflict("The task is already paused.", code="already_paused")
            if locked.status == TaskStatus.WAITING:
                raise Conflict("The task waits for an answer; answer it or cancel it.",
                               code="not_running", details={"status": locked.status})  # fmt: skip
        elif not paused:
            raise Conflict("The task is not paused in the debugger.", code="not_paused",
                           details={"status": locked.status})  # fmt: skip
        if has_input:
            schema = (locked.pending_action or {}).get("input_schema") or {}
            if not (locked.pending_action or {}).get("editable", True):
                raise InvalidInput("This step's input cannot be edited.", code="not_editable")
            validate_schema(input, schema, "input")
        command = DebugCommand.objects.create(
            task=locked, action=action, input=input if has_input else None, created_by=user
        )
        transaction.on_commit(partial(_ring, locked))
    return command


def debug_commands_pending(*, task_id: int) -> bool:
    """Whether ``task_id`` has commands its run has not applied yet (one indexed query)."""
    return DebugCommand.objects.filter(task_id=task_id, consumed_at__isnull=True).exists()


def debug_command_take(*, task_id: int) -> DebugCommand | None:
    """The oldest command not applied yet, marked applied; ``None`` when there is none."""
    # Every run's first checkpoint asks, and there is almost never one: a plain read first, so
    # that answer takes no write transaction (on SQLite, the database's one write lock). A
    # command stored after this read rings the run's doorbell and is taken at its next ask.
    if not debug_commands_pending(task_id=task_id):
        return None
    with transaction.atomic():
        command = (
            DebugCommand.objects.select_for_update(of=("self",))
            .select_related("created_by")
            .filter(task_id=task_id, consumed_at__isnull=True)
            .order_by("created_at", "id")
            .first()
        )
        if command is not None:
            command.consumed_at = timezone.now()
            command.save(update_fields=["consumed_at", "updated_at"])
    return command


def debug_pause_enter(*, task: Task, worker: str, pending: dict[str, Any]) -> bool:
    """``running → waiting`` at a debugger pause, with ``pending`` (``{"kind": "debug",
    "step_id", "step_kind", "name", "input", "reason", "breakpoint_id"?, "input_schema"?}``)
    stored on the task, a ``debug.paused`` event and a ``task.status`` event. The worker
    keeps its lease. Returns ``False`` (and changes nothing) when the task is no longer this
    worker's running task or a cancel was requested."""
    with transaction.atomic():
        locked = lock_task(pk=task.pk, session_id=task.session_id)
        if locked.status != TaskStatus.RUNNING or locked.worker != worker:
            return False
        if locked.cancel_requested_at is not None:
            return False
        fields = locked.transition(TaskStatus.WAITING, phase="debug_paused")
        locked.pending_action = pending
        locked.save(update_fields=[*fields, "pending_action"])
        event_append(session=locked.session, task=locked, type="debug.paused", data=pending)
        _status_event(locked, pending_action=pending)
    return True


def debug_pause_leave(
    *, task: Task, worker: str, step_id: str, action: str, edited: bool, by: str | None
) -> None:
    """``waiting → running`` after a pause: ``debug.resumed`` ``{step_id, action, edited,
    by}`` (``by``: the username, or ``timeout``) and a ``task.status`` event. Does nothing
    when the task is no longer this worker's paused task."""
    with transaction.atomic():
        locked = lock_task(pk=task.pk, session_id=task.session_id)
        if not is_debug_paused(locked) or locked.worker != worker:
            return
        fields = locked.transition(TaskStatus.RUNNING, phase="running")
        locked.pending_action = None
        locked.save(update_fields=[*fields, "pending_action"])
        data = {"step_id": step_id, "action": action, "edited": edited, "by": by}
        event_append(session=locked.session, task=locked, type="debug.resumed", data=data)
        _status_event(locked)


def _ring(task: Task) -> None:
    """Wake the process running ``task`` (a doorbell; the row is the command)."""
    notify_executor("task.debug", task.uuid)
