"""Scale-out end to end (issue 6): two daphne web processes and two Celery workers on the local
PostgreSQL (the test database) and Redis (channel layer and broker). Fifty llm tasks (a
scripted model over real HTTP, one second of streamed tokens each) in ten sessions, created
through both web processes; a subscriber per session on each web process. Mid-run one worker
is SIGKILLed (its whole process group, as if its machine died) and one web process restarts.
Every task must end, and every subscriber must receive every event of its session exactly once,
in order (reconnecting with ``after`` when its web process went away)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from sessions.models import Event, Task
from sessions.runners.scripted_llm import ScriptedLLM, Turn
from tests import procs

pytestmark = [pytest.mark.transport, pytest.mark.django_db(transaction=True)]

SESSIONS, PER_SESSION = 10, 5
TERMINAL = {"succeeded", "failed", "cancelled", "timed_out"}
REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"


def slow_reply(request: dict[str, Any]) -> Turn:
    long = "long" in str(request["messages"][-1].get("content"))
    return Turn(chunks=[f"w{i} " for i in range(400 if long else 20)], delay_s=0.05)


class Cluster:
    """The processes of one scale-out deployment on this machine."""

    def __init__(
        self, tmp: Path, llm: ScriptedLLM, *, broker: str = REDIS_URL, size: int = 2
    ) -> None:
        tag = uuid.uuid4().hex[:8]  # queues of this test only: other runs may share the Redis
        self.queues = {"default": f"default-{tag}", "llm": f"llm-{tag}", "sandbox": f"sbx-{tag}"}
        self.env = {
            "TASK_EXECUTOR": "celery", "REDIS_URL": REDIS_URL, "CELERY_BROKER_URL": broker,
            "CELERY_TASK_DEFAULT_QUEUE": self.queues["default"],
            "TASK_QUEUES": json.dumps({"llm": self.queues["llm"], "command": self.queues["sandbox"]}),
            "TASK_LEASE_S": "3", "LLM_ENDPOINT_ALLOWED_HOSTS": "127.0.0.1", "STREAM_HEARTBEAT_S": "1",
        }  # fmt: skip
        self.tmp = tmp
        self.ports = [procs.free_port() for _ in range(size)]
        self.webs = [self.start_web(i) for i in range(size)]
        self.workers = [self.start_worker(i) for i in range(size)]

    def _procfile(self, name: str, log: str, **env: Any) -> subprocess.Popen[bytes]:
        """Run the Procfile's ``name`` line as a Procfile runner (honcho) would: ``sh -c``."""
        lines = dict(
            line.split(": ", 1)
            for line in (procs.ROOT / "Procfile").read_text().splitlines()
            if line and not line.startswith("#")
        )
        bindir = str(Path(sys.executable).parent)  # daphne and celery of this virtualenv
        child = procs.child_env(**self.env, **env)
        child["PATH"] = f"{bindir}:{child.get('PATH', '')}"
        return subprocess.Popen(
            ["sh", "-c", lines[name]], cwd=procs.ROOT, env=child, start_new_session=True,
            stdout=(self.tmp / log).open("ab"), stderr=subprocess.STDOUT,
        )  # fmt: skip

    def start_web(self, i: int) -> subprocess.Popen[bytes]:
        proc = self._procfile("web", f"web{i}.log", PORT=self.ports[i])
        procs.wait_for_port(self.ports[i], proc)
        return proc

    def start_worker(self, i: int) -> subprocess.Popen[bytes]:
        return self._procfile(
            "worker", f"worker{i}.log", CELERY_QUEUES=",".join(self.queues.values())
        )

    def kill_worker(self, i: int) -> None:
        group = self.workers[i].pid
        os.killpg(group, signal.SIGKILL)  # the worker and its pool processes
        self.workers[i].wait()
        _reap_group(group)

    def restart_web(self, i: int) -> None:
        procs.stop(self.webs[i])
        self.webs[i] = self.start_web(i)

    def close(self) -> None:
        for proc in self.webs:
            procs.stop(proc)
        for proc in self.workers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()  # reaped: no zombie left for the suite's process checks
                _reap_group(proc.pid, within_s=2.0)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                         for p in sorted(self.tmp.glob("*.log")))  # fmt: skip


