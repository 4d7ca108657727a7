"""Faults end to end (issue 13): each has an asserted outcome, and nothing the task emitted is
lost. Everything goes through the API of a real daphne on the test database, with real
bubblewrap sandboxes and real worker processes. docs/reliability.md maps every fault to the test
that proves it (these and the older ones in tests/execution and tests/transport).

- a workspace filled past its quota (one big file, many small ones, one file past
  RLIMIT_FSIZE), and uploads into a full workspace;
- a sandbox that never exits (ignores SIGTERM, leaves a setsid/nohup grandchild behind), timed
  out or cancelled; a Python cell that loops forever, even with SIGINT ignored;
- a worker SIGKILLed while a task streams output;
- a web process restarted under an SSE client that resumes with ``Last-Event-ID``.
"""

from __future__ import annotations

import itertools
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandboxes.backends._procs import descendants
from tests import procs
from tests.transport.conftest import api_token, api_user, live_daphne  # noqa: F401 (fixtures)
from tests.transport.sse import iter_sse

pytestmark = [pytest.mark.transport, pytest.mark.sandbox, pytest.mark.django_db(transaction=True)]

MB = 1024 * 1024
QUOTA = 4 * MB  # the server's WORKSPACE_MAX_BYTES in these tests
TERMINAL = {"succeeded", "failed", "cancelled", "timed_out"}
# Ignores every catchable signal, and leaves a grandchild in its own session (setsid + nohup)
# that ignores them too: only a kill of the whole sandbox process tree ends it.
STUBBORN = """trap '' TERM INT HUP QUIT
setsid nohup bash -c "trap '' TERM INT HUP QUIT; while :; do sleep 0.2; done" {marker} \
  >/dev/null 2>&1 &
echo started
while :; do sleep 0.2; done
"""


def _client(url: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60)


@pytest.fixture
def http(tmp_path: Path, api_token: str) -> Iterator[httpx.Client]:  # noqa: F811
    """A client of a daphne (inline executor) with a 4 MiB workspace quota and a 1 s cancel
    grace period."""
    with (
        live_daphne(tmp_path, WORKSPACE_MAX_BYTES=QUOTA, TASK_CANCEL_GRACE_S=1) as server,
        _client(server.url, api_token) as client,
    ):
        yield client


def _session(http: httpx.Client, agent: str = "shell") -> str:
    response = http.post("/api/v1/sessions", json={"agent": agent})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _task(http: httpx.Client, sid: str, data: dict[str, Any], **config: Any) -> str:
    response = http.post(f"/api/v1/sessions/{sid}/tasks", json={"input": data, "config": config})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _wait(http: httpx.Client, task_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        task = http.get(f"/api/v1/tasks/{task_id}").json()
        if task["status"] in TERMINAL:
            return dict(task)
        assert time.monotonic() < deadline, f"task still {task['status']} after {timeout}s"
        time.sleep(0.1)


def _events(http: httpx.Client, sid: str) -> list[dict[str, Any]]:
    """Every event of the session, paged through GET /sessions/{id}/events; asserts the log is
    gapless (seq 1, 2, …, last_seq)."""
    events: list[dict[str, Any]] = []
    while True:
        page = http.get(f"/api/v1/sessions/{sid}/events",
                        params={"after": events[-1]["seq"] if events else 0, "limit": 500})  # fmt: skip
        assert page.status_code == 200, page.text
        body = page.json()
        events += body["events"]
        if not body["events"] or body["next_after"] >= body["last_seq"]:
            break
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1)), "a gap in the log"
    return events


def _of(events: list[dict[str, Any]], task_id: str, type_: str) -> list[dict[str, Any]]:
    return [e["data"] for e in events if e["task_id"] == task_id and e["type"] == type_]


def _stdout(events: list[dict[str, Any]], task_id: str) -> str:
    return "".join(d["text"] for d in _of(events, task_id, "process.stdout"))


