"""Redis restarts mid-stream (issue 6): two web processes share a private Redis (channel layer);
a task streams tokens while Redis is stopped and started again. Subscribers on both web
processes still get every event exactly once, in order: the database is the log, and gaps are
backfilled from it (DESIGN §3)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sessions.models import Event, Task
from sessions.runners.scripted_llm import ScriptedLLM, Turn
from tests import procs
from tests.transport.test_scale_out import Subscriber

pytestmark = [pytest.mark.transport, pytest.mark.django_db(transaction=True)]


class PrivateRedis:
    def __init__(self, tmp: Path) -> None:
        self.port, self.tmp = procs.free_port(), tmp
        self.proc = self.start()

    def start(self) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"],
            stdout=(self.tmp / "redis.log").open("ab"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        procs.wait_for_port(self.port, proc)
        return proc

    def restart(self, down_s: float) -> None:
        self.proc.kill()
        self.proc.wait()
        time.sleep(down_s)
        self.proc = self.start()

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def two_webs(
    tmp_path: Path, api_user: Any
) -> Iterator[tuple[list[int], ScriptedLLM, PrivateRedis]]:
    from django.db import connection

    if connection.vendor == "sqlite":
        pytest.skip("two servers writing at once need PostgreSQL (CI runs this on it)")
    redis = PrivateRedis(tmp_path)
    reply = Turn(chunks=[f"t{i} " for i in range(120)], delay_s=0.05)
    with ScriptedLLM(responder=lambda request: reply) as llm:
        ports = [procs.free_port(), procs.free_port()]
        env = {"REDIS_URL": f"redis://127.0.0.1:{redis.port}/0", "STREAM_HEARTBEAT_S": "1",
               "LLM_ENDPOINT_ALLOWED_HOSTS": "127.0.0.1"}  # fmt: skip
        webs = [procs.start_daphne(p, tmp_path / f"web{i}.log", **env) for i, p in enumerate(ports)]
        try:
            yield ports, llm, redis
        finally:
            for web in webs:
                procs.stop(web)
            redis.close()


def test_streams_survive_a_redis_restart(two_webs: Any, api_token: str) -> None:
    ports, llm, redis = two_webs
    auth = {"Authorization": f"Bearer {api_token}"}
    with httpx.Client(base_url=f"http://127.0.0.1:{ports[0]}", headers=auth, timeout=30) as http:
        spec = {"model": {"base_url": llm.base_url, "name": "s"}, "max_retries": 0}
        assert http.post("/api/v1/agents", json={"slug": "r", "name": "r", "kind": "llm",
                                                 "spec": spec}).status_code == 201  # fmt: skip
        sid = http.post("/api/v1/sessions", json={"agent": "r"}).json()["id"]

        subscribers = [Subscriber(ports, web, sid, api_token) for web in (0, 1)]
        for sub in subscribers:
            sub.start()
        time.sleep(0.5)
        task_id = http.post(f"/api/v1/sessions/{sid}/messages", json={"message": "go"}).json()["id"]
        for sub in subscribers:
            sub.expected = {task_id}
        deadline = time.monotonic() + 30
        while not Event.objects.filter(task__uuid=task_id, type="message.delta").exists():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        redis.restart(down_s=1.0)  # mid-stream: ~6 s of tokens, Redis gone for a second
        for sub in subscribers:
            sub.join(timeout=90)
    assert Task.objects.get(uuid=task_id).status == "succeeded"
    last = Event.objects.filter(session__uuid=sid).order_by("-seq").first()
    assert last is not None
    for sub in subscribers:
        assert sub.done.is_set(), (sub.web, len(sub.seqs))
        assert sub.seqs == list(range(1, last.seq + 1)), sub.web  # every event once, in order
