"""Replay and fork (time travel; issue 10, item 5; ``docs/replay.md``).

:func:`task_fork` queues a new task that re-runs a finished one from a chosen step with the
recorded state, optionally with an edited task ``input`` or an edited ``step_input``. The fork
runs in a copy of the session taken just before the origin's first event (the conversation
branches there), or in the origin's session with ``in_place``. How much is replayed depends on
the agent kind:

* ``workflow`` (from a component): the components upstream of the fork point that succeeded
  are not run again (``sessions.runners.workflow.replay``); the fork point runs with
  ``step_input`` (else what its inputs compute to, i.e. its recorded input).
* ``llm`` (from ``llm-<n>`` or ``tool-<call id>``): the origin's user message and its model
  calls before the fork point are copied into the fork's own log (``"replayed": true``), so the
  loop, which rebuilds its state from the log, resumes there (``history.conversation``). From a
  tool step the reply holding the call is copied without its results (the call's arguments
  replaced by ``step_input``), so its tool calls run again. With ``input`` (a new message) the
  fork starts from the top. Replayed calls' ``usage`` is not copied: the fork's usage is what
  the fork spent.
* other kinds: a re-run from the start with the (edited) input (``replay_mode: "rerun"``).
"""

from __future__ import annotations

import json
import shutil
from typing import Any

from django.db import transaction
from django.db.models import Min, QuerySet

from debugger.models import Step, StepKind
from runtime_project.exceptions import Conflict, InvalidInput
from sessions.choices import AgentKind
from sessions.models import Event, Task
from sessions.services.copy import session_copy
from sessions.services.events import EventDraft, events_append
from sessions.services.tasks import task_create

FROM_STEP, RERUN = "from_step", "rerun"
# The step kinds a fork may start from, per agent kind (the root ``agent`` = from the start).
FORKABLE: dict[str, frozenset[str]] = {
    AgentKind.WORKFLOW: frozenset({StepKind.AGENT, StepKind.COMPONENT}),
    AgentKind.LLM: frozenset({StepKind.AGENT, StepKind.LLM, StepKind.TOOL}),
}
_LLM_HISTORY = ("message.user", "message.completed", "tool.call", "tool.result")
_UNSET: Any = object()


class StepNotForkable(InvalidInput):
    code = "step_not_forkable"


def task_fork(
    *,
    task: Task,
    user: Any,
    step_id: str | None = None,
    input: dict[str, Any] | None = None,
    step_input: Any = _UNSET,
    in_place: bool = False,
) -> Task:
    """Queue a fork of the finished ``task`` (see the module docstring).

    Returns the new task: ``forked_from`` = ``task``, ``forked_from_step`` = ``step_id`` or
    ``""``, ``config`` = the origin's plus ``replay`` ``{"task", "step_id", "mode",
    "step_input"?}`` (``mode``: ``from_step`` or ``rerun``). Pass ``step_input`` only when
    editing the step's input (a JSON object: a component's inputs, a tool call's arguments).

    Raises:
        Conflict: ``task_not_finished`` (the origin is not terminal).
        InvalidInput: ``unknown_step`` (no such step in the origin's trace); the input does
            not match the agent's input schema.
        StepNotForkable: ``step_not_forkable`` (a step kind the fork cannot start from, or a
            ``step_input`` the step does not take).
    """
    if not task.is_terminal:
        raise Conflict(
            "Only a finished task can be forked.", code="task_not_finished",
            details={"status": task.status},
        )  # fmt: skip
    kind = task.agent.kind
    step = _step(task, step_id) if step_id else None
    has_step_input = step_input is not _UNSET
    mode, history = _plan(task, kind, step, input, step_input if has_step_input else None)
    replay: dict[str, Any] = {"task": str(task.uuid), "step_id": step_id or "", "mode": mode}
    if has_step_input:
        replay["step_input"] = step_input
    session = task.session
    if not in_place:
        first = Event.objects.filter(task=task).aggregate(seq=Min("seq"))["seq"] or 1
        session = session_copy(
            session=session, user=user, upto_seq=first - 1, name=f"{session.name} (fork)"
        )
    try:
        with transaction.atomic():
            fork, _ = task_create(
                session=session, user=user, task_type=task.task_type,
                input=input if input is not None else task.input,
                config={**task.config, "replay": replay},
            )  # fmt: skip
            fork.forked_from, fork.forked_from_step = task, step_id or ""
            fork.save(update_fields=["forked_from", "forked_from_step", "updated_at"])
            drafts = [EventDraft(type=t, data=d, task_id=fork.pk, task_uuid=str(fork.uuid),
                                 masked=True) for t, d in history]  # fmt: skip
            events_append(session=session, drafts=drafts, history=True)
    except BaseException:
        if not in_place:  # the branch exists only for this fork
            shutil.rmtree(session.workspace_path, ignore_errors=True)
            session.delete()
        raise
    return fork


def task_forks(*, task: Task) -> QuerySet[Task]:
    """The forks of ``task`` (a task the caller may read) that the same teams can see: forks
    whose session is live; newest first. Callers filter further by their access."""
    return (
        Task.objects.filter(forked_from=task, session__deleted_at__isnull=True)
        .select_related("session", "agent", "forked_from")
        .order_by("-created_at", "-pk")
    )


