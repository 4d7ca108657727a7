"""The conversation of an llm task, rebuilt from the session's event log.

The log is the only state the loop keeps (DESIGN §3: the log is the truth), so a task that was
parked in ``waiting``, or retried after its worker died, continues exactly where its events
stop: :func:`conversation` returns the chat messages so far and what the current task already
did (model calls, token totals, tool calls still without a result).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db.models import Q

from sessions.models import Event
from sessions.runners.base import TaskContext

HISTORY_TYPES = ("message.user", "message.completed", "tool.result")
NOT_RUN = "error: this tool call never ran (its task ended first)"


@dataclass
class TaskState:
    """What the current task did before this run.

    Attributes:
        started: its ``message.user`` is in the log (a resumed or retried task).
        steps: model calls made (``message.completed`` events).
        totals: ``{"prompt_tokens", "completion_tokens", "cost_usd"?}`` so far.
        pending: tool calls of its last model reply that have no ``tool.result`` yet
            (``[{"id", "name", "arguments"}]``), in call order.
    """

    started: bool = False
    steps: int = 0
    totals: dict[str, Any] = field(
        default_factory=lambda: {"prompt_tokens": 0, "completion_tokens": 0}
    )
    pending: list[dict[str, str]] = field(default_factory=list)


def assistant_message(text: str, calls: list[dict[str, str]]) -> dict[str, Any]:
    """An OpenAI-format assistant message (``tool_calls`` only when there are some)."""
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = [
            {"id": c["id"], "type": "function",
             "function": {"name": c["name"], "arguments": c["arguments"]}}
            for c in calls
        ]  # fmt: skip
    return message


def tool_message(call_id: str, output: str) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": output}


def conversation(ctx: TaskContext) -> tuple[list[dict[str, Any]], TaskState]:
    """The session's conversation as chat messages (oldest first, no system prompt) and the
    current task's :class:`TaskState`.

    A task started by another agent (``call_agent``) sees only its own turn; a top-level task
    sees every top-level task's turns (child tasks' turns are their parents' tool results).
    Tool calls left without a result by a task that ended are answered with an error message,
    since providers refuse a conversation with an unanswered tool call.
    """
    task = ctx.task
    own = Q(task__uuid=ctx.task_uuid)
    scope = own if task is not None and task.parent_id else own | Q(task__parent__isnull=True)
    events = (
        Event.objects.filter(session_id=ctx.session.pk)
        .filter(scope, type__in=(*HISTORY_TYPES, "usage"))
        .select_related("task")
        .order_by("seq")
    )
    messages: list[dict[str, Any]] = []
    state = TaskState()
    open_calls: dict[str, dict[str, str]] = {}  # of the last assistant message, by id
    open_owner = ""

    def close_open() -> None:
        # Another task's unanswered calls: answer them so the conversation stays valid.
        for call_id in list(open_calls):
            messages.append(tool_message(call_id, NOT_RUN))
        open_calls.clear()

    for event in events:
        data = event.data
        mine = str(event.task.uuid) == ctx.task_uuid if event.task else False
        if event.type == "usage":
            if mine:
                for key, value in data.items():
                    if key != "step" and isinstance(value, int | float):
                        state.totals[key] = state.totals.get(key, 0) + value
            continue
        if event.type == "tool.result":
            if open_calls.pop(data.get("call_id", ""), None) is not None:
                messages.append(tool_message(data["call_id"], data.get("output", "")))
            continue
        close_open()
        if event.type == "message.user":
            messages.append({"role": "user", "content": data.get("text", "")})
            state.started = state.started or mine
        else:
            calls = data.get("tool_calls") or []
            messages.append(assistant_message(data.get("text", ""), calls))
            open_calls = {c["id"]: c for c in calls}
            open_owner = ctx.task_uuid if mine else ""
            if mine:
                state.steps += 1
    if open_calls and open_owner == ctx.task_uuid:
        state.pending = list(open_calls.values())
    else:
        close_open()
    return messages, state
