"""Bounded load on one real server: many sessions, each watched by a live subscriber.

The load (issue 13, reliability 4): ``--sessions`` sessions (default 200), each with one
subscriber open for the whole run (WebSocket ``/ws/sessions/{id}/`` for even sessions, SSE
``/api/v1/sessions/{id}/events/stream`` for odd ones; asyncio clients: ``websockets`` and
``httpx.AsyncClient``), and ``--tasks`` tasks per session (default 5) created at a fixed rate
(``--rate`` tasks/s, round-robin over the sessions, so a session's tasks are ``sessions / rate``
seconds apart and an open loop, not the server's pace, sets the arrival rate). The agent is an
``llm`` agent on a scripted one-chunk model over real HTTP: no sandbox start-up, so what is
loaded is the spine (create, dispatch, run loop, event log, fan-out).

Figures, ms after the ``POST /sessions/{id}/messages`` was sent: **first** = the task's first
event at the session's subscriber, **done** = its terminal ``task.status`` there; measured idle
first (``--idle`` tasks, one session at a time, half WebSocket half SSE) and then under load.

Checks made by :func:`check_streams` (the test asserts on them): every subscriber's ``seq`` run
is 1, 2, …, n with no gap or duplicate and equals, envelope for envelope, what
``GET /sessions/{id}/events`` holds; every task ended ``succeeded``.

Usage (embedded default, or PostgreSQL + Redis with ``DATABASE_URL``/``REDIS_URL`` exported
and ``--keep-env``): ``.venv/bin/python -m bench.load --sessions 200 --tasks 5 --rate 12``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect

TERMINAL = {"succeeded", "failed", "cancelled", "timed_out"}
# What the server must not refuse while loaded (docs/limits.md): the load is the point.
SERVER_ENV = {
    "THROTTLE_USER": "none",
    "THROTTLE_TEAM": "none",
    "THROTTLE_WS_CONNECT": "none",
    "TEAM_MAX_RUNNING_TASKS": "0",
    "LLM_ENDPOINT_ALLOWED_HOSTS": "127.0.0.1",
}


@dataclass
class Subscriber:
    """One live subscriber of a session: every envelope it got, and when each task's first
    and terminal events arrived (``time.perf_counter()`` seconds)."""

    session_id: str
    kind: str  # "ws" or "sse"
    envelopes: list[dict[str, Any]] = field(default_factory=list)
    first_at: dict[str, float] = field(default_factory=dict)
    terminal: dict[str, tuple[float, str]] = field(default_factory=dict)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    error: str | None = None

    def take(self, envelope: dict[str, Any]) -> None:
        now = time.perf_counter()
        self.envelopes.append(envelope)
        task = envelope.get("task_id")
        if task is not None:
            self.first_at.setdefault(task, now)
            status = envelope["data"].get("status") if envelope["type"] == "task.status" else None
            if status in TERMINAL:
                self.terminal[task] = (now, status)
                self.changed.set()

    async def wait_terminal(self, task_id: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while task_id not in self.terminal:
            if self.error or time.monotonic() > deadline:
                raise TimeoutError(f"{self.kind} {self.session_id}: no end of {task_id}")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), max(deadline - time.monotonic(), 0))

    async def run(self, base_url: str, token: str, stop: asyncio.Event) -> None:
        """Read the stream until ``stop`` is set (a read error is kept in ``error``)."""
        reader = asyncio.ensure_future(
            (self._ws if self.kind == "ws" else self._sse)(base_url, token)
        )
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({reader, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (reader, stopper):
                t.cancel()
            await asyncio.gather(reader, stopper, return_exceptions=True)
            if not reader.cancelled():
                exc = reader.exception()
                if exc is not None:  # kept for the report; the checks fail on it
                    self.error = f"{type(exc).__name__}: {exc}"
                elif not stop.is_set():
                    self.error = "the stream ended early"
            self.ready.set()
            self.changed.set()

    async def _ws(self, base_url: str, token: str) -> None:
        url = base_url.replace("http://", "ws://") + f"/ws/sessions/{self.session_id}/?after=0"
        headers = {"Authorization": f"Bearer {token}"}
        async with connect(url, additional_headers=headers, max_size=2**24) as ws:
            self.ready.set()
            async for raw in ws:
                frame = json.loads(raw)
                if "seq" in frame:
                    self.take(frame)
                elif frame.get("type") not in ("stream.heartbeat",):
                    raise RuntimeError(f"unexpected frame {frame}")

    async def _sse(self, base_url: str, token: str) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        timeout = httpx.Timeout(30, read=None)
        async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=timeout) as c:
            path = f"/api/v1/sessions/{self.session_id}/events/stream"
            async with c.stream("GET", path) as response:
                response.raise_for_status()
                self.ready.set()
                data: list[str] = []
                async for line in response.aiter_lines():
                    if line.startswith("data:"):
                        data.append(line[5:].removeprefix(" "))
                    elif line == "" and data:
                        envelope = json.loads("\n".join(data))
                        data = []
                        if isinstance(envelope, dict) and "seq" in envelope:
                            self.take(envelope)


@dataclass
class Figures:
    idle_first: list[float] = field(default_factory=list)  # ms
    idle_done: list[float] = field(default_factory=list)
    load_first: list[float] = field(default_factory=list)
    load_done: list[float] = field(default_factory=list)
    load_wall_s: float = 0.0
    server_cpu_s: float = 0.0  # the server process's CPU time (user + system) under load
    tasks: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def tasks_per_s(self) -> float:
        return self.tasks / self.load_wall_s if self.load_wall_s else 0.0


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads) so far; 0 without one."""
    if pid is None:
        return 0.0
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of ``values`` by the nearest-rank method (as bench/run.py)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


