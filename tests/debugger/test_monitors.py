"""Monitors (issue 10, item 4): the REST API (owner only), ``X-MONITOR-ID``/``X-DEBUG-RUN`` on the
run-starting endpoints, the mirror projector (one channel-layer message per batch), and, on a
live daphne, a console watching ``/ws/monitor/{id}/`` while runs started through the OpenAI API
(the official SDK) and an agent endpoint stream into it."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import websockets.sync.client as ws_client
from channels.layers import get_channel_layer
from rest_framework.test import APIClient

from debugger.models import Monitor
from debugger.monitors import monitor_group
from sessions.models import Task
from sessions.runners.scripted_llm import ScriptedLLM, Turn
from tests import factories
from tests.transport.conftest import DaphneServer, live_daphne

GAP_S = 0.3


@pytest.fixture
def alice(db: Any) -> Any:
    return factories.make_user("alice")


@pytest.fixture
def bob(db: Any) -> Any:
    return factories.make_user("bob")


def client_of(user: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {factories.make_token(user)}")
    return client


# REST ------------------------------------------------------------------------------------------


def test_monitor_crud_is_owner_only(alice: Any, bob: Any) -> None:
    api, stranger = client_of(alice), client_of(bob)
    created = api.post("/api/v1/monitors", {"name": "console"}, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    mid = body["id"]
    assert body["name"] == "console" and body["team"] is None
    assert body["websocket"] == f"/ws/monitor/{mid}/"

    assert [m["id"] for m in api.get("/api/v1/monitors").json()["results"]] == [mid]
    assert api.get(f"/api/v1/monitors/{mid}").json()["id"] == mid
    assert stranger.get("/api/v1/monitors").json()["results"] == []
    for method in ("get", "delete"):
        refused = getattr(stranger, method)(f"/api/v1/monitors/{mid}")
        assert refused.status_code == 404
        assert refused.json()["error"]["code"] == "monitor_not_found"
    assert stranger.get(f"/api/v1/monitors/{mid}/tasks").status_code == 404
    assert api.get("/api/v1/monitors/not-a-uuid").status_code == 404

    assert api.delete(f"/api/v1/monitors/{mid}").status_code == 204
    assert api.get(f"/api/v1/monitors/{mid}").status_code == 404
    assert not Monitor.objects.exists()


def test_a_monitor_team_must_be_one_of_the_owners(alice: Any, bob: Any) -> None:
    api = client_of(alice)
    team = factories.team_of(alice)
    ok = api.post("/api/v1/monitors", {"team": str(team.uuid)}, format="json")
    assert ok.status_code == 201 and ok.json()["team"]["id"] == str(team.uuid)
    foreign = api.post(
        "/api/v1/monitors", {"team": str(factories.team_of(bob).uuid)}, format="json"
    )
    assert foreign.status_code == 404


# Headers on run-starting requests ------------------------------------------------------------


def test_x_monitor_id_attaches_the_run_only_for_the_owner_or_its_team(alice: Any, bob: Any) -> None:
    monitor = Monitor.objects.create(owner=alice, name="m")
    session = factories.make_session(alice)
    api = client_of(alice)
    url = f"/api/v1/sessions/{session.uuid}/tasks"
    task_input = {"input": {"command": "true"}}

    made = api.post(url, task_input, format="json", HTTP_X_MONITOR_ID=str(monitor.uuid))
    assert made.status_code == 201, made.content
    assert made.json()["config"]["monitor_id"] == str(monitor.uuid)
    listed = api.get(f"/api/v1/monitors/{monitor.uuid}/tasks").json()
    assert [t["id"] for t in listed["results"]] == [made.json()["id"]]
    assert listed["count"] == 1

    # Bob's own session, alice's monitor: refused, and no task is created.
    bobs = factories.make_session(bob)
    refused = client_of(bob).post(
        f"/api/v1/sessions/{bobs.uuid}/tasks", task_input, format="json",
        HTTP_X_MONITOR_ID=str(monitor.uuid),
    )  # fmt: skip
    assert refused.status_code == 404, refused.content
    assert refused.json()["error"]["code"] == "monitor_not_found"
    assert not Task.objects.filter(session=bobs).exists()
    # A body cannot attach a run either (the access check is the header's).
    body_only = client_of(bob).post(
        f"/api/v1/sessions/{bobs.uuid}/tasks",
        {**task_input, "config": {"monitor_id": str(monitor.uuid)}},
        format="json",
    )
    assert body_only.status_code == 201 and "monitor_id" not in body_only.json()["config"]

    # A monitor of alice's team accepts bob's runs once he is a member.
    team = factories.team_of(alice)
    shared = Monitor.objects.create(owner=alice, team=team)
    factories.add_member(team, bob)
    allowed = client_of(bob).post(
        f"/api/v1/sessions/{bobs.uuid}/tasks", task_input, format="json",
        HTTP_X_MONITOR_ID=str(shared.uuid),
    )  # fmt: skip
    assert allowed.status_code == 201, allowed.content
    assert allowed.json()["config"]["monitor_id"] == str(shared.uuid)


def test_debug_headers_set_config_debug(alice: Any) -> None:
    session = factories.make_session(alice)
    api = client_of(alice)
    url = f"/api/v1/sessions/{session.uuid}/tasks"

    def config(headers: dict[str, Any], body: dict[str, Any] | None = None) -> Any:
        made = api.post(
            url, {"input": {"command": "true"}, "config": body or {}}, format="json", **headers
        )
        assert made.status_code == 201, made.content
        return made.json()["config"]

    assert config({"HTTP_X_DEBUG_RUN": "true"})["debug"] is True
    assert config({"HTTP_X_DEBUG_RUN": "1"})["debug"] is True
    assert config({"HTTP_X_FORCE_DEBUGGER": "yes"})["debug"] is True
    assert config({"HTTP_X_DEBUG_RUN": "false"}, {"debug": True})["debug"] is False
    assert "debug" not in config({})
    # X-FORCE-AGENT-RUNNER wins over every debug request; a debug object keeps its options.
    forced = config(
        {"HTTP_X_DEBUG_RUN": "true", "HTTP_X_FORCE_AGENT_RUNNER": "true"},
        {"debug": {"pause_timeout_s": 5}},
    )
    assert forced["debug"] == {"pause_timeout_s": 5, "enabled": False}
    bad = api.post(url, {"input": {"command": "true"}}, format="json", HTTP_X_DEBUG_RUN="maybe")
    assert bad.status_code == 400


def test_messages_and_oneshot_read_the_headers_too(alice: Any, bob: Any) -> None:
    monitor = Monitor.objects.create(owner=alice)
    agent = factories.make_agent(alice)
    api = client_of(alice)
    one = api.post(
        "/api/v1/oneshot",
        {"agent": str(agent.uuid), "input": {"command": "true"}, "wait_timeout_s": 0},
        format="json", HTTP_X_MONITOR_ID=str(monitor.uuid), HTTP_X_DEBUG_RUN="true",
    )  # fmt: skip
    assert one.status_code in (200, 202), one.content
    assert one.json()["task"]["config"]["monitor_id"] == str(monitor.uuid)
    assert one.json()["task"]["config"]["debug"] is True
    session_id = one.json()["session"]["id"]
    msg = api.post(
        f"/api/v1/sessions/{session_id}/messages", {"message": "hi"}, format="json",
        HTTP_X_MONITOR_ID=str(monitor.uuid),
    )  # fmt: skip
    assert msg.status_code == 201, msg.content
    assert msg.json()["config"]["monitor_id"] == str(monitor.uuid)

    bobs_agent = factories.make_agent(bob)
    refused = client_of(bob).post(
        "/api/v1/oneshot", {"agent": str(bobs_agent.uuid), "input": {"command": "true"}},
        format="json", HTTP_X_MONITOR_ID=str(monitor.uuid),
    )  # fmt: skip
    assert refused.status_code == 404
    assert refused.json()["error"]["code"] == "monitor_not_found"
    assert not Task.objects.filter(session__owner=bob).exists()


def test_integration_runs_read_the_headers(alice: Any, bob: Any) -> None:
    """``integrations.runs.run_start`` (the OpenAI API, MCP, ChatGPT, Alexa, agent endpoints)
    applies the headers of the request it is given."""
    from types import SimpleNamespace

    from integrations.runs import run_start
    from runtime_project.exceptions import NotFound

    monitor = Monitor.objects.create(owner=alice)
    agent = factories.make_agent(alice)
    request = SimpleNamespace(
        headers={"x-monitor-id": str(monitor.uuid), "x-debug-run": "true"},
        user=alice, META={},
    )  # fmt: skip
    run = run_start(user=alice, agent=agent, integration="mcp", input={"command": "true"},
                    request=request)  # fmt: skip
    assert run.task.config["monitor_id"] == str(monitor.uuid)
    assert run.task.config["debug"] is True and run.task.config["integration"] == "mcp"
    with pytest.raises(NotFound) as refused:
        run_start(
            user=bob, agent=factories.make_agent(bob), integration="mcp",
            input={"command": "true"}, request=SimpleNamespace(headers=request.headers),
        )  # fmt: skip
    assert refused.value.code == "monitor_not_found"


# The projector ---------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_the_projector_publishes_one_message_per_batch_to_the_monitor_group() -> None:
    from channels.db import database_sync_to_async

    from sessions.services.events import EventDraft, events_append

    def setup() -> tuple[Any, Any, Any, Any]:
        alice = factories.make_user("alice")
        monitor = Monitor.objects.create(owner=alice)
        session = factories.make_session(alice)
        mirrored = factories.make_task(session, config={"monitor_id": str(monitor.uuid)})
        plain = factories.make_task(session)  # its events stay out of the monitor
        return monitor, session, mirrored, plain

    monitor, session, mirrored, plain = await database_sync_to_async(setup)()
    layer = get_channel_layer()
    channel = await layer.new_channel("test.")
    await layer.group_add(monitor_group(monitor.uuid), channel)
    drafts = [
        EventDraft(type="log", data={"n": i}, task_id=t.pk, task_uuid=str(t.uuid))
        for i, t in enumerate([mirrored, plain, mirrored])
    ]
    saved = await database_sync_to_async(events_append)(session=session, drafts=drafts)

    message = await asyncio.wait_for(layer.receive(channel), 10)
    assert message["type"] == "monitor.events"
    assert message["session_id"] == str(session.uuid)
    events = message["events"]
    assert [e["seq"] for e in events] == [saved[0].seq, saved[2].seq]
    assert {e["task_id"] for e in events} == {str(mirrored.uuid)}
    assert [e["data"]["n"] for e in events] == [0, 2]
    with pytest.raises(TimeoutError):  # one message per batch
        await asyncio.wait_for(layer.receive(channel), 0.5)
    await layer.group_discard(monitor_group(monitor.uuid), channel)


# Live: a console watching a monitor ----------------------------------------------------------


def llm_spec(llm: ScriptedLLM) -> dict[str, Any]:
    return {"model": {"base_url": llm.base_url, "name": "scripted-1"}, "system_prompt": "Be brief."}


@pytest.fixture
def live(transactional_db: Any, tmp_path: Path, llm: ScriptedLLM) -> Iterator[DaphneServer]:
    with live_daphne(
        tmp_path, STREAM_HEARTBEAT_S=1, LLM_ENDPOINT_ALLOWED_HOSTS="127.0.0.1"
    ) as server:
        yield server


class Console:
    """A websocket client of ``/ws/monitor/{id}/`` reading frames in a thread."""

    def __init__(self, server: DaphneServer, monitor_id: str, token: str, query: str = "") -> None:
        self.ws = ws_client.connect(
            f"{server.ws_url}/ws/monitor/{monitor_id}/{query}",
            additional_headers={"Authorization": f"Bearer {token}"},
            open_timeout=30,
        )
        self.frames: list[dict[str, Any]] = []
        self.closed: int | None = None
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for raw in self.ws:
                self.frames.append(json.loads(raw))
        except Exception:
            pass
        self.closed = self.ws.close_code

    def wait_for(self, predicate: Any, timeout: float = 60) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.frames):
                return self.frames
            if self.closed is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"timed out; frames: {self.frames[-10:]}, closed: {self.closed}")

    def close(self) -> None:
        self.ws.close()
        self.thread.join(5)


def finished(task_id: str) -> Any:
    def check(frames: list[dict[str, Any]]) -> bool:
        return any(
            f.get("task_id") == task_id
            and f["type"] == "task.status"
            and f["data"].get("status") == "succeeded"
            for f in frames
        )

    return check


def of_task(frames: list[dict[str, Any]], task_id: str) -> list[dict[str, Any]]:
    return [f for f in frames if f.get("task_id") == task_id and "seq" in f]


def test_a_console_sees_runs_started_through_the_openai_api_and_an_agent_endpoint(
    live: DaphneServer, llm: ScriptedLLM
) -> None:
    alice, bob = factories.make_user("alice"), factories.make_user("bob")
    factories.make_agent(alice, slug="chatty", kind="llm", spec=llm_spec(llm), is_public=True)
    token, bobs_token = factories.make_token(alice), factories.make_token(bob)
    monitor = Monitor.objects.create(owner=alice, name="console")
    mid = str(monitor.uuid)

    # A stranger may not subscribe (the session streams' 4404), nor attach runs.
    stranger = Console(live, mid, bobs_token)
    deadline = time.monotonic() + 10
    while stranger.closed is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stranger.closed == 4404 and stranger.frames[0]["error"]["code"] == "monitor_not_found"

    console = Console(live, mid, token)
    console.wait_for(lambda frames: any(f["type"] == "monitor.caught_up" for f in frames))

    llm.add(Turn(chunks=["Hello", " from", " the API."], delay_s=GAP_S))
    client = openai.OpenAI(base_url=f"{live.url}/v1", api_key=token, max_retries=0, timeout=60)
    raw = client.chat.completions.with_raw_response.create(
        model="chatty", messages=[{"role": "user", "content": "hi"}],
        extra_headers={"X-MONITOR-ID": mid},
    )  # fmt: skip
    assert raw.parse().choices[0].message.content == "Hello from the API."
    api_task = raw.headers["X-Task-Id"]
    console.wait_for(finished(api_task))

    llm.add(Turn(chunks=["Endpoint", " answer."], delay_s=GAP_S))
    with httpx.Client(base_url=live.url, timeout=60) as http:
        called = http.post(
            "/api/agents/chatty/run", json={"message": "hello"},
            headers={"Authorization": f"Bearer {token}", "X-MONITOR-ID": mid,
                     "Prefer": "wait=30"},
        )  # fmt: skip
        assert called.status_code in (200, 202), called.text
        endpoint_task = called.json()["task"]["id"]
        console.wait_for(finished(endpoint_task))

        # A stranger's run (the agent is public) with the header is refused, in the
        # integration's error shape.
        with pytest.raises(openai.NotFoundError) as refused:
            openai.OpenAI(
                base_url=f"{live.url}/v1", api_key=bobs_token, max_retries=0, timeout=60
            ).chat.completions.create(
                model="chatty", messages=[{"role": "user", "content": "hi"}],
                extra_headers={"X-MONITOR-ID": mid},
            )  # fmt: skip
        assert refused.value.body["code"] == "monitor_not_found", refused.value.body  # type: ignore[index]
        assert Task.objects.count() == 2

    frames = console.frames
    for task_id, text in ((api_task, "Hello from the API."), (endpoint_task, "Endpoint answer.")):
        announced = [
            f for f in frames if f["type"] == "monitor.task" and f["task"]["id"] == task_id
        ]
        assert len(announced) == 1
        events = of_task(frames, task_id)
        assert frames.index(announced[0]) < frames.index(events[0])
        seqs = [e["seq"] for e in events]
        assert seqs == sorted(set(seqs)), seqs  # in seq order, no duplicates
        statuses = [e["data"]["status"] for e in events if e["type"] == "task.status"]
        assert statuses[0] in ("queued", "running") and "running" in statuses
        assert statuses[-1] == "succeeded"
        deltas = "".join(e["data"].get("text", "") for e in events if e["type"] == "message.delta")
        assert deltas == text
        assert any(e["type"] == "message.completed" for e in events)
    assert any(f["type"] == "stream.heartbeat" for f in frames)  # STREAM_HEARTBEAT_S=1
    console.close()

    # A console opened later catches up on runs that finished since `since`.
    late = Console(live, mid, token, query=f"?since={time.time() - 300:.0f}")
    caught = late.wait_for(lambda fs: any(f["type"] == "monitor.caught_up" for f in fs))
    assert {f["task"]["id"] for f in caught if f["type"] == "monitor.task"} == {
        api_task,
        endpoint_task,
    }
    late.ws.send(json.dumps({"type": "ping", "request_id": "p1"}))
    late.wait_for(lambda fs: any(f["type"] == "pong" and f["request_id"] == "p1" for f in fs))
    late.close()
