"""Debug runs against the real executor, sandbox and scripted model server: breakpoints pause a
workflow and an llm run, then continue, step, abort and edit-and-continue through the REST API;
pause (after the current step) differs from cancel; unattended pauses time out."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from debugger.models import Step
from sandboxes.registry import get_backend
from sessions.executors import Executor
from sessions.models import Task
from sessions.runners.scripted_llm import ScriptedLLM, Turn
from sessions.services.agents import agent_create
from sessions.services.sessions import session_create
from sessions.services.tasks import task_create
from tests import factories
from tests.helpers import event_data, wait_terminal

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sandbox]

# in → double (x*2) → inc (v+1) → out; "double" sleeps a little when asked to, so a pause
# request lands while it runs.
PIPELINE = {
    "components": [
        {"id": "in", "type": "input"},
        {"id": "double", "type": "code", "language": "shell",
         "source": 'sleep "${INPUT_NAP:-0}"; echo "{\\"v\\": $((INPUT_X * 2))}"'},
        {"id": "inc", "type": "code", "language": "shell",
         "source": 'echo "{\\"w\\": $((INPUT_V + 1))}"'},
        {"id": "out", "type": "output"},
    ],
    "edges": [{"from": "in.x", "to": "double.x"}, {"from": "in.nap", "to": "double.nap"},
              {"from": "double.v", "to": "inc.v"}, {"from": "inc.w", "to": "out.w"}],
}  # fmt: skip


def _agent(owner: Any, kind: str, spec: dict[str, Any]) -> Any:
    return agent_create(owner=owner, slug=f"{kind}-{time.monotonic_ns()}", name=kind, kind=kind,
                        spec=spec)  # fmt: skip


async def _start(executor: Any, owner: Any, agent: Any, data: dict[str, Any],
                 config: dict[str, Any] | None = None) -> Task:  # fmt: skip
    def make() -> Task:
        session = session_create(owner=owner, agent=agent)
        task, _ = task_create(session=session, user=owner, input=data, config=config or {})
        return task

    task = await sync_to_async(make)()
    executor.kick()
    return task


async def _paused(task: Task, timeout: float = 60) -> dict[str, Any]:
    """Wait until ``task`` is paused in the debugger; its pending step."""
    deadline = time.monotonic() + timeout
    while True:
        fresh = await sync_to_async(Task.objects.get)(pk=task.pk)
        pending = fresh.pending_action or {}
        if fresh.status == "waiting" and pending.get("kind") == "debug":
            return pending
        assert not fresh.is_terminal, (fresh.status, fresh.error)
        assert time.monotonic() < deadline, f"never paused (status {fresh.status})"
        await asyncio.sleep(0.05)


async def _post(client: Any, url: str, body: Any = None) -> Any:
    return await sync_to_async(client.post)(url, body or {}, format="json")


async def _finish(task: Task) -> Task:
    try:
        return await wait_terminal(task, timeout=90)
    finally:
        await get_backend().stop(str(task.session.uuid))


def _steps(task: Task) -> dict[str, Step]:
    return {s.step_id: s for s in Step.objects.filter(task=task)}


async def test_a_workflow_pauses_at_an_agent_breakpoint_and_edit_and_continue_changes_the_run(
    executor: Any, owner: Any, api_client_of: Any
) -> None:
    agent = await sync_to_async(_agent)(owner, "workflow", PIPELINE)
    client = await sync_to_async(api_client_of)(owner)
    made = await sync_to_async(client.post)(
        f"/api/v1/agents/{agent.uuid}/breakpoints", {"step_kind": "component", "name": "inc"},
        format="json",
    )  # fmt: skip
    assert made.status_code == 201, made.json()
    task = await _start(executor, owner, agent, {"x": 3}, {"debug": True})
    pending = await _paused(task)
    assert (pending["step_id"], pending["reason"], pending["input"]) == ("inc", "breakpoint",
                                                                        {"v": 6})  # fmt: skip
    assert pending["breakpoint_id"] == made.json()["id"]
    state = (await sync_to_async(client.get)(f"/api/v1/tasks/{task.uuid}/debug")).json()
    assert state["debug"] is True and state["paused"]["step_id"] == "inc"
    assert state["breakpoints"][0]["hit_count"] == 1
    # The trace shows what ran before the pause; the paused component has not started.
    steps = await sync_to_async(_steps)(task)
    assert steps["double"].status == "succeeded" and "inc" not in steps

    answer = await _post(client, f"/api/v1/tasks/{task.uuid}/debug/continue", {"input": {"v": 100}})
    assert answer.status_code == 202, answer.json()
    done = await _finish(task)
    assert done.status == "succeeded", done.error
    assert done.result == {"w": 101}  # the edited input flowed on
    steps = await sync_to_async(_steps)(done)
    assert steps["inc"].input == {"v": 100} and steps["inc"].output == {"w": 101}
    resumed = await sync_to_async(event_data)(done, "debug.resumed")
    assert resumed == [{"step_id": "inc", "action": "continue", "edited": True,
                        "by": owner.username}]  # fmt: skip
    statuses = [d["status"] for d in await sync_to_async(event_data)(done, "task.status")]
    assert statuses[-4:] == ["waiting", "running", "running", "succeeded"] or "waiting" in statuses


async def test_step_runs_one_step_then_pauses_and_a_plain_run_ignores_breakpoints(
    executor: Any, owner: Any, api_client_of: Any
) -> None:
    agent = await sync_to_async(_agent)(owner, "workflow", PIPELINE)
    client = await sync_to_async(api_client_of)(owner)
    await sync_to_async(client.post)(
        f"/api/v1/agents/{agent.uuid}/breakpoints", {}, format="json"
    )  # fmt: skip  (before every step)
    plain = await _start(executor, owner, agent, {"x": 1})
    assert (await _finish(plain)).status == "succeeded"  # not a debug run: no pause
    assert await sync_to_async(event_data)(plain, "debug.paused") == []

    task = await _start(executor, owner, agent, {"x": 2}, {"debug": {"enabled": True}})
    seen = []
    for action in ("step", "step", "step", "continue"):
        pending = await _paused(task)
        seen.append((pending["step_id"], pending["reason"]))
        assert (await _post(client, f"/api/v1/tasks/{task.uuid}/debug/{action}")).status_code == 202
        await _left_pause(task, pending["step_id"])
    done = await _finish(task)
    assert done.status == "succeeded" and done.result == {"w": 5}
    # A step pause wins over the breakpoint that also matches.
    assert seen == [("in", "breakpoint"), ("double", "step"), ("inc", "step"), ("out", "step")]


async def _left_pause(task: Task, step_id: str, timeout: float = 30) -> None:
    """Wait until the run resumed from the pause at ``step_id``."""
    deadline = time.monotonic() + timeout
    while not any(d["step_id"] == step_id for d in
                  await sync_to_async(event_data)(task, "debug.resumed")):  # fmt: skip
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)


async def test_step_pauses_before_the_next_step_without_a_breakpoint_there(
    executor: Any, owner: Any, api_client_of: Any
) -> None:
    agent = await sync_to_async(_agent)(owner, "workflow", PIPELINE)
    client = await sync_to_async(api_client_of)(owner)
    config = {"debug": {"breakpoints": [{"name": "double"}]}}
    task = await _start(executor, owner, agent, {"x": 4}, config)
    assert (await _paused(task))["step_id"] == "double"
    await _post(client, f"/api/v1/tasks/{task.uuid}/debug/step")
    pending = await _paused_at(task, "inc")
    assert pending["reason"] == "step" and pending["input"] == {"v": 8}
    await _post(client, f"/api/v1/tasks/{task.uuid}/debug/continue")
    assert (await _finish(task)).result == {"w": 9}


async def _paused_at(task: Task, step_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        pending = await _paused(task)
        if pending["step_id"] == step_id:
            return pending
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)


async def test_abort_stops_the_run_before_the_pending_step(
    executor: Any, owner: Any, api_client_of: Any
) -> None:
    agent = await sync_to_async(_agent)(owner, "workflow", PIPELINE)
    client = await sync_to_async(api_client_of)(owner)
    task = await _start(
        executor,
        owner,
        agent,
        {"x": 1},
        {"debug": {"breakpoints": [{"step_kind": "component", "name": "inc"}]}},
    )
    await _paused(task)
    refused = await _post(client, f"/api/v1/tasks/{task.uuid}/debug/abort", {"input": {}})
    assert refused.status_code == 400  # abort takes no edited input
    assert (await _post(client, f"/api/v1/tasks/{task.uuid}/debug/abort")).status_code == 202
    done = await _finish(task)
    assert done.status == "cancelled"
    assert done.error["code"] == "debug_aborted" and done.error["details"]["step_id"] == "inc"
    steps = await sync_to_async(_steps)(done)
    assert "inc" not in steps and steps["agent"].status == "cancelled"
    again = await _post(client, f"/api/v1/tasks/{task.uuid}/debug/continue")
    assert again.status_code == 409 and again.json()["error"]["code"] == "task_finished"


async def test_pause_stops_a_plain_run_after_its_current_step_and_cancel_ends_it(
    executor: Any, owner: Any, api_client_of: Any
) -> None:
    agent = await sync_to_async(_agent)(owner, "workflow", PIPELINE)
    client = await sync_to_async(api_client_of)(owner)
    task = await _start(executor, owner, agent, {"x": 5, "nap": 1})
    while not await sync_to_async(event_data)(task, "process.started"):
        await asyncio.sleep(0.05)  # "double" runs now
    not_paused = await _post(client, f"/api/v1/tasks/{task.uuid}/debug/continue")
    assert not_paused.status_code == 409 and not_paused.json()["error"]["code"] == "not_paused"
    assert (await _post(client, f"/api/v1/tasks/{task.uuid}/pause")).status_code == 202
    pending = await _paused(task)
    # The current step finished; the run stopped before the next one.
    assert (pending["step_id"], pending["reason"], pending["input"]) == ("inc", "pause",
                                                                        {"v": 10})  # fmt: skip
    twice = await _post(client, f"/api/v1/tasks/{task.uuid}/pause")
    assert twice.status_code == 409 and twice.json()["error"]["code"] == "already_paused"
    resume = await sync_to_async(client.post)(f"/api/v1/tasks/{task.uuid}/resume", {"reply": "x"},
                                              format="json")  # fmt: skip
    assert resume.status_code == 409 and resume.json()["error"]["code"] == "debug_paused"
    assert (await _post(client, f"/api/v1/tasks/{task.uuid}/cancel")).status_code == 202
    done = await _finish(task)
    assert done.status == "cancelled" and done.error["code"] == "cancelled"
    steps = await sync_to_async(_steps)(done)
    assert steps["double"].status == "succeeded" and "inc" not in steps


async def test_pausing_a_queued_task_pauses_it_before_its_first_step_then_it_continues(
    transactional_db: Any, owner: Any, api_client_of: Any
) -> None:
    agent = await sync_to_async(_agent)(owner, "workflow", PIPELINE)
    client = await sync_to_async(api_client_of)(owner)

    def make() -> Task:
        session = session_create(owner=owner, agent=agent)
        return task_create(session=session, user=owner, input={"x": 1})[0]

    # No executor runs yet, so the task stays queued (a running one would claim it as soon as
    # it is created, and might be past its first step when the pause arrives).
    task = await sync_to_async(make)()
    assert (await _post(client, f"/api/v1/tasks/{task.uuid}/pause")).status_code == 202
    executor = Executor(concurrency=4)
    await executor.start()
    try:
        executor.kick()
        assert (await _paused(task))["step_id"] == "in"
        await _post(client, f"/api/v1/tasks/{task.uuid}/debug/continue")
        assert (await _finish(task)).result == {"w": 3}
    finally:
        await executor.stop()


@pytest.mark.parametrize(("action", "status"), [("abort", "cancelled"), ("continue", "succeeded")])
async def test_an_unattended_pause_times_out_to_the_configured_action(
    executor: Any, owner: Any, action: str, status: str
) -> None:
    agent = await sync_to_async(_agent)(owner, "workflow", PIPELINE)
    config = {"debug": {"breakpoints": [{"name": "inc"}], "pause_timeout_s": 0.5,
                        "on_pause_timeout": action}, "timeout_s": 60}  # fmt: skip
    task = await _start(executor, owner, agent, {"x": 1}, config)
    done = await _finish(task)
    assert done.status == status, done.error
    [resumed] = await sync_to_async(event_data)(done, "debug.resumed")
    assert (resumed["action"], resumed["by"]) == (action, "timeout")


async def test_time_spent_paused_does_not_count_against_the_task_timeout(
    executor: Any, owner: Any, api_client_of: Any
) -> None:
    agent = await sync_to_async(_agent)(owner, "workflow", PIPELINE)
    client = await sync_to_async(api_client_of)(owner)
    config = {"debug": {"breakpoints": [{"name": "inc"}]}, "timeout_s": 3}
    task = await _start(executor, owner, agent, {"x": 1}, config)
    await _paused(task)
    await asyncio.sleep(4)  # longer than the task's whole timeout
    await _post(client, f"/api/v1/tasks/{task.uuid}/debug/continue")
    done = await _finish(task)
    assert done.status == "succeeded", done.error


async def test_an_llm_run_pauses_before_model_and_tool_calls_and_edits_reach_them(
    executor: Any, owner: Any, llm: ScriptedLLM, api_client_of: Any
) -> None:
    llm.add(
        Turn(chunks=["Writing."], tool_calls=[
            {"name": "write_file", "arguments": json.dumps({"path": "a.txt", "content": "x"})},
        ]),
        Turn(chunks=["Done."]),
    )  # fmt: skip
    spec = {"model": {"base_url": llm.base_url, "name": "scripted-1"}, "system_prompt": "Be brief.",
            "tools": ["write_file"], "max_retries": 0}  # fmt: skip
    agent = await sync_to_async(_agent)(owner, "llm", spec)
    client = await sync_to_async(api_client_of)(owner)
    config = {"debug": {"breakpoints": [{"step_kind": "llm", "name": "llm-1"},
                                        {"step_kind": "tool", "name": "write_file"}]}}  # fmt: skip
    task = await _start(executor, owner, agent, {"message": "Write a.txt"}, config)

    pending = await _paused(task)
    assert (pending["step_id"], pending["step_kind"], pending["name"]) == ("llm-1", "llm",
                                                                          "scripted-1")  # fmt: skip
    messages = pending["input"]["messages"]
    assert messages == [{"role": "system", "content": "Be brief."},
                        {"role": "user", "content": "Write a.txt"}]  # fmt: skip
    bad = await _post(client, f"/api/v1/tasks/{task.uuid}/debug/continue",
                      {"input": {"messages": "no"}})  # fmt: skip
    assert bad.status_code == 400 and "input" in bad.json()["error"]["details"]["fields"]
    edited = [messages[0], {"role": "user", "content": "Write b.txt instead"}]
    await _post(client, f"/api/v1/tasks/{task.uuid}/debug/continue",
                {"input": {"messages": edited}})  # fmt: skip

    pending = await _paused_at(task, next_tool := await _tool_step(task))
    assert pending["input"] == {"path": "a.txt", "content": "x"}
    assert pending["input_schema"]["properties"]["path"]
    await _post(client, f"/api/v1/tasks/{task.uuid}/debug/continue",
                {"input": {"path": "b.txt", "content": "edited"}})  # fmt: skip
    done = await _finish(task)
    assert done.status == "succeeded", done.error
    # The model received the edited prompt; the tool ran with the edited arguments.
    assert llm.requests[0]["messages"][1]["content"] == "Write b.txt instead"
    assert (done.session.workspace_path / "b.txt").read_text() == "edited"
    assert not (done.session.workspace_path / "a.txt").exists()
    [result] = await sync_to_async(event_data)(done, "tool.result")
    assert result["edited"] is True and result["arguments"]["path"] == "b.txt"
    steps = await sync_to_async(_steps)(done)
    # A debug run keeps the whole model input on the llm step.
    assert steps["llm-1"].input["messages"][1]["content"] == "Write b.txt instead"
    assert steps["llm-1"].input["tools"] == ["write_file"]
    assert steps[next_tool].status == "succeeded"


async def _tool_step(task: Task) -> str:
    deadline = time.monotonic() + 60
    while not (calls := await sync_to_async(event_data)(task, "tool.call")):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    return f"tool-{calls[0]['call_id']}"


async def test_a_python_cell_can_be_edited_at_a_breakpoint(
    executor: Any, owner: Any, api_client_of: Any
) -> None:
    agent = await sync_to_async(_agent)(owner, "python", {})
    client = await sync_to_async(api_client_of)(owner)
    config = {"debug": {"breakpoints": [{"step_kind": "cell", "name": "1"}]}}
    task = await _start(executor, owner, agent, {"cells": ["a = 2", "print(a * 10)"]}, config)
    pending = await _paused(task, timeout=120)
    assert (pending["step_id"], pending["input"]["code"]) == ("cell-1", "print(a * 10)")
    await _post(client, f"/api/v1/tasks/{task.uuid}/debug/continue",
                {"input": {"code": "print(a * 100)"}})  # fmt: skip
    done = await _finish(task)
    assert done.status == "succeeded", done.error
    text = "".join(d["text"] for d in await sync_to_async(event_data)(done, "process.stdout"))
    assert "200" in text and "20\n" not in text


async def test_debugger_commands_check_access(
    executor: Any, owner: Any, api_client_of: Any
) -> None:
    agent = await sync_to_async(_agent)(owner, "workflow", PIPELINE)
    task = await _start(executor, owner, agent, {"x": 1}, {"debug": {"breakpoints": [{}]}})
    await _paused(task)
    stranger = await sync_to_async(factories.make_user)("stranger-dbg")
    other = await sync_to_async(api_client_of)(stranger)
    for url in (f"/api/v1/tasks/{task.uuid}/debug/continue", f"/api/v1/tasks/{task.uuid}/pause",
                f"/api/v1/tasks/{task.uuid}/debug/breakpoints"):  # fmt: skip
        assert (await _post(other, url)).status_code == 404
    assert (await sync_to_async(other.get)(f"/api/v1/tasks/{task.uuid}/debug")).status_code == 404
    assert (await _post(other, f"/api/v1/agents/{agent.uuid}/breakpoints")).status_code == 404
    client = await sync_to_async(api_client_of)(owner)
    unknown = await _post(client, f"/api/v1/tasks/{task.uuid}/debug/rewind")
    assert unknown.status_code == 404
    bad = await sync_to_async(client.post)(
        f"/api/v1/tasks/{task.uuid}/debug/breakpoints", {"step_kind": "nope"}, format="json"
    )
    assert bad.status_code == 400
    await _post(client, f"/api/v1/tasks/{task.uuid}/debug/abort")
    assert (await _finish(task)).status == "cancelled"


async def test_a_malformed_debug_config_is_refused_at_creation(owner: Any,
                                                                api_client_of: Any) -> None:  # fmt: skip
    agent = await sync_to_async(_agent)(owner, "workflow", PIPELINE)
    client = await sync_to_async(api_client_of)(owner)
    session = await sync_to_async(session_create)(owner=owner, agent=agent)
    answer = await sync_to_async(client.post)(
        f"/api/v1/sessions/{session.uuid}/tasks",
        {"input": {"x": 1}, "config": {"debug": {"on_pause_timeout": "explode"}}}, format="json",
    )  # fmt: skip
    assert answer.status_code == 400
    assert "config.debug" in answer.json()["error"]["details"]["fields"]
