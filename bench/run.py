"""Benchmarks of the spine on the embedded default (SQLite, in-memory channel layer, inline
executor, bubblewrap sandbox), against a real daphne on loopback.

Prints a Markdown report and, with ``--record``, prepends it to ``bench/RESULTS.md``.

Figures (each with a baseline from the same invocation, because this machine is shared):

* **latency** of ``POST /sessions/{id}/tasks`` → the task's first event over WebSocket
  (``task.status`` queued), → ``process.started`` (claimed, sandbox spawned), → the first
  ``process.stdout`` line and → the terminal ``task.status``; ms, p50/p95 over ``--tasks`` runs of
  ``echo hi``. Baselines: a ``GET /health`` round trip, and the same ``echo hi`` in a bare
  ``bwrap`` spawned directly (the sandbox's own cost).
* **throughput** of one task that writes ``--lines`` lines of ``--size`` bytes alternately to
  stdout and stderr with a flush after each: events/s and MB/s appended (by the events' own
  ``ts``) and received by one WebSocket subscriber and one SSE client, which must each get every
  event exactly once, in order. Output chunks of one stream are coalesced into events of up to
  32 KiB per flush interval (``EVENT_FLUSH_INTERVAL_MS``), so events/s depends on the line size;
  MB/s is the figure to compare. Baseline: the same producer on the host, its pipes read
  straight by this process.

Usage: ``make bench BENCH_ARGS='--tasks 50 --lines 20000 --size 1024 --record'``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.procs import daphne_argv, free_port, stop, uvicorn_argv, wait_for_port  # noqa: E402
from tests.transport.sse import iter_sse  # noqa: E402

TERMINAL = {"succeeded", "failed", "cancelled", "timed_out"}
PRODUCER = (
    "import sys\n"
    "pad = 'x' * ({size} - 11)\n"
    "for i in range({n}):\n"
    "    s = sys.stdout if i % 2 == 0 else sys.stderr\n"
    "    s.write(f'{{i:10d}}{{pad}}\\n'); s.flush()\n"
)


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of ``values`` by the nearest-rank method."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


def summary(values_ms: list[float]) -> str:
    return f"{pct(values_ms, 0.5):.1f} / {pct(values_ms, 0.95):.1f}"


def asgi_argv(asgi: str, port: int) -> list[str]:
    """The command that serves the ASGI app on 127.0.0.1:``port`` with ``asgi`` (``daphne`` or
    ``uvicorn``). Raises ValueError for another name."""
    if asgi == "daphne":
        return daphne_argv(port)
    if asgi == "uvicorn":
        return uvicorn_argv(port)  # runtime_project.serve: what `make serve` runs
    raise ValueError(f"unknown ASGI server {asgi!r} (daphne or uvicorn)")


class Server:
    """A fresh embedded-default ASGI server (``asgi``: daphne or uvicorn) in a temporary
    VAR_DIR, with a user token and the demo agents."""

    def __init__(self, overrides: dict[str, str] | None = None, asgi: str = "daphne") -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-"))
        self.port = free_port()
        self.env = dict(
            os.environ,
            VAR_DIR=str(self.tmp),
            PYTHONUNBUFFERED="1",
            TASK_CONCURRENCY="4",
            # what is measured is the server, not its limits (docs/limits.md)
            THROTTLE_USER="none",
            THROTTLE_TEAM="none",
            TEAM_MAX_RUNNING_TASKS="0",
            TEAM_MAX_SANDBOXES="0",
        )
        for name in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY"):
            self.env.pop(name, None)  # the embedded default, whatever the caller's shell says
        self.env.update(overrides or {})
        py = [sys.executable, "manage.py"]
        subprocess.run(
            [*py, "migrate", "--noinput"], cwd=ROOT, env=self.env, check=True, capture_output=True
        )
        subprocess.run([*py, "bootstrap"], cwd=ROOT, env=self.env, check=True, capture_output=True)
        self.token = subprocess.run(
            [*py, "create_user_token", "admin"],
            cwd=ROOT,
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        self.log = (self.tmp / f"{asgi}.log").open("ab")
        self.proc = subprocess.Popen(
            asgi_argv(asgi, self.port),
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_for_port(self.port, self.proc)
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        self.headers = {"Authorization": f"Bearer {self.token}"}

    def close(self) -> None:
        stop(self.proc, timeout=15)
        self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def bench_latency(server: Server, http: httpx.Client, n: int) -> dict[str, list[float]]:
    """Per-task milestones (ms after the POST was sent), read from a session WebSocket."""
    sid = http.post("/api/v1/sessions", json={"agent": "shell", "name": "bench"}).json()["id"]
    out: dict[str, list[float]] = {
        "health": [],
        "first": [],
        "started": [],
        "stdout": [],
        "done": [],
    }
    with connect(f"{server.ws_url}/ws/sessions/{sid}/", additional_headers=server.headers) as ws:
        for _ in range(3):  # warm-up: imports, first sandbox, SQLite page cache
            http.get("/health")
        for i in range(n + 3):
            t0 = time.perf_counter()
            http.get("/health")
            health_ms = (time.perf_counter() - t0) * 1000
            t0 = time.perf_counter()
            task = http.post(
                f"/api/v1/sessions/{sid}/tasks", json={"input": {"command": "echo hi"}}
            ).json()
            marks: dict[str, float] = {}
            while "done" not in marks:
                frame = json.loads(ws.recv(timeout=60))
                if frame.get("task_id") != task["id"]:
                    continue
                now = (time.perf_counter() - t0) * 1000
                marks.setdefault("first", now)
                if frame["type"] == "process.started":
                    marks.setdefault("started", now)
                elif frame["type"] == "process.stdout":
                    marks.setdefault("stdout", now)
                elif frame["type"] == "task.status" and frame["data"]["status"] in TERMINAL:
                    assert frame["data"]["status"] == "succeeded", frame
                    marks["done"] = now
            if i >= 3:  # the first runs are warm-up
                out["health"].append(health_ms)
                for key, value in marks.items():
                    out[key].append(value)
    return out


def bench_bare_bwrap(n: int) -> list[float]:
    """``echo hi`` in a bare bubblewrap sandbox (new pid/net/user namespaces, ro host), ms."""
    argv = [
        "bwrap",
        "--ro-bind",
        "/usr",
        "/usr",
        "--symlink",
        "usr/bin",
        "/bin",
        "--symlink",
        "usr/lib",
        "/lib",
        "--symlink",
        "usr/lib64",
        "/lib64",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--unshare-all",
        "--die-with-parent",
        "--",
        "/bin/sh",
        "-c",
        "echo hi",
    ]
    times = []
    for i in range(n + 3):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        if i >= 3:
            times.append((time.perf_counter() - t0) * 1000)
    return times


def _ws_reader(server: Server, sid: str, task_id: str, result: dict[str, Any]) -> None:
    seqs: list[int] = []
    first = last = 0.0
    with connect(
        f"{server.ws_url}/ws/tasks/{task_id}/?after=0",
        additional_headers=server.headers,
        max_size=None,
    ) as ws:
        result["ready"].set()
        while True:
            frame = json.loads(ws.recv(timeout=120))
            if "seq" not in frame:
                continue
            last = time.perf_counter()
            if frame["type"] == "process.started":
                first = last
            seqs.append(frame["seq"])
            if frame["type"] == "task.status" and frame["data"]["status"] in TERMINAL:
                break
    result.update(seqs=seqs, first=first, last=last)


def _sse_reader(server: Server, task_id: str, result: dict[str, Any]) -> None:
    seqs: list[int] = []
    first = last = 0.0
    with (
        httpx.Client(base_url=server.url, headers=server.headers, timeout=120) as client,
        client.stream("GET", f"/api/v1/tasks/{task_id}/stream?after=0") as response,
    ):
        result["ready"].set()
        for message in iter_sse(response):
            if message["event"] == "end":
                break
            if "id" in message:
                last = time.perf_counter()
                if message["event"] == "process.started":
                    first = last
                seqs.append(int(message["id"]))
    result.update(seqs=seqs, first=first, last=last)


def bench_throughput(server: Server, http: httpx.Client, lines: int, size: int) -> dict[str, Any]:
    """Events/s and MB/s appended and received for one flooding task (see the module doc)."""
    sid = http.post("/api/v1/sessions", json={"agent": "shell", "name": "flood"}).json()["id"]
    script = PRODUCER.format(n=lines, size=size)
    # Held in the session's queue behind a short sleep so both readers attach before it starts.
    http.post(f"/api/v1/sessions/{sid}/tasks", json={"input": {"command": "sleep 1"}})
    task = http.post(
        f"/api/v1/sessions/{sid}/tasks", json={"input": {"argv": ["python3", "-c", script]}}
    ).json()
    ws: dict[str, Any] = {"ready": threading.Event()}
    sse: dict[str, Any] = {"ready": threading.Event()}
    threads = [
        threading.Thread(target=_ws_reader, args=(server, sid, task["id"], ws)),
        threading.Thread(target=_sse_reader, args=(server, task["id"], sse)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    events: list[dict[str, Any]] = []
    after = 0
    while True:
        page = http.get(
            f"/api/v1/tasks/{task['id']}/events", params={"after": after, "limit": 1000}
        ).json()["events"]
        if not page:
            break
        events += page
        after = page[-1]["seq"]
    assert events[-1]["data"]["status"] == "succeeded", events[-1]
    seqs = [e["seq"] for e in events]
    assert ws["seqs"] == seqs, "the WebSocket subscriber lost or duplicated events"
    assert sse["seqs"] == seqs, "the SSE client lost or duplicated events"
    output = [e for e in events if e["type"] in ("process.stdout", "process.stderr")]
    text = "".join(e["data"]["text"] for e in output)
    assert text.count("\n") == lines, "output lines were lost"
    assert len(text) == lines * size, "output bytes were lost"
    # Every rate is over the same stretch: from `process.started` to the terminal `task.status`
    # (the events' own `ts` for the log; arrival times for the readers).
    started = next(e for e in events if e["type"] == "process.started")
    span = (
        datetime.fromisoformat(events[-1]["ts"]) - datetime.fromisoformat(started["ts"])
    ).total_seconds()
    span = max(span, 1e-6)
    n = len(events) - events.index(started)
    ws_span = max(ws["last"] - ws["first"], 1e-6)
    sse_span = max(sse["last"] - sse["first"], 1e-6)
    mb = lines * size / 1e6
    return {
        "events": len(events),
        "output_events": len(output),
        "appended": (n / span, mb / span),
        "ws": (n / ws_span, mb / ws_span),
        "sse": (n / sse_span, mb / sse_span),
    }


def bench_bare_producer(lines: int, size: int) -> float:
    """MB/s of the producer on the host, both pipes read by this process (baseline)."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", PRODUCER.format(n=lines, size=size)], capture_output=True, check=True
    )
    elapsed = time.perf_counter() - t0
    assert len(proc.stdout) + len(proc.stderr) == lines * size
    return lines * size / 1e6 / elapsed


