"""Forks of real runs (time travel): a workflow re-run from a middle component with an edited
input, an llm run resumed at a model call, a tool call re-run with edited arguments, and who
may fork. Tasks run through the real executor, sandbox and scripted model server."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from debugger.models import Step
from debugger.replay import task_fork
from sandboxes.registry import get_backend
from sessions.models import Event, Task
from sessions.runners.scripted_llm import ScriptedLLM, Turn
from sessions.services.agents import agent_create
from sessions.services.sessions import session_create
from sessions.services.tasks import task_create
from tests import factories
from tests.helpers import wait_terminal

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sandbox]


def _sh(source: str) -> dict[str, Any]:
    return {"type": "code", "language": "shell", "source": source}


GRAPH = {
    "components": [
        {"id": "in", "type": "input"},
        {"id": "double", **_sh('echo "{\\"v\\": $((INPUT_V * 2))}"')},
        {"id": "plus", **_sh('echo "{\\"v\\": $((INPUT_V + 100))}"')},
        {"id": "side", **_sh('echo "{\\"s\\": $INPUT_V}"')},
        {"id": "out", "type": "output"},
    ],
    "edges": [
        {"from": "in.v", "to": "double.v"}, {"from": "double.v", "to": "plus.v"},
        {"from": "in.v", "to": "side.v"}, {"from": "plus.v", "to": "out.result"},
        {"from": "side.s", "to": "out.side"},
    ],
}  # fmt: skip


async def _origin(executor: Any, owner: Any, kind: str, spec: dict[str, Any],
                  data: dict[str, Any]) -> Task:  # fmt: skip
    def make() -> Task:
        agent = agent_create(owner=owner, slug=f"{kind}-{time.monotonic_ns()}", name=kind,
                             kind=kind, spec=spec)  # fmt: skip
        session = session_create(owner=owner, agent=agent, name="origin")
        return task_create(session=session, user=owner, input=data)[0]

    task = await sync_to_async(make)()
    executor.kick()
    return await _done(task)


async def _done(task: Task) -> Task:
    try:
        return await wait_terminal(task, timeout=120)
    finally:
        await get_backend().stop(str(task.session.uuid))


async def _fork(executor: Any, origin: Task, **kwargs: Any) -> Task:
    user = await sync_to_async(lambda: origin.created_by)()
    fork = await sync_to_async(task_fork)(task=origin, user=user, **kwargs)
    executor.kick()
    return await _done(fork)


def _steps(task: Task) -> dict[str, Step]:
    return {s.step_id: s for s in Step.objects.filter(task=task).select_related("parent")}


async def test_a_workflow_fork_reruns_only_the_step_and_its_descendants(
    executor: Any, owner: Any
) -> None:
    origin = await _origin(executor, owner, "workflow", GRAPH, {"v": 1})
    assert origin.status == "succeeded", origin.error
    assert origin.result == {"result": 102, "side": 1}

    fork = await _fork(executor, origin, step_id="double", step_input={"v": 5})
    assert fork.status == "succeeded", fork.error
    assert fork.result == {"result": 110, "side": 1}  # the edited value flowed to the output
    assert (fork.forked_from_id, fork.forked_from_step) == (origin.pk, "double")
    assert fork.config["replay"] == {"task": str(origin.uuid), "step_id": "double",
                                     "mode": "from_step", "step_input": {"v": 5}}  # fmt: skip
    assert fork.session_id != origin.session_id  # a branch of the session

    steps = await sync_to_async(_steps)(fork)
    replayed = {k for k, s in steps.items() if s.metadata.get("replayed")}
    assert replayed == {"in", "side"}
    assert steps["side"].output == {"s": 1} and steps["side"].status == "succeeded"
    assert steps["double"].input == {"v": 5} and steps["double"].output == {"v": 10}
    assert steps["plus"].input == {"v": 10} and steps["out"].status == "succeeded"
    # Only the re-run components started processes.
    commands = [s for s in steps.values() if s.kind == "command"]
    assert sorted(s.parent.step_id for s in commands) == ["double", "plus"]

    # From a step of a loop-free graph's start: a plain re-run with the recorded input.
    rerun = await _fork(executor, origin, in_place=True)
    assert rerun.status == "succeeded" and rerun.result == origin.result
    assert rerun.session_id == origin.session_id
    assert rerun.config["replay"]["mode"] == "rerun"
    steps = await sync_to_async(_steps)(rerun)
    assert not [s for s in steps.values() if s.metadata.get("replayed")]


def _llm_spec(llm: ScriptedLLM) -> dict[str, Any]:
    return {"model": {"base_url": llm.base_url, "name": "scripted-1"},
            "tools": ["write_file", "read_file"], "max_retries": 0}  # fmt: skip


def _write(path: str, content: str) -> dict[str, str]:
    return {"name": "write_file", "arguments": json.dumps({"path": path, "content": content})}


async def test_an_llm_fork_from_a_model_call_calls_the_model_from_there_on(
    executor: Any, owner: Any, llm: ScriptedLLM
) -> None:
    llm.add(
        Turn(chunks=["Writing."], tool_calls=[_write("a.txt", "x")]),
        Turn(chunks=["Reading."], tool_calls=[{"name": "read_file",
                                               "arguments": json.dumps({"path": "a.txt"})}]),
        Turn(chunks=["Done."]),
    )  # fmt: skip
    origin = await _origin(executor, owner, "llm", _llm_spec(llm), {"message": "Write a.txt"})
    assert origin.status == "succeeded", origin.error
    assert len(llm.requests) == 3
    second_call = llm.requests[1]["messages"]

    llm.add(Turn(chunks=["Forked."]))
    fork = await _fork(executor, origin, step_id="llm-2")
    assert fork.status == "succeeded", fork.error
    assert fork.result == {"text": "Forked.", "steps": 2}
    assert len(llm.requests) == 4  # one new call: call 2, with call 1 replayed from the log
    assert llm.requests[3]["messages"] == second_call
    steps = await sync_to_async(_steps)(fork)
    assert steps["llm-1"].metadata == {"replayed": True}
    assert steps["llm-1"].output["text"] == "Writing."
    assert not steps["llm-2"].metadata.get("replayed")
    assert steps["llm-2"].output["text"] == "Forked."
    [tool] = [s for s in steps.values() if s.kind == "tool"]
    assert tool.metadata.get("replayed") and tool.status == "succeeded"
    # The fork paid for its own call only.
    assert fork.usage["prompt_tokens"] == 7

    forks = await sync_to_async(lambda: list(origin.forks.all()))()
    assert [f.pk for f in forks] == [fork.pk]


async def test_an_llm_fork_from_a_tool_call_reruns_it_with_edited_arguments(
    executor: Any, owner: Any, llm: ScriptedLLM
) -> None:
    llm.add(Turn(chunks=["Writing."], tool_calls=[_write("a.txt", "x")]), Turn(chunks=["Ok."]))
    origin = await _origin(executor, owner, "llm", _llm_spec(llm), {"message": "Write a.txt"})
    assert origin.status == "succeeded", origin.error
    call_id = await sync_to_async(
        lambda: Step.objects.get(task=origin, kind="tool").step_id
    )()  # fmt: skip

    llm.add(Turn(chunks=["Edited."]))
    fork = await _fork(executor, origin, step_id=call_id,
                       step_input={"path": "b.txt", "content": "edited"})  # fmt: skip
    assert fork.status == "succeeded", fork.error
    assert fork.result == {"text": "Edited.", "steps": 2}
    assert len(llm.requests) == 3
    messages = llm.requests[2]["messages"]
    [assistant] = [m for m in messages if m["role"] == "assistant"]
    arguments = json.loads(assistant["tool_calls"][0]["function"]["arguments"])
    assert arguments == {"path": "b.txt", "content": "edited"}
    assert messages[-1]["role"] == "tool" and "error" not in messages[-1]["content"]
    session = await sync_to_async(lambda: fork.session)()
    assert (session.workspace_path / "b.txt").read_text() == "edited"
    steps = await sync_to_async(_steps)(fork)
    tool = steps[call_id]
    assert tool.input == {"path": "b.txt", "content": "edited"}
    assert tool.metadata == {"edited": True} and tool.status == "succeeded"
    assert steps["llm-1"].metadata == {"replayed": True}


async def test_fork_errors_and_access(
    executor: Any, owner: Any, llm: ScriptedLLM, api_client_of: Any
) -> None:
    llm.add(Turn(chunks=["Hi."]))
    origin = await _origin(executor, owner, "llm", _llm_spec(llm), {"message": "Hello"})

    def checks() -> None:
        client = api_client_of(owner)
        url = f"/api/v1/tasks/{origin.uuid}/fork"
        unknown = client.post(url, {"step_id": "llm-9"}, format="json")
        assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "unknown_step"
        assert "llm-1" in unknown.json()["error"]["details"]["steps"]
        bad = client.post(url, {"step_id": "llm-1", "step_input": {"x": 1}}, format="json")
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "step_not_forkable"

        stranger = factories.make_user("stranger")
        for path in ("fork", "forks"):
            call = api_client_of(stranger).post if path == "fork" else api_client_of(stranger).get
            assert call(f"/api/v1/tasks/{origin.uuid}/{path}").status_code == 404
        viewer = factories.make_user("viewer")
        factories.add_member(factories.team_of(owner), viewer, role="viewer")
        denied = api_client_of(viewer).post(url, {}, format="json")
        assert denied.status_code == 403
        assert api_client_of(viewer).get(f"/api/v1/tasks/{origin.uuid}/forks").status_code == 200

        queued = task_create(session=origin.session, user=owner, input={"message": "again"})[0]
        busy = client.post(f"/api/v1/tasks/{queued.uuid}/fork", {}, format="json")
        assert busy.status_code == 409 and busy.json()["error"]["code"] == "task_not_finished"

        made = client.post(url, {"input": {"message": "Other"}}, format="json")
        assert made.status_code == 201, made.json()
        body = made.json()
        assert body["replay_mode"] == "rerun" and body["forked_from"] == str(origin.uuid)
        assert body["session_id"] != str(origin.session.uuid)
        listed = client.get(f"/api/v1/tasks/{origin.uuid}/forks").json()
        assert [f["id"] for f in listed] == [body["id"]]
        # The branch holds no event of the origin.
        assert not Event.objects.filter(session__uuid=body["session_id"],
                                        data__text="Hello").exists()  # fmt: skip

    await sync_to_async(checks)()
    executor.kick()
    others = Task.objects.exclude(pk=origin.pk).select_related("session")
    for task in await sync_to_async(lambda: list(others))():
        await _done(task)
