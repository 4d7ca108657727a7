"""Side by side: our server against LangGraph's in-memory dev server (``langgraph dev``), both
started by this script, measured by the same client in the same invocation.

The peer runs a graph with one sync node whose ``get_stream_writer()`` emits ``{"i": i}`` n
times (``bench/peer/graph.py``); the client calls ``POST /threads`` then ``POST
/threads/{id}/runs/stream`` with ``stream_mode="custom"``. Ours runs the same work as a
``command`` agent with ``spec.stdout_format: "events"``: a ``python3`` script in the session's
sandbox prints ``{"i": i}`` n times, each JSON line becoming one ``custom`` event; the client
calls ``POST /api/v1/sessions`` then ``POST /sessions/{id}/tasks`` with ``stream: true`` (the
answer is the task's SSE stream). A second side of ours, *in-process*, runs the same work
without a sandbox, as the peer runs its graph: a ``workflow`` agent whose loop ``emit``s one
``custom`` event per item in the executor's process (every item is also a traced step, so it
writes three events per custom one). One client for all: httpx (HTTP/1.1 keep-alive) and the same
SSE parser, on one asyncio loop, over loopback.

Scenarios:

1. **Latency**, ``--runs`` sequential runs of n=1 after ``--warmup``, the two servers
   interleaved run by run. Milestones in ms after the first request was sent: the thread or
   session created; the first SSE event of any kind (ours: ``task.status`` queued, written when
   the task is created; the peer's first event is ``metadata``, sent once a worker has picked
   the run); the run started (ours: ``task.status`` running; peer: ``metadata``); the first
   ``custom`` event (produced by the agent); the run complete (ours: the terminal
   ``task.status``; peer: the stream's end). Once with a new thread/session per run (ours
   starts a sandbox for each new session), once reusing one (``--warm-runs``).
2. **Throughput**: one run emitting ``--events`` custom events; events/s received by the
   client, end to end (request sent to the last event) and steady (first to last ``custom``).
   SSE for both, and our session WebSocket (``task.create`` frame) too. Median of
   ``--repeat``.
3. **Concurrency**: ``--concurrent`` runs of 10 events started at once (each creates its own
   thread/session); wall time until every stream has ended, and the per-run p50 / max.
   Median of ``--repeat``.

Both servers are configured to measure the servers, not their limits: ours with throttles,
team quotas and the WebSocket handshake throttle off and ``TASK_CONCURRENCY`` =
``--concurrency``; the peer with ``--n-jobs-per-worker`` = ``--concurrency`` (its code
defaults to 1 run at a time, not the 10 its help says). Threads and sessions are deleted after
each run, outside the timed span. The peer is installed from ``bench/peer/requirements.txt``
into its own virtualenv (``var/peer-venv``, Python 3.11, by ``uv``), re-installed when that
file changes. Known peer artifact: its in-memory queue is polled every 0.5 s, so an idle
server picks a new run up 0.5-1 s late (shared/research/peer-bench.md); the rows show it.

Usage: ``.venv/bin/python bench/peer.py [--server daphne|uvicorn] [--runs 100] [--record]``.
``--record`` prepends the report to bench/RESULTS.md. Default run: about 4 minutes on a quiet
2-core machine (8 on a loaded one), most of it the peer's 0.5-1 s latency runs and our server's
migrations.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, bench/ is sys.path[0] and its modules could shadow the
# standard library's; the project root instead.
if sys.path and Path(sys.path[0]).resolve() == ROOT / "bench":
    sys.path[0] = str(ROOT)
elif str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402

from bench.run import Server, pct, prepend_results  # noqa: E402
from tests.procs import free_port, stop  # noqa: E402

PEER_DIR = ROOT / "bench" / "peer"
PEER_VENV = ROOT / "var" / "peer-venv"
UV = ROOT / "var" / "tools" / "uv" / "bin" / "uv"
PEER_PYTHON = "/usr/bin/python3.11"
PEER_PACKAGES = ("langgraph-cli", "langgraph-api", "langgraph-runtime-inmem", "langgraph")
TERMINAL = {"succeeded", "failed", "cancelled", "timed_out"}
# Our agent: stdout is a pipe, so print() is block-buffered, like any batch producer.
PRODUCER = "import json, sys\nfor i in range(int(sys.argv[1])):\n    print(json.dumps({'i': i}))\n"
AGENT = {
    "slug": "peer-bench",
    "name": "peer bench: n custom events",
    "kind": "command",
    "spec": {"command": ["python3", "-c", PRODUCER], "stdout_format": "events"},
}
# The same work with no sandbox, like the peer's graph: a workflow whose loop emits one custom
# event per item, in the executor's process (each item is also a traced step).
WORKFLOW = {
    "slug": "peer-bench-wf",
    "name": "peer bench: n custom events, in-process workflow",
    "kind": "workflow",
    "spec": {
        "components": [
            {"id": "in", "type": "input"},
            {"id": "each", "type": "loop", "max_items": 10_000,
             "component": {"type": "emit", "data": {"i": "{{index}}"}}},
            {"id": "out", "type": "output"},
        ],
        "edges": [{"from": "in.items", "to": "each.items"}, {"from": "each", "to": "out.v"}],
    },
}  # fmt: skip


# -- the peer -------------------------------------------------------------------------------


def ensure_peer_venv() -> Path:
    """Create or refresh var/peer-venv from bench/peer/requirements.txt; its ``bin`` dir.

    Idempotent: a stamp file holds the requirements' sha256. Raises CalledProcessError when uv
    fails (no network to PyPI and no cache)."""
    requirements = PEER_DIR / "requirements.txt"
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()
    stamp = PEER_VENV / ".requirements.sha256"
    if stamp.exists() and stamp.read_text().strip() == digest:
        return PEER_VENV / "bin"
    if not (PEER_VENV / "bin" / "python").exists():
        subprocess.run([str(UV), "venv", "-q", "--python", PEER_PYTHON, str(PEER_VENV)], check=True)
    python = str(PEER_VENV / "bin" / "python")
    subprocess.run(
        [str(UV), "pip", "install", "-q", "--python", python, "-r", str(requirements)], check=True
    )
    stamp.write_text(digest + "\n")
    return PEER_VENV / "bin"


def peer_versions(bin_dir: Path) -> str:
    code = "import importlib.metadata as m, sys; print(' '.join(f'{p} {m.version(p)}' for p in "
    code += f"{list(PEER_PACKAGES)!r}), 'python', sys.version.split()[0])"
    out = subprocess.run([str(bin_dir / "python"), "-c", code], capture_output=True, text=True)
    return out.stdout.strip() or f"(unknown: {out.stderr.strip()[-200:]})"


class PeerServer:
    """``langgraph dev`` (in-memory runtime) on a free loopback port, from a temporary copy of
    bench/peer (it writes its persistence files into its working directory)."""

    def __init__(self, bin_dir: Path, jobs: int) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-peer-"))
        for name in ("graph.py", "langgraph.json"):
            shutil.copy(PEER_DIR / name, self.tmp / name)
        self.port = free_port()
        env = dict(os.environ, LANGGRAPH_CLI_NO_ANALYTICS="1", LANGSMITH_TRACING="false")
        self.log_path = self.tmp / "langgraph.log"
        self.log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                *(str(bin_dir / "langgraph"), "dev", "--no-browser", "--no-reload"),
                *("--host", "127.0.0.1", "--port", str(self.port)),
                *("--n-jobs-per-worker", str(jobs), "--server-log-level", "WARNING"),
            ],
            cwd=self.tmp,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while True:  # the CLI picks another port, silently, when the one asked for is taken
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"langgraph dev did not start: {self.tail()}")
            try:
                if httpx.get(f"{self.url}/ok", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        if f"127.0.0.1:{self.port}" not in self.log_path.read_text(errors="replace"):
            self.close()
            raise RuntimeError(f"something else answers on port {self.port}")

    def tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-2000:]

    def close(self) -> None:
        stop(self.proc, timeout=15)
        self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


# -- the client -----------------------------------------------------------------------------


async def aiter_sse(response: httpx.Response) -> Any:
    """Yield ``(event, data_text)`` per SSE message that has data; comments are skipped."""
    event, data = "message", None
    async for line in response.aiter_lines():
        if line == "":
            if data is not None:
                yield event, data
            event, data = "message", None
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            value = line[5:].lstrip(" ")
            data = value if data is None else data + "\n" + value


class Run(dict[str, float]):
    """Milestones of one run, ms after its first request: ``created``, ``first``,
    ``started``, ``custom`` (first custom event), ``last_custom``, ``done``; and ``customs``,
    the number of custom events received."""


def _mark(run: Run, key: str, t0: float) -> None:
    run.setdefault(key, (time.perf_counter() - t0) * 1000)


def _check(run: Run, n: int, label: str) -> Run:
    if run.get("customs") != n or "done" not in run:
        raise RuntimeError(f"{label}: {run.get('customs')} of {n} custom events, {dict(run)}")
    return run


class Peer:
    label = "peer"

    def __init__(self, server: PeerServer) -> None:
        self.http = httpx.AsyncClient(base_url=server.url, timeout=120)

    async def new_thread(self) -> str:
        response = await self.http.post("/threads", json={})
        response.raise_for_status()
        return str(response.json()["thread_id"])

    async def delete(self, thread: str) -> None:
        await self.http.delete(f"/threads/{thread}")

    async def run(self, n: int, thread: str | None = None) -> Run:
        """One run of the graph streaming ``n`` custom events; a new thread unless given."""
        run, t0 = Run(customs=0), time.perf_counter()
        tid = thread or await self.new_thread()
        _mark(run, "created", t0)
        body = {"assistant_id": "agent", "input": {"n": n}, "stream_mode": "custom"}
        async with self.http.stream("POST", f"/threads/{tid}/runs/stream", json=body) as response:
            response.raise_for_status()
            async for event, data in aiter_sse(response):
                _mark(run, "first", t0)
                if event == "metadata":
                    _mark(run, "started", t0)
                elif event == "custom":
                    json.loads(data)
                    run["customs"] += 1
                    _mark(run, "custom", t0)
                    run["last_custom"] = (time.perf_counter() - t0) * 1000
                elif event == "error":
                    raise RuntimeError(f"peer run failed: {data}")
        _mark(run, "done", t0)
        if thread is None:
            await self.delete(tid)
        return _check(run, n, "peer")

    async def close(self) -> None:
        await self.http.aclose()


class Ours:
    """Our server running the ``command`` agent (a sandbox per session)."""

    label = "ours"
    agent = AGENT

    def __init__(self, server: Server) -> None:
        self.server = server
        self.http = httpx.AsyncClient(base_url=server.url, headers=server.headers, timeout=120)

    def task_input(self, n: int) -> dict[str, Any]:
        return {"args": [str(n)]}

    async def setup(self) -> None:
        response = await self.http.post("/api/v1/agents", json=self.agent)
        if response.status_code != 201:
            raise RuntimeError(f"agent not created: {response.status_code} {response.text}")

    async def new_thread(self) -> str:
        response = await self.http.post("/api/v1/sessions", json={"agent": self.agent["slug"]})
        response.raise_for_status()
        return str(response.json()["id"])

    async def delete(self, sid: str) -> None:
        await self.http.delete(f"/api/v1/sessions/{sid}")

    def _on(self, run: Run, t0: float, kind: str, envelope: dict[str, Any]) -> bool:
        """Record one event; True once the task is over."""
        _mark(run, "first", t0)
        if kind == "custom":
            run["customs"] += 1
            _mark(run, "custom", t0)
            run["last_custom"] = (time.perf_counter() - t0) * 1000
        elif kind == "process.started":
            _mark(run, "process", t0)
        elif kind == "task.status":
            status = envelope["data"]["status"]
            if status == "running":
                _mark(run, "started", t0)
            elif status in TERMINAL:
                if status != "succeeded":
                    raise RuntimeError(f"our task ended {status}: {envelope['data']}")
                _mark(run, "done", t0)
                return True
        return False

    async def run(self, n: int, thread: str | None = None) -> Run:
        """One task streaming ``n`` custom events over SSE; a new session unless given."""
        run, t0 = Run(customs=0), time.perf_counter()
        sid = thread or await self.new_thread()
        _mark(run, "created", t0)
        body = {"input": self.task_input(n), "stream": True}
        url = f"/api/v1/sessions/{sid}/tasks"
        async with self.http.stream("POST", url, json=body) as response:
            if response.status_code != 200:
                raise RuntimeError(f"task not created: {(await response.aread())[:500]!r}")
            # Read to the end (`end` follows the terminal status) so the connection is reused.
            async for event, data in aiter_sse(response):
                if event != "end":
                    self._on(run, t0, event, json.loads(data))
        if thread is None:
            await self.delete(sid)
        return _check(run, n, self.label)

    async def run_ws(self, n: int) -> Run:
        """One task streaming ``n`` custom events over the session WebSocket (``task.create``
        frame), on a new session."""
        run, t0 = Run(customs=0), time.perf_counter()
        sid = await self.new_thread()
        _mark(run, "created", t0)
        url = f"{self.server.ws_url}/ws/sessions/{sid}/"
        async with connect(url, additional_headers=self.server.headers, max_size=None) as ws:
            frame = {"type": "task.create", "request_id": "1", "input": self.task_input(n)}
            await ws.send(json.dumps(frame))
            while True:
                message = json.loads(await asyncio.wait_for(ws.recv(), 120))
                if message["type"] == "error":
                    raise RuntimeError(f"task.create refused: {message}")
                if "seq" in message and self._on(run, t0, message["type"], message):
                    break
        await self.delete(sid)
        return _check(run, n, "ours (WebSocket)")

    async def close(self) -> None:
        await self.http.aclose()


class OursInProcess(Ours):
    """Our server running the :data:`WORKFLOW` agent: no sandbox, as the peer runs its graph."""

    label = "in-process"
    agent = WORKFLOW

    def task_input(self, n: int) -> dict[str, Any]:
        return {"items": list(range(n))}


# -- scenarios ------------------------------------------------------------------------------


async def latency(sides: list[Any], runs: int, warmup: int, warm: bool) -> dict[str, list[Run]]:
    """Sequential n=1 runs, the sides alternating (and their order too, run by run)."""
    out: dict[str, list[Run]] = {side.label: [] for side in sides}
    threads = {side.label: await side.new_thread() for side in sides} if warm else {}
    for i in range(warmup + runs):
        for side in sides if i % 2 == 0 else sides[::-1]:
            run = await side.run(1, threads.get(side.label))
            if i >= warmup:
                out[side.label].append(run)
    for side in sides:
        if warm:
            await side.delete(threads[side.label])
    return out


def rates(run: Run, n: int) -> tuple[float, float]:
    """(end-to-end, steady) events/s: n over request-to-last-custom, n-1 over first-to-last."""
    steady = (n - 1) / max(run["last_custom"] - run["custom"], 1e-3) * 1000
    return n / run["last_custom"] * 1000, steady


async def concurrent(side: Any, count: int, n: int) -> tuple[float, list[float]]:
    """``count`` runs started at once; (wall s until all are done, per-run completion ms)."""
    t0 = time.perf_counter()
    runs = await asyncio.gather(*(side.run(n) for _ in range(count)))
    return time.perf_counter() - t0, [r["done"] for r in runs]


def median(values: list[float]) -> float:
    return pct(values, 0.5)


# -- report ---------------------------------------------------------------------------------


def _lat_rows(lat: dict[str, list[Run]], what: str) -> list[str]:
    rows = []
    names = [
        ("created", f"{what} created (`POST`)"),
        ("first", "first SSE event, any (ours: `task.status` queued; peer: `metadata`)"),
        ("started", "run started (ours: `task.status` running; peer: `metadata`)"),
        ("custom", "first `custom` event (produced by the agent)"),
        ("done", "run complete (ours: terminal `task.status`; peer: end of stream)"),
    ]
    for key, name in names:
        cells, ratios = [], []
        peer = pct([r[key] for r in lat["peer"]], 0.5)
        for side in ("ours", "in-process", "peer"):
            values = [r[key] for r in lat[side]]
            cells.append(f"{pct(values, 0.5):.1f} / {pct(values, 0.95):.1f}")
            if side != "peer":
                ratios.append(f"{pct(values, 0.5) / max(peer, 1e-6):.2f}x")
        rows.append(f"| {name} | {' | '.join(cells)} | {' | '.join(ratios)} |")
    return rows


def report(args: argparse.Namespace, res: dict[str, Any], versions: dict[str, str]) -> str:
    command = " ".join(["python", "bench/peer.py", *sys.argv[1:]]).replace(" --record", "")
    e2e = {k: median([rates(r, args.events)[0] for r in v]) for k, v in res["tput"].items()}
    steady = {k: median([rates(r, args.events)[1] for r in v]) for k, v in res["tput"].items()}
    wall = {k: median([w for w, _ in v]) for k, v in res["conc"].items()}
    per_run = {k: [ms for _, runs in v for ms in runs] for k, v in res["conc"].items()}

    def rate_row(name: str, ours: float, peer: float) -> str:
        return f"| {name} | {ours:,.0f} | n/a | {peer:,.0f} | {ours / peer:.2f}x | n/a |"

    def conc_cells(values: dict[str, str]) -> str:
        return " | ".join(values[k] for k in ("ours", "in-process", "peer"))

    cold, warm = args.runs, args.warm_runs
    return "\n".join(
        [
            f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: ours vs LangGraph dev server "
            "(in-memory), same client, same invocation",
            "",
            f"Command: `{command}` ({os.cpu_count()} cores, client and both servers on them).",
            f"Ours: {versions['ours']}, embedded default (SQLite, in-memory channel layer, "
            f"inline executor, bubblewrap) under {args.server}, TASK_CONCURRENCY="
            f"{args.concurrency}, throttles and team quotas off. Peer: {versions['peer']}, "
            f"`langgraph dev --n-jobs-per-worker {args.concurrency}` (uvicorn).",
            "*ours*: a `command` agent, its script in the session's sandbox (bubblewrap); "
            "*in-process*: a `workflow` agent whose loop `emit`s the events, no sandbox, "
            "like the peer's graph (each item is also a traced step: 3 events per item). "
            "Scenario 2 measures the event pipe, so only the sandboxed side runs it.",
            "",
            "| scenario | ours | in-process | peer | ours/peer | in-process/peer |",
            "|---|---|---|---|---|---|",
            f"| **1. latency, {cold} runs of n=1, new thread/session each**, ms p50 / p95 "
            "| | | | | |",
            *_lat_rows(res["cold"], "thread/session"),
            f"| **1b. latency, {warm} runs of n=1 on one thread/session**, ms p50 / p95 "
            "| | | | | |",
            *_lat_rows(res["warm"], "(reused)")[1:],
            f"| **2. one run streaming {args.events:,} `custom` events**, events/s at the "
            f"client, median of {args.repeat} (higher is better) | | | | | |",
            rate_row("SSE, end to end (request sent → last event)", e2e["ours"], e2e["peer"]),
            rate_row("SSE, steady (first → last `custom`)", steady["ours"], steady["peer"]),
            rate_row("ours over WebSocket, end to end (vs peer SSE)", e2e["ws"], e2e["peer"]),
            rate_row("ours over WebSocket, steady (vs peer SSE)", steady["ws"], steady["peer"]),
            f"| **3. {args.concurrent} runs of 10 events started at once** (lower is better), "
            f"median of {args.repeat} | | | | | |",
            f"| wall time until all complete, s | "
            f"{conc_cells({k: f'{v:.2f}' for k, v in wall.items()})} | "
            f"{wall['ours'] / wall['peer']:.2f}x | {wall['in-process'] / wall['peer']:.2f}x |",
            "| per-run completion p50 / max, ms | "
            + conc_cells({k: f"{pct(v, 0.5):.0f} / {max(v):.0f}" for k, v in per_run.items()})
            + " | "
            + " | ".join(
                f"{pct(per_run[k], 0.5) / pct(per_run['peer'], 0.5):.2f}x"
                for k in ("ours", "in-process")
            )
            + " |",
            "",
        ]
    )


async def measure(
    args: argparse.Namespace, ours: Ours, inproc: OursInProcess, peer: Peer
) -> dict[str, Any]:
    await ours.setup()
    await inproc.setup()
    sides: list[Ours | Peer] = [ours, inproc, peer]
    res: dict[str, Any] = {"tput": {"ours": [], "peer": [], "ws": []}}
    res["conc"] = {side.label: [] for side in sides}
    print(f"1. latency: {args.runs} + {args.warm_runs} runs each", file=sys.stderr)
    res["cold"] = await latency(sides, args.runs, args.warmup, warm=False)
    res["warm"] = await latency(sides, args.warm_runs, args.warmup, warm=True)
    print(f"2. throughput: {args.events:,} events x {args.repeat}", file=sys.stderr)
    for _ in range(args.repeat):
        res["tput"]["ours"].append(await ours.run(args.events))
        res["tput"]["ws"].append(await ours.run_ws(args.events))
        res["tput"]["peer"].append(await peer.run(args.events))
    print(f"3. {args.concurrent} concurrent runs x {args.repeat}", file=sys.stderr)
    for _ in range(args.repeat):
        for side in sides:
            res["conc"][side.label].append(await concurrent(side, args.concurrent, 10))
    return res


def _count(minimum: int) -> Any:
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"at least {minimum}")
        return value

    return parse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", choices=["daphne", "uvicorn"], default="uvicorn")
    parser.add_argument("--runs", type=_count(1), default=100, help="latency runs, new thread each")
    parser.add_argument("--warm-runs", type=_count(1), default=30, help="latency runs, one thread")
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs before each")
    parser.add_argument("--events", type=_count(2), default=10_000, help="events of the stream run")
    parser.add_argument("--concurrent", type=_count(1), default=50, help="runs started at once")
    parser.add_argument("--repeat", type=_count(1), default=3, help="repeats of scenarios 2 and 3")
    parser.add_argument("--concurrency", type=_count(1), default=64, help="runs each server runs")
    parser.add_argument("--record", action="store_true", help="prepend to bench/RESULTS.md")
    args = parser.parse_args()
    bin_dir = ensure_peer_venv()
    rev = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    versions = {"ours": f"git {rev or '?'}", "peer": peer_versions(bin_dir)}
    overrides = {"TASK_CONCURRENCY": str(args.concurrency), "THROTTLE_WS_CONNECT": "none"}
    server = Server(overrides, asgi=args.server)
    peer_server = None
    try:
        peer_server = PeerServer(bin_dir, args.concurrency)
        ours, inproc, peer = Ours(server), OursInProcess(server), Peer(peer_server)

        async def go() -> dict[str, Any]:
            try:
                return await measure(args, ours, inproc, peer)
            finally:
                await ours.close()
                await inproc.close()
                await peer.close()

        res = asyncio.run(go())
    finally:
        server.close()
        if peer_server is not None:
            peer_server.close()
    text = report(args, res, versions)
    print(text)
    if args.record:
        prepend_results(text)


if __name__ == "__main__":
    main()
