"""OpenTelemetry spans of real runs: tasks run by the real executor, their spans exported by
the real SDK over OTLP/HTTP to an in-test collector, decoded from protobuf and checked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from debugger.models import Step
from observability import tracing
from sandboxes.registry import get_backend
from sessions.models import Task
from sessions.runners.scripted_llm import ScriptedLLM, Turn
from sessions.services.agents import agent_create
from tests.debugger.test_traces import LOOP
from tests.helpers import agent_task, wait_terminal
from tests.observability.receivers import Receiver, Span, spans_of, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sandbox]

ERROR = 2  # STATUS_CODE_ERROR
CLIENT, INTERNAL = 3, 1  # SPAN_KIND_*
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


async def _start(owner: Any, kind: str, spec: dict[str, Any], data: dict[str, Any]) -> Task:
    return await sync_to_async(agent_task)(owner, kind, spec, data)


async def _spans(collector: Receiver, trace_id: str, count: int) -> list[Span]:
    """The spans of ``trace_id`` once ``count`` of them arrived (the export runs after the
    terminal status commits, so a little after the task looks finished)."""

    def arrived() -> list[Span]:
        tracing.force_flush()
        spans = [s for s in spans_of(collector) if s.trace_id == trace_id]
        return spans if len(spans) >= count else []

    return await sync_to_async(wait_for, thread_sensitive=False)(arrived)


def _steps(task: Task) -> list[Step]:
    return list(Step.objects.filter(task=task).select_related("parent"))


async def test_a_failing_workflow_exports_its_span_tree(
    executor: Any, owner: Any, otlp: Receiver
) -> None:
    task = await _start(owner, "workflow", LOOP, {"items": [1, 2, 3]})
    executor.kick()
    try:
        task = await wait_terminal(task, timeout=120)
    finally:
        await get_backend().stop(str(task.session.uuid))
    assert task.status == "failed"
    steps = await sync_to_async(_steps)(task)
    spans = await _spans(otlp, task.uuid.hex, len(steps))
    assert len(spans) == len(steps)  # once each
    by_id = {s.span_id: s for s in spans}
    by_step = {s.attributes["agent_runtime.step.id"]: s for s in spans}
    assert set(by_step) == {s.step_id for s in steps}

    root = by_step["agent"]
    assert root.name == f"invoke_agent {task.agent.slug}" and root.parent_id == ""
    assert root.trace_id == task.uuid.hex  # search a task's trace by its id
    assert root.resource["service.name"] == "runtime-under-test"
    assert root.scope == "agent-runtime"
    assert root.status_code == ERROR and root.status_message
    assert root.attributes["agent_runtime.task.id"] == str(task.uuid)
    assert root.attributes["agent_runtime.session.id"] == str(task.session.uuid)
    assert root.attributes["agent_runtime.agent.kind"] == "workflow"
    assert root.attributes["gen_ai.agent.name"] == task.agent.slug
    assert root.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert root.attributes["error.type"] == "component_failed"

    # Parent links and times mirror the step rows.
    for step in steps:
        span = by_step[step.step_id]
        assert span.start <= span.end
        assert step.started_at is not None
        assert span.start == (step.started_at - EPOCH) // timedelta(microseconds=1) * 1000
        assert span.attributes["agent_runtime.step.kind"] == step.kind
        assert span.attributes["agent_runtime.step.status"] == step.status
        if step.parent is not None:
            assert by_id[span.parent_id].attributes["agent_runtime.step.id"] == step.parent.step_id
            parent = by_id[span.parent_id]
            assert parent.start <= span.start and span.end <= parent.end
    loop, second = by_step["each"], by_step["each[1]"]
    assert loop.name == "component each" and second.parent_id == loop.span_id
    assert second.status_code == ERROR and second.attributes["error.type"]
    assert by_step["each[0]"].status_code == 0  # success stays unset (the conventions)
    assert by_step["each[0]"].attributes["agent_runtime.step.iteration"] == 0
    [command] = [s for s in spans if s.parent_id == second.span_id]
    assert command.attributes["agent_runtime.step.kind"] == "command"
    assert command.status_code == ERROR and "exited with 3" in command.status_message


def call(name: str, **arguments: Any) -> dict[str, str]:
    return {"name": name, "arguments": json.dumps(arguments)}


async def test_llm_tool_and_child_agent_spans_share_one_trace(
    executor: Any, owner: Any, llm: ScriptedLLM, otlp: Receiver, monkeypatch: Any
) -> None:
    # A standard exporter variable, read by the SDK: headers sent with every export.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-collector-key=k1")
    assert tracing.configure()
    model = {"base_url": llm.base_url, "name": "scripted-1"}

    def helper() -> None:
        agent_create(owner=owner, slug="helper", name="helper", kind="llm",
                     spec={"model": model, "max_retries": 0})  # fmt: skip

    await sync_to_async(helper)()
    llm.add(
        Turn(tool_calls=[call("call_agent", agent="helper", input={"message": "Say hi."}),
                         call("read_file", path="missing.txt")]),
        Turn(chunks=["hi"]),  # the child's turn
        Turn(chunks=["The helper said hi."]),
    )  # fmt: skip
    spec = {"model": model, "max_retries": 0, "tools": ["call_agent", "read_file"],
            "agents": ["helper"]}  # fmt: skip
    task = await _start(owner, "llm", spec, {"message": "Delegate."})
    executor.kick()
    try:
        task = await wait_terminal(task)
    finally:
        await get_backend().stop(str(task.session.uuid))
    assert task.status == "succeeded", task.error
    child = await Task.objects.select_related("agent").aget(parent=task)
    # parent: agent, llm-1, two tools, llm-2; child: agent, llm-1
    spans = await _spans(otlp, task.uuid.hex, 7)
    assert len(spans) == 7
    by_id = {s.span_id: s for s in spans}
    mine = {s.attributes["agent_runtime.step.id"]: s for s in spans
            if s.attributes["agent_runtime.task.id"] == str(task.uuid)}  # fmt: skip
    theirs = {s.attributes["agent_runtime.step.id"]: s for s in spans
              if s.attributes["agent_runtime.task.id"] == str(child.uuid)}  # fmt: skip
    assert set(theirs) == {"agent", "llm-1"}

    first = mine["llm-1"]
    assert first.name == "chat scripted-1" and first.kind == CLIENT
    assert first.parent_id == mine["agent"].span_id
    assert first.attributes["gen_ai.request.model"] == "scripted-1"
    assert first.attributes["gen_ai.operation.name"] == "chat"
    assert (first.attributes["gen_ai.usage.input_tokens"],
            first.attributes["gen_ai.usage.output_tokens"]) == (7, 5)  # fmt: skip
    tools = {s.attributes["gen_ai.tool.name"]: s for s in mine.values() if s.name.startswith(
        "execute_tool")}  # fmt: skip
    assert set(tools) == {"call_agent", "read_file"}
    assert tools["read_file"].status_code == ERROR and tools["read_file"].status_message
    assert tools["call_agent"].status_code == 0 and tools["call_agent"].kind == INTERNAL
    assert tools["call_agent"].attributes["gen_ai.tool.call.id"]
    assert mine["agent"].attributes["gen_ai.usage.input_tokens"] >= 14

    # The child's root hangs under the tool call that started it, in the parent's trace.
    child_root = theirs["agent"]
    assert child_root.parent_id == tools["call_agent"].span_id
    assert child_root.name == "invoke_agent helper"
    assert child_root.attributes["agent_runtime.parent_task.id"] == str(task.uuid)
    assert by_id[theirs["llm-1"].parent_id] is child_root
    call_span = tools["call_agent"]
    assert call_span.start <= child_root.start <= child_root.end <= call_span.end
    exports = [r for r in otlp.received if r.path == "/v1/traces"]
    assert exports and all(r.headers.get("x-collector-key") == "k1" for r in exports)
    assert all(r.headers["content-type"] == "application/x-protobuf" for r in exports)


def test_span_ids_are_deterministic() -> None:
    assert tracing.span_id_of("a", "agent") == tracing.span_id_of("a", "agent")
    assert tracing.span_id_of("a", "agent") != tracing.span_id_of("b", "agent")
    assert tracing.trace_id_of("2e38c0de-0000-4000-8000-000000000001") == int(
        "2e38c0de000040008000000000000001", 16
    )


def test_off_by_default_no_projector_no_thread() -> None:
    """Without the endpoints, a fresh process has no span processor, no analytics exporter
    and neither projector registered (zero overhead)."""
    code = (
        "import django, threading; django.setup()\n"
        "from sessions.services.events import _PROJECTORS\n"
        "from observability import analytics, tracing\n"
        "names = [getattr(p, '__name__', repr(p)) for _, p, _ in _PROJECTORS]\n"
        "assert not tracing.enabled() and analytics.exporter() is None, names\n"
        "assert not [n for n in names if 'trace' in n or 'analytics' in n], names\n"
        "assert not [t.name for t in threading.enumerate() if 'Otel' in t.name\n"
        "            or 'analytics' in t.name]\n"
        "print('ok')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "ANALYTICS_"))}
    env.setdefault("DJANGO_SETTINGS_MODULE", "runtime_project.settings")
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
