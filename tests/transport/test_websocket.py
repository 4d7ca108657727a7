"""WebSocket streams over a real daphne: replay + live, reconnect with after, frames, errors."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

pytestmark = [pytest.mark.transport, pytest.mark.sandbox]

TERMINAL = {"succeeded", "failed", "cancelled", "timed_out"}


def _session(http: httpx.Client) -> dict[str, Any]:
    response = http.post("/api/v1/sessions", json={"agent": "shell"})
    assert response.status_code == 201, response.text
    return response.json()


def _recv(ws: Any) -> dict[str, Any]:
    """Next frame that is not a heartbeat."""
    while True:
        frame = json.loads(ws.recv(timeout=30))
        if frame.get("type") != "stream.heartbeat":
            return frame


def _until_terminal(ws: Any, task_id: str) -> list[dict[str, Any]]:
    frames = []
    while True:
        frame = _recv(ws)
        if "seq" in frame:
            frames.append(frame)
            if (
                frame["task_id"] == task_id
                and frame["type"] == "task.status"
                and frame["data"]["status"] in TERMINAL
            ):
                return frames


def test_create_a_task_over_the_session_socket_and_watch_it(
    daphne_server: Any, api_token: str, http: httpx.Client
) -> None:
    session = _session(http)
    url = f"{daphne_server.ws_url}/ws/sessions/{session['id']}/"
    with connect(url, additional_headers={"Authorization": f"Bearer {api_token}"}) as ws:
        replay = _recv(ws)
        assert replay["type"] == "session.created"
        ws.send(
            json.dumps(
                {"type": "task.create", "request_id": "r1", "input": {"command": "echo via-ws"}}
            )
        )
        created = None
        frames = []
        while created is None:
            frame = _recv(ws)
            if frame["type"] == "task.created":
                created = frame
            elif "seq" in frame:
                frames.append(frame)
        assert created["request_id"] == "r1"
        frames += _until_terminal(ws, created["task"]["id"])
    assert frames[-1]["data"]["status"] == "succeeded"
    out = "".join(f["data"]["text"] for f in frames if f["type"] == "process.stdout")
    assert out == "via-ws\n"
    seqs = [f["seq"] for f in [replay, *frames]]
    assert seqs == sorted(set(seqs))


def test_reconnect_with_after_gets_the_rest_exactly_once(
    daphne_server: Any, api_token: str, http: httpx.Client
) -> None:
    session = _session(http)
    task = http.post(
        f"/api/v1/sessions/{session['id']}/tasks",
        json={"input": {"command": "for i in $(seq 1 30); do echo n$i; sleep 0.03; done"}},
    ).json()
    subprotocols = ["agent-runtime.v1", f"token.{api_token}"]
    first: list[dict[str, Any]] = []
    with connect(
        f"{daphne_server.ws_url}/ws/tasks/{task['id']}/?after=0", subprotocols=subprotocols
    ) as ws:
        assert ws.subprotocol == "agent-runtime.v1"
        while len(first) < 5:
            frame = _recv(ws)
            if "seq" in frame:
                first.append(frame)
    rest: list[dict[str, Any]] = []
    after = first[-1]["seq"]
    with connect(
        f"{daphne_server.ws_url}/ws/tasks/{task['id']}/?after={after}", subprotocols=subprotocols
    ) as ws:
        while True:
            frame = _recv(ws)
            if frame["type"] == "stream.end":
                break
            if "seq" in frame:
                rest.append(frame)
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
        assert ws.close_code == 1000
    expected = http.get(f"/api/v1/tasks/{task['id']}/events", params={"limit": 1000}).json()[
        "events"
    ]
    assert first + rest == expected


def test_cancel_frame_stops_a_running_task(
    daphne_server: Any, api_token: str, http: httpx.Client
) -> None:
    session = _session(http)
    task = http.post(
        f"/api/v1/sessions/{session['id']}/tasks", json={"input": {"command": "echo up; sleep 60"}}
    ).json()
    headers = {"Authorization": f"Bearer {api_token}"}
    with connect(
        f"{daphne_server.ws_url}/ws/sessions/{session['id']}/", additional_headers=headers
    ) as ws:
        while True:
            frame = _recv(ws)
            if frame.get("type") == "process.stdout":
                break
        ws.send(json.dumps({"type": "task.cancel", "task_id": task["id"], "request_id": "c1"}))
        frames = _until_terminal(ws, task["id"])
    assert frames[-1]["data"]["status"] == "cancelled"


def test_a_cancel_on_a_task_stream_is_answered_before_the_stream_ends(
    daphne_server: Any, api_token: str, http: httpx.Client
) -> None:
    """The cancel's answer and the task's last events race (the runner may stop the task before
    the consumer's own database call returns): every frame the client sent is answered, and
    ``stream.end`` comes after the answer and after the terminal status."""
    session = _session(http)
    headers = {"Authorization": f"Bearer {api_token}"}
    for attempt in range(3):  # the race goes either way: look at both orders
        task = http.post(f"/api/v1/sessions/{session['id']}/tasks",
                         json={"input": {"command": "echo up; sleep 60"}}).json()  # fmt: skip
        url = f"{daphne_server.ws_url}/ws/tasks/{task['id']}/"
        with connect(url, additional_headers=headers) as ws:
            while _recv(ws).get("type") != "process.stdout":
                pass
            ws.send(json.dumps({"type": "task.cancel", "request_id": f"c{attempt}"}))
            frames = []
            with contextlib.suppress(ConnectionClosed):
                while True:
                    frames.append(_recv(ws))
            assert ws.close_code == 1000, frames[-3:]
        types = [f["type"] for f in frames]
        assert types[-1] == "stream.end", types
        answer = next(f for f in frames if f["type"] == "task.cancelling")
        assert answer["request_id"] == f"c{attempt}"
        statuses = [f["data"]["status"] for f in frames if f["type"] == "task.status"]
        assert statuses[-1] == "cancelled", statuses


def test_no_token_gets_an_error_frame_and_4401(daphne_server: Any, http: httpx.Client) -> None:
    session = _session(http)
    with connect(f"{daphne_server.ws_url}/ws/sessions/{session['id']}/") as ws:
        frame = _recv(ws)
        assert frame["type"] == "error"
        assert frame["error"]["code"] == "not_authenticated"
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
    assert ws.close_code == 4401


def test_unknown_session_and_bad_frames(
    daphne_server: Any, api_token: str, http: httpx.Client
) -> None:
    headers = {"Authorization": f"Bearer {api_token}"}
    with connect(
        f"{daphne_server.ws_url}/ws/sessions/not-a-uuid/", additional_headers=headers
    ) as ws:
        assert _recv(ws)["error"]["code"] == "not_found"
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
    assert ws.close_code == 4404

    session = _session(http)
    with connect(
        f"{daphne_server.ws_url}/ws/sessions/{session['id']}/", additional_headers=headers
    ) as ws:
        _recv(ws)  # session.created replay
        ws.send(json.dumps({"type": "task.create", "input": "not-an-object", "request_id": "x"}))
        error = _recv(ws)
        assert error["type"] == "error"
        assert error["request_id"] == "x"
        assert error["error"]["code"] == "invalid_input"
        ws.send(json.dumps({"type": "no.such.frame"}))
        assert _recv(ws)["error"]["code"] == "bad_frame"
        ws.send("this is not json")
        assert _recv(ws)["error"]["code"] == "bad_frame"
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
    assert ws.close_code == 4400


def test_a_foreign_browser_origin_is_refused(
    daphne_server: Any, api_token: str, http: httpx.Client
) -> None:
    """Cross-site WebSocket hijacking: a page on another origin cannot open a socket, even with
    credentials; a page served by this host can, and so can a client that sends no Origin."""
    session = _session(http)
    url = f"{daphne_server.ws_url}/ws/sessions/{session['id']}/"
    headers = {"Authorization": f"Bearer {api_token}"}
    with pytest.raises(InvalidStatus) as refused:
        connect(url, additional_headers=headers, origin="https://evil.example")  # type: ignore[arg-type]
    assert refused.value.response.status_code == 403
    with connect(url, additional_headers=headers, origin="http://127.0.0.1:8000") as ws:  # type: ignore[arg-type]
        assert _recv(ws)["type"] == "session.created"


def test_the_readme_websocket_client_works_as_written(
    daphne_server: Any, api_token: str, http: httpx.Client, tmp_path: Path
) -> None:
    """The README's Python client, run as a user would (its URL pointed at this server, and a
    command in its task.create frame because the `shell` agent needs one)."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", readme, re.S)
    assert code is not None
    source = code.group(1).replace("ws://127.0.0.1:8000", daphne_server.ws_url)
    frame = '"task_type": "run"}'
    assert frame in source
    source = source.replace(frame, '"task_type": "run", "input": {"command": "echo readme-ok"}}')
    client = tmp_path / "ws_client.py"
    client.write_text(source)
    session = _session(http)
    http.post(
        f"/api/v1/sessions/{session['id']}/tasks", json={"input": {"command": "echo earlier"}}
    )
    result = subprocess.run(
        [sys.executable, str(client), session["id"]],
        env={**os.environ, "TOKEN": api_token},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "readme-ok" in lines
    assert "earlier" not in lines  # only the task it created
    statuses = [line.split()[1] for line in lines if line.startswith("[")]
    assert statuses[0] == "queued"
    assert statuses[-1] == "succeeded"