async def _create_session(api: httpx.AsyncClient, agent: str) -> str:
    response = await api.post("/api/v1/sessions", json={"agent": agent})
    response.raise_for_status()
    return str(response.json()["id"])


async def _post_task(api: httpx.AsyncClient, session_id: str) -> str:
    response = await api.post(f"/api/v1/sessions/{session_id}/messages", json={"message": "hi"})
    if response.status_code != 201:
        raise RuntimeError(f"task create: {response.status_code} {response.text[:300]}")
    return str(response.json()["id"])


OPEN_WAVE = 25  # subscribers connecting at once


async def _open(
    subs: list[Subscriber], base_url: str, token: str, stop: asyncio.Event
) -> list[Any]:
    """Connect the subscribers in waves of :data:`OPEN_WAVE`, as clients arrive, not all 200
    in one instant: daphne drops a WebSocket handshake its app has not accepted within 5 s,
    and on 2 busy cores (CI) 100 simultaneous handshakes can take that long."""
    runners = []
    for i in range(0, len(subs), OPEN_WAVE):
        wave = subs[i : i + OPEN_WAVE]
        runners += [asyncio.ensure_future(s.run(base_url, token, stop)) for s in wave]
        for sub in wave:
            await asyncio.wait_for(sub.ready.wait(), 60)
            if sub.error:
                raise RuntimeError(f"subscriber of {sub.session_id}: {sub.error}")
    return runners


