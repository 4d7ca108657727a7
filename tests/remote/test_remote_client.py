"""The ``remote`` kind end to end: a ``RuntimeClient`` attached to a live daphne runs tasks,
fails them, is displaced, reconnects, loses its task past the grace period, and is cancelled."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from websockets.asyncio.client import connect

from runtime_client.client import runtime_url
from tests.remote.conftest import Api, Script, running, wait_for

pytestmark = [pytest.mark.transport]

ENVELOPE = {"seq", "session_id", "task_id", "type", "ts", "data"}


def _stdout(events: list[dict[str, Any]]) -> str:
    return "".join(e["data"]["text"] for e in events if e["type"] == "process.stdout")


async def test_a_runtime_runs_a_task_and_its_events_reach_the_log(api: Api) -> None:
    session_id = await api.session(attach_timeout_s=10, required_capabilities=["can_execute_code"])
    script = Script()
    client = api.client_for(session_id, script, runtime_id="laptop-1")
    async with running(client):
        attached = (await api.client.get(f"/api/v1/sessions/{session_id}/runtime")).json()
        assert attached["runtime_id"] == "laptop-1"
        assert attached["kinds"] == ["python"]
        assert attached["status"] == "connected"
        task_id = await api.task(session_id, code="print(1)")
        task = await api.finished(task_id)
    assert task["status"] == "succeeded", task
    assert task["result"] == {"answer": 42}
    assert task["usage"]["cells"] == 1
    [assigned] = script.calls
    assert assigned["id"] == task_id and assigned["session_id"] == session_id
    assert assigned["input"] == {"code": "print(1)"} and assigned["task_type"] == "run"
    assert assigned["agent"]["kind"] == "python"
    assert assigned["agent"]["spec"]["attach_timeout_s"] == 10
    events = await api.task_events(task_id)
    assert all(set(e) == ENVELOPE for e in events)
    assert all(e["task_id"] == task_id and e["session_id"] == session_id for e in events)
    assert _stdout(events) == "hello\nbye\n"
    assert events[-1]["type"] == "task.status" and events[-1]["data"]["status"] == "succeeded"
    await api.settled()  # the server has recorded the last detach
    log = await api.session_events(session_id, "runtime.")
    assert [e["type"] for e in log] == ["runtime.attached", "runtime.detached"]
    assert log[0]["data"] == {
        "runtime_id": "laptop-1",
        "kinds": ["python"],
        "capabilities": {"can_execute_code": True},
    }
    assert log[1]["data"] == {"runtime_id": "laptop-1", "reason": "disconnected"}
    gone = await api.client.get(f"/api/v1/sessions/{session_id}/runtime")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "no_runtime"


async def test_task_fail_ends_the_task_failed_with_the_runtimes_error(api: Api) -> None:
    session_id = await api.session()
    async with running(api.client_for(session_id, Script())):
        task = await api.finished(await api.task(session_id, mode="fail"))
    assert task["status"] == "failed"
    assert task["error"] == {"code": "boom", "message": "it broke", "details": {"line": 3}}


async def test_without_a_fitting_runtime_the_task_fails_with_no_runtime(api: Api) -> None:
    session_id = await api.session(attach_timeout_s=1)
    # Attached, but it runs SQL, not python: it does not count.
    async with running(api.client_for(session_id, Script(), kinds=["sql"], runtime_id="db-1")):
        task = await api.finished(await api.task(session_id))
    assert task["status"] == "failed"
    assert task["error"]["code"] == "no_runtime"
    assert task["error"]["details"]["runtime_kind"] == "python"
    assert task["error"]["details"]["incompatible_runtimes"] == ["db-1"]


async def test_a_second_runtime_displaces_the_first_and_takes_over_its_task(api: Api) -> None:
    session_id = await api.session()
    first_script, second_script = Script(), Script()
    first = api.client_for(session_id, first_script, runtime_id="first")
    second = api.client_for(session_id, second_script, runtime_id="second")
    second_script.release.set()  # the second run of the "hold" task finishes at once
    async with running(first) as first_job:
        task_id = await api.task(session_id, mode="hold")
        await wait_for(first_script.started)
        await asyncio.sleep(0.3)  # the first run's "hello" reaches the log
        async with running(second):
            assert second.took_over_from == "first"
            assert await asyncio.wait_for(first_job, 15) == "displaced"
            assert first.displaced_by == "second" and first.close_code == 4409
            assert first_script.saw_cancel.is_set()  # the displaced runtime stops its work
            task = await api.finished(task_id)
    assert task["status"] == "succeeded", task
    assert [c["id"] for c in second_script.calls] == [task_id]  # re-assigned, run from scratch
    await api.settled()  # the server has recorded the last detach
    log = await api.session_events(session_id, "runtime.")
    assert [e["type"] for e in log] == [
        "runtime.attached", "runtime.displaced", "runtime.attached", "runtime.detached",
    ]  # fmt: skip
    assert log[1]["data"] == {"runtime_id": "first", "by": "second"}
    # Output of both runs is in the log; the displaced one's late frames were refused.
    assert _stdout(await api.task_events(task_id)) == "hello\nhello\nbye\n"


async def test_a_runtime_that_reconnects_within_the_grace_period_goes_on(api: Api) -> None:
    session_id = await api.session(reconnect_grace_s=10)
    script = Script()
    client = api.client_for(session_id, script)
    async with running(client):
        task_id = await api.task(session_id, mode="hold")
        await wait_for(script.started)
        await asyncio.sleep(0.2)  # "hello" reaches the server before the drop
        await client.drop_connection()
        script.release.set()  # finishes while disconnected: "bye" and the result wait
        task = await api.finished(task_id)
        assert client.registrations == 2
    assert task["status"] == "succeeded", task
    assert len(script.calls) == 1  # resumed, not re-assigned
    assert _stdout(await api.task_events(task_id)) == "hello\nbye\n"
    await api.settled()
    kinds = [e["type"] for e in await api.session_events(session_id, "runtime.")]
    # The old socket is seen closed (detached) before the new one registers, or, if the new
    # one is faster, displaced by it: either way the same runtime attached twice.
    assert kinds[0] == "runtime.attached" and kinds.count("runtime.attached") == 2


async def test_past_the_grace_period_the_task_fails_with_runtime_lost(api: Api) -> None:
    session_id = await api.session(reconnect_grace_s=1)
    script = Script()
    client = api.client_for(session_id, script, reconnect=False, runtime_id="flaky")
    async with running(client) as job:
        task_id = await api.task(session_id, mode="hold")
        await wait_for(script.started)
        await client.drop_connection()
        assert await asyncio.wait_for(job, 15) == "disconnected"
        task = await api.finished(task_id)
    assert task["status"] == "failed"
    assert task["error"]["code"] == "runtime_lost"
    assert task["error"]["details"] == {"runtime_id": "flaky", "reconnect_grace_s": 1.0}
    # Coming back now: the task is not resumed, and its stale final frame is refused.
    headers = {"Authorization": f"Bearer {api.token}"}
    async with connect(runtime_url(api.server.ws_url), additional_headers=headers) as ws:
        await ws.send(json.dumps({"type": "runtime.register", "runtime_id": "flaky",
                                  "session_id": session_id, "kinds": ["python"],
                                  "resume": [task_id]}))  # fmt: skip
        registered = json.loads(await ws.recv())
        assert registered["type"] == "runtime.registered" and registered["resumed"] == []
        await ws.send(json.dumps({"type": "task.complete", "task_id": task_id, "result": {}}))
        refused = json.loads(await ws.recv())
        assert refused["type"] == "error"
        assert refused["error"]["code"] == "task_not_assigned"
    assert (await api.get_task(task_id))["error"]["code"] == "runtime_lost"


async def test_cancel_from_the_api_reaches_the_runtime(api: Api) -> None:
    session_id = await api.session()
    script = Script()
    async with running(api.client_for(session_id, script)):
        task_id = await api.task(session_id, mode="hold")
        await wait_for(script.started)
        response = await api.client.post(f"/api/v1/tasks/{task_id}/cancel")
        assert response.status_code == 202, response.text
        await wait_for(script.saw_cancel)
        task = await api.finished(task_id)
    assert task["status"] == "cancelled"