def report(
    args: argparse.Namespace,
    lat: dict[str, list[float]],
    bare: list[float],
    thr: dict[str, Any],
    bare_mb: float,
) -> str:
    command = (
        f"make bench BENCH_ARGS='--tasks {args.tasks} --lines {args.lines} --size {args.size}'"
    )
    health = pct(lat["health"], 0.5)
    bwrap = pct(bare, 0.5)
    rows = [
        ("`GET /health` round trip (baseline)", lat["health"], "1.0x"),
        ("POST -> first event (`task.status` queued)", lat["first"], health, "health"),
        ("POST -> `process.started` (claimed, sandbox spawning)", lat["started"], health, "health"),
        ("bare `bwrap ... echo hi` (baseline)", bare, "1.0x"),
        ("POST -> first `process.stdout`", lat["stdout"], bwrap, "bare bwrap"),
        ("POST -> terminal `task.status`", lat["done"], bwrap, "bare bwrap"),
    ]
    table = []
    for row in rows:
        name, values = row[0], row[1]
        ratio = (
            row[2] if isinstance(row[2], str) else f"{pct(values, 0.5) / row[-2]:.1f}x {row[-1]}"
        )
        table.append(f"| {name} | {summary(values)} | {ratio} |")

    def rate(label: str, pair: tuple[float, float]) -> str:
        return f"| {label} | {pair[0]:,.0f} | {pair[1]:,.1f} | {pair[1] / bare_mb:.2f}x |"

    mb = args.lines * args.size / 1e6
    return "\n".join(
        [
            f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: embedded default (SQLite, in-memory "
            "channel layer, inline executor, bubblewrap)",
            "",
            f"Command: `{command}` ({os.cpu_count()} cores, Python {sys.version.split()[0]}).",
            "",
            f"Latency, {args.tasks} tasks of `echo hi` on one session, milestones seen on a "
            "session WebSocket, ms after the POST was sent:",
            "",
            "| milestone | p50 / p95 ms | ratio (p50) |",
            "|---|---|---|",
            *table,
            "",
            f"Throughput: one task writes {args.lines:,} lines of {args.size:,} bytes ({mb:,.1f} "
            f"MB), alternating stdout and stderr, flushed each; {thr['output_events']:,} output "
            f"events after coalescing ({thr['events']:,} in all). One WebSocket subscriber and "
            "one SSE client attached before it started; each received every event exactly once, "
            "in order.",
            "",
            "| figure | events/s | MB/s | ratio (MB/s) |",
            "|---|---|---|---|",
            f"| producer on the host, pipes read directly (baseline) | | {bare_mb:,.1f} | 1.00x |",
            rate("written to the log (events' `ts`, process start to end)", thr["appended"]),
            rate("received by the WebSocket subscriber", thr["ws"]),
            rate("received by the SSE client", thr["sse"]),
            "",
        ]
    )


def prepend_results(text: str) -> None:
    """Put ``text`` (one Markdown section) at the top of bench/RESULTS.md, newest first."""
    results = ROOT / "bench" / "RESULTS.md"
    head = "# Benchmark results\n\nNewest first. Each section names the command that "
    head += "produced it; ratios compare with a baseline from the same run.\n\n"
    old = results.read_text() if results.exists() else head
    body = old[len(head) :] if old.startswith(head) else old
    results.write_text(head + text + "\n" + body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=50, help="tasks for the latency figures")
    parser.add_argument("--lines", type=int, default=20000, help="lines for the throughput run")
    parser.add_argument("--size", type=int, default=1024, help="bytes per line (>= 12)")
    parser.add_argument("--record", action="store_true", help="prepend to bench/RESULTS.md")
    args = parser.parse_args()
    server = Server()
    try:
        with httpx.Client(base_url=server.url, headers=server.headers, timeout=60) as http:
            lat = bench_latency(server, http, args.tasks)
            bare = bench_bare_bwrap(args.tasks)
            thr = bench_throughput(server, http, args.lines, args.size)
            bare_mb = bench_bare_producer(args.lines, args.size)
    finally:
        server.close()
    text = report(args, lat, bare, thr, bare_mb)
    print(text)
    if args.record:
        prepend_results(text)


if __name__ == "__main__":
    main()
