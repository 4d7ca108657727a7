"""Agent endpoints on a real daphne (async views, inline executor, local sandbox): a sync
endpoint answers with the finished task, a slow one with 202 + Location, and the per-agent
document fetched over HTTP is a valid OpenAPI 3.1 document."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.integrations.endpoints.conftest import make_greeter, valid_openapi
from tests.transport.conftest import DaphneServer

pytestmark = [pytest.mark.transport]

TERMINAL = {"succeeded", "failed", "cancelled", "timed_out"}


def stdout_of(http: httpx.Client, task_id: str) -> str:
    events = http.get(f"/api/v1/tasks/{task_id}/events").json()
    items = events["events"]
    return "".join(e["data"].get("text", "") for e in items if e["type"] == "process.stdout")


def test_sync_endpoints_wait_for_the_result_or_answer_202(
    daphne_server: DaphneServer, api_user: Any, api_token: str
) -> None:
    make_greeter(api_user)
    auth = {"Authorization": f"Bearer {api_token}"}
    with httpx.Client(base_url=daphne_server.url, headers=auth, timeout=60) as http:
        doc = http.get("/api/agents/greeter/openapi.json")
        assert doc.status_code == 200, doc.text
        assert valid_openapi(doc.json())["servers"] == [{"url": daphne_server.url}]

        done = http.post("/api/agents/greeter/greet", json={"args": ["ada"]})
        assert done.status_code == 200, (done.text, daphne_server.read_log()[-2000:])
        task = done.json()["task"]
        assert task["status"] == "succeeded" and task["result"]["exit_code"] == 0
        assert task["config"]["endpoint"] == "greet"
        assert "Location" not in done.headers
        assert stdout_of(http, task["id"]) == "hello ada\n"

        # `slow` waits 0.5 s, the task takes ~2 s: 202, then the Location has the result.
        started = time.monotonic()
        slow = http.post("/api/agents/greeter/slow", json={"args": ["2"]})
        assert slow.status_code == 202, slow.text
        assert 0.4 < time.monotonic() - started < 2
        location = slow.headers["Location"]
        assert slow.json()["task"]["status"] in {"queued", "running"}
        deadline = time.monotonic() + 30
        while (polled := http.get(location).json())["status"] not in TERMINAL:
            assert time.monotonic() < deadline, polled
            time.sleep(0.2)
        assert polled["status"] == "succeeded"
        assert stdout_of(http, polled["id"]) == "slept 2\n"

        # An async endpoint waits when the caller asks (Prefer: wait), and says so.
        waited = http.post("/api/agents/greeter/nap", json={"args": ["0"]},
                           headers={"Prefer": "wait=30"})  # fmt: skip
        assert waited.status_code == 200, waited.text
        assert waited.headers["Preference-Applied"] == "wait=30"
        assert waited.json()["task"]["status"] == "succeeded"
