"""Debugger frames on the WebSockets: the same commands as the REST debugger API.

On ``/ws/tasks/{id}/`` (the stream's task) and ``/ws/monitor/{id}/`` (``task_id`` in the
frame, any task the caller may write), client → server:

* ``{"type": "debug.continue"|"debug.step", "task_id"?, "input"?, "request_id"?}`` — with
  ``input``, edit-and-continue;
* ``{"type": "debug.abort"|"debug.pause", "task_id"?, "request_id"?}``;
* ``{"type": "debug.breakpoint.set", "task_id"?, "step_kind"?, "name"?, "request_id"?}``;
* ``{"type": "debug.breakpoint.delete", "task_id"?, "breakpoint_id", "request_id"?}``.

Answers ``{"type": "debug.ack", "request_id", "action", "command"|"breakpoint"}``, or the
stream's ``error`` frame (``not_paused``, ``insufficient_scope``, …). What the run does next
arrives as events (``debug.paused``, ``debug.resumed``, ``task.status``).
"""

from __future__ import annotations

from typing import Any

from accounts import access
from accounts.audit import audit_record
from accounts.models import Role, Scope
from debugger import selectors as debug_selectors
from debugger.debugging import breakpoint_create, breakpoint_delete, debug_command_send
from runtime_project.db import db_call
from runtime_project.exceptions import InvalidInput
from sessions.models import Task
from sessions.selectors import task_get

COMMANDS = ("continue", "step", "abort", "pause")
FRAME_TYPES = (*(f"debug.{c}" for c in COMMANDS), "debug.breakpoint.set",
               "debug.breakpoint.delete")  # fmt: skip


def _writable_task(user: Any, task: Task | None, frame: dict[str, Any]) -> Task:
    """The frame's task (the stream's, else ``frame["task_id"]``), re-checked for writing now:
    ``tasks:write`` scope and the member role in its team."""
    access.require_scope(user, Scope.TASKS_WRITE)
    access.forget_roles(user)
    if task is None:
        if not frame.get("task_id"):
            raise InvalidInput("The frame needs a task_id.", code="bad_frame")
        return task_get(user=user, task_id=frame["task_id"], for_write=True)
    access.require_role(user, task.session.team_id, Role.MEMBER, what="Task")
    return task


def debug_frame(*, user: Any, task: Task | None, frame: dict[str, Any]) -> dict[str, Any]:
    """Apply one debugger frame for ``user`` (sync; run it in a thread) and return the ack.

    Raises:
        ApplicationError: the errors of the REST API (NotFound, Forbidden, Conflict,
            InvalidInput), answered as an ``error`` frame by the consumer.
    """
    kind = str(frame.get("type"))
    target = _writable_task(user, task, frame)
    ack: dict[str, Any] = {"type": "debug.ack", "request_id": frame.get("request_id")}
    if kind == "debug.breakpoint.set":
        created = breakpoint_create(
            user=user, task=target, step_kind=str(frame.get("step_kind") or ""),
            name=str(frame.get("name") or ""),
        )  # fmt: skip
        audit_record(actor=user, action="breakpoint.create", target=target,
                     details={"via": "websocket", "breakpoint": str(created.uuid)})  # fmt: skip
        return {**ack, "action": "breakpoint.set", "breakpoint": _breakpoint(created)}
    if kind == "debug.breakpoint.delete":
        found = debug_selectors.breakpoint_get(
            task=target, breakpoint_id=frame.get("breakpoint_id")
        )
        breakpoint_delete(breakpoint=found)
        audit_record(actor=user, action="breakpoint.delete", target=target,
                     details={"via": "websocket", "breakpoint": str(found.uuid)})  # fmt: skip
        return {**ack, "action": "breakpoint.delete", "breakpoint": _breakpoint(found)}
    action = kind.removeprefix("debug.")
    if action not in COMMANDS:
        raise InvalidInput(f"Unknown frame type {kind!r}.", code="bad_frame")
    command = debug_command_send(
        task=target, user=user, action=action, input=frame.get("input"),
        has_input="input" in frame,
    )  # fmt: skip
    audit_record(actor=user, action=f"task.debug.{action}", target=target,
                 details={"via": "websocket", "edited": "input" in frame})  # fmt: skip
    return {**ack, "action": action, "task_id": str(target.uuid),
            "command": {"id": str(command.uuid), "action": command.action}}  # fmt: skip


def _breakpoint(found: Any) -> dict[str, Any]:
    return {"id": str(found.uuid), "step_kind": found.step_kind, "name": found.name}


async def handle_debug_frame(consumer: Any, task: Task | None, frame: dict[str, Any]) -> None:
    """Run :func:`debug_frame` for a consumer and send its ack."""
    ack = await db_call(debug_frame)(user=consumer.scope["user"], task=task, frame=frame)
    await consumer.send_json(ack)


def register_monitor_frames() -> None:
    """Add the debugger frames to ``/ws/monitor/{id}/`` (called from ``DebuggerConfig``)."""
    from debugger.consumers import FRAME_HANDLERS

    async def handler(consumer: Any, frame: dict[str, Any]) -> None:
        await handle_debug_frame(consumer, None, frame)

    for frame_type in FRAME_TYPES:
        FRAME_HANDLERS[frame_type] = handler
