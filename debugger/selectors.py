"""Step reads: a task's trace as a flat list (ordered by start) or as a tree."""

from __future__ import annotations

from typing import Any

from debugger.models import Step


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