def _step(task: Task, step_id: str) -> Step:
    step = Step.objects.filter(task=task, step_id=step_id).first()
    if step is None:
        known = list(
            Step.objects.filter(task=task).order_by("seq_started").values_list("step_id", flat=True)
        )
        raise InvalidInput(
            f"The task has no step {step_id!r}.", code="unknown_step",
            details={"step_id": step_id, "steps": known[:100]},
        )  # fmt: skip
    return step


def _plan(
    task: Task, kind: str, step: Step | None, input: dict[str, Any] | None, step_input: Any
) -> tuple[str, list[tuple[str, dict[str, Any]]]]:
    """``(mode, events to copy into the fork)``; raises StepNotForkable."""
    forkable = FORKABLE.get(kind)
    if step is None or step.kind == StepKind.AGENT:
        if step_input is not None:
            raise StepNotForkable(
                "step_input needs a step_id; to change the task's input pass input.",
                details={"step_id": step.step_id if step else None},
            )
        return RERUN, []
    if forkable is None:
        # Python cells, commands, remote runs: their state (a kernel, a process, a remote
        # runtime) cannot be restored, so the fork re-runs the task from the start.
        if step_input is not None:
            raise StepNotForkable(
                f"A {kind} task re-runs from the start: edit input instead of step_input.",
                details={"step_id": step.step_id, "agent_kind": kind, "replay_mode": RERUN},
            )
        return RERUN, []
    if step.kind not in forkable:
        raise StepNotForkable(
            f"A {kind} task cannot be forked from a {step.kind} step.",
            details={"step_id": step.step_id, "kind": step.kind,
                     "forkable_kinds": sorted(forkable)},
        )  # fmt: skip
    if step_input is not None and not isinstance(step_input, dict):
        raise StepNotForkable(
            "step_input must be a JSON object (the step's inputs or arguments).",
            details={"step_id": step.step_id},
        )
    if kind == AgentKind.WORKFLOW:
        return FROM_STEP, _workflow_check(task, step, step_input)
    if input is not None:
        if step_input is not None:
            raise StepNotForkable(
                "With a new input the fork starts from the top: drop step_input.",
                details={"step_id": step.step_id},
            )
        return RERUN, []  # a new message: the turn starts over
    return FROM_STEP, _llm_history(task, step, step_input)


def _workflow_check(task: Task, step: Step, step_input: Any) -> list[Any]:
    from sessions.runners.workflow import replay as workflow_replay  # the runners load lazily

    point = workflow_replay.fork_point(step.step_id)
    if step_input is not None and point != step.step_id:
        raise StepNotForkable(
            f"A step inside a loop forks at its loop {point!r}: pass that step_id with the "
            "loop's inputs as step_input.",
            details={"step_id": step.step_id, "fork_point": point},
        )
    return []


def _llm_history(
    task: Task, step: Step, step_input: dict[str, Any] | None
) -> list[tuple[str, dict[str, Any]]]:
    """The origin's events to copy: its user message and the model calls before the fork
    point (from a tool step: up to the reply holding the call, without that reply's results,
    the call's arguments replaced by ``step_input``)."""
    from sessions.runners.workflow.replay import event_data_full  # runners load lazily

    if step.kind == StepKind.LLM:
        if step_input is not None:
            raise StepNotForkable(
                "A model call takes no step_input; to change the message pass input.",
                details={"step_id": step.step_id},
            )
        call = step.step_id.removeprefix("llm-")
        stop, call_id = (int(call) if call.isdigit() else 1), None
    else:
        stop, call_id = 0, step.step_id.removeprefix("tool-")
    copied: list[tuple[str, dict[str, Any]]] = []
    reply = 0  # the model call the events belong to
    events = Event.objects.filter(task=task, type__in=_LLM_HISTORY).order_by("seq")
    for event in events:
        data = event_data_full(event)
        if event.type == "message.completed":
            if "step_id" in data or "cell" in data:
                continue
            reply += 1
            if call_id is not None and not stop and _calls(data, call_id):
                stop = reply + 1  # copy this reply, then stop before the next call
                data = _with_arguments(data, call_id, step_input)
            if stop and reply >= stop:
                break
            copied.append((event.type, {**data, "step": reply, "replayed": True}))
        elif event.type == "message.user":
            copied.append((event.type, {**data, "replayed": True}))
        elif event.type == "tool.call":
            if stop and reply == stop - 1 and call_id is not None:
                # The reply the fork re-runs: its calls run again, announced by these events.
                if data.get("call_id") == call_id and step_input is not None:
                    data = {**data, "arguments": step_input, "edited": True}
                copied.append((event.type, data))
            else:
                copied.append((event.type, {**data, "replayed": True}))
        elif not (stop and reply == stop - 1 and call_id is not None):
            copied.append((event.type, {**data, "replayed": True}))  # a result before the fork
    if call_id is not None and not stop:
        raise StepNotForkable(
            "The tool call is not in any model reply of the task.",
            details={"step_id": step.step_id},
        )
    return copied


def _calls(data: dict[str, Any], call_id: str) -> bool:
    return any(c.get("id") == call_id for c in data.get("tool_calls") or [])


def _with_arguments(data: dict[str, Any], call_id: str, args: dict[str, Any] | None) -> dict:
    if args is None:
        return data
    calls = [
        {**c, "arguments": json.dumps(args)} if c.get("id") == call_id else c
        for c in data.get("tool_calls") or []
    ]
    return {**data, "tool_calls": calls}
