"""``/ws/runtimes/`` frame by frame, over a live daphne with raw WebSockets: who may attach,
what a bad frame gets, and a task re-assigned to a runtime that did not resume it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from runtime_client.client import runtime_url
from tests.remote.conftest import Api

pytestmark = [pytest.mark.transport]


def _open(api: Api, token: str | None = None, **options: Any) -> Any:
    headers = {"Authorization": f"Bearer {token or api.token}"} if token != "" else None
    return connect(runtime_url(api.server.ws_url), additional_headers=headers, **options)


async def _frame(ws: ClientConnection) -> dict[str, Any]:
    """The next frame that is not a pong."""
    while True:
        frame = json.loads(await ws.recv())
        if frame.get("type") != "pong":
            return dict(frame)


async def _closed(ws: ClientConnection) -> int | None:
    with pytest.raises(ConnectionClosed):
        await ws.recv()
    return ws.close_code


def _register(session_id: str, runtime_id: str = "raw", **extra: Any) -> str:
    return json.dumps({"type": "runtime.register", "request_id": "r1", "runtime_id": runtime_id,
                       "session_id": session_id, "kinds": ["python"],
                       "capabilities": {"can_execute_code": True}, **extra})  # fmt: skip


async def test_who_may_attach(api: Api, outsiders: dict[str, str]) -> None:
    session_id = await api.session()
    async with _open(api, token="") as ws:  # no credential
        assert (await _frame(ws))["error"]["code"] == "not_authenticated"
        assert await _closed(ws) == 4401
    async with _open(api, token=outsiders["read_only"]) as ws:  # no tasks:write
        assert (await _frame(ws))["error"]["code"] == "insufficient_scope"
        assert await _closed(ws) == 4403
    async with _open(api, token=outsiders["stranger"]) as ws:
        await ws.send(_register(session_id))
        error = await _frame(ws)
        assert error["error"]["code"] == "not_found" and error["request_id"] == "r1"
        assert await _closed(ws) == 4404
    async with _open(api, token=outsiders["viewer"]) as ws:
        await ws.send(_register(session_id))
        assert (await _frame(ws))["error"]["code"] == "forbidden"
        assert await _closed(ws) == 4403
    async with _open(api, subprotocols=["agent-runtime.runtime.v1"]) as ws:
        assert ws.subprotocol == "agent-runtime.runtime.v1"
        await ws.send(_register(session_id))
        registered = await _frame(ws)
    assert registered == {
        "type": "runtime.registered", "request_id": "r1", "runtime_id": "raw",
        "session_id": session_id, "displaced": None, "heartbeat_s": 15.0, "resumed": [],
    }  # fmt: skip
    await api.settled()
    assert [e["type"] for e in await api.session_events(session_id, "runtime.")] == [
        "runtime.attached",
        "runtime.detached",
    ]


async def test_bad_frames_get_error_frames(api: Api) -> None:
    session_id = await api.session()
    unknown_task = "00000000-0000-4000-8000-000000000000"
    async with _open(api) as ws:

        async def error_of(frame: dict[str, Any]) -> dict[str, Any]:
            await ws.send(json.dumps({**frame, "request_id": "q"}))
            reply = await _frame(ws)
            assert reply["type"] == "error" and reply["request_id"] == "q", reply
            return dict(reply["error"])

        await ws.send(json.dumps({"type": "ping", "request_id": "p"}))
        assert json.loads(await ws.recv()) == {"type": "pong", "request_id": "p"}
        event = {"type": "process.stdout", "data": {"text": "x"}}
        assert (await error_of({"type": "task.event", "task_id": unknown_task,
                                "event": event}))["code"] == "not_registered"  # fmt: skip
        assert (await error_of({"type": "nonsense"}))["code"] == "bad_frame"
        invalid = await error_of({"type": "runtime.register", "runtime_id": "a b",
                                  "session_id": "nope", "kinds": "python"})  # fmt: skip
        assert invalid["code"] == "invalid_input"
        assert set(invalid["details"]["fields"]) == {"runtime_id", "session_id", "kinds"}
        await ws.send(_register(session_id))
        assert (await _frame(ws))["type"] == "runtime.registered"
        assert (await error_of(json.loads(_register(session_id))))["code"] == ("already_registered")
        not_assigned = await error_of({"type": "task.event", "task_id": unknown_task,
                                       "event": event})  # fmt: skip
        assert not_assigned["code"] == "task_not_assigned"
        assert not_assigned["details"] == {"task_id": unknown_task}
        reserved = await error_of({"type": "task.events", "task_id": unknown_task,
                                   "events": [{"type": "task.status", "data": {}}]})  # fmt: skip
        assert reserved["code"] == "reserved_event_type"
        assert (await error_of({"type": "task.events", "task_id": unknown_task,
                                "events": [{"type": "log", "data": []}]}))["code"] == (
            "invalid_input"
        )  # fmt: skip
        assert (await error_of({"type": "task.fail", "task_id": unknown_task,
                                "error": "boom"}))["code"] == "invalid_input"  # fmt: skip
        assert (await error_of({"type": "task.complete", "task_id": "x"}))["code"] == (
            "invalid_input"
        )
        await ws.send("this is not JSON")  # the one thing that closes the socket
        assert (await _frame(ws))["error"]["code"] == "bad_frame"
        assert await _closed(ws) == 4400


async def test_a_runtime_that_does_not_resume_gets_the_task_again(api: Api) -> None:
    """The wire format of a whole task: assign, single and batched events, complete; the task
    survives its first runtime disconnecting and goes to the next one (``resumed: false``)."""
    session_id = await api.session(reconnect_grace_s=10)
    async with _open(api) as first:
        await first.send(_register(session_id, "one"))
        assert (await _frame(first))["type"] == "runtime.registered"
        task_id = await api.task(session_id, cells=["1 + 1"])
        assign = await _frame(first)
        assert assign["type"] == "task.assign" and assign["resumed"] is False
        assert assign["task"]["id"] == task_id and assign["task"]["input"] == {"cells": ["1 + 1"]}
        await first.send(json.dumps({"type": "task.event", "task_id": task_id,
                                     "event": {"type": "log", "data": {"line": "first"}}}))  # fmt: skip
    async with _open(api) as second:
        await second.send(_register(session_id, "two"))
        assert (await _frame(second))["resumed"] == []
        again = await _frame(second)
        assert again["type"] == "task.assign" and again["task"]["id"] == task_id
        await second.send(json.dumps({"type": "task.events", "task_id": task_id, "events": [
            {"type": "log", "data": {"line": "second"}},
            {"type": "output.display", "data": {"data": {"text/plain": "2"}}},
        ]}))  # fmt: skip
        await second.send(json.dumps({"type": "task.complete", "task_id": task_id,
                                      "result": {"output": "2"}, "usage": {"ms": 5}}))  # fmt: skip
        task = await api.finished(task_id)
        # The task is done: more frames for it are refused, the socket stays open.
        await second.send(json.dumps({"type": "task.complete", "task_id": task_id}))
        assert (await _frame(second))["error"]["code"] == "task_not_assigned"
    assert task["status"] == "succeeded" and task["result"] == {"output": "2"}
    assert task["usage"]["ms"] == 5
    events = await api.task_events(task_id)
    lines = [e["data"]["line"] for e in events if e["type"] == "log"]
    assert lines == ["first", "second"]
    assert [e["type"] for e in events if e["type"] == "output.display"] == ["output.display"]
