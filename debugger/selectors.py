"""Debugger reads: a task's trace as a flat list (ordered by start) or as a tree, and
breakpoints and debugger commands. Callers pass objects they already checked access to."""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import Q

from debugger.models import Breakpoint, DebugCommand, Step
from runtime_project.exceptions import NotFound


def step_list(*, task: Any) -> list[Step]:
    """The steps of ``task`` (a ``sessions.models.Task`` the caller may read), ordered by the
    ``seq`` of the event that opened them (the root first)."""
    steps = Step.objects.filter(task=task).select_related("parent")
    return list(steps.order_by("seq_started", "id"))


def step_tree(*, task: Any) -> list[Step]:
    """The top-level steps of ``task`` (normally one, the ``agent`` root), each with
    ``tree_children``: its child steps (with theirs), ordered by start. Two queries."""
    steps = step_list(task=task)
    by_pk: dict[int, Step] = {}
    for step in steps:
        step.tree_children = []  # type: ignore[attr-defined]
        by_pk[step.pk] = step
    roots: list[Step] = []
    for step in steps:
        parent = by_pk.get(step.parent_id) if step.parent_id is not None else None
        if parent is None:
            roots.append(step)
        else:
            parent.tree_children.append(step)  # type: ignore[attr-defined]
    return roots


def breakpoint_list(*, agent: Any = None, task: Any = None) -> list[Breakpoint]:
    """The breakpoints of ``agent`` or ``task`` (one the caller may read), oldest first."""
    found = Breakpoint.objects.select_related("agent", "task")
    found = found.filter(agent=agent) if agent is not None else found.filter(task=task)
    return list(found.order_by("created_at", "id"))


def breakpoint_list_for_task(*, task: Any) -> list[Breakpoint]:
    """The breakpoints a run of ``task`` honours: its own and its agent's, oldest first."""
    found = Breakpoint.objects.select_related("agent", "task")
    found = found.filter(Q(task=task) | Q(agent_id=task.agent_id))
    return list(found.order_by("created_at", "id"))


def breakpoint_get(*, breakpoint_id: Any, agent: Any = None, task: Any = None) -> Breakpoint:
    """One breakpoint of ``agent`` or ``task``. Raises NotFound (404) otherwise."""
    try:
        key = uuid.UUID(str(breakpoint_id))
    except ValueError:
        raise NotFound("No such breakpoint.") from None
    scope = {"agent": agent} if agent is not None else {"task": task}
    found = Breakpoint.objects.filter(uuid=key, **scope).select_related("agent", "task").first()
    if found is None:
        raise NotFound("No such breakpoint.")
    return found


def debug_command_list(*, task: Any, limit: int = 50) -> list[DebugCommand]:
    """The last ``limit`` debugger commands sent to ``task``, oldest first."""
    found = DebugCommand.objects.filter(task=task).select_related("created_by")
    return list(reversed(found.order_by("-created_at", "-id")[:limit]))
