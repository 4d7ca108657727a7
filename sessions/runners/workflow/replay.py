"""Replaying a workflow fork (``debugger.replay.task_fork``; ``docs/replay.md``).

A fork's ``config.replay`` is ``{"task": <origin uuid>, "step_id": ..., "step_input"?: ...}``.
The top-level component the step belongs to (a step inside a loop body forks at its top-level
loop) is the *fork point*. Every top-level component that ``succeeded`` in the origin and is
neither the fork point nor downstream of it (graph edges) is not run again: the engine emits
its recorded ``step.started``/``step.finished`` (and those of the steps inside it, for a loop)
with ``"replayed": true`` and passes its recorded output on (a condition takes the port it
took). The fork point runs with ``step_input`` when given. The plan is only read from the
task's ``forked_from`` row, which only the fork service sets, so a ``config.replay`` written by
a client cannot read another task's recorded values.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from runtime_project.db import db_call
from sessions.models import Artifact, Event, Task
from sessions.runners.base import TaskContext

logger = logging.getLogger(__name__)

_TOP = re.compile(r"[A-Za-z0-9_-]+")
STEP_TYPES = ("step.started", "step.finished")
# The plans of the runs in progress in this process, by task uuid (``WorkflowRunner.run``
# sets and drops them; ``WorkflowRun.node`` reads them).
PLANS: dict[str, ReplayPlan | None] = {}


@dataclass
class Recorded:
    """A top-level component as the origin ran it: its ``step.started``/``step.finished``
    data (full, artifacts loaded) and those of the steps inside it (a loop's), in order."""

    started: dict[str, Any]
    finished: dict[str, Any]
    inner: list[dict[str, Any]] = field(default_factory=list)  # event data, type in "_type"


@dataclass
class ReplayPlan:
    """``recorded``: the components to replay by id; ``fork_point``/``step_input``: the
    component that runs first with the edited input (``has_step_input`` says it was given)."""

    fork_point: str
    recorded: dict[str, Recorded]
    step_input: Any = None
    has_step_input: bool = False

    def input_for(self, component_id: str, inputs: dict[str, Any]) -> dict[str, Any]:
        if component_id == self.fork_point and self.has_step_input:
            return dict(self.step_input)
        return inputs

    def emit(self, ctx: TaskContext, component: dict[str, Any]) -> tuple[Any, str | None]:
        """Emit the recorded events of ``component`` flagged ``replayed``; return its recorded
        output and, for a condition, the port it took."""
        recorded = self.recorded[component["id"]]
        ctx.emit("step.started", {**recorded.started, "replayed": True})
        for data in recorded.inner:
            data = dict(data)
            ctx.emit(data.pop("_type"), {**data, "replayed": True})
        ctx.emit("step.finished", {**recorded.finished, "duration_ms": 0, "replayed": True})
        output = recorded.finished.get("output")
        port = None
        if component["type"] == "condition":
            port = "true" if isinstance(output, dict) and output.get("result") else "false"
        return output, port


def fork_point(step_id: str) -> str:
    """The top-level component id of a workflow step id (``each[1].sq`` → ``each``)."""
    match = _TOP.match(step_id)
    return match.group(0) if match else step_id


def downstream(spec: dict[str, Any], component_id: str) -> set[str]:
    """The top-level components reachable from ``component_id`` along the graph's edges."""
    successors: dict[str, list[str]] = {}
    for edge in spec.get("edges") or []:
        source, target = str(edge["from"]).split(".")[0], str(edge["to"]).split(".")[0]
        successors.setdefault(source, []).append(target)
    seen: set[str] = set()
    todo = [component_id]
    while todo:
        for nxt in successors.get(todo.pop(), []):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def event_data_full(event: Event) -> dict[str, Any]:
    """``event.data``, or the whole data the log moved into an artifact (an event over
    ``EVENT_INLINE_MAX_BYTES`` keeps only a preview and ``{"artifact": {"id", …}}``)."""
    data = event.data
    ref = data.get("artifact") if data.get("truncated") else None
    if not isinstance(ref, dict) or not isinstance(ref.get("id"), str):
        return dict(data)
    artifact = Artifact.objects.filter(session_id=event.session_id, uuid=ref["id"]).first()
    if artifact is None:
        return dict(data)
    with artifact.file.open("rb") as handle:
        full = json.loads(handle.read())
    return full if isinstance(full, dict) else dict(data)


def recorded_components(events: Iterable[Event]) -> dict[str, Recorded]:
    """The top-level components of a workflow task's step events that ``succeeded``."""
    started: dict[str, dict[str, Any]] = {}
    inner: dict[str, list[dict[str, Any]]] = {}
    done: dict[str, Recorded] = {}
    for event in events:
        data = event_data_full(event)
        step_id = str(data.get("step_id", ""))
        top = fork_point(step_id)
        if step_id != top:  # inside a loop: kept with its top-level loop
            inner.setdefault(top, []).append({**data, "_type": event.type})
        elif event.type == "step.started":
            started[top], inner[top] = data, []
        elif data.get("status") == "succeeded" and top in started:
            done[top] = Recorded(started[top], data, inner.get(top, []))
    return done


def plan_build(
    *, origin: Task, spec: dict[str, Any], step_id: str, step_input: Any = None,
    has_step_input: bool = False,
) -> ReplayPlan:  # fmt: skip
    """The plan of a fork of ``origin`` from ``step_id`` (a component step id)."""
    point = fork_point(step_id)
    rerun = {point, *downstream(spec, point)}
    events = Event.objects.filter(task=origin, type__in=STEP_TYPES).order_by("seq")
    recorded = {k: v for k, v in recorded_components(events).items() if k not in rerun}
    return ReplayPlan(point, recorded, step_input, has_step_input)


def _plan_load(ctx: TaskContext) -> ReplayPlan | None:
    replay = ctx.config.get("replay")
    task = ctx.task
    if not isinstance(replay, dict) or task is None or not replay.get("step_id"):
        return None
    origin = Task.objects.filter(pk=task.forked_from_id).first() if task.forked_from_id else None
    if origin is None or str(origin.uuid) != str(replay.get("task")):
        logger.warning("task %s: config.replay without a matching fork origin", ctx.task_uuid)
        return None
    step_id = str(replay["step_id"])
    if step_id == "agent":
        return None
    return plan_build(
        origin=origin, spec=ctx.spec, step_id=step_id, step_input=replay.get("step_input"),
        has_step_input="step_input" in replay,
    )  # fmt: skip


async def plan_load(ctx: TaskContext) -> ReplayPlan | None:
    """The replay plan of a forked workflow task (``config.replay``), or None."""
    return await db_call(_plan_load)(ctx)
