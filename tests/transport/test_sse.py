"""SSE over a real daphne: live delivery, resume with Last-Event-ID, heartbeats, errors."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.transport.sse import iter_sse

pytestmark = [pytest.mark.transport, pytest.mark.sandbox]

TERMINAL = {"succeeded", "failed", "cancelled", "timed_out"}


def _session(http: httpx.Client, agent: str = "shell") -> dict[str, Any]:
    response = http.post("/api/v1/sessions", json={"agent": agent, "name": "sse"})
    assert response.status_code == 201, response.text
    return response.json()


def _task(http: httpx.Client, session_id: str, command: str, **body: Any) -> dict[str, Any]:
    response = http.post(
        f"/api/v1/sessions/{session_id}/tasks", json={"input": {"command": command}, **body}
    )
    assert response.status_code == 201, response.text
    return response.json()


def _all_task_events(http: httpx.Client, task_id: str) -> list[dict[str, Any]]:
    response = http.get(f"/api/v1/tasks/{task_id}/events", params={"limit": 1000})
    assert response.status_code == 200, response.text
    return response.json()["events"]


def test_task_stream_delivers_everything_and_ends(http: httpx.Client) -> None:
    session = _session(http)
    task = _task(http, session["id"], "for i in 1 2 3; do echo line-$i; sleep 0.2; done")
    received = []
    with http.stream("GET", f"/api/v1/tasks/{task['id']}/stream") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for message in iter_sse(response):
            if message["event"] == "end":
                break
            if message["event"] != "comment" and "id" in message:
                received.append(message)
    envelopes = [m["data"] for m in received]
    assert [int(m["id"]) for m in received] == [e["seq"] for e in envelopes]
    assert envelopes[-1]["type"] == "task.status"
    assert envelopes[-1]["data"]["status"] == "succeeded"
    text = "".join(e["data"]["text"] for e in envelopes if e["type"] == "process.stdout")
    assert text == "line-1\nline-2\nline-3\n"
    assert envelopes == _all_task_events(http, task["id"])


def test_streaming_create_sends_the_queued_status_first_then_the_rest_once(
    http: httpx.Client,
) -> None:
    """The answer of ``stream: true`` starts with the ``queued`` status the create wrote (sent
    without reading it back) and goes on from the log: every event of the task once, in
    order, as the log has them."""
    session = _session(http)
    body = {"input": {"command": "echo a; sleep 0.2; echo b"}, "stream": True}
    with http.stream("POST", f"/api/v1/sessions/{session['id']}/tasks", json=body) as response:
        assert response.status_code == 200, response.read()
        received = [m for m in iter_sse(response) if "id" in m and m["event"] != "end"]
    envelopes = [m["data"] for m in received]
    assert [int(m["id"]) for m in received] == [e["seq"] for e in envelopes]
    assert (envelopes[0]["type"], envelopes[0]["data"]["status"]) == ("task.status", "queued")
    assert envelopes[-1]["data"]["status"] == "succeeded"
    assert envelopes == _all_task_events(http, envelopes[0]["task_id"])


def test_resume_with_last_event_id_loses_and_duplicates_nothing(http: httpx.Client) -> None:
    session = _session(http)
    task = _task(http, session["id"], "for i in $(seq 1 40); do echo n$i; sleep 0.03; done")
    first: list[dict[str, Any]] = []
    with http.stream("GET", f"/api/v1/sessions/{session['id']}/events/stream") as response:
        for message in iter_sse(response):
            if "id" in message:
                first.append(message["data"])
            if len(first) >= 6:
                break  # drop the connection mid-run
    last_id = first[-1]["seq"]
    rest: list[dict[str, Any]] = []
    headers = {"Last-Event-ID": str(last_id)}
    with http.stream("GET", f"/api/v1/tasks/{task['id']}/stream", headers=headers) as response:
        for message in iter_sse(response):
            if message["event"] == "end":
                break
            if "id" in message:
                rest.append(message["data"])
    got = [e for e in first if e["task_id"] == task["id"]] + rest
    seqs = [e["seq"] for e in got]
    assert len(seqs) == len(set(seqs)), "an event was delivered twice"
    assert got == _all_task_events(http, task["id"]), "an event was lost or reordered"


def test_after_query_parameter_replays_from_a_cursor(http: httpx.Client) -> None:
    session = _session(http)
    task = _task(http, session["id"], "echo a; echo b")
    with http.stream("GET", f"/api/v1/tasks/{task['id']}/stream") as response:
        everything = [m["data"] for m in iter_sse(response) if "id" in m]
    cursor = everything[2]["seq"]
    with http.stream(
        "GET", f"/api/v1/tasks/{task['id']}/stream", params={"after": cursor}
    ) as response:
        replayed = [m["data"] for m in iter_sse(response) if "id" in m]
    assert replayed == [e for e in everything if e["seq"] > cursor]


def test_quiet_stream_gets_heartbeats(http: httpx.Client) -> None:
    session = _session(http)
    started = time.monotonic()
    with http.stream("GET", f"/api/v1/sessions/{session['id']}/events/stream") as response:
        for message in iter_sse(response):
            if message["event"] == "comment" and message["data"].startswith("heartbeat"):
                break
    assert time.monotonic() - started < 5  # the test server beats every second


def test_stream_errors_have_the_error_shape(http: httpx.Client, daphne_server: Any) -> None:
    anon = httpx.get(
        f"{daphne_server.url}/api/v1/sessions/00000000-0000-0000-0000-000000000000/events/stream"
    )
    assert anon.status_code == 401
    assert anon.json()["error"]["code"] == "not_authenticated"
    missing = http.get("/api/v1/tasks/00000000-0000-0000-0000-000000000000/stream")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    session = _session(http)
    bad = http.get(
        f"/api/v1/sessions/{session['id']}/events/stream", headers={"Last-Event-ID": "abc"}
    )
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid_input"


def test_streaming_create_with_on_disconnect_cancel(http: httpx.Client) -> None:
    session = _session(http)
    body = {
        "input": {"command": "echo started; sleep 60"},
        "stream": True,
        "on_disconnect": "cancel",
    }
    task_id = None
    with http.stream("POST", f"/api/v1/sessions/{session['id']}/tasks", json=body) as response:
        assert response.status_code == 200
        for message in iter_sse(response):
            if "id" in message:
                task_id = message["data"]["task_id"]
                if message["data"]["type"] == "process.stdout":
                    break
    assert task_id
    deadline = time.monotonic() + 30
    while True:
        status = http.get(f"/api/v1/tasks/{task_id}").json()["status"]
        if status in TERMINAL:
            break
        assert time.monotonic() < deadline, f"still {status}"
        time.sleep(0.1)
    assert status == "cancelled"
