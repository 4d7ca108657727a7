"""The ``workflow`` agent kind: a graph of components run in dependency order (DESIGN §5).

The spec (``spec.py``, reference in ``docs/workflows.md``) lists components and edges
``{"from": "<id>[.<output>]", "to": "<id>.<input>"}``. A task runs the graph with the task
input as the ``input`` component's value: every component starts as soon as the components
it reads from are done, so independent branches run concurrently. A ``condition`` sends its
value down its ``true`` or ``false`` port; a component is *skipped* when one of its inputs
has no live edge left (its sources were skipped, or sit behind the port not taken), so the
untaken branch is skipped while a merge (several edges into one input) still runs. A ``loop``
runs its body (a sub-graph, or one component) once per item. The ``output`` component's
inputs, as an object, are the task result.

Every component run is a step: ``step.started`` ``{step_id, component, type, input}`` then
``step.finished`` ``{step_id, component, type, status, output, duration_ms, error?}``, status
``succeeded``, ``failed``, ``skipped`` (no ``step.started``) or ``cancelled`` (stopped because
the task was cancelled or another component failed). Steps inside a loop have the step id
``<loop>[<index>].<component>`` and carry ``parent`` and ``iteration``. The first component
that fails fails the task with ``component_failed``, naming it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from runtime_project.exceptions import ApplicationError
from sessions.runners.base import Runner, TaskContext, TaskResult
from sessions.runners.workflow import components as parts
from sessions.runners.workflow import replay
from sessions.runners.workflow import spec as workflow_spec

logger = logging.getLogger(__name__)
CONDITION_PORTS = ("true", "false")


class ComponentFailed(Exception):
    """A component failed; the task fails with ``component_failed``."""

    def __init__(
        self, component: dict[str, Any], step_id: str, message: str, details: dict[str, Any]
    ) -> None:
        super().__init__(message)
        self.component, self.step_id, self.message, self.details = (
            component,
            step_id,
            message,
            details,
        )


@dataclass
class Outcome:
    """A finished node: ``skipped``, or its output ``value`` (and the port a condition took)."""

    skipped: bool
    value: Any = None
    port: str | None = None


def _edge_value(outcome: Outcome, port: str) -> Any:
    if not port:
        return outcome.value
    if outcome.port is not None and port in CONDITION_PORTS:
        return outcome.value.get("value")
    return outcome.value.get(port) if isinstance(outcome.value, dict) else None


def _live(outcome: Outcome, port: str) -> bool:
    if outcome.skipped:
        return False
    return outcome.port is None or port not in CONDITION_PORTS or port == outcome.port


def _order(graph: dict[str, Any]) -> list[str]:
    """The component ids in a topological order, spec order among equals (Kahn)."""
    ids = [c["id"] for c in graph["components"]]
    indegree = dict.fromkeys(ids, 0)
    successors: dict[str, list[str]] = {i: [] for i in ids}
    for edge in graph.get("edges", []):
        source, target = edge["from"].split(".")[0], edge["to"].split(".")[0]
        successors[source].append(target)
        indegree[target] += 1
    ready = [i for i in ids if indegree[i] == 0]
    order: list[str] = []
    while ready:
        node = ready.pop(0)
        order.append(node)
        for nxt in successors[node]:
            indegree[nxt] -= 1
            if indegree[nxt] == 0:
                ready.append(nxt)
    return order


class WorkflowRun:
    """One task's run of a workflow: the engine."""

    def __init__(self, ctx: TaskContext) -> None:
        self.ctx = ctx
        self.usage: dict[str, Any] = {}
        self.steps = 0

    async def graph(
        self,
        graph: dict[str, Any],
        value: Any,
        prefix: str = "",
        parent: dict[str, Any] | None = None,
    ) -> Any:
        """Run ``graph`` with ``value`` as its input component's output; return its output
        component's value. Raises ComponentFailed (the first failing component, in order)."""
        by_id = {c["id"]: c for c in graph["components"]}
        incoming: dict[str, list[tuple[str, str, str]]] = {i: [] for i in by_id}
        for edge in graph.get("edges", []):
            source, _, port = edge["from"].partition(".")
            target, _, name = edge["to"].partition(".")
            incoming[target].append((source, port, name))
        tasks: dict[str, asyncio.Task[Outcome]] = {}
        for id_ in _order(graph):
            deps = [tasks[source] for source, _, _ in incoming[id_]]
            tasks[id_] = asyncio.ensure_future(
                self.node(by_id[id_], incoming[id_], deps, tasks, value, prefix, parent)
            )
        try:
            await asyncio.wait(tasks.values(), return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for task in tasks.values():
                task.cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)
        for task in tasks.values():
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        output = next(c["id"] for c in graph["components"] if c["type"] == "output")
        result = tasks[output].result()
        return None if result.skipped else result.value

    async def node(
        self,
        component: dict[str, Any],
        incoming: list[tuple[str, str, str]],
        deps: list[asyncio.Task[Outcome]],
        tasks: dict[str, asyncio.Task[Outcome]],
        value: Any,
        prefix: str,
        parent: dict[str, Any] | None,
    ) -> Outcome:
        if deps:
            await asyncio.gather(*deps)
        step_id = prefix + component["id"]
        inputs: dict[str, Any] = {}
        names = {name for _, _, name in incoming}
        for source, port, name in incoming:
            outcome = tasks[source].result()
            if name not in inputs and _live(outcome, port):
                inputs[name] = _edge_value(outcome, port)
        # A component needs a live edge into each of its inputs; the output, into one.
        dead = names - set(inputs)
        if dead and (component["type"] != "output" or not inputs):
            self._emit_finished(
                component,
                step_id,
                parent,
                "skipped",
                None,
                0,
                reason=f"no live edge into {sorted(dead)}",
            )
            return Outcome(skipped=True)
        if component["type"] == "input":
            inputs = value if isinstance(value, dict) else {"value": value}
        plan = replay.PLANS.get(self.ctx.task_uuid) if not prefix else None
        if plan is not None:  # a fork (debugger.replay): recorded outputs upstream of its point
            if component["id"] in plan.recorded:
                return Outcome(False, *plan.emit(self.ctx, component))
            inputs = plan.input_for(component["id"], inputs)
        return await self.step(component, inputs, step_id, parent)

    def _emit_finished(
        self,
        component: dict[str, Any],
        step_id: str,
        parent: dict[str, Any] | None,
        status: str,
        output: Any,
        duration_ms: int,
        **extra: Any,
    ) -> None:
        self.ctx.emit(
            "step.finished",
            {
                "step_id": step_id,
                "component": component["id"],
                "type": component["type"],
                "status": status,
                "output": output,
                "duration_ms": duration_ms,
                **(parent or {}),
                **extra,
            },
        )

    async def step(
        self,
        component: dict[str, Any],
        inputs: dict[str, Any],
        step_id: str,
        parent: dict[str, Any] | None,
    ) -> Outcome:
        """Run one component as a step, with its two events (after the debugger's
        checkpoint, which may pause the run and edit the component's inputs)."""
        inputs = await self.ctx.checkpoint(
            kind="component", name=component["id"], step_id=step_id, input=inputs,
            input_schema={"type": "object"},
        )  # fmt: skip
        self.ctx.emit(
            "step.started",
            {
                "step_id": step_id,
                "component": component["id"],
                "type": component["type"],
                "input": inputs,
                **(parent or {}),
            },
        )
        self.steps += 1
        started = time.monotonic()

        def elapsed() -> int:
            return int((time.monotonic() - started) * 1000)

        error: dict[str, Any]
        try:
            outcome = await self.execute(component, inputs, step_id)
        except ComponentFailed as exc:  # from inside a loop: the inner step is the culprit
            error = {"message": exc.message, "failed_step": exc.step_id}
            self._emit_finished(component, step_id, parent, "failed", None, elapsed(), error=error)
            raise
        except asyncio.CancelledError:
            self._emit_finished(component, step_id, parent, "cancelled", None, elapsed())
            raise
        except (parts.ComponentError, ApplicationError) as exc:
            details = exc.details
            if isinstance(exc, ApplicationError):
                details = {"code": exc.code, **exc.details}
            error = {"message": exc.message, "details": details}
            self._emit_finished(component, step_id, parent, "failed", None, elapsed(), error=error)
            raise ComponentFailed(component, step_id, exc.message, details) from None
        except Exception as exc:
            logger.exception("workflow component %s failed unexpectedly", step_id)
            error = {
                "message": "The component failed unexpectedly.",
                "details": {"type": type(exc).__name__},
            }
            self._emit_finished(component, step_id, parent, "failed", None, elapsed(), error=error)
            raise ComponentFailed(component, step_id, error["message"], error["details"]) from None
        self._emit_finished(component, step_id, parent, "succeeded", outcome.value, elapsed())
        return outcome

    async def execute(
        self, component: dict[str, Any], inputs: dict[str, Any], step_id: str
    ) -> Outcome:
        kind, ctx = component["type"], self.ctx
        if kind in ("input", "output"):
            return Outcome(False, inputs)
        if kind == "condition":
            value, port = parts.run_condition(component, inputs)
            return Outcome(False, value, port)
        if kind == "llm_prompt":
            ctx.set_phase(f"step_{step_id}")
            return Outcome(
                False, await parts.run_llm_prompt(ctx, component, inputs, step_id, self.usage)
            )
        if kind == "code":
            return Outcome(False, await parts.run_code(ctx, component, inputs, step_id))
        if kind == "http_request":
            return Outcome(False, await parts.run_http_request(component, inputs, ctx))
        if kind == "agent_call":
            return Outcome(False, await parts.run_agent_call(ctx, component, inputs))
        if kind == "loop":
            return Outcome(False, {"results": await self.loop(component, inputs, step_id)})
        if kind == "emit":
            return Outcome(False, parts.run_emit(ctx, component, inputs))
        raise parts.ComponentError(f"unknown component type {kind!r}")

    async def loop(
        self, component: dict[str, Any], inputs: dict[str, Any], step_id: str
    ) -> list[Any]:
        items = inputs.get("items")
        if not isinstance(items, list):
            raise parts.ComponentError(f"items is {type(items).__name__}, not a list")
        limit = int(component.get("max_items", 1000))
        if len(items) > limit:
            raise parts.ComponentError(
                f"{len(items)} items, more than max_items ({limit})",
                {"items": len(items), "max_items": limit},
            )
        extra = {k: v for k, v in inputs.items() if k != "items"}
        gate = asyncio.Semaphore(int(component.get("concurrency", 1)))

        async def one(index: int, item: Any) -> Any:
            parent = {"parent": step_id, "iteration": index}
            data = {**extra, "item": item, "index": index}
            async with gate:
                if stopping:  # an earlier item failed: start no more
                    raise asyncio.CancelledError
                try:
                    if "body" in component:
                        prefix = f"{step_id}[{index}]."
                        return await self.graph(component["body"], data, prefix, parent)
                    inner = {"id": component["id"], **component["component"]}
                    outcome = await self.step(inner, data, f"{step_id}[{index}]", parent)
                    return outcome.value
                except BaseException:
                    stopping.append(True)  # before the gate lets the next item in
                    raise

        stopping: list[bool] = []
        runs = [asyncio.ensure_future(one(i, item)) for i, item in enumerate(items)]
        try:
            if runs:
                await asyncio.wait(runs, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            stopping.append(True)
            for run in runs:
                run.cancel()
            await asyncio.gather(*runs, return_exceptions=True)
        for run in runs:
            if not run.cancelled() and run.exception() is not None:
                raise run.exception()  # type: ignore[misc]
        return [run.result() for run in runs]


class WorkflowRunner(Runner):
    kind = "workflow"
    spec_schema: ClassVar[dict[str, Any]] = workflow_spec.SPEC_SCHEMA
    input_schema: ClassVar[dict[str, Any]] = {"type": "object"}

    @classmethod
    def validate_spec(cls, spec: dict[str, Any]) -> None:
        """The JSON Schema, each component's schema, and the graph check (field-precise)."""
        workflow_spec.validate(spec)

    @classmethod
    def capabilities(cls, spec: dict[str, Any]) -> dict[str, bool]:
        types = {c.get("type") for c in _all_components(spec.get("components") or [])}
        return {**super().capabilities(spec), "can_execute_code": "code" in types,
                "can_execute_ai": bool(types & {"llm_prompt", "agent_call"})}  # fmt: skip

    async def run(self, ctx: TaskContext) -> TaskResult:
        run = WorkflowRun(ctx)
        replay.PLANS[ctx.task_uuid] = await replay.plan_load(ctx)  # a fork's plan, or None
        ctx.set_phase("running_graph")
        graph = asyncio.ensure_future(run.graph(ctx.spec, ctx.input))
        stop = asyncio.ensure_future(ctx.cancel_requested.wait())
        try:
            await asyncio.wait({graph, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not graph.done():  # cancelled: stop every running component now
                graph.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(graph, return_exceptions=True)
            replay.PLANS.pop(ctx.task_uuid, None)
        usage = {**run.usage, "steps": run.steps}
        if graph.cancelled():
            error = {"code": "cancelled", "message": "The task was cancelled.", "details": {}}
            return TaskResult("failed", error=error, usage=usage)
        exc = graph.exception()
        if isinstance(exc, ComponentFailed):
            component = exc.component
            return TaskResult(
                "failed",
                usage=usage,
                error=ctx.mask(
                    {
                        "code": "component_failed",
                        "message": f"Component {component['id']!r} ({component['type']}) failed: "
                        f"{exc.message}",
                        "details": {
                            "component": component["id"],
                            "type": component["type"],
                            "step_id": exc.step_id,
                            **exc.details,
                        },
                    }
                ),  # values learnt during the run (connection tokens) too
            )
        if exc is not None:
            raise exc
        value = graph.result()
        result = value if isinstance(value, dict) else {"value": value}
        return TaskResult("succeeded", result=ctx.mask(result), usage=usage)


def _all_components(components: list[Any]) -> list[dict[str, Any]]:
    """The components of a graph, those of loop bodies included."""
    found: list[dict[str, Any]] = []
    for c in components:
        if isinstance(c, dict):
            found.append(c)
            body = c.get("body")
            body = body if isinstance(body, dict) else {}
            found.extend(_all_components([*(body.get("components") or []), c.get("component")]))
    return found