def _error_of(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details"} and error["code"] == code
    return dict(error["details"])


def _with_marker(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _gone(marker: str, within_s: float = 10) -> None:
    deadline = time.monotonic() + within_s
    while left := _with_marker(marker):
        assert time.monotonic() < deadline, f"processes of the task survived: {left}"
        time.sleep(0.1)


# 1. The workspace quota -------------------------------------------------------------------------


def test_a_full_workspace_fails_the_task_keeps_its_events_and_the_session(
    http: httpx.Client,
) -> None:
    sid = _session(http)
    files = f"/api/v1/sessions/{sid}/workspace/files"

    # One file past the task's limits.workspace_mb: the size watcher stops the command.
    started = time.monotonic()
    big = _task(http, sid, {"command": "echo begin; head -c 3000000 /dev/zero > big.bin; "
                                      "echo wrote; sleep 60"},
                limits={"workspace_mb": 2})  # fmt: skip
    task = _wait(http, big, timeout=40)
    assert time.monotonic() - started < 30  # the watcher, not the 60 s sleep
    assert (task["status"], task["error"]["code"]) == ("failed", "workspace_limit")
    details = task["error"]["details"]
    assert details["limit_bytes"] == 2 * MB < 3_000_000 <= details["size_bytes"]
    events = _events(http, sid)
    assert _stdout(events, big) == "begin\nwrote\n"  # everything it printed is still readable
    assert _of(events, big, "process.exit")[0]["killed"] is True
    assert events[-1]["type"] == "task.status" and events[-1]["data"]["status"] == "failed"

    # 3 MB used of the server's 4 MiB: an upload that does not fit is 413, nothing written.
    details = _error_of(http.put(f"{files}/more.bin", content=b"m" * (2 * MB)), 413,
                        "payload_too_large")  # fmt: skip
    assert details["limit_bytes"] == QUOTA and details["needed_bytes"] == 2 * MB
    assert http.get(f"{files}/more.bin").status_code == 404

    # The user frees the space through the API; the session's next task runs.
    assert http.delete(f"{files}/big.bin").status_code == 204
    after = _task(http, sid, {"command": "echo still-usable"})
    assert _wait(http, after)["status"] == "succeeded"

    # Many small files past the server-wide WORKSPACE_MAX_BYTES (no per-task limit).
    many = _task(http, sid, {"command": "mkdir -p many; i=0; while :; do "
                                        "head -c 200000 /dev/zero > many/f$i; i=$((i+1)); "
                                        "sleep 0.02; done"})  # fmt: skip
    task = _wait(http, many, timeout=40)
    assert (task["status"], task["error"]["code"]) == ("failed", "workspace_limit")
    assert task["error"]["details"]["limit_bytes"] == QUOTA < task["error"]["details"]["size_bytes"]
    # Over quota now: even a small upload is refused, until the user deletes the directory.
    _error_of(http.put(f"{files}/note.txt", content=b"hi"), 413, "payload_too_large")
    _error_of(http.delete(f"{files}/many"), 400, "directory_not_empty")
    assert http.delete(f"{files}/many", params={"recursive": "true"}).status_code == 204
    assert http.put(f"{files}/note.txt", content=b"hi").status_code == 201

    # A single file past limits.file_size_mb: RLIMIT_FSIZE stops the write at 1 MiB.
    huge = _task(http, sid, {"command": "head -c 3000000 /dev/zero > huge.bin"},
                 limits={"file_size_mb": 1})  # fmt: skip
    task = _wait(http, huge)
    assert (task["status"], task["error"]["code"]) == ("failed", "file_size_limit")
    assert task["error"]["details"]["file_size_mb"] == 1
    listing = http.get(files).json()["entries"]
    assert {e["path"]: e["size"] for e in listing}["huge.bin"] == MB

    last = _task(http, sid, {"command": "cat note.txt"})
    assert _wait(http, last)["status"] == "succeeded"
    events = _events(http, sid)
    assert _stdout(events, last) == "hi"
    assert [e["data"]["status"] for e in events if e["type"] == "task.status"
            and e["data"]["status"] in TERMINAL] == [
        "failed", "succeeded", "failed", "failed", "succeeded"]  # fmt: skip


# 2. A sandbox that never exits ------------------------------------------------------------------


def test_a_command_that_ignores_signals_is_timed_out_or_cancelled_and_leaves_nothing(
    http: httpx.Client,
) -> None:
    sid = _session(http)
    marker = f"stubborn-{time.time_ns()}"

    started = time.monotonic()
    timed = _task(http, sid, {"command": STUBBORN.format(marker=marker)}, timeout_s=2)
    task = _wait(http, timed, timeout=40)
    assert (task["status"], task["error"]["code"]) == ("timed_out", "timed_out")
    assert time.monotonic() - started < 20
    assert _stdout(_events(http, sid), timed) == "started\n"
    _gone(marker)  # the trapping shell and its setsid grandchild

    after = _task(http, sid, {"command": "echo next"})
    assert _wait(http, after)["status"] == "succeeded"

    marker = f"stubborn-{time.time_ns()}"
    cancel = _task(http, sid, {"command": STUBBORN.format(marker=marker)})
    deadline = time.monotonic() + 30
    while "started" not in _stdout(_events(http, sid), cancel) or not _with_marker(marker):
        assert time.monotonic() < deadline, "the stubborn command never started"
        time.sleep(0.1)
    asked = time.monotonic()
    assert http.post(f"/api/v1/tasks/{cancel}/cancel").status_code == 202
    task = _wait(http, cancel, timeout=30)
    assert (task["status"], task["error"]["code"]) == ("cancelled", "cancelled")
    assert time.monotonic() - asked < 10  # the 1 s grace, then the tree is killed
    _gone(marker)

    after = _task(http, sid, {"command": "echo after-cancel"})
    assert _wait(http, after)["status"] == "succeeded"
    events = _events(http, sid)
    assert _stdout(events, after) == "after-cancel\n"
    assert http.post(f"/api/v1/sessions/{sid}/sandbox/stop").status_code in (200, 202, 204)


def test_a_python_cell_that_never_returns_is_timed_out_and_the_session_goes_on(
    http: httpx.Client,
) -> None:
    made = http.post("/api/v1/agents", json={"slug": "py", "name": "py", "kind": "python",
                                             "spec": {}})  # fmt: skip
    assert made.status_code == 201, made.text
    sid = _session(http, "py")
    first = _task(http, sid, {"code": "kept = 'here'"})
    assert _wait(http, first, timeout=90)["status"] == "succeeded"

    # KeyboardInterrupt stops a busy loop: the kernel and its variables survive.
    busy = _task(http, sid, {"code": "while True: pass"}, timeout_s=2)
    task = _wait(http, busy, timeout=40)
    assert (task["status"], task["error"]["code"]) == ("timed_out", "timed_out")
    kept = _task(http, sid, {"code": "kept"})
    task = _wait(http, kept, timeout=60)
    assert task["status"] == "succeeded", task["error"]
    assert task["result"]["output"] == {"text/plain": "'here'"}

    # A cell that ignores SIGINT cannot be interrupted: the task still ends in time, and the
    # next task gets a working kernel (a fresh one: the stuck one had to go).
    started = time.monotonic()
    stuck = _task(http, sid, {"code": "import signal\nsignal.signal(signal.SIGINT, "
                                      "signal.SIG_IGN)\nwhile True: pass"}, timeout_s=2)  # fmt: skip
    task = _wait(http, stuck, timeout=60)
    assert task["status"] == "timed_out", task
    assert time.monotonic() - started < 40
    fresh = _task(http, sid, {"code": "1 + 1"})
    task = _wait(http, fresh, timeout=90)
    assert task["status"] == "succeeded", task["error"]
    assert task["result"]["output"] == {"text/plain": "2"}
    events = _events(http, sid)
    assert _of(events, stuck, "kernel.restarted") == [{"reason": "unresponsive"}]
    gone = _task(http, sid, {"code": "'kept' in globals()"})
    assert _wait(http, gone)["result"]["output"] == {"text/plain": "False"}
    http.post(f"/api/v1/sessions/{sid}/sandbox/stop")


# 3. A worker killed mid-task --------------------------------------------------------------------

STREAMING = "for i in $(seq 1 200); do echo line-$i; sleep 0.02; done"


def test_a_sigkilled_worker_loses_no_event_and_its_tasks_are_recovered(
    tmp_path: Path,
    api_token: str,  # noqa: F811
) -> None:
    """Worker mode: a web process that runs nothing and ``run_worker`` processes. Worker A is
    SIGKILLed while two tasks stream; worker B recovers them once their 6 s lease expires: the
    retry-safe one runs again there, the other fails with ``worker_lost``. Every event of the
    first attempt stays readable, and each session's log stays gapless."""
    with (
        live_daphne(tmp_path, TASK_EXECUTOR="worker") as server,
        _client(server.url, api_token) as http,
    ):
        safe_sid, unsafe_sid = _session(http), _session(http)
        safe = _task(http, safe_sid, {"command": STREAMING}, retry_safe=True)
        unsafe = _task(http, unsafe_sid, {"command": STREAMING})
        log = tmp_path / "worker-a.log"
        # Leases far below the default 30 s, for a quick recovery; not much lower: a worker
        # whose event loop stalls past its lease (a loaded CI machine) loses its own tasks.
        worker = procs.start_worker(log, TASK_LEASE_S=6, TASK_CONCURRENCY=2)
        try:
            deadline = time.monotonic() + 40
            while not all("line-20\n" in _stdout(_events(http, sid), t)
                          for sid, t in ((safe_sid, safe), (unsafe_sid, unsafe))):  # fmt: skip
                assert worker.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
            sandbox = descendants(worker.pid)
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
        finally:
            procs.stop(worker)
        assert procs.reap_orphans(sandbox, timeout=10) == [], "the sandbox outlived its worker"
        before = {sid: _events(http, sid) for sid in (safe_sid, unsafe_sid)}

        worker = procs.start_worker(tmp_path / "worker-b.log", TASK_LEASE_S=6)
        try:
            retried, lost = _wait(http, safe, timeout=60), _wait(http, unsafe, timeout=30)
        finally:
            procs.stop(worker)
        assert (lost["status"], lost["error"]["code"]) == ("failed", "worker_lost")
        assert retried["status"] == "succeeded", retried["error"]
        for sid in (safe_sid, unsafe_sid):
            after = _events(http, sid)  # gapless
            assert after[: len(before[sid])] == before[sid], "an event of attempt 1 changed"
            assert after[-1]["type"] == "task.status" and after[-1]["data"]["status"] in TERMINAL
        moves = [e["data"] for e in _events(http, safe_sid) if e["type"] == "task.status"]
        statuses = [status for status, _ in itertools.groupby(m["status"] for m in moves)]
        assert statuses == ["queued", "running", "queued", "running", "succeeded"]  # ran again
        assert [m["reason"] for m in moves if m.get("reason")] == ["worker_lost"]
        assert retried["attempt"] == 2
        assert _stdout(_events(http, unsafe_sid), unsafe).startswith("line-1\nline-2\n")


# 4. A web process restarted under an SSE client -------------------------------------------------


class SseFollower(threading.Thread):
    """Follows a session's SSE stream, resuming with ``Last-Event-ID`` after every drop, until
    it has seen ``task_id``'s terminal status."""

    def __init__(self, url: str, token: str, sid: str, task_id: str) -> None:
        super().__init__(daemon=True)
        self.url, self.token, self.sid, self.task_id = url, token, sid, task_id
        self.seqs: list[int] = []
        self.envelopes: list[dict[str, Any]] = []
        self.reconnects = 0
        self.done = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + 90
        while not self.done.is_set() and time.monotonic() < deadline:
            headers = {"Last-Event-ID": str(self.seqs[-1])} if self.seqs else {}
            path = f"/api/v1/sessions/{self.sid}/events/stream"
            try:
                with (
                    _client(self.url, self.token) as http,
                    http.stream("GET", path, headers=headers, timeout=10) as response,
                ):
                    for message in iter_sse(response):
                        if "id" not in message:
                            continue
                        envelope = message["data"]
                        self.seqs.append(int(message["id"]))
                        self.envelopes.append(envelope)
                        data = envelope["data"]
                        if (envelope["task_id"] == self.task_id and envelope["type"] == "task.status"
                                and data["status"] in TERMINAL):  # fmt: skip
                            self.done.set()
                            return
            except (httpx.HTTPError, OSError):
                pass
            self.reconnects += 1
            time.sleep(0.2)


def test_a_restarted_web_process_loses_no_event_for_an_sse_client(
    tmp_path: Path,
    api_token: str,  # noqa: F811
) -> None:
    """The task runs in a worker process; the web process serving the SSE stream is stopped
    (SIGTERM) mid-task and started again on the same port. The client resumes with
    ``Last-Event-ID`` and receives every event exactly once, in order."""
    port = procs.free_port()
    env = {"TASK_EXECUTOR": "worker", "STREAM_HEARTBEAT_S": 1}
    url = f"http://127.0.0.1:{port}"
    web = procs.start_daphne(port, tmp_path / "web.log", **env)
    worker = procs.start_worker(tmp_path / "worker.log")
    try:
        with _client(url, api_token) as http:
            sid = _session(http)
            task_id = _task(http, sid, {"command": "for i in $(seq 1 150); do echo n$i; "
                                                   "sleep 0.04; done"})  # fmt: skip
        follower = SseFollower(url, api_token, sid, task_id)
        follower.start()
        deadline = time.monotonic() + 40
        while sum(1 for e in follower.envelopes if e["type"] == "process.stdout") < 3:
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()
            time.sleep(0.05)
        procs.stop(web)
        time.sleep(0.5)  # the client finds nobody listening for a moment
        web = procs.start_daphne(port, tmp_path / "web.log", **env)
        follower.join(timeout=60)
        with _client(url, api_token) as http:
            assert _wait(http, task_id)["status"] == "succeeded"
            events = _events(http, sid)
    finally:
        procs.stop(web)
        procs.stop(worker)
    assert follower.done.is_set(), (follower.seqs, (tmp_path / "web.log").read_text()[-3000:])
    assert follower.reconnects >= 1, "the restart was not felt"
    assert follower.seqs == list(range(1, follower.seqs[-1] + 1))  # exactly once, in order
    assert follower.envelopes == events[: len(follower.envelopes)]
    printed = [e["data"]["text"] for e in follower.envelopes if e["type"] == "process.stdout"]
    assert "".join(printed) == "".join(f"n{i}\n" for i in range(1, 151))
