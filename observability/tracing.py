"""OpenTelemetry spans of finished tasks, exported over OTLP/HTTP (docs/observability.md).

Off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set:
then :func:`configure` (called by ``ObservabilityConfig.ready``) builds a
``BatchSpanProcessor`` over an ``OTLPSpanExporter`` (http/protobuf) and registers
:func:`task_trace_projector` on ``task.status`` events. Unset: no processor, no projector.

Spans are not recorded while a task runs: they are made from the task's step trace
(``debugger.models.Step``, a projection of the event log) once a **top-level** task reaches a
terminal status, after the commit. One export holds the task's tree and the tree of every
task it started (``Task.parent``: ``call_agent``, a workflow's ``agent_call``), so a child's
root span hangs under the parent's tool or component step that started it. Times are the
steps' real ``started_at``/``finished_at``; ids are deterministic — the trace id is the
top-level task's uuid (search a task's trace by its id), a span id is a hash of
``(task uuid, step id)`` — so a span's parent resolves without bookkeeping, in any process.
Export happens on the processor's thread: a task never waits for the collector.

Attributes follow the OpenTelemetry GenAI semantic conventions where one exists
(``gen_ai.operation.name``, ``gen_ai.agent.name``, ``gen_ai.request.model``,
``gen_ai.usage.input_tokens``/``output_tokens``, ``gen_ai.tool.name``/``call.id``,
``gen_ai.conversation.id``), ``agent_runtime.*`` otherwise. Step inputs and outputs are not
exported (content capture is opt-in in the conventions); error messages are, already masked.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import json
import logging
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction

from sessions.choices import TERMINAL_STATUSES

logger = logging.getLogger(__name__)

SCOPE_NAME = "agent-runtime"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ERROR_STATUSES = frozenset({"failed", "timed_out"})
_OPERATION = {"agent": "invoke_agent", "llm": "chat", "tool": "execute_tool"}
_NAME_MAX = 120
_TASK_FIELDS = ("uuid", "parent_id", "created_at", "started_at", "finished_at", "agent__slug",
                "agent__kind", "agent__uuid", "session__uuid")  # fmt: skip


@dataclass(frozen=True)
class _Tracing:
    processor: Any  # BatchSpanProcessor
    resource: Any  # Resource
    scope: Any  # InstrumentationScope
    endpoint: str


_state: _Tracing | None = None
_lock = threading.Lock()


def traces_endpoint() -> str:
    """The OTLP/HTTP traces URL from the settings, or ``""`` when tracing is off."""
    if settings.OTEL_SDK_DISABLED:
        return ""
    if settings.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT:
        return str(settings.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
    base = str(settings.OTEL_EXPORTER_OTLP_ENDPOINT)
    return base.rstrip("/") + "/v1/traces" if base else ""


def enabled() -> bool:
    return _state is not None


def configure() -> bool:
    """(Re)initialise tracing from the settings; returns whether it is on. A previous
    processor is shut down first (its pending spans are exported). Call it again after
    changing the settings (tests do)."""
    global _state
    with _lock:
        previous, _state = _state, None
        if previous is not None:
            previous.processor.shutdown()
        endpoint = traces_endpoint()
        if not endpoint:
            return False
        # Imported only when on: the SDK and exporter cost nothing otherwise.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope

        resource = Resource.create(
            {"service.name": settings.OTEL_SERVICE_NAME, "service.version": settings.SERVER_VERSION}
        )
        # Headers, timeout and compression: the SDK reads OTEL_EXPORTER_OTLP_* itself.
        processor = BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint))
        scope = InstrumentationScope(SCOPE_NAME, settings.SERVER_VERSION)
        _state = _Tracing(processor, resource, scope, endpoint)
    from sessions.services.events import event_projector_register

    event_projector_register(types=frozenset({"task.status"}), projector=task_trace_projector)
    _atexit_once()
    logger.info("OpenTelemetry spans of tasks are exported to %s", endpoint)
    return True


@functools.cache
def _atexit_once() -> None:
    atexit.register(shutdown)


def force_flush(timeout_millis: int = 10_000) -> bool:
    """Export the spans waiting in the processor now (blocking); False when tracing is off."""
    state = _state
    return bool(state and state.processor.force_flush(timeout_millis))


def shutdown() -> None:
    """Export what is pending and stop the processor (atexit; best effort)."""
    global _state
    with _lock:
        state, _state = _state, None
    if state is not None:
        try:
            state.processor.shutdown()
        except Exception:
            logger.exception("OpenTelemetry span processor shutdown failed")


def task_trace_projector(session: Any, events: list[Any]) -> None:
    """Event-log projector on ``task.status``: after the commit, export the trace of each task
    reaching a terminal status (child tasks are exported with their top-level task)."""
    if _state is None:
        return  # tracing was turned off after the projector was registered (tests)
    ids = {e.task_id for e in events if e.task_id and e.data.get("status") in TERMINAL_STATUSES}
    if ids:
        transaction.on_commit(functools.partial(_export_safely, frozenset(ids)))


def _export_safely(task_ids: frozenset[int]) -> None:
    try:
        export_tasks(task_ids)
    except Exception:  # tracing must never fail the transaction's caller
        logger.exception("exporting the spans of tasks %s failed", sorted(task_ids))


def export_tasks(task_ids: Iterable[int]) -> int:
    """Hand the spans of the top-level tasks among ``task_ids`` (and of the tasks they
    started, recursively) to the processor; returns the number of spans. A few queries: the
    tasks, one per level of children, their steps."""
    state = _state
    if state is None:
        return 0
    from debugger.models import Step
    from sessions.models import Task

    # Only the columns spans use: this runs on the path of the task's last commit.
    rows = Task.objects.select_related("agent", "session").order_by().only(*_TASK_FIELDS)
    tasks = {t.pk: t for t in rows.filter(pk__in=task_ids, parent__isnull=True)}
    frontier = list(tasks)
    while frontier:
        children = list(rows.filter(parent_id__in=frontier))
        tasks.update((t.pk, t) for t in children if t.pk not in tasks)
        frontier = [t.pk for t in children]
    if not tasks:
        return 0
    steps: dict[int, list[Any]] = {}
    for step in (Step.objects.filter(task_id__in=list(tasks)).defer("input")
                 .order_by("seq_started", "id")):  # fmt: skip
        steps.setdefault(step.task_id, []).append(step)
    spans = _Builder(state, tasks, steps).spans()
    for span in spans:
        state.processor.on_end(span)
    return len(spans)


def trace_id_of(task_uuid: uuid.UUID | str) -> int:
    """The trace id of a top-level task: its uuid as a 128-bit integer."""
    return uuid.UUID(str(task_uuid)).int or 1


def span_id_of(task_uuid: uuid.UUID | str, step_id: str) -> int:
    """The span id of step ``step_id`` of a task: the first 64 bits of SHA-256 (never 0)."""
    digest = hashlib.sha256(f"{task_uuid}/{step_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") or 1


def _ns(moment: datetime) -> int:
    """Nanoseconds since the epoch, exact to the microsecond (no float rounding)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1000


