"""Inline executor against the Celery executor, on the same PostgreSQL and Redis, in one run.

Each configuration gets a fresh PostgreSQL database and one daphne; ``celery`` adds one Celery
worker (``--concurrency 4``, the inline executor's default concurrency). The workload is an
``llm`` agent on a scripted model (real HTTP, a one-chunk reply) so that no sandbox start-up
blurs what is compared: the way a task travels from the POST to the process that runs it.

* **dispatch latency**: ``POST /sessions/{id}/messages`` → the task's ``running`` status at a
  session WebSocket (claimed by an executor), and → its terminal status; p50/p95/p99 ms over
  ``--tasks`` sequential tasks (nearest rank: with under 100 tasks, p99 is the slowest).
* **throughput**: ``--burst`` tasks created at once over 20 sessions; tasks/s from the first
  POST to the last terminal status (read from the database).

Baseline: ``inline``. Usage: ``.venv/bin/python bench/executors.py --tasks 40 --burst 200``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import django
import httpx
import psycopg
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "runtime_project.settings")
django.setup()  # the scripted server lives in the sessions package, which needs settings

from bench.run import pct, prepend_results  # noqa: E402
from sessions.runners.scripted_llm import ScriptedLLM, Turn  # noqa: E402
from tests.procs import daphne_argv, free_port, wait_for_port  # noqa: E402

PG = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")
REDIS = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
TERMINAL = {"succeeded", "failed", "cancelled", "timed_out"}


def summary(values_ms: list[float]) -> str:
    """``p50 / p95 / p99`` of ``values_ms``, one decimal."""
    return " / ".join(f"{pct(values_ms, q):.1f}" for q in (0.5, 0.95, 0.99))


class Deployment:
    """A fresh database, a daphne, and for ``celery`` one worker."""

    def __init__(self, executor: str, llm: ScriptedLLM) -> None:
        self.db = f"bench_{executor}_{uuid.uuid4().hex[:6]}"
        with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.db}"')
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-exec-"))
        tag = uuid.uuid4().hex[:6]
        self.env = dict(
            os.environ, DATABASE_URL=f"{PG}/{self.db}", REDIS_URL=REDIS, SECRET_KEY="bench",
            VAR_DIR=str(self.tmp), TASK_EXECUTOR=executor, PYTHONUNBUFFERED="1",
            LLM_ENDPOINT_ALLOWED_HOSTS="127.0.0.1", CELERY_TASK_DEFAULT_QUEUE=f"default-{tag}",
            TASK_QUEUES=json.dumps({"llm": f"llm-{tag}"}), TASK_CONCURRENCY="4",
            # what is measured is the executor, not the limits (docs/limits.md)
            THROTTLE_USER="none", THROTTLE_TEAM="none", TEAM_MAX_RUNNING_TASKS="0",
            TEAM_MAX_SANDBOXES="0",
        )  # fmt: skip
        py = [sys.executable, "manage.py"]
        run = {"cwd": ROOT, "env": self.env, "check": True, "capture_output": True}
        subprocess.run([*py, "migrate", "--noinput"], **run)  # type: ignore[call-overload]
        subprocess.run([*py, "bootstrap"], **run)  # type: ignore[call-overload]
        self.token = subprocess.run(  # type: ignore[call-overload]
            [*py, "create_user_token", "admin"], text=True, **run
        ).stdout.strip()
        self.port = free_port()
        log = (self.tmp / "log").open("ab")
        self.procs = [subprocess.Popen(daphne_argv(self.port), cwd=ROOT, env=self.env,
                                       stdout=log, stderr=subprocess.STDOUT)]  # fmt: skip
        if executor == "celery":
            argv = [sys.executable, "-m", "celery", "-A", "runtime_project", "worker", "-Q",
                    f"default-{tag},llm-{tag}", "--concurrency", "4", "--without-gossip",
                    "--without-mingle", "-l", "warning"]  # fmt: skip
            self.procs.append(subprocess.Popen(argv, cwd=ROOT, env=self.env, stdout=log,
                                               stderr=subprocess.STDOUT, start_new_session=True))  # fmt: skip
        wait_for_port(self.port, self.procs[0])
        self.url = f"http://127.0.0.1:{self.port}"
        self.headers = {"Authorization": f"Bearer {self.token}"}
        self.http = httpx.Client(base_url=self.url, headers=self.headers, timeout=60)
        spec = {"model": {"base_url": llm.base_url, "name": "scripted"}, "max_retries": 0}
        self.http.post("/api/v1/agents", json={"slug": "b", "name": "b", "kind": "llm",
                                               "spec": spec}).raise_for_status()  # fmt: skip

    def close(self) -> None:
        self.http.close()
        for proc in self.procs:
            if proc is self.procs[0]:
                proc.terminate()
            else:
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')


def latency(dep: Deployment, n: int) -> tuple[list[float], list[float]]:
    sid = dep.http.post("/api/v1/sessions", json={"agent": "b"}).json()["id"]
    running, done = [], []
    url = f"ws://127.0.0.1:{dep.port}/ws/sessions/{sid}/"
    with connect(url, additional_headers=dep.headers) as ws:
        for i in range(n + 3):
            t0 = time.perf_counter()
            task_id = dep.http.post(f"/api/v1/sessions/{sid}/messages",
                                    json={"message": "hi"}).json()["id"]  # fmt: skip
            t_run = None
            while True:
                frame = json.loads(ws.recv(timeout=60))
                if frame.get("task_id") != task_id or frame.get("type") != "task.status":
                    continue
                status = frame["data"]["status"]
                if status == "running" and t_run is None:
                    t_run = time.perf_counter()
                if status in TERMINAL:
                    break
            if i >= 3:  # warm-up
                running.append(((t_run or t0) - t0) * 1000)
                done.append((time.perf_counter() - t0) * 1000)
    return running, done


def throughput(dep: Deployment, burst: int) -> float:
    sessions = [dep.http.post("/api/v1/sessions", json={"agent": "b"}).json()["id"]
                for _ in range(20)]  # fmt: skip
    t0 = time.perf_counter()
    ids = [dep.http.post(f"/api/v1/sessions/{sessions[i % 20]}/messages",
                         json={"message": "hi"}).json()["id"] for i in range(burst)]  # fmt: skip
    pending = set(ids)
    deadline = time.monotonic() + 600
    while pending and time.monotonic() < deadline:
        for task_id in list(pending)[:50]:
            if dep.http.get(f"/api/v1/tasks/{task_id}").json()["status"] in TERMINAL:
                pending.discard(task_id)
        time.sleep(0.05)
    assert not pending, f"{len(pending)} tasks never ended"
    return burst / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--record", action="store_true", help="prepend to bench/RESULTS.md")
    args = parser.parse_args()
    figures: dict[str, Any] = {}
    with ScriptedLLM(responder=lambda request: Turn(chunks=["ok"])) as llm:
        for executor in ("inline", "celery"):
            dep = Deployment(executor, llm)
            try:
                figures[executor] = (*latency(dep, args.tasks), throughput(dep, args.burst))
            finally:
                dep.close()
    (ir, id_, it), (cr, cd, ct) = figures["inline"], figures["celery"]
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = "\n".join([
        f"## {when}: inline vs Celery executor",
        "",
        f"Command: `.venv/bin/python bench/executors.py --tasks {args.tasks} --burst "
        f"{args.burst}` (2 cores; PostgreSQL and Redis on loopback; one daphne, plus one Celery "
        "worker with 4 processes for `celery`; an llm agent on a scripted one-chunk model, so "
        "no sandbox start-up is measured). Baseline: inline, same run.",
        "",
        "| figure | inline (baseline) | celery | ratio |",
        "|---|---|---|---|",
        f"| POST → `running` at the WebSocket, p50 / p95 / p99 ms | {summary(ir)} | {summary(cr)} | "
        f"{pct(cr, 0.5) / max(pct(ir, 0.5), 1e-9):.2f}x |",
        f"| POST → terminal status, p50 / p95 / p99 ms | {summary(id_)} | {summary(cd)} | "
        f"{pct(cd, 0.5) / max(pct(id_, 0.5), 1e-9):.2f}x |",
        f"| {args.burst} tasks over 20 sessions, tasks/s | {it:.1f} | {ct:.1f} | "
        f"{ct / it:.2f}x |",
        "",
    ])  # fmt: skip
    print(text)
    if args.record:
        prepend_results(text)


if __name__ == "__main__":
    main()
