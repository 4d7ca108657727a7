"""End to end over a real daphne (its in-process dispatcher, the inline executor): a webhook
registered through the REST API receives a signed ``task.succeeded`` for a command task that
succeeds; the signature is checked by hand per the Standard Webhooks spec."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from sessions.demo import seed_demo_agents
from tests import factories
from tests.integrations.webhooks.conftest import Receiver, verify_signature
from tests.transport.conftest import live_daphne

pytestmark = [pytest.mark.transport]


@pytest.fixture
def live_token(transactional_db: Any) -> str:
    """A token of a user with the demo agents (``shell``), committed for the server process."""
    user = factories.make_user("alice")
    seed_demo_agents(owner=user)
    return factories.make_token(user)


def test_a_succeeded_task_is_delivered_signed(
    transactional_db: Any,
    tmp_path: Path,
    live_token: str,
    receiver: Receiver,
) -> None:
    env = {"WEBHOOK_ALLOW_PRIVATE_TARGETS": "true", "WEBHOOK_DISPATCH_INTERVAL_S": "30"}
    with (
        live_daphne(tmp_path, **env) as server,
        httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {live_token}"}, timeout=30
        ) as http,
    ):
        created = http.post("/api/v1/webhooks", json={
            "url": receiver.url, "event_types": ["task.succeeded"], "agent": "shell",
        })  # fmt: skip
        assert created.status_code == 201, created.text
        secret, webhook_id = created.json()["secret"], created.json()["id"]

        session = http.post("/api/v1/sessions", json={"agent": "shell"}).json()
        task = http.post(
            f"/api/v1/sessions/{session['id']}/tasks",
            json={"input": {"command": "echo webhook-ok"}},
        )
        assert task.status_code == 201, task.text
        task_id = task.json()["id"]
        t0 = time.monotonic()

        # The dispatcher is woken by the commit, not its 30 s poll: this arrives in moments.
        [request] = receiver.wait_for(1, timeout=60)
        received_at = time.time()
        assert time.monotonic() - t0 < 25  # well before the next 30 s poll
        assert verify_signature(secret, request)
        assert abs(received_at - int(request.headers["webhook-timestamp"])) < 30
        event = request.json
        assert event["type"] == "task.succeeded"
        assert event["id"] == request.headers["webhook-id"]
        data = event["data"]
        assert data["task"]["id"] == task_id and data["task"]["status"] == "succeeded"
        assert data["task"]["agent"]["slug"] == "shell"
        assert data["session"]["id"] == session["id"] == data["task"]["session"]
        assert data["task"]["result"]["exit_code"] == 0 and data["task"]["error"] is None
        assert isinstance(data["task"]["usage"], dict)

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            page = http.get(f"/api/v1/webhooks/{webhook_id}/deliveries").json()
            if page["results"] and page["results"][0]["status"] == "succeeded":
                break
            time.sleep(0.1)
        [delivery] = page["results"]
        assert delivery["status"] == "succeeded" and delivery["attempts"][0]["status_code"] == 200
        assert delivery["event_id"] == request.headers["webhook-id"]
        assert delivery["payload"] == event

        # The test ping is sent by its request (a sync view calling async code under daphne).
        tested = http.post(f"/api/v1/webhooks/{webhook_id}/test")
        assert tested.status_code == 200, tested.text
        assert tested.json()["status"] == "succeeded", tested.json()
        ping = receiver.wait_for(2)[1]
        assert ping.json["type"] == "ping" and verify_signature(secret, ping)
    assert secret not in server.read_log()
