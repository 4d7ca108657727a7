"""Token streaming over a real daphne: an llm agent registered through the REST API, a
message sent with the chat shortcut, tokens reaching a WebSocket subscriber one by one while
the (scripted, real-HTTP) model is still producing them; then the same over SSE."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from sessions.runners.scripted_llm import ScriptedLLM, Turn
from tests.transport.sse import iter_sse

pytestmark = [pytest.mark.transport]

TERMINAL = {"succeeded", "failed", "cancelled", "timed_out"}
GAP_S = 0.4  # between two scripted tokens


@pytest.fixture
def llm_daphne(transactional_db: Any, tmp_path: Any) -> Iterator[str]:
    from tests import procs

    port = procs.free_port()
    # The scripted model listens on loopback, which model endpoints may only reach when allowed.
    proc = procs.start_daphne(
        port, tmp_path / "daphne.log", STREAM_HEARTBEAT_S=1, LLM_ENDPOINT_ALLOWED_HOSTS="127.0.0.1"
    )
    try:
        yield f"127.0.0.1:{port}"
    finally:
        procs.stop(proc)


def test_tokens_reach_a_websocket_subscriber_as_they_are_produced(
    llm_daphne: str, api_token: str, llm: ScriptedLLM
) -> None:
    auth = {"Authorization": f"Bearer {api_token}"}
    with httpx.Client(base_url=f"http://{llm_daphne}", headers=auth, timeout=60) as http:
        agent = http.post("/api/v1/agents", json={
            "slug": "chatty", "name": "Chatty", "kind": "llm",
            "spec": {"model": {"base_url": llm.base_url, "name": "scripted-1"},
                     "system_prompt": "Be brief."},
        })  # fmt: skip
        assert agent.status_code == 201, agent.text
        session = http.post("/api/v1/sessions", json={"agent": "chatty"}).json()
        chunks = ["Hel", "lo ", "wor", "ld", "!"]
        llm.add(Turn(chunks=chunks, delay_s=GAP_S))

        url = f"ws://{llm_daphne}/ws/sessions/{session['id']}/"
        with connect(url, additional_headers=auth) as ws:
            sent = http.post(f"/api/v1/sessions/{session['id']}/messages",
                             json={"message": "Say hello."})  # fmt: skip
            assert sent.status_code == 201, sent.text
            task_id = sent.json()["id"]
            arrivals: list[tuple[float, dict[str, Any]]] = []
            while True:
                frame = json.loads(ws.recv(timeout=30))
                if "seq" not in frame:
                    continue
                arrivals.append((time.monotonic(), frame))
                if frame["type"] == "task.status" and frame["data"]["status"] in TERMINAL:
                    break
        assert arrivals[-1][1]["data"]["status"] == "succeeded", arrivals[-1]
        deltas = [(t, f) for t, f in arrivals if f["type"] == "message.delta"]
        completed_at = next(t for t, f in arrivals if f["type"] == "message.completed")
        assert "".join(f["data"]["text"] for _, f in deltas) == "Hello world!"
        # Token by token: each delta arrives on its own, about GAP_S after the previous one,
        # not all together when the reply is complete.
        assert len(deltas) == len(chunks)
        assert completed_at - deltas[0][0] >= (len(chunks) - 2) * GAP_S
        gaps = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(deltas)]
        assert min(gaps) >= GAP_S / 2, gaps

        # The conversation, rebuilt from the log.
        listed = http.get(f"/api/v1/sessions/{session['id']}/messages").json()["messages"]
        assert [(m["role"], m["content"]) for m in listed] == [
            ("user", "Say hello."), ("assistant", "Hello world!"),
        ]  # fmt: skip
        assert all(m["task_id"] == task_id for m in listed)

        # The same shortcut answering with the live stream (SSE) carries the earlier turn.
        llm.add(Turn(chunks=["Again", "."], delay_s=0.05))
        with http.stream("POST", f"/api/v1/sessions/{session['id']}/messages",
                         json={"message": "Once more.", "stream": True}) as response:  # fmt: skip
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            events = []
            for message in iter_sse(response):
                if message["event"] in ("comment", "message"):
                    continue
                events.append(message)
                if (
                    message["event"] == "task.status"
                    and message["data"]["data"]["status"] in TERMINAL
                ):
                    break
        texts = [e["data"]["data"]["text"] for e in events if e["event"] == "message.delta"]
        assert "".join(texts) == "Again."
        assert llm.requests[-1]["messages"][-3:] == [
            {"role": "user", "content": "Say hello."},
            {"role": "assistant", "content": "Hello world!"},
            {"role": "user", "content": "Once more."},
        ]

        bad = http.post(f"/api/v1/sessions/{session['id']}/messages", json={"message": ""})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_input"
