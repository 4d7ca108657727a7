"""The step projection at unit level: events appended with ``events_append`` (as a remote
runtime's arrive), projected in the same transaction, read back through the API."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from debugger.models import Step
from sessions.models import Artifact, Task
from sessions.services.events import EventDraft, events_append
from sessions.services.tasks import task_cancel, task_claim_next, task_finish
from tests import factories
from tests.api.helpers import API

pytestmark = pytest.mark.django_db


def _running(session: Any) -> Task:
    task = factories.make_task(session)
    [claimed] = task_claim_next(worker="tests", limit=1, session_id=session.pk)
    assert claimed.pk == task.pk
    return claimed


def _emit(task: Task, *events: tuple[str, dict[str, Any]]) -> None:
    drafts = [EventDraft(type=t, data=d, task_id=task.pk, task_uuid=str(task.uuid))
              for t, d in events]  # fmt: skip
    events_append(session=task.session, drafts=drafts)


def _steps(task: Task) -> dict[str, Step]:
    return {s.step_id: s for s in Step.objects.filter(task=task).select_related("parent")}


def test_a_remote_runtimes_cell_events_become_cell_steps_under_the_agent_root(
    session: Any, api_client: Any
) -> None:
    task = _running(session)
    _emit(task, ("cell.started", {"cell": 0, "code": "x = 1", "language": "python"}),
          ("process.stdout", {"process_id": "k", "text": "hi\n"}),
          ("cell.finished", {"cell": 0, "status": "ok", "execution_count": 3,
                             "duration_ms": 12}),
          ("cell.started", {"cell": 1, "code": "1/0", "language": "python"}))  # fmt: skip
    _emit(task, ("output.error", {"cell": 1, "ename": "ZeroDivisionError",
                                  "evalue": "division by zero", "traceback": []}),
          ("cell.finished", {"cell": 1, "status": "error", "execution_count": 4,
                             "duration_ms": 5}))  # fmt: skip
    task_finish(task=task, status="failed", error={"code": "cell_error", "message": "x",
                "details": {}}, usage={"prompt_tokens": 3})  # fmt: skip

    steps = _steps(task)
    root, first, second = steps["agent"], steps["cell-0"], steps["cell-1"]
    assert (root.kind, root.name, root.status) == ("agent", session.agent.slug, "failed")
    assert root.error["code"] == "cell_error" and root.prompt_tokens == 3
    assert root.finished_at is not None and root.duration_ms is not None
    assert (first.kind, first.name, first.status, first.input) == ("cell", "cell 0",
                                                                   "succeeded", "x = 1")  # fmt: skip
    assert first.output == {"status": "ok", "execution_count": 3} and first.duration_ms == 12
    assert first.parent == root and first.seq_started < first.seq_finished
    assert second.status == "failed"
    assert second.error == {"ename": "ZeroDivisionError", "evalue": "division by zero"}

    body = api_client.get(f"{API}/tasks/{task.uuid}/steps").json()
    assert body["count"] == 3
    [tree] = body["steps"]
    assert tree["step_id"] == "agent" and tree["parent_step_id"] is None
    assert [c["step_id"] for c in tree["children"]] == ["cell-0", "cell-1"]
    assert tree["children"][0]["parent_step_id"] == "agent"
    flat = api_client.get(f"{API}/tasks/{task.uuid}/steps?flat=true").json()
    assert [s["step_id"] for s in flat["steps"]] == ["agent", "cell-0", "cell-1"]
    assert "children" not in flat["steps"][0]


def test_a_stranger_gets_404_and_a_bad_flag_400(
    session: Any, api_client: Any, other_client: Any
) -> None:
    task = _running(session)
    response = other_client.get(f"{API}/tasks/{task.uuid}/steps")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert api_client.get(f"{API}/tasks/{task.uuid}/steps?flat=maybe").status_code == 400


def test_a_step_that_never_finishes_is_cancelled_with_the_task(session: Any) -> None:
    task = _running(session)
    _emit(task, ("process.started", {"process_id": "p1", "argv": ["sleep", "100"], "cwd": "."}),
          ("step.started", {"step_id": "slow", "component": "slow", "type": "code",
                            "input": {}}))  # fmt: skip
    task_cancel(task=task)  # a running task: cancel requested, the runner stops
    task_finish(task=Task.objects.get(pk=task.pk), status="cancelled")
    steps = _steps(task)
    assert steps["agent"].status == "cancelled"
    for step_id in ("process-p1", "slow"):
        step = steps[step_id]
        assert step.status == "cancelled", step_id
        assert step.error["code"] == "task_ended"
        assert step.finished_at is not None and step.duration_ms is not None
    assert steps["process-p1"].name == "sleep 100"
    assert steps["process-p1"].input == {"argv": ["sleep", "100"], "cwd": "."}


def test_a_batch_that_opens_closes_and_ends_steps_projects_them_as_one_by_one(
    session: Any,
) -> None:
    """A remote runtime may send most of a run in one batch; the projection reads the batch's
    steps once, and what it writes is what the events would write one batch each."""
    task = _running(session)
    _emit(task, ("process.started", {"process_id": "early", "argv": ["a"], "cwd": "."}))
    _emit(task,
          ("process.exit", {"process_id": "early", "exit_code": 0, "duration_ms": 5}),
          ("tool.call", {"call_id": "c1", "name": "search", "arguments": {"q": 1}}),
          ("process.started", {"process_id": "late", "argv": ["b"], "cwd": "."}),
          ("process.exit", {"process_id": "late", "exit_code": 3}),
          ("task.status", {"status": "failed", "phase": "failed",
                           "error": {"code": "boom", "message": "it broke"}}))  # fmt: skip
    steps = _steps(task)
    assert steps["process-early"].status == "succeeded"
    assert steps["process-early"].duration_ms == 5
    assert steps["process-early"].input == {"argv": ["a"], "cwd": "."}  # kept by the close
    assert steps["process-late"].status == "failed"
    assert steps["process-late"].output == {"exit_code": 3}
    assert steps["tool-c1"].status == "failed"  # left open: ended with the task
    assert steps["tool-c1"].error["code"] == "task_ended"
    assert steps["tool-c1"].parent == steps["agent"]
    assert steps["agent"].status == "failed"
    assert steps["agent"].error == {"code": "boom", "message": "it broke"}


def test_large_values_go_to_artifacts_and_externalized_events_keep_theirs(
    session: Any, settings: Any
) -> None:
    task = _running(session)
    medium = "m" * (20 * 1024)  # over the step limit, under the event log's
    _emit(task, ("step.started", {"step_id": "a", "component": "a", "type": "code",
                                  "input": {"text": medium}}),
          ("step.finished", {"step_id": "a", "component": "a", "type": "code",
                             "status": "succeeded", "output": "ok", "duration_ms": 1}))  # fmt: skip
    big = "b" * (settings.EVENT_INLINE_MAX_BYTES + 10)
    _emit(task, ("tool.call", {"call_id": "c1", "name": "write_file",
                               "arguments": {"content": big}}))  # fmt: skip
    steps = _steps(task)
    ref = steps["a"].input["artifact"]
    artifact = Artifact.objects.get(uuid=ref["id"])
    assert artifact.task_id == task.pk and artifact.size > 20 * 1024
    assert steps["a"].output == "ok"
    # The event itself went to an artifact: the step keeps the event's reference.
    tool = steps["tool-c1"]
    assert tool.name == "write_file" and tool.kind == "tool"
    assert Artifact.objects.filter(uuid=tool.input["artifact"]["id"]).exists()
    assert Artifact.objects.filter(task=task).count() == 2


def test_workflow_events_nest_loop_steps_and_record_skips_and_usage(session: Any) -> None:
    task = _running(session)
    _emit(task,
          ("step.started", {"step_id": "each", "component": "each", "type": "loop",
                            "input": {"items": [1]}}),
          ("step.started", {"step_id": "each[0]", "component": "each", "type": "code",
                            "input": {"item": 1}, "parent": "each", "iteration": 0}),
          ("process.started", {"process_id": "p", "step_id": "each[0]", "argv": ["python3"]}),
          ("process.exit", {"process_id": "p", "exit_code": 3, "duration_ms": 7}),
          ("step.finished", {"step_id": "each[0]", "component": "each", "type": "code",
                             "status": "failed", "output": None, "duration_ms": 9,
                             "error": {"message": "boom"}, "parent": "each",
                             "iteration": 0}),
          ("step.finished", {"step_id": "skip", "component": "skip", "type": "code",
                             "status": "skipped", "output": None, "duration_ms": 0,
                             "reason": "no live edge"}),
          ("step.started", {"step_id": "ask", "component": "ask", "type": "llm_prompt",
                            "input": {}}),
          ("usage", {"step_id": "ask", "prompt_tokens": 7, "completion_tokens": 5}))  # fmt: skip
    steps = _steps(task)
    inner = steps["each[0]"]
    assert inner.parent == steps["each"] and steps["each"].parent == steps["agent"]
    assert (inner.status, inner.error, inner.duration_ms) == ("failed", {"message": "boom"}, 9)
    assert inner.metadata == {"type": "code", "iteration": 0}
    process = steps["process-p"]
    assert process.parent == inner and process.status == "failed"
    assert process.output == {"exit_code": 3} and process.duration_ms == 7
    assert steps["skip"].status == "skipped" and steps["skip"].metadata["reason"]
    assert (steps["ask"].prompt_tokens, steps["ask"].completion_tokens) == (7, 5)


def test_a_loop_finished_within_one_batch_is_inserted_closed_one_statement_per_level(
    session: Any,
) -> None:
    """Steps opened and closed in one batch are written once, already closed: a loop of ten
    items costs two inserts (the loop, then its items) and no update."""
    task = _running(session)
    items = [
        event
        for i in range(10)
        for event in (
            ("step.started", {"step_id": f"each[{i}]", "component": "each", "type": "emit",
                              "parent": "each", "iteration": i, "input": {"item": i}}),
            ("custom", {"i": i}),
            ("step.finished", {"step_id": f"each[{i}]", "component": "each", "type": "emit",
                               "status": "succeeded", "output": None, "duration_ms": 1,
                               "parent": "each", "iteration": i}),
        )
    ]  # fmt: skip
    with CaptureQueriesContext(connection) as queries:
        _emit(task,
              ("step.started", {"step_id": "each", "component": "each", "type": "loop",
                                "input": {"items": list(range(10))}}),
              *items,
              ("step.finished", {"step_id": "each", "component": "each", "type": "loop",
                                 "status": "succeeded", "output": list(range(10)),
                                 "duration_ms": 12}))  # fmt: skip
    writes = [q["sql"].split()[0] for q in queries.captured_queries if "debugger_step" in q["sql"]
              and q["sql"].split()[0] in ("INSERT", "UPDATE")]  # fmt: skip
    assert writes == ["INSERT", "INSERT"]
    steps = _steps(task)
    assert steps["each"].status == "succeeded" and steps["each"].output == list(range(10))
    assert steps["each"].parent == steps["agent"] and steps["each"].duration_ms == 12
    for i in range(10):
        item = steps[f"each[{i}]"]
        assert (item.parent, item.status, item.input) == (steps["each"], "succeeded", {"item": i})
        assert item.metadata == {"type": "emit", "iteration": i}
        assert item.seq_started < item.seq_finished and item.finished_at is not None


def test_a_model_call_opened_and_answered_in_one_batch_gets_its_output(session: Any) -> None:
    """The answer of an llm step is matched by a query on open llm steps: the step opened
    earlier in the same batch is written before that query."""
    task = _running(session)
    _emit(task, ("task.status", {"status": "running", "phase": "model_call_1"}),
          ("message.completed", {"text": "hello"}),
          ("usage", {"step": 1, "prompt_tokens": 3, "completion_tokens": 2}))  # fmt: skip
    step = _steps(task)["llm-1"]
    assert (step.status, step.output) == ("succeeded", {"text": "hello"})
    assert (step.prompt_tokens, step.completion_tokens) == (3, 2)


def test_a_failing_projector_never_loses_the_events(session: Any, monkeypatch: Any) -> None:
    from debugger import services

    task = _running(session)

    def broken(self: Any, event: Any, data: Any) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(services._Projection, "on_cell_started", broken)
    with transaction.atomic():
        _emit(task, ("cell.started", {"cell": 0, "code": "x"}))
    assert task.events.filter(type="cell.started").exists()
    assert not Step.objects.filter(task=task, step_id="cell-0").exists()
