"""Tasks that wait and tasks that run inside other tasks.

``waiting`` (DESIGN §2): a runner that needs an answer (the llm kind's ``ask_user`` tool, or a
tool marked ``requires_approval``) returns; :func:`task_suspend` parks the task with the
pending action and frees the worker, the way OpenAI's Assistants API parks a run in
``requires_action`` and LangGraph's ``interrupt()`` ends a run until ``Command(resume=...)``.
:func:`task_resume` records the client's answer and queues the task again; a worker claims it
and the runner continues from the session's event log. A waiting task keeps its session busy
(no other task of the session starts) and fails with ``wait_expired`` after
``TASK_WAIT_TIMEOUT_S``.

Child tasks: :func:`task_create_child` starts another agent's task in the same session, owned
by the parent's worker (the llm kind's ``call_agent`` tool awaits it in place).
"""

from __future__ import annotations

from datetime import timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from runtime_project.exceptions import Conflict, InvalidInput, NotFound
from sessions.broadcast import notify_executor
from sessions.choices import TaskStatus
from sessions.models import Agent, Task
from sessions.runners import get_runner_class
from sessions.services.events import event_append
from sessions.services.locks import lock_task
from sessions.services.tasks import _status_event

ANSWER_SCHEMAS: dict[str, dict[str, Any]] = {
    "ask_user": {
        "type": "object",
        "properties": {"reply": {"type": "string", "maxLength": 100_000}},
        "required": ["reply"],
        "additionalProperties": False,
    },
    "approval": {
        "type": "object",
        "properties": {
            "decision": {"enum": ["approve", "deny", "edit"]},
            "arguments": {"type": "object"},
            "reason": {"type": "string", "maxLength": 2000},
        },
        "required": ["decision"],
        "if": {"properties": {"decision": {"const": "edit"}}},
        "then": {"required": ["decision", "arguments"]},
        "additionalProperties": False,
    },
}


def task_suspend(
    *, task: Task, worker: str, pending: dict[str, Any], usage: dict[str, Any]
) -> Task:
    """``running → waiting``: park ``task`` until :func:`task_resume`, freeing ``worker``.

    ``pending`` is ``{"kind": "ask_user"|"approval", "call_id", "name", "arguments",
    "question"?}``; it is stored on the task, appended as an ``input.requested`` event and
    carried by the ``task.status`` event. A task whose cancel was requested meanwhile is
    cancelled instead. Returns the task as saved.
    """
    with transaction.atomic():
        locked = lock_task(pk=task.pk, session_id=task.session_id)
        if locked.status != TaskStatus.RUNNING or locked.worker != worker:
            return locked  # recovered or finished elsewhere meanwhile
        if locked.cancel_requested_at is not None:
            fields = locked.finish(
                TaskStatus.CANCELLED,
                error={"code": "cancelled", "message": locked.cancel_reason, "details": {}},
                usage=usage,
            )
            locked.save(update_fields=fields)
            _status_event(locked)
            return locked
        fields = locked.transition(TaskStatus.WAITING, phase=f"waiting_{pending['kind']}")
        locked.pending_action = pending
        locked.resume = None
        locked.usage = {**locked.usage, **usage}
        locked.worker = ""
        # The lease of a waiting task is its answer deadline (task_recover_expired ends it).
        locked.lease_expires_at = timezone.now() + timedelta(seconds=settings.TASK_WAIT_TIMEOUT_S)
        locked.save(
            update_fields=[*fields, "pending_action", "resume", "usage", "worker",
                           "lease_expires_at"]
        )  # fmt: skip
        event_append(session=locked.session, task=locked, type="input.requested", data=pending)
        _status_event(locked, pending_action=pending)
    return locked


def task_resume(*, task: Task, answer: dict[str, Any]) -> Task:
    """Answer a waiting task and queue it again (``waiting → queued``).

    ``answer`` is ``{"reply": str}`` for ``ask_user``, ``{"decision": "approve"|"deny"|"edit",
    "arguments"?: {...} (with edit), "reason"?: str}`` for an approval. Appends an
    ``input.received`` event.

    Raises:
        Conflict: the task is not waiting (code ``not_waiting``).
        InvalidInput: the answer does not fit what the task waits for.
    """
    from sessions.runners.base import validate_schema

    with transaction.atomic():
        locked = lock_task(pk=task.pk, session_id=task.session_id)
        pending = locked.pending_action
        if locked.status != TaskStatus.WAITING or not pending:
            raise Conflict(
                "The task is not waiting for an answer.",
                code="not_waiting",
                details={"status": locked.status},
            )
        if pending["kind"] not in ANSWER_SCHEMAS:  # paused in the debugger (debugger.control)
            raise Conflict(
                "The task is paused in the debugger: continue, step or abort it with "
                "POST /api/v1/tasks/{id}/debug/continue|step|abort.",
                code="debug_paused",
                details={"step_id": pending.get("step_id")},
            )
        validate_schema(answer, ANSWER_SCHEMAS[pending["kind"]], "answer")
        fields = locked.transition(TaskStatus.QUEUED, phase="resuming")
        locked.resume = {"call_id": pending.get("call_id"), "kind": pending["kind"], **answer}
        locked.pending_action = None
        locked.lease_expires_at = None
        # mark_running counts an attempt at the next claim; a resume is not a retry.
        locked.attempt = max(locked.attempt - 1, 0)
        locked.save(
            update_fields=[*fields, "resume", "pending_action", "lease_expires_at", "attempt"]
        )
        event_append(session=locked.session, task=locked, type="input.received", data=locked.resume)
        _status_event(locked)
        transaction.on_commit(partial(notify_executor, "task.queued", locked.uuid))
    return locked


def task_create_child(*, parent: Task, agent: Agent, input: dict[str, Any], worker: str) -> Task:
    """Create a task of ``agent`` inside ``parent``'s session, already ``running`` under
    ``worker`` (the parent's), for the caller to run in place with ``run_claimed_task``.

    Raises:
        InvalidInput: the input does not match the agent's input schema; the depth limit
            ``LLM_MAX_AGENT_DEPTH`` is reached (code ``agent_depth_exceeded``).
        NotFound: the agent is deleted.
    """
    depth = 0
    node: Task | None = parent
    while node is not None:
        depth += 1
        node = node.parent
    if depth > settings.LLM_MAX_AGENT_DEPTH:
        raise InvalidInput(
            "Agents called agents too deeply.",
            code="agent_depth_exceeded",
            details={"max_depth": settings.LLM_MAX_AGENT_DEPTH},
        )
    if agent.deleted_at is not None:
        raise NotFound("No such agent.", details={"agent": agent.slug})
    runner = get_runner_class(agent.kind)
    runner.validate_input(input, agent.input_schema or None)
    with transaction.atomic():
        task = Task.objects.create(
            session=parent.session, agent=agent, agent_version=agent.version,
            created_by=parent.created_by, task_type="run", input=input,
            config={"timeout_s": parent.timeout_s}, parent=parent, timeout_s=parent.timeout_s,
        )  # fmt: skip
        _status_event(task, task_type="run", parent_task_id=str(parent.uuid))
        fields = task.mark_running(worker=worker, lease_s=settings.TASK_LEASE_S)
        task.save(update_fields=fields)
        _status_event(task, attempt=task.attempt, worker=worker)
    return task
