from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from sessions.apis import oneshot as oneshot_api
from sessions.models import Session, Task
from tests import factories
from tests.api.helpers import API, error_of


def oneshot(client: Any, **fields: Any) -> Any:
    body = {"agent": "shell", "input": {"command": "echo hi"}, **fields}
    return client.post(f"{API}/oneshot", body, format="json")


@pytest.mark.django_db
def test_a_wait_that_times_out_is_202_with_the_task_location(api_client, agent):
    started = time.monotonic()

    response = oneshot(
        api_client,
        wait_timeout_s=0.3,
        task_type="generate",
        session={"name": "one", "tags": ["x"]},
    )

    assert response.status_code == 202, response.content
    assert time.monotonic() - started >= 0.3
    body = response.json()
    assert body["session"]["name"] == "one"
    assert body["session"]["tags"] == ["x"]
    assert body["session"]["agent"]["slug"] == "shell"
    assert body["task"]["status"] == "queued"
    assert body["task"]["task_type"] == "generate"
    assert body["task"]["session_id"] == body["session"]["id"]
    assert response["Location"] == f"{API}/tasks/{body['task']['id']}"
    assert api_client.get(response["Location"]).json()["id"] == body["task"]["id"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"input": "x"}, "input"),
        ({"mode": "poll"}, "mode"),
        ({"wait_timeout_s": -1}, "wait_timeout_s"),
        ({"wait_timeout_s": 601}, "wait_timeout_s"),
        ({"session": {"tags": "x"}}, "session"),
    ],
)
def test_invalid_input_is_400_and_creates_nothing(api_client, agent, fields, field):
    response = oneshot(api_client, **fields)

    assert field in error_of(response, 400, "invalid_input")["details"]["fields"]
    assert not Session.objects.exists()


@pytest.mark.django_db
def test_input_refused_by_the_agent_schema_leaves_no_session_behind(api_client, user):
    factories.make_agent(user, slug="strict", input_schema={"type": "object", "required": ["q"]})

    response = oneshot(api_client, agent="strict", input={})

    error_of(response, 400, "invalid_input")
    assert not Session.objects.exists()


@pytest.mark.django_db
def test_an_agent_i_cannot_see_is_404(api_client, other_user):
    factories.make_agent(other_user, slug="private")

    error_of(oneshot(api_client, agent="private"), 404, "not_found")


@pytest.mark.django_db
def test_stream_mode_answers_with_an_event_stream(api_client, agent):
    response = oneshot(api_client, mode="stream")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/event-stream")
    assert Task.objects.get().status == "queued"


async def _created_task(timeout: float = 10) -> Task:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = await Task.objects.select_related("session").afirst()
        if task is not None:
            return task
        await asyncio.sleep(0.02)
    raise AssertionError("no task was created")


@pytest.mark.django_db(transaction=True)
async def test_wait_returns_the_result_as_soon_as_the_task_finishes(
    async_client, token, agent, monkeypatch
):
    # Only the task's terminal event can wake the view in time: no periodic re-check.
    monkeypatch.setattr(oneshot_api, "SAFETY_RECHECK_S", 60)
    request = asyncio.ensure_future(
        async_client.post(
            f"{API}/oneshot",
            {"agent": "shell", "input": {"command": "true"}, "wait_timeout_s": 30},
            content_type="application/json",
            headers={"Authorization": f"Bearer {token}"},
        )
    )
    task = await _created_task()
    await asyncio.sleep(0.2)  # let the view subscribe and start waiting
    assert not request.done()

    finished_at = time.monotonic()
    await sync_to_async(factories.finish_task)(task, "succeeded", result={"answer": 42})
    response = await asyncio.wait_for(request, 10)

    assert time.monotonic() - finished_at < 5
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["task"]["id"] == str(task.uuid)
    assert body["task"]["status"] == "succeeded"
    assert body["task"]["result"] == {"answer": 42}
    assert body["session"]["id"] == str(task.session.uuid)


@pytest.mark.django_db(transaction=True)
async def test_a_client_leaving_a_wait_cancels_the_task_when_asked(async_client, token, agent):
    request = asyncio.ensure_future(
        async_client.post(
            f"{API}/oneshot",
            {"agent": "shell", "on_disconnect": "cancel", "wait_timeout_s": 30},
            content_type="application/json",
            headers={"Authorization": f"Bearer {token}"},
        )
    )
    task = await _created_task()
    await asyncio.sleep(0.2)

    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request

    for _ in range(100):
        await task.arefresh_from_db()
        if task.status == "cancelled":
            break
        await asyncio.sleep(0.05)
    assert task.status == "cancelled"
    assert task.error["message"] == "client disconnected"


@pytest.mark.django_db(transaction=True)
async def test_stream_mode_sends_the_tasks_events(async_client, token, agent):
    response = await async_client.post(
        f"{API}/oneshot",
        {"agent": "shell", "mode": "stream"},
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200

    received = ""
    stream = response.streaming_content
    try:
        async with asyncio.timeout(10):
            async for chunk in stream:
                received += chunk.decode() if isinstance(chunk, bytes) else chunk
                if "event: task.status" in received:
                    break
    finally:
        await stream.aclose()

    assert "event: task.status" in received
    assert '"status": "queued"' in received
