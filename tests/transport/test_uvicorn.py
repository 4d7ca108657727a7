"""The essential transport behaviours under uvicorn, as ``make serve`` runs it
(``python -m runtime_project.serve``): a task created over REST watched over WebSocket and SSE
to its end with gapless seqs and heartbeats, reconnecting with ``after``/``Last-Event-ID``; the
SIGTERM drain (``stream.reconnect`` then close 1012, SSE ended cleanly, the running task
finished); the ``ADMIN_PORT`` split on two ports of one process; ``X-Forwarded-For`` not
trusted. The full transport suite runs under daphne (tests/transport/conftest.py)."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests import procs
from tests.transport.sse import iter_sse

pytestmark = [pytest.mark.transport, pytest.mark.sandbox]

TERMINAL = {"succeeded", "failed", "cancelled", "timed_out"}
# Prints n1..n6 over ~1.5 s: long enough for heartbeats (1 s) and for a reconnect mid-run.
TICKS = "for i in 1 2 3 4 5 6; do echo n$i; sleep 0.25; done"


def _get(url: str, **kwargs: Any) -> httpx.Response:
    return httpx.get(url, timeout=30, **kwargs)  # a loaded machine: the first page may be slow


def _post(url: str, **kwargs: Any) -> httpx.Response:
    return httpx.post(url, timeout=30, **kwargs)


class Live:
    def __init__(self, port: int, proc: subprocess.Popen[bytes], log: Path, token: str) -> None:
        self.port, self.proc, self.log = port, proc, log
        self.url, self.ws_url = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}"
        self.headers = {"Authorization": f"Bearer {token}"}

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers, timeout=30)


@pytest.fixture
def uvicorn_server(transactional_db: Any, tmp_path: Path, api_token: str) -> Iterator[Live]:
    """uvicorn on the test DB; anonymous requests limited to 2/min (the X-Forwarded-For test)."""
    port, log = procs.free_port(), tmp_path / "uvicorn.log"
    proc = procs.start_server("uvicorn", port, log, STREAM_HEARTBEAT_S=1, THROTTLE_ANON="2/m")
    try:
        yield Live(port, proc, log, api_token)
    finally:
        procs.stop(proc)


def _task(http: httpx.Client, command: str) -> tuple[str, str]:
    session = http.post("/api/v1/sessions", json={"agent": "shell"})
    assert session.status_code == 201, session.text
    sid = session.json()["id"]
    task = http.post(f"/api/v1/sessions/{sid}/tasks", json={"input": {"command": command}})
    assert task.status_code == 201, task.text
    return sid, task.json()["id"]


def _ws_frames(url: str, headers: dict[str, str], *, stop_after: int | None = None) -> Any:
    """Frames of a task stream until ``stream.end`` (or ``stop_after`` events), and the close
    code (None when this side hung up)."""
    frames: list[dict[str, Any]] = []
    with connect(url, additional_headers=headers) as ws:
        while True:
            frame = json.loads(ws.recv(timeout=30))
            frames.append(frame)
            if frame["type"] == "stream.end":
                with pytest.raises(ConnectionClosed):
                    ws.recv(timeout=10)
                return frames, ws.close_code
            if stop_after is not None and sum("seq" in f for f in frames) == stop_after:
                return frames, None


def _read_until_closed(ws: Any, frames: list[dict[str, Any]]) -> None:
    for _ in range(10_000):  # bounded: a stream of a few events, then the close
        frames.append(json.loads(ws.recv(timeout=10)))


def _events(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [f for f in frames if "seq" in f]


def test_a_task_is_watched_over_websocket_and_sse_with_reconnects(
    uvicorn_server: Live,
) -> None:
    """Also: X-Forwarded-For is not trusted (one server start for both; see the end)."""
    server = uvicorn_server
    with server.http() as http:
        sid, task_id = _task(http, TICKS)
        # WebSocket: 5 events, hang up, resume with ?after=, then the rest until stream.end.
        url = f"{server.ws_url}/ws/tasks/{task_id}/"
        first, _ = _ws_frames(f"{url}?after=0", server.headers, stop_after=5)
        after = _events(first)[-1]["seq"]
        rest, close_code = _ws_frames(f"{url}?after={after}", server.headers)
        # SSE: the first 5 events, then resume with Last-Event-ID until `end`.
        sse: list[dict[str, Any]] = []
        with http.stream("GET", f"/api/v1/tasks/{task_id}/stream") as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            for message in iter_sse(response):
                sse.append(message)
                if sum("id" in m for m in sse) == 5:
                    break
        last_id = [m for m in sse if "id" in m][-1]["id"]
        with http.stream(
            "GET", f"/api/v1/tasks/{task_id}/stream", headers={"Last-Event-ID": last_id}
        ) as response:
            for message in iter_sse(response):
                sse.append(message)
                if message["event"] == "end":
                    break
        log = http.get(f"/api/v1/tasks/{task_id}/events", params={"limit": 1000}).json()["events"]

    assert log[-1]["type"] == "task.status" and log[-1]["data"]["status"] == "succeeded"
    seqs = [e["seq"] for e in log]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # gapless
    assert _events(first) + _events(rest) == log  # exactly once, in order, across the reconnect
    assert close_code == 1000
    assert [int(m["id"]) for m in sse if "id" in m] == seqs
    assert [m["data"] for m in sse if "id" in m] == log
    out = "".join(e["data"]["text"] for e in log if e["type"] == "process.stdout")
    assert out == "".join(f"n{i}\n" for i in range(1, 7))
    # A session stream replays the same log, then beats while the session is idle (1 s).
    replay: list[dict[str, Any]] = []
    session_url = f"{server.ws_url}/ws/sessions/{sid}/?after=0"
    with connect(session_url, additional_headers=server.headers) as ws:
        while not replay or replay[-1].get("type") != "stream.heartbeat":
            replay.append(json.loads(ws.recv(timeout=10)))
            assert len(replay) < 100, replay
    assert [f for f in _events(replay) if f.get("task_id") == task_id] == log
    assert replay[-1]["last_seq"] == log[-1]["seq"]
    with server.http() as http, http.stream("GET", f"/api/v1/sessions/{sid}/events/stream") as r:
        for message in iter_sse(r):
            if message["event"] == "comment":
                assert message["data"] == f"heartbeat {log[-1]['seq']}"
                break

    # uvicorn trusts proxy headers from 127.0.0.1 by default; served as `make serve` does, the
    # anonymous rate limit (2/min here) keys on the peer address, as under daphne. Three fresh
    # forwarded addresses: trusted, each would be a first request (200); the third from this
    # peer is refused (earlier tests on a shared Redis cache may have used up the bucket).
    codes = [
        _get(f"{server.url}/api/docs/", headers={"X-Forwarded-For": f"203.0.113.{n}"}).status_code
        for n in random.sample(range(1, 255), 3)
    ]
    assert codes[2] == 429, codes


def test_sigterm_tells_streams_to_reconnect_and_drains_the_running_task(
    uvicorn_server: Live,
) -> None:
    server = uvicorn_server
    with server.http() as http:
        sid, _ = _task(http, TICKS)
    sse: list[dict[str, Any]] = []
    sse_error: list[BaseException] = []

    def read_sse() -> None:
        try:
            with (
                server.http() as client,
                client.stream("GET", f"/api/v1/sessions/{sid}/events/stream") as response,
            ):
                sse.extend(iter_sse(response))  # ends when the server ends the stream
        except BaseException as exc:  # reported by the assertion below
            sse_error.append(exc)

    reader = threading.Thread(target=read_sse, daemon=True)
    reader.start()
    frames: list[dict[str, Any]] = []
    with connect(f"{server.ws_url}/ws/sessions/{sid}/", additional_headers=server.headers) as ws:
        while not any(f.get("type") == "process.stdout" for f in frames):
            frames.append(json.loads(ws.recv(timeout=30)))
        server.proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        with pytest.raises(ConnectionClosed):
            _read_until_closed(ws, frames)
        closed_after = time.monotonic() - t0
        close_code = ws.close_code
    server.proc.wait(30)  # the task (~1.5 s) finishes inside TASK_DRAIN_S, then the server exits
    reader.join(10)

    reconnect = frames[-1]
    assert reconnect["type"] == "stream.reconnect", frames[-3:]
    assert reconnect["last_seq"] == _events(frames)[-1]["seq"]
    assert close_code == 1012
    assert closed_after < 3, "the streams are told before the executor drains"
    assert server.proc.returncode == 0, server.log.read_text()[-3000:]
    assert not sse_error, sse_error  # a clean end of the SSE body, not a cut connection
    assert not reader.is_alive()
    events = [m for m in sse if "id" in m]
    assert (
        events[-1]["event"] == "task.status" and events[-1]["data"]["data"]["status"] == "succeeded"
    )
    assert "Exception in ASGI application" not in server.log.read_text()


def test_admin_port_is_served_by_the_same_process(
    transactional_db: Any, tmp_path: Path, api_token: str
) -> None:
    api_port, admin_port = procs.free_port(), procs.free_port()
    proc = procs.start_server("uvicorn", api_port, tmp_path / "uvicorn.log", admin_port=admin_port)
    try:
        api, admin = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{admin_port}"
        assert _get(f"{admin}/admin/login/").status_code == 200
        assert _get(f"{admin}/health").json()["server"]["admin_port"] == admin_port
        static = _get(f"{admin}/static/admin/css/base.css")
        assert static.status_code == 200 and static.headers["content-type"].startswith("text/css")
        refused = _get(f"{admin}/api/v1/agents")
        assert refused.status_code == 404 and refused.json()["error"]["code"] == "not_found"
        assert _post(f"{admin}/mcp", json={}).status_code == 404
        with pytest.raises(InvalidStatus) as refused_ws:  # closed before accept: HTTP 403
            connect(f"ws://127.0.0.1:{admin_port}/ws/runtimes/")
        assert refused_ws.value.response.status_code == 403

        assert _get(f"{api}/admin/login/").status_code == 404
        bearer = {"Authorization": f"Bearer {api_token}"}
        assert _get(f"{api}/api/v1/agents", headers=bearer).status_code == 200
        # /mcp is mounted on the API port (the SDK's app: 401 with its discovery header).
        mcp = _post(f"{api}/mcp", json={})
        assert mcp.status_code == 401 and "resource_metadata" in mcp.headers["www-authenticate"]
    finally:
        procs.stop(proc)