async def _all_events(api: httpx.AsyncClient, session_id: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    after = 0
    for _ in range(1000):  # bounded: 1000 pages of 1000 events
        response = await api.get(
            f"/api/v1/sessions/{session_id}/events", params={"after": after, "limit": 1000}
        )
        response.raise_for_status()
        page = response.json()["events"]
        out.extend(page)
        if len(page) < 1000:
            break
        after = page[-1]["seq"]
    return out


def check_stream(sub: Subscriber, log: list[dict[str, Any]], task_ids: list[str]) -> list[str]:
    """What is wrong with one subscriber's stream against the session's log (empty: nothing)."""
    problems = []
    where = f"{sub.kind} subscriber of {sub.session_id}"
    if sub.error:
        problems.append(f"{where}: {sub.error}")
    seqs = [e["seq"] for e in sub.envelopes]
    if seqs != list(range(1, len(seqs) + 1)):
        problems.append(f"{where}: seqs not 1..n without gap or duplicate: {seqs[:50]}")
    if sub.envelopes != log:
        missing = sorted({e["seq"] for e in log} - set(seqs))
        problems.append(
            f"{where}: stream != log ({len(sub.envelopes)} vs {len(log)} events, "
            f"missing seqs {missing[:20]})"
        )
    for task_id in task_ids:
        status = sub.terminal.get(task_id, (0.0, "no terminal event"))[1]
        if status != "succeeded":
            problems.append(f"{where}: task {task_id} ended {status!r}")
    return problems


async def check_streams(
    api: httpx.AsyncClient, subs: list[Subscriber], tasks: dict[str, list[str]]
) -> list[str]:
    problems: list[str] = []
    for sub in subs:
        log = await _all_events(api, sub.session_id)
        problems.extend(check_stream(sub, log, tasks[sub.session_id]))
        response = await api.get(f"/api/v1/sessions/{sub.session_id}/tasks", params={"limit": 100})
        response.raise_for_status()
        body = response.json()
        rows = body["results"] if isinstance(body, dict) else body
        statuses = {row["id"]: row["status"] for row in rows}
        for task_id in tasks[sub.session_id]:
            if statuses.get(task_id) != "succeeded":
                problems.append(f"task {task_id}: status {statuses.get(task_id)!r} in the API")
    return problems


async def run_load(
    *,
    base_url: str,
    token: str,
    agent: str,
    sessions: int = 200,
    tasks_per_session: int = 5,
    rate: float = 12.0,
    idle: int = 20,
    timeout_s: float = 120.0,
    server_pid: int | None = None,
    log: Callable[[str], None] = print,
) -> Figures:
    """Measure idle, then run the load; returns the figures and every problem found.

    ``server_pid`` (the daphne's) adds the server's CPU seconds under load to the figures.
    Raises ``TimeoutError`` if the load does not end within ``timeout_s`` (creates, then
    terminal events: two budgets), ``RuntimeError`` if a create is refused."""
    figures = Figures()
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, timeout=60, limits=limits
    ) as api:
        stop = asyncio.Event()
        # Idle: one session at a time, half WebSocket, half SSE, 2 warm-up tasks each.
        for kind in ("ws", "sse"):
            sub = Subscriber(await _create_session(api, agent), kind)
            idle_stop = asyncio.Event()
            runner = await _open([sub], base_url, token, idle_stop)
            ids = []
            for i in range(idle // 2 + 2):
                t0 = time.perf_counter()
                task_id = await _post_task(api, sub.session_id)
                await sub.wait_terminal(task_id, 60)
                ids.append(task_id)
                if i >= 2:
                    figures.idle_first.append((sub.first_at[task_id] - t0) * 1000)
                    figures.idle_done.append((sub.terminal[task_id][0] - t0) * 1000)
            figures.problems.extend(await check_streams(api, [sub], {sub.session_id: ids}))
            idle_stop.set()
            await asyncio.gather(*runner)
        log(f"idle: first p95 {pct(figures.idle_first, 0.95):.0f} ms, "
            f"done p95 {pct(figures.idle_done, 0.95):.0f} ms")  # fmt: skip

        # Load: every session and its subscriber first, then the tasks at a fixed rate.
        t_setup = time.perf_counter()
        sem = asyncio.Semaphore(16)

        async def make(i: int) -> Subscriber:
            async with sem:
                return Subscriber(await _create_session(api, agent), "ws" if i % 2 == 0 else "sse")

        subs = list(await asyncio.gather(*(make(i) for i in range(sessions))))
        runners = await _open(subs, base_url, token, stop)
        log(f"{sessions} sessions and subscribers in {time.perf_counter() - t_setup:.1f} s")
        tasks: dict[str, list[str]] = {s.session_id: [] for s in subs}
        sent: dict[str, float] = {}
        start = time.perf_counter()
        cpu0 = cpu_seconds(server_pid)

        async def create(sub: Subscriber, at: float) -> None:
            await asyncio.sleep(max(0.0, at - (time.perf_counter() - start)))
            t0 = time.perf_counter()
            task_id = await _post_task(api, sub.session_id)
            sent[task_id] = t0
            tasks[sub.session_id].append(task_id)

        total = sessions * tasks_per_session
        creates = [
            asyncio.ensure_future(create(subs[i % sessions], i / rate)) for i in range(total)
        ]
        try:
            await asyncio.wait_for(asyncio.gather(*creates), timeout_s)
            deadline = time.monotonic() + timeout_s
            for sub in subs:
                for task_id in tasks[sub.session_id]:
                    await sub.wait_terminal(task_id, max(deadline - time.monotonic(), 0.1))
        finally:
            for c in creates:
                c.cancel()
            figures.load_wall_s = time.perf_counter() - start
            figures.server_cpu_s = cpu_seconds(server_pid) - cpu0
            stop.set()
            await asyncio.gather(*runners, return_exceptions=True)
        figures.tasks = total
        for sub in subs:
            for task_id in tasks[sub.session_id]:
                figures.load_first.append((sub.first_at[task_id] - sent[task_id]) * 1000)
                figures.load_done.append((sub.terminal[task_id][0] - sent[task_id]) * 1000)
        figures.problems.extend(await check_streams(api, subs, tasks))
    return figures


def report(figures: Figures) -> str:
    def row(name: str, idle: list[float], load: list[float]) -> str:
        ratio = pct(load, 0.95) / max(pct(idle, 0.95), 1e-9)
        return (
            f"| {name} | {pct(idle, 0.5):.1f} / {pct(idle, 0.95):.1f} | "
            f"{pct(load, 0.5):.1f} / {pct(load, 0.95):.1f} | {ratio:.2f}x |"
        )

    return "\n".join([
        "| figure (ms, p50 / p95) | idle | under load | p95 ratio |",
        "|---|---|---|---|",
        row("create → first event at the subscriber", figures.idle_first, figures.load_first),
        row("create → terminal status at the subscriber", figures.idle_done, figures.load_done),
        "",
        f"{figures.tasks} tasks in {figures.load_wall_s:.1f} s: {figures.tasks_per_s:.1f} tasks/s; "
        f"problems: {len(figures.problems)}; server CPU {figures.server_cpu_s:.1f} s "
        f"({1000 * figures.server_cpu_s / max(figures.tasks, 1):.0f} ms per task)",
    ])  # fmt: skip


def agent_spec(kind: str, model_url: str) -> dict[str, Any]:
    """The load's agent: ``llm`` on the scripted model at ``model_url`` (one HTTP round trip
    per task), or a ``workflow`` passing its input to its output (no sandbox, no model)."""
    if kind == "workflow":
        return {
            "components": [{"id": "in", "type": "input"}, {"id": "out", "type": "output"}],
            "edges": [{"from": "in.x", "to": "out.x"}],
        }
    return {"model": {"base_url": model_url, "name": "scripted"}, "max_retries": 0}


def main() -> None:
    import sys

    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "runtime_project.settings")
    import django

    django.setup()  # the scripted model server lives in the sessions package
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    from bench.run import Server
    from sessions.runners.scripted_llm import ScriptedLLM, Turn

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--tasks", type=int, default=5)
    parser.add_argument("--rate", type=float, default=12.0, help="tasks created per second")
    parser.add_argument("--idle", type=int, default=20)
    parser.add_argument("--concurrency", default="8", help="the server's TASK_CONCURRENCY")
    parser.add_argument(
        "--keep-env", action="store_true", help="keep DATABASE_URL/REDIS_URL (PostgreSQL+Redis)"
    )
    parser.add_argument("--server-log", help="copy the server's log here at the end")
    parser.add_argument("--record", action="store_true", help="prepend to bench/RESULTS.md")
    parser.add_argument(
        "--kind", choices=("llm", "workflow"), default="llm",
        help="the agent: llm (a scripted model over HTTP) or workflow (input -> output)",
    )  # fmt: skip
    args = parser.parse_args()
    with ScriptedLLM(responder=lambda request: Turn(chunks=["ok"])) as llm:
        overrides = dict(SERVER_ENV, TASK_CONCURRENCY=args.concurrency)
        if args.keep_env:
            overrides.update(
                {k: os.environ[k] for k in ("DATABASE_URL", "REDIS_URL") if k in os.environ}
            )
        server = Server(overrides)
        try:
            spec = agent_spec(args.kind, llm.base_url)
            with httpx.Client(base_url=server.url, headers=server.headers, timeout=60) as http:
                body = {"slug": "load", "name": "load", "kind": args.kind, "spec": spec}
                http.post("/api/v1/agents", json=body).raise_for_status()
            figures = asyncio.run(
                run_load(
                    base_url=server.url, token=server.token, agent="load",
                    sessions=args.sessions, tasks_per_session=args.tasks, rate=args.rate,
                    idle=args.idle, timeout_s=300, server_pid=server.proc.pid,
                )
            )  # fmt: skip
        finally:
            if args.server_log:
                import shutil

                shutil.copy(next(server.tmp.glob("*.log")), args.server_log)
            server.close()
    text = section(args, report(figures))
    print(text)
    for problem in figures.problems[:20]:
        print("problem:", problem)
    if args.record:
        from bench.run import prepend_results

        prepend_results(text)
    if figures.problems:
        raise SystemExit(1)


def section(args: argparse.Namespace, table: str) -> str:
    """The RESULTS.md section of one run: title, command, set-up, ``table``."""
    import datetime as dt
    import platform
    import sys

    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    argv = [a for a in sys.argv[1:] if a != "--record"]
    where = "PostgreSQL + Redis" if args.keep_env else "SQLite, in-memory channel layer"
    command = " ".join([".venv/bin/python -m bench.load", *argv])
    return (
        f"## {now}: bounded load, {args.sessions} sessions x {args.tasks} tasks with live "
        f"subscribers\n\n"
        f"Command: `{command}` "
        f"(2 cores, Python {platform.python_version()}; embedded default under daphne: {where}, "
        f"inline executor; agent kind `{args.kind}`). Every session has a live subscriber (half "
        f"WebSocket, half SSE); tasks are created at {args.rate:g}/s round-robin. Baseline: the "
        f"same measurements with one session at a time ({args.idle} tasks), same run.\n\n"
        f"{table}\n"
    )


if __name__ == "__main__":
    main()
