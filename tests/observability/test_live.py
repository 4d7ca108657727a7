"""A real daphne with LOG_FORMAT=json: a shell task over an open WebSocket shows up in /metrics."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect

from tests.transport.conftest import api_token, api_user, live_daphne  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.transport, pytest.mark.sandbox]


def _metrics(client: httpx.Client) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def test_websocket_task_and_duration_visible_in_metrics(
    tmp_path: Path,
    api_token: str,  # noqa: F811
) -> None:
    with (
        live_daphne(tmp_path, LOG_FORMAT="json", STREAM_HEARTBEAT_S=1) as server,
        httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {api_token}"}, timeout=60
        ) as http,
    ):
        session = http.post("/api/v1/sessions", json={"agent": "shell"}).json()
        url = f"{server.ws_url}/ws/sessions/{session['id']}/"
        with connect(url, additional_headers={"Authorization": f"Bearer {api_token}"}) as ws:
            assert json.loads(ws.recv(timeout=30))["type"] == "session.created"
            sockets = ("agent_runtime_websocket_connections", frozenset({("consumer", "session")}))
            assert _metrics(http)[sockets] >= 1
            task = http.post(
                f"/api/v1/sessions/{session['id']}/tasks", json={"input": {"command": "echo hi"}}
            ).json()
            deadline = time.monotonic() + 60
            while http.get(f"/api/v1/tasks/{task['id']}").json()["status"] != "succeeded":
                assert time.monotonic() < deadline, "the task did not finish"
                time.sleep(0.2)
        after = _metrics(http)
        succeeded = frozenset({("status", "succeeded"), ("agent", "shell")})
        assert after[("agent_runtime_tasks", succeeded)] >= 1
        count = ("agent_runtime_task_duration_seconds_count", frozenset({("status", "succeeded")}))
        assert after[count] >= 1
        assert after[("agent_runtime_events_total", frozenset({("type", "process")}))] >= 1
        deadline = time.monotonic() + 10
        while _metrics(http)[sockets] != 0:  # the disconnect is handled asynchronously
            assert time.monotonic() < deadline
            time.sleep(0.1)
        log_lines = [line for line in server.read_log().splitlines() if line.startswith("{")]
    records = [json.loads(line) for line in log_lines]
    for record in records:  # whatever the server logged is JSON with the usual fields
        assert {"event", "level", "logger", "timestamp"} <= record.keys()
    # the sandbox start is logged during the run: it carries the task's and session's ids
    assert any(
        r.get("task_id") == task["id"] and r.get("session_id") == session["id"] for r in records
    )