def _error_message(error: Any) -> str:
    if isinstance(error, dict):
        for key in ("message", "evalue", "code", "ename"):
            if isinstance(error.get(key), str) and error[key]:
                return str(error[key])[:1000]
        return json.dumps(error, default=str)[:1000]
    return str(error)[:1000] if error else ""


class _Builder:
    """The ``ReadableSpan``s of a set of task trees (tasks by pk, their steps by task pk)."""

    def __init__(self, state: _Tracing, tasks: dict[int, Any], steps: dict[int, list[Any]]):
        self.state, self.tasks, self.steps = state, tasks, steps

    def top(self, task: Any) -> Any:
        seen = set()
        while task.parent_id in self.tasks and task.pk not in seen:
            seen.add(task.pk)
            task = self.tasks[task.parent_id]
        return task

    def caller_step_id(self, child: Any) -> str:
        """The step of the parent task that started ``child``: the ``call_agent`` tool or
        ``agent_call`` component whose output names the child, else the last of them started
        before it, else the parent's root step."""
        candidates = [
            s for s in self.steps.get(child.parent_id, [])
            if (s.kind == "tool" and s.name == "call_agent")
            or (s.kind == "component" and (s.metadata or {}).get("type") == "agent_call")
        ]  # fmt: skip
        key = str(child.uuid)
        for step in candidates:
            if key in json.dumps(step.output, default=str):
                return str(step.step_id)
        before = [s for s in candidates if s.started_at and s.started_at <= child.created_at]
        return str(before[-1].step_id) if before else "agent"

    def spans(self) -> list[Any]:
        out = []
        for task in self.tasks.values():
            trace_id = trace_id_of(self.top(task).uuid)
            parent = self.tasks.get(task.parent_id)
            caller = span_id_of(parent.uuid, self.caller_step_id(task)) if parent else None
            by_pk = {s.pk: s for s in self.steps.get(task.pk, [])}
            for step in by_pk.values():
                parent_span: int | None
                if step.parent_id in by_pk:
                    parent_span = span_id_of(task.uuid, by_pk[step.parent_id].step_id)
                else:
                    parent_span = (
                        caller if step.step_id == "agent" else span_id_of(task.uuid, "agent")
                    )
                out.append(self.span(task, step, trace_id, parent_span))
        return out

    def span(self, task: Any, step: Any, trace_id: int, parent_span: int | None) -> Any:
        from opentelemetry.sdk.trace import ReadableSpan
        from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

        flags = TraceFlags(TraceFlags.SAMPLED)
        context = SpanContext(trace_id, span_id_of(task.uuid, step.step_id), False, flags)
        parent = SpanContext(trace_id, parent_span, False, flags) if parent_span else None
        start = step.started_at or task.started_at or task.created_at
        end = step.finished_at or task.finished_at or start
        start_ns = _ns(start)
        status = Status(StatusCode.UNSET)
        if step.status in _ERROR_STATUSES:
            status = Status(StatusCode.ERROR, _error_message(step.error) or step.status)
        return ReadableSpan(
            name=self.name(task, step),
            context=context,
            parent=parent,
            resource=self.state.resource,
            attributes=self.attributes(task, step),
            kind=SpanKind.CLIENT if step.kind == "llm" else SpanKind.INTERNAL,
            status=status,
            start_time=start_ns,
            end_time=max(_ns(end), start_ns),
            instrumentation_scope=self.state.scope,
        )

    @staticmethod
    def name(task: Any, step: Any) -> str:
        label = step.name or step.step_id
        if step.kind == "agent":
            label = task.agent.slug
        operation = _OPERATION.get(step.kind, step.kind)
        return f"{operation} {label}"[:_NAME_MAX]

    def attributes(self, task: Any, step: Any) -> dict[str, Any]:
        attrs: dict[str, Any] = {
            "agent_runtime.task.id": str(task.uuid),
            "agent_runtime.session.id": str(task.session.uuid),
            "gen_ai.conversation.id": str(task.session.uuid),
            "agent_runtime.agent.slug": task.agent.slug,
            "agent_runtime.agent.kind": task.agent.kind,
            "agent_runtime.step.id": step.step_id,
            "agent_runtime.step.kind": step.kind,
            "agent_runtime.step.name": step.name,
            "agent_runtime.step.status": step.status,
        }
        if step.kind in _OPERATION:
            attrs["gen_ai.operation.name"] = _OPERATION[step.kind]
        if step.kind == "agent":
            attrs["gen_ai.agent.name"] = task.agent.slug
            attrs["gen_ai.agent.id"] = str(task.agent.uuid)
            if (parent := self.tasks.get(task.parent_id)) is not None:
                attrs["agent_runtime.parent_task.id"] = str(parent.uuid)
        elif step.kind == "llm":
            attrs["gen_ai.request.model"] = step.name
        elif step.kind == "tool":
            attrs["gen_ai.tool.name"] = step.name
            attrs["gen_ai.tool.call.id"] = step.step_id.removeprefix("tool-")
        for key, value in (("gen_ai.usage.input_tokens", step.prompt_tokens),
                           ("gen_ai.usage.output_tokens", step.completion_tokens),
                           ("agent_runtime.usage.cost_usd", step.cost_usd),
                           ("agent_runtime.step.duration_ms", step.duration_ms)):  # fmt: skip
            if value is not None:
                attrs[key] = value
        for key in ("type", "iteration", "language"):
            value = (step.metadata or {}).get(key)
            if isinstance(value, str | int) and not isinstance(value, bool):
                attrs[f"agent_runtime.step.{key}"] = value
        if step.status in _ERROR_STATUSES:
            error = step.error if isinstance(step.error, dict) else {}
            attrs["error.type"] = str(error.get("code") or error.get("ename") or step.status)
        return attrs
