"""The one-hop handler answers a task create before it wakes the executor
(``runtime_project.after_response``): the request's ASGI messages are recorded as a server
would send them, and the executor's channel-layer group (the doorbell of the inline executor)
is read at each one."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.contrib.auth import get_user_model

from runtime_project.handlers import ASGIHandler
from sessions.broadcast import EXECUTOR_GROUP
from sessions.demo import seed_demo_agents
from tests.factories import make_token

pytestmark = pytest.mark.django_db(transaction=True)


async def _call(path: str, token: str, body: dict[str, Any], on_send: Any) -> list[dict[str, Any]]:
    """POST ``body`` to ``path`` through the handler; ``on_send(message)`` runs as each ASGI
    message is sent, before the handler goes on. The client leaves after the first part of
    the body (a stream then ends). Returns the messages."""
    raw = json.dumps(body).encode()
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "client": ("127.0.0.1", 50000), "server": ("testserver", 80),
        "headers": [(b"host", b"testserver"), (b"authorization", f"Bearer {token}".encode()),
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(raw)).encode())],
    }  # fmt: skip
    parts = [{"type": "http.request", "body": raw, "more_body": False}]
    finished = asyncio.Event()
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if parts:
            return parts.pop()
        await finished.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        await on_send(message)
        sent.append(message)
        if message["type"] == "http.response.body":
            finished.set()

    await asyncio.wait_for(ASGIHandler()(scope, receive, send), 60)
    return sent


@pytest.mark.parametrize("stream", [False, True])
async def test_a_task_create_answers_before_it_wakes_the_executor(stream: bool) -> None:
    user = await sync_to_async(get_user_model().objects.create_user)("alice", password="x")
    await sync_to_async(seed_demo_agents)(owner=user)
    token = await sync_to_async(make_token)(user)
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(EXECUTOR_GROUP, channel)
    doorbell = asyncio.ensure_future(layer.receive(channel))  # one read, never cancelled
    at_start: list[bool] = []

    async def nothing(message: dict[str, Any]) -> None:
        pass

    async def look(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            await asyncio.sleep(0.3)  # time for a wake already sent to arrive
            at_start.append(doorbell.done())

    created = await _call("/api/v1/sessions", token, {"agent": "shell"}, nothing)
    session = json.loads(b"".join(m.get("body", b"") for m in created[1:]))
    assert created[0]["status"] == 201, session
    body = {"input": {"command": "true"}, "stream": stream}
    sent = await _call(f"/api/v1/sessions/{session['id']}/tasks", token, body, look)

    assert sent[0]["status"] == (200 if stream else 201)
    assert at_start == [False]  # not woken while the answer was being sent
    woken = await asyncio.wait_for(doorbell, 10)  # then woken, once the handler let go
    assert woken["type"] == "task.queued"
    first = b"".join(m.get("body", b"") for m in sent[1:]).decode()
    task_id = (
        json.loads(first.split("data: ", 1)[1].split("\n")[0])["task_id"]
        if stream
        else (json.loads(first)["id"])
    )
    assert woken["task_id"] == task_id