def _reap_group(group: int, within_s: float = 5.0) -> None:
    """Reap the killed worker's pool processes: orphaned, they are re-parented to this test
    process (the suite is a child subreaper) and would stay zombies otherwise."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-group, os.WNOHANG)
        except ChildProcessError:
            if not any(_in_group(group)):
                return
            pid = 0
        if pid == 0:
            time.sleep(0.05)


def _in_group(group: int) -> Iterator[int]:
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == group:
                    yield int(entry.name)
            except ProcessLookupError:
                continue


@pytest.fixture
def cluster(tmp_path: Path, api_user: Any) -> Iterator[tuple[Cluster, ScriptedLLM]]:
    from django.db import connection

    if connection.vendor == "sqlite":
        pytest.skip("four processes writing at once need PostgreSQL (CI runs this on it)")
    with ScriptedLLM(responder=slow_reply) as llm:
        cluster = Cluster(tmp_path, llm)
        try:
            yield cluster, llm
        finally:
            cluster.close()


class Subscriber(threading.Thread):
    """Follows one session's WebSocket on one web process, resuming with ``after`` whenever
    the connection drops, until every task it was told about has ended."""

    def __init__(self, ports: list[int], web: int, session_id: str, token: str) -> None:
        super().__init__(daemon=True)
        self.ports, self.web, self.session_id, self.token = ports, web, session_id, token
        self.seqs: list[int] = []
        self.terminal: set[str] = set()
        self.expected: set[str] = set()
        self.done = threading.Event()
        self.reconnects = 0
        self.controls: list[str] = []  # control frames (heartbeats, stream.reconnect)

    def run(self) -> None:
        deadline = time.monotonic() + 240
        while not self.done.is_set() and time.monotonic() < deadline:
            after = self.seqs[-1] if self.seqs else 0
            url = (f"ws://127.0.0.1:{self.ports[self.web]}/ws/sessions/"
                   f"{self.session_id}/?after={after}")  # fmt: skip
            try:
                with connect(url, additional_headers={"Authorization": f"Bearer {self.token}"},
                             open_timeout=5) as ws:  # fmt: skip
                    while True:
                        frame = json.loads(ws.recv(timeout=30))
                        if "seq" not in frame:
                            self.controls.append(frame.get("type", ""))
                            continue
                        self.seqs.append(frame["seq"])
                        data = frame["data"]
                        if frame["type"] == "task.status" and data.get("status") in TERMINAL:
                            self.terminal.add(frame["task_id"])
                        if self.expected and self.expected <= self.terminal:
                            self.done.set()
                            return
            except (ConnectionClosed, OSError, TimeoutError):
                self.reconnects += 1
                time.sleep(0.2)


def test_two_web_processes_two_celery_workers_a_killed_worker_and_a_restarted_web(
    cluster: tuple[Cluster, ScriptedLLM], api_token: str
) -> None:
    cl, llm = cluster
    auth = {"Authorization": f"Bearer {api_token}"}
    clients = [httpx.Client(base_url=f"http://127.0.0.1:{p}", headers=auth, timeout=30)
               for p in cl.ports]  # fmt: skip
    spec = {"model": {"base_url": llm.base_url, "name": "scripted"}, "retry_safe": True,
            "max_retries": 0}  # fmt: skip
    made = clients[0].post("/api/v1/agents", json={"slug": "talker", "name": "t", "kind": "llm",
                                                   "spec": spec})  # fmt: skip
    assert made.status_code == 201, made.text
    sessions = [clients[i % 2].post("/api/v1/sessions", json={"agent": "talker"}).json()["id"]
                for i in range(SESSIONS)]  # fmt: skip
    subscribers = [Subscriber(cl.ports, web, sid, api_token) for sid in sessions for web in (0, 1)]
    for sub in subscribers:
        sub.start()
    time.sleep(1)  # every subscriber connected (they resume from seq 0 anyway)

    task_ids: dict[str, list[str]] = {sid: [] for sid in sessions}
    for n in range(PER_SESSION):
        for i, sid in enumerate(sessions):
            response = clients[(i + n) % 2].post(f"/api/v1/sessions/{sid}/messages",
                                                 json={"message": f"turn {n}"})  # fmt: skip
            assert response.status_code == 201, response.text
            task_ids[sid].append(response.json()["id"])
    for sub in subscribers:
        sub.expected = set(task_ids[sub.session_id])

    # Mid-run: a worker machine dies, and a web process restarts.
    deadline = time.monotonic() + 60
    while Task.objects.filter(status="running").count() < 4:
        assert time.monotonic() < deadline, cl.logs()
        time.sleep(0.1)
    cl.kill_worker(0)
    cl.restart_web(1)
    clients[1].close()
    clients[1] = httpx.Client(base_url=f"http://127.0.0.1:{cl.ports[1]}", headers=auth, timeout=30)

    for sub in subscribers:
        sub.join(timeout=240)
    statuses = dict(Task.objects.filter(session__uuid__in=sessions).values_list("uuid", "status"))
    assert len(statuses) == SESSIONS * PER_SESSION
    assert set(statuses.values()) <= TERMINAL, (statuses, cl.logs())
    assert set(statuses.values()) == {"succeeded"}, cl.logs()  # retry-safe: retried elsewhere
    for sub in subscribers:
        assert sub.done.is_set(), (sub.session_id, sub.web, len(sub.seqs), cl.logs())
        last = Event.objects.filter(session__uuid=sub.session_id).order_by("-seq").first()
        assert last is not None
        # Exactly once, in order, no gap: seq 1, 2, 3, … up to the terminal event it saw.
        assert sub.seqs == list(range(1, sub.seqs[-1] + 1)), (sub.session_id, sub.web)
        assert sub.seqs[-1] == last.seq or sub.seqs[-1] < last.seq
    assert any(sub.reconnects for sub in subscribers if sub.web == 1)  # the restart was felt
    # …and announced: the stopping web process told its clients to reconnect.
    assert any("stream.reconnect" in sub.controls for sub in subscribers if sub.web == 1)
    retried = Task.objects.filter(session__uuid__in=sessions, attempt__gt=1).count()
    assert retried >= 1, "the killed worker ran nothing?"

    # A cancel sent to one web process stops a task running on a worker elsewhere.
    long = clients[1].post(f"/api/v1/sessions/{sessions[0]}/messages", json={"message": "long"})
    long_id = long.json()["id"]
    deadline = time.monotonic() + 30
    while Task.objects.get(uuid=long_id).status != "running":
        assert time.monotonic() < deadline, cl.logs()
        time.sleep(0.05)
    time.sleep(0.5)
    asked = time.monotonic()
    assert clients[0].post(f"/api/v1/tasks/{long_id}/cancel").status_code == 202
    while Task.objects.get(uuid=long_id).status == "running":
        assert time.monotonic() - asked < 15, cl.logs()
        time.sleep(0.05)
    assert Task.objects.get(uuid=long_id).status == "cancelled"
    for client in clients:
        client.close()
    assert not procs.zombie_children(), procs.zombie_children()


RABBITMQ_URL = os.environ.get("RABBITMQ_URL") or "amqp://guest:guest@127.0.0.1:5672//"


def test_rabbitmq_as_the_broker(tmp_path: Path, api_user: Any, api_token: str) -> None:
    """The same executor on RabbitMQ (CELERY_BROKER_URL=amqp://…); Redis stays the channel layer."""
    from django.db import connection
    from kombu import Connection

    if connection.vendor == "sqlite":
        pytest.skip("several processes writing at once need PostgreSQL (CI runs this on it)")
    try:
        with Connection(RABBITMQ_URL, connect_timeout=2) as amqp:
            amqp.ensure_connection(max_retries=1)
    except Exception:
        pytest.skip(f"no RabbitMQ at {RABBITMQ_URL} (it is optional; Redis is the default)")
    with ScriptedLLM(responder=slow_reply) as llm:
        cl = Cluster(tmp_path, llm, broker=RABBITMQ_URL, size=1)
        try:
            auth = {"Authorization": f"Bearer {api_token}"}
            with httpx.Client(base_url=f"http://127.0.0.1:{cl.ports[0]}", headers=auth,
                              timeout=30) as http:  # fmt: skip
                spec = {"model": {"base_url": llm.base_url, "name": "s"}, "max_retries": 0}
                http.post("/api/v1/agents", json={"slug": "r", "name": "r", "kind": "llm",
                                                  "spec": spec}).raise_for_status()  # fmt: skip
                sid = http.post("/api/v1/sessions", json={"agent": "r"}).json()["id"]
                ids = [http.post(f"/api/v1/sessions/{sid}/messages", json={"message": f"{n}"})
                       .json()["id"] for n in range(3)]  # fmt: skip
            deadline = time.monotonic() + 60
            while Task.objects.filter(uuid__in=ids, status="succeeded").count() < 3:
                assert time.monotonic() < deadline, cl.logs()
                time.sleep(0.1)
        finally:
            cl.close()
