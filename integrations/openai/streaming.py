"""Following one task's events for an OpenAI call: :func:`follow` turns the task's event log
(``integrations.runs.run_events``: replay, then live) into a small sequence of pieces both
API styles render, streaming or not.

Pieces: :class:`Text` (``message.delta`` text, from every model call of the turn, a blank line
between two replies; for non-llm agents also ``process.stdout``), :class:`ToolCall` (a
``tool.call`` event: a tool the *server* runs), :class:`Heartbeat` (a quiet interval) and, last,
:class:`Outcome`: the task finished, or parked in ``waiting`` (an ``ask_user`` question or an
approval; the turn ends there and the next user turn answers it), or the wait limit
(``OPENAI_API_MAX_WAIT_S`` plus :data:`DEADLINE_GRACE_S`) passed, in which case the task is
cancelled.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from integrations.runs import result_text, run_cancel, run_events
from runtime_project.db import db_call
from sessions.choices import TERMINAL_STATUSES, TaskStatus
from sessions.models import Task

from .services import Started

HEARTBEAT_S = 5.0  # also how often the wait limit is checked while nothing happens
# The task's own timeout is OPENAI_API_MAX_WAIT_S (it ends ``timed_out`` with its events); the
# call gives up this much later, for a task that never got to run (queued behind another).
DEADLINE_GRACE_S = 5.0
LENGTH_ERRORS = {"max_steps", "token_limit", "cost_limit"}  # OpenAI's finish_reason "length"


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class ToolCall:
    index: int
    call_id: str
    name: str
    arguments: str  # JSON text, as OpenAI sends it


@dataclass(frozen=True)
class Heartbeat:
    pass


@dataclass(frozen=True)
class Outcome:
    """How the turn ended.

    Attributes:
        kind: ``stop`` (succeeded, or waiting for an answer), ``length`` (out of steps, tokens
            or budget), ``error`` (failed, cancelled), ``timeout`` (the task timed out, or the
            wait limit passed).
        task: the task as saved (``None`` only if it vanished).
        text: what the client should see in full (the streamed text, else the task's result
            text; plus the question of an ``ask_user`` wait).
        tail: text not streamed yet (a result without deltas, a pending question).
        usage: ``{"prompt_tokens", "completion_tokens", "total_tokens"}``.
        message: the error message (``error``/``timeout``); code: its code.
    """

    kind: str
    task: Task | None
    text: str
    tail: str
    usage: dict[str, int]
    message: str = ""
    code: str = ""


Piece = Text | ToolCall | Heartbeat | Outcome


def usage_of(task: Task | None) -> dict[str, int]:
    raw = (task.usage if task is not None else None) or {}
    prompt = int(raw.get("prompt_tokens") or 0)
    completion = int(raw.get("completion_tokens") or 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}  # fmt: skip


def _load(task_pk: int) -> Task | None:
    return Task.objects.select_related("session", "agent").filter(pk=task_pk).first()


def _pending_text(task: Task) -> str:
    pending = task.pending_action or {}
    if pending.get("kind") == "ask_user":
        return str(pending.get("question") or "")
    name = pending.get("name", "?")
    return (
        f"[The agent waits for approval of its `{name}` tool call: answer with "
        f"POST /api/v1/tasks/{task.uuid}/resume.]"
    )


def _outcome(task: Task | None, streamed: str, *, timed_out: bool = False) -> Outcome:
    usage = usage_of(task)
    if task is None:
        return Outcome("error", None, streamed, "", usage, "The task vanished.", "not_found")
    error = task.error if isinstance(task.error, dict) else {}
    tail = ""
    if task.status == TaskStatus.WAITING:
        pending = _pending_text(task)
        tail = ("\n\n" if streamed and pending else "") + pending
        kind = "stop"
    elif task.status == TaskStatus.SUCCEEDED:
        kind = "stop"
        tail = "" if streamed else result_text(task)
    elif task.status == TaskStatus.FAILED and error.get("code") in LENGTH_ERRORS:
        kind = "length"
    elif timed_out or task.status == TaskStatus.TIMED_OUT:
        message = "The agent did not finish within the time limit."
        code = "timeout"
        return Outcome("timeout", task, streamed, "", usage, message, code)
    else:
        message = str(error.get("message") or f"The task ended {task.status}.")
        code = str(error.get("code") or f"task_{task.status}")
        return Outcome("error", task, streamed, "", usage, message, code)
    return Outcome(kind, task, streamed + tail, tail, usage)


def _arguments(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


async def follow(started: Started, *, stdout: bool) -> AsyncIterator[Piece]:
    """The pieces of ``started``'s task, ending with one :class:`Outcome` (module docstring).
    ``stdout``: ``process.stdout`` text is content (non-llm agents)."""
    run = started.run
    loop = asyncio.get_running_loop()
    deadline = loop.time() + float(settings.OPENAI_API_MAX_WAIT_S) + DEADLINE_GRACE_S
    streamed, message_id, calls = "", None, 0
    async with run_events(run, after=started.after, heartbeat_s=HEARTBEAT_S) as sub:
        async for envelope in sub:
            if loop.time() > deadline:
                await run_cancel(run, reason="OpenAI API wait limit reached")
                yield _outcome(await db_call(_load)(run.task.pk), streamed, timed_out=True)
                return
            if envelope is None:
                yield Heartbeat()
                continue
            kind, data = envelope["type"], envelope.get("data") or {}
            if kind == "message.delta" or (kind == "process.stdout" and stdout):
                # An event over the inline size limit keeps a preview (its text is an artifact).
                text = data.get("text") if "text" in data else data.get("preview")
                if not isinstance(text, str) or not text:
                    continue
                stream_id = data.get("message_id") or data.get("process_id")
                if streamed and stream_id != message_id and kind == "message.delta":
                    text = "\n\n" + text  # a later reply of the same turn
                message_id = stream_id
                streamed += text
                yield Text(text)
            elif kind == "tool.call":
                yield ToolCall(calls, str(data.get("call_id", "")), str(data.get("name", "")),
                               _arguments(data.get("arguments", {})))  # fmt: skip
                calls += 1
            elif kind == "task.status" and (
                data.get("status") in TERMINAL_STATUSES or data.get("status") == "waiting"
            ):
                yield _outcome(await db_call(_load)(run.task.pk), streamed)
                return
    # The subscription ended without a status we saw (it only ends after a terminal one).
    yield _outcome(await db_call(_load)(run.task.pk), streamed)


async def cancel_quietly(started: Started, reason: str) -> None:
    """Cancel the task (shielded: the caller is usually being cancelled itself)."""
    await asyncio.shield(run_cancel(started.run, reason=reason))
