"""What one API request costs the server, with Django's stock ASGI handler (the baseline) and
with ours (``runtime_project/handlers.py``: a sync view and its middleware in one thread hop).

Two embedded-default uvicorn servers run side by side, ``ASGI_ONE_HOP=false`` and ``true``;
requests alternate between them, one at a time, so both see the same machine load. For each
kind of request: the client's round trip, ms p50/p95, and the server process's CPU time per
request (``/proc/<pid>/stat`` user + system, over the whole series), which a loaded machine
disturbs less than wall time.

* ``GET /api/v1/nope``: a 404 in the error shape, no credential (Django and middleware only);
* ``GET /api/v1/sessions/{id}``: an API key, its team, one session (a typical DRF read);
* ``POST /api/v1/sessions``: a write with an audit entry and a ``session.created`` event;
* ``POST /sessions/{id}/tasks`` with ``stream: true`` → the first SSE event (``task.status``
  queued), on a new session each time: issue 13's "first event" path, minus the session.

Usage: ``.venv/bin/python -m bench.request_path --requests 200 [--record]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from bench.run import Server, pct, prepend_results, summary

ROOT = Path(__file__).resolve().parent.parent
AGENT = {"slug": "noop", "name": "noop", "kind": "command", "spec": {"command": ["true"]}}
KINDS = ("404", "get", "create", "first event")
SETTINGS = {"TASK_CONCURRENCY": "16", "THROTTLE_WS_CONNECT": "none"}


def cpu_ms(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far, ms."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


class Target:
    """One server and the requests measured on it."""

    def __init__(self, one_hop: bool) -> None:
        self.server = Server({**SETTINGS, "ASGI_ONE_HOP": str(one_hop).lower()}, asgi="uvicorn")
        self.http = httpx.Client(base_url=self.server.url, headers=self.server.headers, timeout=30)
        self.anonymous = httpx.Client(base_url=self.server.url, timeout=30)
        self.http.post("/api/v1/agents", json=AGENT).raise_for_status()
        self.session = self.new_session()
        self.wall: dict[str, list[float]] = {k: [] for k in KINDS}
        self.cpu: dict[str, float] = dict.fromkeys(KINDS, 0.0)

    def new_session(self) -> str:
        response = self.http.post("/api/v1/sessions", json={"agent": AGENT["slug"]})
        response.raise_for_status()
        return str(response.json()["id"])

    def not_found(self) -> None:
        response = self.anonymous.get("/api/v1/nope")
        assert response.status_code == 404, response.text

    def get(self) -> None:
        self.http.get(f"/api/v1/sessions/{self.session}").raise_for_status()

    def first_event(self, session: str) -> None:
        body = {"input": {}, "stream": True}
        with self.http.stream("POST", f"/api/v1/sessions/{session}/tasks", json=body) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if line.startswith("event:"):
                    return
        raise RuntimeError("the task stream ended without an event")

    def timed(self, kind: str, call: Callable[[], None]) -> None:
        cpu, start = cpu_ms(self.server.proc.pid), time.perf_counter()
        call()
        self.wall[kind].append((time.perf_counter() - start) * 1000)
        self.cpu[kind] += cpu_ms(self.server.proc.pid) - cpu

    def round(self, measured: bool) -> None:
        """One request of each kind (the stream's session is made outside the timing)."""
        sessions = [self.new_session()]
        for kind, call in (
            ("404", self.not_found),
            ("get", self.get),
            ("create", lambda: sessions.append(self.new_session())),
            ("first event", lambda: self.first_event(sessions[0])),
        ):
            if measured:
                self.timed(kind, call)
            else:
                call()

    def close(self) -> None:
        self.http.close()
        self.anonymous.close()
        self.server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="of each kind, per server")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--record", action="store_true", help="prepend to bench/RESULTS.md")
    args = parser.parse_args()
    stock, ours = Target(one_hop=False), Target(one_hop=True)
    try:
        for i in range(args.warmup + args.requests):
            for target in (stock, ours) if i % 2 else (ours, stock):
                target.round(measured=i >= args.warmup)
                time.sleep(0.15)  # the task's run ends off the clock
    finally:
        stock.close()
        ours.close()
    n = args.requests
    git = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    labels = {
        "404": "`GET /api/v1/nope` (404, no credential)",
        "get": "`GET /api/v1/sessions/{id}` (API key)",
        "create": "`POST /api/v1/sessions`",
        "first event": "`POST /sessions/{id}/tasks` `stream: true` → first SSE event",
    }
    rows = []
    for kind in KINDS:
        a, b = stock.wall[kind], ours.wall[kind]
        rows.append(
            f"| {labels[kind]} | {summary(a)} | {summary(b)} | {pct(b, 0.5) / pct(a, 0.5):.2f}x "
            f"| {stock.cpu[kind] / n:.2f} | {ours.cpu[kind] / n:.2f} "
            f"| {ours.cpu[kind] / max(stock.cpu[kind], 1e-9):.2f}x |"
        )
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = (
        f"## {now}: request path, Django's ASGI handler vs one hop per sync view\n\n"
        f"Command: `.venv/bin/python -m bench.request_path --requests {n}` (2 cores, Python "
        f"{platform.python_version()}, git {git}). Embedded default under uvicorn, throttles "
        "off; the two servers alternate request by request.\n\n"
        "| request | stock p50 / p95 ms | one hop p50 / p95 ms | ratio (p50) "
        "| stock CPU ms/req | one hop CPU ms/req | ratio (CPU) |\n"
        "|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n"
    )
    print(text)
    if args.record:
        prepend_results(text)


if __name__ == "__main__":
    main()
