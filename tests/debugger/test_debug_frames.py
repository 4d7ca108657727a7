"""The debugger over a task's WebSocket on a real daphne: pause at a breakpoint, set another one,
edit-and-continue, then abort, all as frames; errors come back as error frames."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.contrib.auth import get_user_model
from websockets.sync.client import connect

from tests.debugger.test_breakpoints import PIPELINE
from tests.factories import make_token
from tests.transport.conftest import DaphneServer, live_daphne

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sandbox]


@pytest.fixture
def server(transactional_db: Any, tmp_path: Path) -> Iterator[DaphneServer]:
    with live_daphne(tmp_path, STREAM_HEARTBEAT_S=1) as live:
        yield live


@pytest.fixture
def token(transactional_db: Any) -> str:
    return make_token(get_user_model().objects.create_user("debugger-ws", password="x"))


_SKIPPED: dict[int, list[dict[str, Any]]] = {}  # per connection: frames read, not yet asked for


def _next(ws: Any, *types: str) -> dict[str, Any]:
    """The next frame of one of ``types`` (events by ``type``, control frames too).

    A command's answer and the events it causes race (the runner may act before the consumer
    sends the ack), so frames of other types are kept for later calls, never dropped."""
    skipped = _SKIPPED.setdefault(id(ws), [])
    for i, frame in enumerate(skipped):
        if frame.get("type") in types:
            return skipped.pop(i)
    while True:
        frame = json.loads(ws.recv(timeout=60))
        if frame.get("type") in types:
            return frame
        if frame.get("type") != "stream.heartbeat":
            skipped.append(frame)


def test_a_debug_session_over_the_task_websocket(server: DaphneServer, token: str) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as http:
        agent = http.post("/api/v1/agents", json={"slug": "pipe", "name": "pipe",
                                                  "kind": "workflow", "spec": PIPELINE})  # fmt: skip
        assert agent.status_code == 201, agent.text
        session = http.post("/api/v1/sessions", json={"agent": "pipe"}).json()
        task = http.post(
            f"/api/v1/sessions/{session['id']}/tasks",
            json={"input": {"x": 2}, "config": {"debug": {"breakpoints": [{"name": "inc"}]}}},
        ).json()  # fmt: skip
        with connect(f"{server.ws_url}/ws/tasks/{task['id']}/", additional_headers=headers) as ws:
            paused = _next(ws, "debug.paused")
            assert paused["data"]["step_id"] == "inc" and paused["data"]["input"] == {"v": 4}

            ws.send(json.dumps({"type": "debug.pause", "request_id": "p"}))
            error = _next(ws, "error")
            assert (error["request_id"], error["error"]["code"]) == ("p", "already_paused")

            ws.send(json.dumps({"type": "debug.breakpoint.set", "name": "out",
                                "request_id": "b"}))  # fmt: skip
            ack = _next(ws, "debug.ack")
            assert ack["request_id"] == "b" and ack["breakpoint"]["name"] == "out"

            ws.send(json.dumps({"type": "debug.continue", "input": {"v": 40},
                                "request_id": "c"}))  # fmt: skip
            assert _next(ws, "debug.ack")["command"]["action"] == "continue"
            resumed = _next(ws, "debug.resumed")
            assert resumed["data"]["edited"] is True
            paused = _next(ws, "debug.paused")
            assert paused["data"]["step_id"] == "out" and paused["data"]["input"] == {"w": 41}

            ws.send(json.dumps({"type": "debug.abort", "request_id": "a"}))
            _next(ws, "debug.ack")
            while (status := _next(ws, "task.status"))["data"]["status"] != "cancelled":
                pass
            assert status["data"]["error"]["code"] == "debug_aborted"
            assert _next(ws, "stream.end")
        steps = http.get(f"/api/v1/tasks/{task['id']}/steps", params={"flat": True}).json()
        inc = next(s for s in steps["steps"] if s["step_id"] == "inc")
        assert inc["input"] == {"v": 40} and inc["output"] == {"w": 41}
