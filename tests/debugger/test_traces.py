"""Traces of real runs: tasks of every local kind run through the real executor (sandbox,
kernel, scripted model server), their steps read back from the step table and the API."""

from __future__ import annotations

import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from debugger.models import Step
from sandboxes.registry import get_backend
from sessions.runners.scripted_llm import ScriptedLLM, Turn
from tests.helpers import agent_task, wait_terminal

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sandbox]


async def _run(executor: Any, owner: Any, kind: str, spec: dict[str, Any],
               data: dict[str, Any], timeout: float = 120) -> Any:  # fmt: skip
    task = await sync_to_async(agent_task)(owner, kind, spec, data)
    executor.kick()
    try:
        return await wait_terminal(task, timeout=timeout)
    finally:
        await get_backend().stop(str(task.session.uuid))


def _steps(task: Any) -> dict[str, Step]:
    return {s.step_id: s for s in Step.objects.filter(task=task).select_related("parent")}


LOOP = {
    "components": [
        {"id": "in", "type": "input"},
        {"id": "each", "type": "loop", "component": {
            "type": "code", "language": "shell",
            "source": 'test "$INPUT_ITEM" != 2 || { echo boom >&2; exit 3; }; '
                      'echo "{\\"v\\": $INPUT_ITEM}"'}},
        {"id": "out", "type": "output"},
    ],
    "edges": [{"from": "in.items", "to": "each.items"},
              {"from": "each.results", "to": "out.v"}],
}  # fmt: skip


async def test_a_workflow_loop_traces_its_components_and_the_failing_one(
    executor: Any, owner: Any
) -> None:
    task = await _run(executor, owner, "workflow", LOOP, {"items": [1, 2, 3]})
    assert task.status == "failed", task.error
    steps = await sync_to_async(_steps)(task)
    root = steps["agent"]
    assert (root.kind, root.status, root.parent) == ("agent", "failed", None)
    assert root.error["code"] == "component_failed"
    assert root.input == {"items": [1, 2, 3]}
    first, second, loop = steps["each[0]"], steps["each[1]"], steps["each"]
    assert steps["in"].parent_id == root.pk and loop.parent_id == root.pk
    assert (loop.kind, loop.name, loop.status) == ("component", "each", "failed")
    assert loop.input == {"items": [1, 2, 3]}
    assert first.parent_id == loop.pk and second.parent_id == loop.pk
    assert (first.status, first.input, first.output) == ("succeeded", {"item": 1, "index": 0},
                                                         {"v": 1})  # fmt: skip
    assert first.metadata == {"type": "code", "iteration": 0}
    assert first.duration_ms is not None and first.duration_ms >= 0
    assert first.started_at <= first.finished_at
    assert second.status == "failed" and second.error["details"]["exit_code"] == 3
    # The code component ran a process: a command step under it.
    [process] = [s for s in steps.values() if s.parent_id == second.pk]
    assert (process.kind, process.status) == ("command", "failed")
    assert process.output["exit_code"] == 3
    assert "out" not in steps or steps["out"].status in ("skipped", "cancelled")
    assert not [s for s in steps.values() if s.status == "running"]


async def test_a_python_tasks_cells_become_cell_steps(executor: Any, owner: Any) -> None:
    task = await _run(executor, owner, "python", {}, {"cells": ["x = 20 + 1", "x * 2", "1/0"]})
    assert task.status == "failed"
    steps = await sync_to_async(_steps)(task)
    cells = [steps[f"cell-{i}"] for i in range(3)]
    assert [c.kind for c in cells] == ["cell"] * 3
    assert [c.name for c in cells] == ["cell 0", "cell 1", "cell 2"]
    assert [c.status for c in cells] == ["succeeded", "succeeded", "failed"]
    assert cells[0].input == "x = 20 + 1" and cells[0].metadata == {"language": "python"}
    assert cells[1].output["status"] == "ok" and cells[1].output["execution_count"]
    assert cells[2].error == {"ename": "ZeroDivisionError", "evalue": "division by zero"}
    assert all(c.parent_id == steps["agent"].pk for c in cells)
    assert steps["agent"].status == "failed"


async def test_a_command_task_gives_a_command_step(executor: Any, owner: Any) -> None:
    task = await _run(executor, owner, "command", {}, {"command": "echo hi; exit 4"})
    assert task.status == "failed"
    steps = await sync_to_async(_steps)(task)
    [command] = [s for s in steps.values() if s.kind == "command"]
    assert command.parent_id == steps["agent"].pk
    assert command.status == "failed" and command.output["exit_code"] == 4
    assert "echo hi; exit 4" in command.name and command.input["argv"]
    assert command.duration_ms is not None


async def test_an_llm_task_gives_llm_and_tool_steps(
    executor: Any, owner: Any, llm: ScriptedLLM, api_client_of: Any
) -> None:
    llm.add(
        Turn(chunks=["Writing."], tool_calls=[
            {"name": "write_file", "arguments": json.dumps({"path": "a.txt", "content": "x"})},
            {"name": "read_file", "arguments": json.dumps({"path": "missing.txt"})},
        ]),
        Turn(chunks=["Done."]),
    )  # fmt: skip
    spec = {"model": {"base_url": llm.base_url, "name": "scripted-1"},
            "tools": ["write_file", "read_file"], "max_retries": 1}  # fmt: skip
    task = await _run(executor, owner, "llm", spec, {"message": "Write a.txt"})
    assert task.status == "succeeded", task.error
    steps = await sync_to_async(_steps)(task)
    first, second = steps["llm-1"], steps["llm-2"]
    assert (first.kind, first.name, first.status) == ("llm", "scripted-1", "succeeded")
    assert (first.prompt_tokens, first.completion_tokens) == (7, 5)
    assert first.output["text"] == "Writing."
    assert [c["name"] for c in first.output["tool_calls"]] == ["write_file", "read_file"]
    assert second.output["text"] == "Done." and second.status == "succeeded"
    tools = sorted((s for s in steps.values() if s.kind == "tool"), key=lambda s: s.seq_started)
    assert [(t.name, t.status) for t in tools] == [("write_file", "succeeded"),
                                                   ("read_file", "failed")]  # fmt: skip
    assert tools[0].input == {"path": "a.txt", "content": "x"}
    assert tools[1].error["message"]
    root = steps["agent"]
    assert root.prompt_tokens == 14 and root.output == task.result
    assert first.seq_finished < tools[0].seq_started < second.seq_started

    client = await sync_to_async(api_client_of)(owner)
    body = (await sync_to_async(client.get)(f"/api/v1/tasks/{task.uuid}/steps")).json()
    [tree] = body["steps"]
    assert [c["step_id"] for c in tree["children"]] == [
        "llm-1",
        *(f"tool-{t.step_id.removeprefix('tool-')}" for t in tools),
        "llm-2",
    ]
