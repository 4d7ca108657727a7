"""Step writes: the projection of the event log into the step trace (issue 10, item 1).

:func:`steps_project` is registered with ``sessions.services.events.event_projector_register``
(``DebuggerConfig.ready``): it runs inside ``events_append``'s transaction with the saved events
of :data:`STEP_EVENT_TYPES` of each batch, so any runner, local or remote, gets a trace by
emitting events, and the trace commits or rolls back with them.

Events → steps (``step_id``, kind):

* ``task.status`` ``running`` opens the root ``agent`` step (named after the agent), ``waiting``
  marks it waiting, a terminal status closes it with the task's result, error and usage and
  closes every step still open (``cancelled``; ``failed``/``timed_out`` when the task did);
  ``queued`` again (a retried task) closes the open steps of the earlier attempt as
  ``cancelled``. A ``running`` status with ``phase`` ``model_call_<n>`` (the llm kind) opens the
  ``llm-<n>`` step of that model call.
* ``step.started``/``step.finished`` → ``<step_id>`` (``component``), under ``parent`` (loops).
* ``cell.started``/``cell.finished`` → ``cell-<i>`` (``cell``); ``output.error`` sets its error.
* ``process.started``/``process.exit`` → ``process-<id>`` (``command``), under ``step_id``
  when a workflow component ran it.
* ``tool.call``/``tool.result`` → ``tool-<call_id>`` (``tool``).
* ``llm.request`` (debug runs) → the whole input (messages, tools) of ``llm-<step>``.
* ``message.completed`` (no ``step_id``/``cell``) → the output of the open llm step;
  ``usage`` with ``step`` closes ``llm-<step>`` with its tokens and cost; with ``step_id`` or
  ``cell`` it adds tokens and cost to that component or cell.

Steps without a parent hang under the root. Values over :data:`STEP_INLINE_MAX_BYTES` of JSON
are stored as artifacts; a value the event log already externalized keeps the event's artifact.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.db.models import Q

from debugger.models import OPEN_STEP_STATUSES, Step, StepKind, StepStatus
from runtime_project.db import unique_or_none
from sessions.choices import TERMINAL_STATUSES, TaskStatus
from sessions.models import Event, Session, Task
from sessions.services.artifacts import artifact_create, artifact_reference
from sessions.services.events import event_task

STEP_INLINE_MAX_BYTES = 16 * 1024
ROOT_STEP_ID = "agent"
STEP_EVENT_TYPES = frozenset(
    {
        "task.status", "step.started", "step.finished", "cell.started", "cell.finished",
        "output.error", "process.started", "process.exit", "tool.call", "tool.result",
        "message.completed", "usage", "llm.request",
    }
)  # fmt: skip
_CELL_STATUS = {"ok": StepStatus.SUCCEEDED, "error": StepStatus.FAILED,
                "aborted": StepStatus.CANCELLED}  # fmt: skip
_UNSET: Any = object()
# The data keys that name a step (with the prefix of its ``step_id``), per event type.
_STEP_KEYS: dict[str, tuple[tuple[str, str], ...]] = {
    "step.started": (("step_id", ""), ("parent", "")),
    "step.finished": (("step_id", ""), ("parent", "")),
    "cell.started": (("cell", "cell-"),), "cell.finished": (("cell", "cell-"),),
    "output.error": (("cell", "cell-"),),
    "process.started": (("process_id", "process-"), ("step_id", "")),
    "process.exit": (("process_id", "process-"),),
    "tool.call": (("call_id", "tool-"),), "tool.result": (("call_id", "tool-"),),
    "message.completed": (("step", "llm-"),), "llm.request": (("step", "llm-"),),
    "usage": (("step", "llm-"), ("step_id", ""), ("cell", "cell-")),
}  # fmt: skip
# What closing a step may change (its usage too: add_usage comes before close).
_CLOSED_FIELDS = ["status", "output", "error", "finished_at", "seq_finished", "duration_ms",
                  "metadata", "prompt_tokens", "completion_tokens", "cost_usd",
                  "updated_at"]  # fmt: skip


def steps_project(session: Session, events: list[Event]) -> None:
    """Project ``events`` (saved, with ``seq``, of :data:`STEP_EVENT_TYPES`) of ``session``
    into :class:`Step` rows. Call inside the transaction that wrote them. Events without a
    task are ignored."""
    projection = _Projection(session)
    events = [e for e in events if e.task_id is not None]
    projection.prefetch(events)
    for event in events:
        projection.apply(event)
    projection.write()


def _ms(start: datetime | None, end: datetime) -> int | None:
    return None if start is None else max(int((end - start).total_seconds() * 1000), 0)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _named_steps(event: Event) -> set[str]:
    """The ``step_id`` values the handler of ``event`` may look up, the root included (a step
    opens under it); empty when the handler looks none up by id. A step missed here is still
    found: the handler queries it."""
    data, type = event.data, event.type
    if type == "task.status":
        if data.get("status") == TaskStatus.QUEUED and "task_type" in data:
            return set()  # the task's creation: no steps yet
        phase = str(data.get("phase") or "")
        if phase.startswith("model_call_"):
            return {ROOT_STEP_ID, f"llm-{phase.removeprefix('model_call_')}"}
        return {ROOT_STEP_ID}
    if type == "message.completed" and not (data.get("replayed") and "step" in data):
        return set()  # the open llm step is found by its status (or a component has it)
    named = {ROOT_STEP_ID}
    for key, prefix in _STEP_KEYS.get(type, ()):
        if data.get(key) is not None:
            named.add(f"{prefix}{data[key]}")
    return named


class _Projection:
    """The steps one batch touches, cached by ``(task id, step id)``, read in one query by
    :meth:`prefetch` (a step it did not read is looked up when needed).

    Writes wait for :meth:`write` at the end of the batch: a step opened and closed within one
    batch (a workflow's loop items, a fast tool call) is one row inserted closed, the batch's
    new steps are inserted together, and an existing step changed by several events is updated
    once. A handler that queries steps by anything but the cache writes first."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.tasks: dict[int, Task | None] = {}
        self.steps: dict[tuple[int, str], Step | None] = {}
        self.all_open: set[int] = set()  # tasks whose open steps are all in ``steps``
        self.new: dict[int, Step] = {}  # by id(): steps to insert, in the order they opened
        # by id(): saved steps to update, with the fields changed (None: every field)
        self.changed: dict[int, tuple[Step, set[str] | None]] = {}

    def prefetch(self, events: list[Event]) -> None:
        """Read the steps ``events`` name and, for a task the batch ends or requeues, every
        open step, in one query; take the task instances their writers passed
        (``event_task``) when their agent and session are loaded."""
        named: dict[int, set[str]] = {}
        ending: set[int] = set()
        for event in events:
            assert event.task_id is not None
            task = event_task(event)
            if task is not None and Task.agent.is_cached(task) and Task.session.is_cached(task):
                self.tasks.setdefault(event.task_id, task)
            named.setdefault(event.task_id, set()).update(_named_steps(event))
            status = event.data.get("status") if event.type == "task.status" else None
            if status in TERMINAL_STATUSES or (
                status == TaskStatus.QUEUED and "task_type" not in event.data
            ):
                ending.add(event.task_id)
        query = Q()
        for task_id, ids in named.items():
            if ids:
                query |= Q(task_id=task_id, step_id__in=sorted(ids))
        for task_id in ending:
            query |= Q(task_id=task_id, status__in=OPEN_STEP_STATUSES)
        if not query:
            return
        for step in Step.objects.filter(query).order_by():
            self.steps[(step.task_id, step.step_id)] = step
        for task_id, ids in named.items():
            for step_id in ids:
                self.steps.setdefault((task_id, step_id), None)
        self.all_open |= ending

    # Lookups ----------------------------------------------------------------------------------

    def task(self, task_id: int) -> Task | None:
        if task_id not in self.tasks:
            self.tasks[task_id] = unique_or_none(
                Task.objects.filter(pk=task_id).select_related("agent", "session")
            )
        return self.tasks[task_id]

    def step(self, task_id: int, step_id: str) -> Step | None:
        key = (task_id, step_id)
        if key not in self.steps:
            self.steps[key] = unique_or_none(Step.objects.filter(task_id=task_id, step_id=step_id))
        return self.steps[key]

    def root(self, event: Event) -> Step:
        """The task's root step, opened by ``event`` if it has none yet."""
        assert event.task_id is not None
        root = self.step(event.task_id, ROOT_STEP_ID)
        if root is None:
            task = self.task(event.task_id)
            root = Step(
                task_id=event.task_id, step_id=ROOT_STEP_ID, kind=StepKind.AGENT,
                name=task.agent.slug if task else "", status=StepStatus.RUNNING,
                input=self.stored(event, task.input if task else None, "input"),
                started_at=event.created_at, seq_started=event.seq,
                metadata={"agent_kind": task.agent.kind} if task else {},
            )  # fmt: skip
            self.save(root)
            self.steps[(event.task_id, ROOT_STEP_ID)] = root
        return root

    def stored(self, event: Event, value: Any, label: str) -> Any:
        """``value``, or ``{"artifact": ref, "preview"}`` when its JSON is over the limit."""
        if value is None:
            return None
        raw = json.dumps(value, default=str)
        if len(raw) <= STEP_INLINE_MAX_BYTES:
            return value
        artifact = artifact_create(
            session=self.session, task_id=event.task_id, name=f"step-{label}.json",
            content=raw.encode(), content_type="application/json",
        )  # fmt: skip
        return {"artifact": artifact_reference(artifact), "preview": raw[:1024]}

    def field(self, event: Event, key: str) -> Any:
        """``event.data[key]`` stored as a step value; for an event the log externalized (its
        values are in an artifact), the event's artifact reference."""
        data = event.data
        if key in data:
            return self.stored(event, data[key], key)
        if data.get("truncated") and "artifact" in data:
            return {"artifact": data["artifact"], "preview": data.get("preview")}
        return None

    # Writes -----------------------------------------------------------------------------------

    def save(self, step: Step, fields: list[str] | None = None) -> None:
        """Queue ``step`` for :meth:`write`: inserted if new, else its ``fields`` (None: all)
        updated."""
        if step.pk is None:
            self.new[id(step)] = step
            return
        _, before = self.changed.get(id(step), (step, set()))
        merged = None if fields is None or before is None else before | set(fields)
        self.changed[id(step)] = (step, merged)

    def write(self) -> None:
        """Insert the new steps, parents before children (a statement per level of nesting
        opened in this batch), then update the changed ones."""
        pending, self.new = list(self.new.values()), {}
        while pending:
            ready = [s for s in pending if s.parent_id is not None or s.parent is None
                     or s.parent.pk is not None]  # fmt: skip
            assert ready, "a step's parent is neither saved nor queued"
            Step.objects.bulk_create(ready)
            pending = [s for s in pending if s.pk is None]
        changed, self.changed = list(self.changed.values()), {}
        for step, fields in changed:
            step.save(update_fields=None if fields is None else sorted(fields))

    def open(
        self, event: Event, step_id: str, kind: str, name: str, *,
        parent: str | None = None, input: Any = None, metadata: dict[str, Any] | None = None,
    ) -> Step:  # fmt: skip
        """Open (or re-open, when the runner re-used its id) the step ``step_id``."""
        assert event.task_id is not None
        parent_step = (self.step(event.task_id, parent) if parent else None) or self.root(event)
        step = self.step(event.task_id, step_id)
        if step is None:
            step = Step(task_id=event.task_id, step_id=step_id)
        step.parent, step.kind, step.name = parent_step, kind, name[:255]
        step.status, step.input = StepStatus.RUNNING, input
        step.output = step.error = step.finished_at = step.duration_ms = step.seq_finished = None
        step.started_at, step.seq_started = event.created_at, event.seq
        step.metadata = metadata or {}
        self.save(step)
        self.steps[(event.task_id, step_id)] = step
        return step

    def close(
        self, event: Event, step_id: str, status: str, *, kind: str, name: str,
        output: Any = _UNSET, error: Any = None, duration_ms: int | None = None,
        parent: str | None = None, metadata: dict[str, Any] | None = None,
    ) -> Step:  # fmt: skip
        """Close ``step_id`` with ``status``; a step never opened (a skipped component, a result
        whose start was lost) is created closed, starting and ending at ``event``."""
        assert event.task_id is not None
        step = self.step(event.task_id, step_id)
        if step is None:
            step = self.open(event, step_id, kind, name, parent=parent)
        step.status = status
        if output is not _UNSET:
            step.output = output
        if error is not None:
            step.error = error
        step.finished_at, step.seq_finished = event.created_at, event.seq
        step.duration_ms = duration_ms if duration_ms is not None else _ms(
            step.started_at, event.created_at
        )  # fmt: skip
        step.metadata = {**step.metadata, **(metadata or {})}
        self.save(step, _CLOSED_FIELDS)
        return step

    def add_usage(self, step: Step, usage: dict[str, Any], *, replace: bool = False) -> None:
        """Add (or set) ``prompt_tokens``, ``completion_tokens`` and ``cost_usd`` of ``usage``."""
        for field in ("prompt_tokens", "completion_tokens", "cost_usd"):
            value = usage.get(field)
            if isinstance(value, int | float) and not isinstance(value, bool):
                current = getattr(step, field)
                setattr(step, field, value if replace or current is None else current + value)

    def close_open(self, event: Event, status: str, code: str, message: str) -> None:
        """Close the task's open steps but the root with ``status`` and the error ``code``."""
        assert event.task_id is not None
        if event.task_id in self.all_open:
            left = [
                step
                for (task_id, step_id), step in self.steps.items()
                if task_id == event.task_id and step_id != ROOT_STEP_ID
                and step is not None and step.status in OPEN_STEP_STATUSES
            ]  # fmt: skip
        else:
            self.write()
            left = list(
                Step.objects.filter(task_id=event.task_id, status__in=OPEN_STEP_STATUSES).exclude(
                    step_id=ROOT_STEP_ID
                )
            )
        for step in left:
            step.status, step.error = status, {"code": code, "message": message}
            step.finished_at, step.seq_finished = event.created_at, event.seq
            step.duration_ms = _ms(step.started_at, event.created_at)
            self.save(step, ["status", "error", "finished_at", "seq_finished", "duration_ms",
                             "updated_at"])  # fmt: skip
            self.steps[(event.task_id, step.step_id)] = step

    # Event handlers ---------------------------------------------------------------------------

    def apply(self, event: Event) -> None:
        handler = getattr(self, "on_" + event.type.replace(".", "_"))
        handler(event, event.data)

    def on_task_status(self, event: Event, data: dict[str, Any]) -> None:
        status = data.get("status")
        assert event.task_id is not None
        if status in TERMINAL_STATUSES:
            self.finish_task(event, data)
        elif status in (TaskStatus.RUNNING, TaskStatus.WAITING):
            root = self.root(event)
            if root.status != status and root.status in OPEN_STEP_STATUSES:
                root.status = status
                self.save(root, ["status", "updated_at"])
            phase = data.get("phase") or ""
            if status == TaskStatus.RUNNING and phase.startswith("model_call_"):
                call = phase.removeprefix("model_call_")
                self.open(event, f"llm-{call}", StepKind.LLM, self.model_name(event.task_id),
                          input={"call": int(call) if call.isdigit() else call})  # fmt: skip
        elif (
            status == TaskStatus.QUEUED
            and "task_type" not in data  # a task's first event (its creation): no steps yet
            and self.step(event.task_id, ROOT_STEP_ID) is not None
        ):
            self.close_open(event, StepStatus.CANCELLED, "task_requeued",
                            "The task was requeued before this step finished.")  # fmt: skip

    def finish_task(self, event: Event, data: dict[str, Any]) -> None:
        status = str(data["status"])
        left = {"failed": StepStatus.FAILED, "timed_out": StepStatus.TIMED_OUT}.get(
            status, StepStatus.CANCELLED
        )
        self.close_open(event, left, "task_ended",
                        f"The task ended ({status}) before this step finished.")  # fmt: skip
        root = self.root(event)
        if root.status not in OPEN_STEP_STATUSES:
            return  # already closed (a repeated terminal event)
        self.add_usage(root, data.get("usage") or {}, replace=True)
        self.close(event, ROOT_STEP_ID, status, kind=StepKind.AGENT, name=root.name,
                   output=self.field(event, "result"), error=data.get("error"))  # fmt: skip

    def model_name(self, task_id: int) -> str:
        """The model the llm kind calls: task ``config.model`` → session ``model_config`` →
        agent spec (as the runner resolves it)."""
        task = self.task(task_id)
        if task is None:
            return "model"
        for source in ((task.config or {}).get("model") or {},
                       (task.session.metadata or {}).get("model_config") or {},
                       (task.agent.spec or {}).get("model") or {}):  # fmt: skip
            if isinstance(source, dict) and isinstance(source.get("name"), str):
                return str(source["name"])
        return "model"

    def on_step_started(self, event: Event, data: dict[str, Any]) -> None:
        facts = self.component_facts(data)
        self.open(event, str(data.get("step_id")), StepKind.COMPONENT,
                  str(data.get("component", "")), parent=data.get("parent"),
                  input=self.field(event, "input"), metadata=facts)  # fmt: skip

    def on_step_finished(self, event: Event, data: dict[str, Any]) -> None:
        status = data.get("status")
        if status not in StepStatus.values or status in OPEN_STEP_STATUSES:
            status = StepStatus.FAILED
        facts = self.component_facts(data)
        if data.get("reason"):
            facts["reason"] = data["reason"]
        self.close(event, str(data.get("step_id")), str(status), kind=StepKind.COMPONENT,
                   name=str(data.get("component", "")), output=self.field(event, "output"),
                   error=data.get("error"), duration_ms=_int(data.get("duration_ms")),
                   parent=data.get("parent"), metadata=facts)  # fmt: skip

    @staticmethod
    def component_facts(data: dict[str, Any]) -> dict[str, Any]:
        return {k: data[k] for k in ("type", "iteration", "replayed") if k in data}

    def on_cell_started(self, event: Event, data: dict[str, Any]) -> None:
        cell = data.get("cell")
        self.open(event, f"cell-{cell}", StepKind.CELL, f"cell {cell}",
                  input=self.field(event, "code"),
                  metadata={"language": data.get("language", "python")})  # fmt: skip

    def on_cell_finished(self, event: Event, data: dict[str, Any]) -> None:
        cell = data.get("cell")
        status = _CELL_STATUS.get(str(data.get("status")), StepStatus.FAILED)
        output = {k: data.get(k) for k in ("status", "execution_count")}
        self.close(event, f"cell-{cell}", status, kind=StepKind.CELL, name=f"cell {cell}",
                   output=output, duration_ms=_int(data.get("duration_ms")))  # fmt: skip

    def on_output_error(self, event: Event, data: dict[str, Any]) -> None:
        assert event.task_id is not None
        step = self.step(event.task_id, f"cell-{data.get('cell')}")
        if step is not None:
            step.error = {"ename": data.get("ename"), "evalue": data.get("evalue")}
            self.save(step, ["error", "updated_at"])

    def on_process_started(self, event: Event, data: dict[str, Any]) -> None:
        argv = data.get("argv")
        name = " ".join(str(a) for a in argv) if isinstance(argv, list) else "process"
        self.open(event, f"process-{data.get('process_id')}", StepKind.COMMAND, name,
                  parent=data.get("step_id"),
                  input=self.stored(event, {k: data[k] for k in ("argv", "cwd") if k in data},
                                    "input"))  # fmt: skip

    def on_process_exit(self, event: Event, data: dict[str, Any]) -> None:
        code = data.get("exit_code")
        if data.get("timed_out"):
            status = StepStatus.TIMED_OUT
        elif data.get("killed") and not data.get("limit"):
            status = StepStatus.CANCELLED
        else:
            status = StepStatus.SUCCEEDED if code == 0 else StepStatus.FAILED
        output = {k: data[k] for k in ("exit_code", "timed_out", "killed", "limit")
                  if data.get(k) is not None}  # fmt: skip
        error = None
        if status != StepStatus.SUCCEEDED:
            error = {"message": f"The process exited with {code}.", "details": output}
        self.close(event, f"process-{data.get('process_id')}", status, kind=StepKind.COMMAND,
                   name="process", output=output, error=error,
                   duration_ms=_int(data.get("duration_ms")))  # fmt: skip

    def on_tool_call(self, event: Event, data: dict[str, Any]) -> None:
        facts = {k: True for k in ("requires_approval", "replayed", "edited") if data.get(k)}
        self.open(event, f"tool-{data.get('call_id')}", StepKind.TOOL, str(data.get("name")),
                  input=self.field(event, "arguments"), metadata=facts)  # fmt: skip

    def on_tool_result(self, event: Event, data: dict[str, Any]) -> None:
        failed = bool(data.get("is_error"))
        output = self.field(event, "output")
        error = None
        if failed:
            text = data.get("output")
            error = {"message": text[:1000] if isinstance(text, str) else "The tool failed."}
        self.close(event, f"tool-{data.get('call_id')}",
                   StepStatus.FAILED if failed else StepStatus.SUCCEEDED, kind=StepKind.TOOL,
                   name=str(data.get("name")), output=output, error=error)  # fmt: skip

    def on_message_completed(self, event: Event, data: dict[str, Any]) -> None:
        if "step_id" in data or "cell" in data:
            return  # a workflow component's or an AI cell's call: its own step has the output
        assert event.task_id is not None
        if data.get("replayed") and _int(data.get("step")) is not None:
            # A fork's copy of a recorded model call (debugger.replay): done when it appears.
            value = {k: data[k] for k in ("text", "tool_calls") if data.get(k) is not None}
            self.close(event, f"llm-{data['step']}", StepStatus.SUCCEEDED, kind=StepKind.LLM,
                       name=self.model_name(event.task_id), output=self.stored(event, value,
                       "output"), metadata={"replayed": True})  # fmt: skip
            return
        self.write()
        step = (
            Step.objects.filter(task_id=event.task_id, kind=StepKind.LLM,
                                status=StepStatus.RUNNING)
            .order_by("-seq_started").first()
        )  # fmt: skip
        if step is not None:
            value = {k: data[k] for k in ("text", "tool_calls") if data.get(k) is not None}
            step.output = self.stored(event, value, "output")
            self.save(step, ["output", "updated_at"])
            self.steps[(step.task_id, step.step_id)] = step

    def on_llm_request(self, event: Event, data: dict[str, Any]) -> None:
        """A debug run's whole model input (``{step, model, messages, tools}``)."""
        assert event.task_id is not None
        step = self.step(event.task_id, f"llm-{data.get('step')}")
        if step is not None:
            value = {k: data[k] for k in ("messages", "tools") if k in data}
            step.input = self.stored(event, value, "input")
            self.save(step, ["input", "updated_at"])

    def on_usage(self, event: Event, data: dict[str, Any]) -> None:
        assert event.task_id is not None
        if "step" in data:  # the llm kind: this model call is done
            step_id = f"llm-{data['step']}"
            step = self.step(event.task_id, step_id)
            if step is None:
                step = self.open(event, step_id, StepKind.LLM, self.model_name(event.task_id))
            self.add_usage(step, data, replace=True)
            self.close(event, step_id, StepStatus.SUCCEEDED, kind=StepKind.LLM, name=step.name)
            return
        target = data.get("step_id")
        if target is None and "cell" in data:
            target = f"cell-{data['cell']}"
        step = self.step(event.task_id, str(target)) if target is not None else None
        if step is not None:
            self.add_usage(step, data)
            self.save(step, ["prompt_tokens", "completion_tokens", "cost_usd", "updated_at"])
