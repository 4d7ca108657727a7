"""Transport and concurrency benchmarks (issue 13): event fan-out over WebSocket and SSE, idle
WebSocket capacity, and many short tasks at once, against one real server on loopback (the
embedded default: SQLite, in-memory channel layer, inline executor, bubblewrap), uvicorn (the
serve command's default) or daphne (``--server``). Throttles and team quotas are off
(docs/limits.md), ``TASK_CONCURRENCY`` is ``--tasks``, heartbeats every ``--heartbeat`` s.

1. **Fan-out**: a ``command`` task prints ``--events`` JSON lines (``{"i", "t"}``, ``t`` its
   ``time.time()``), each one ``custom`` event (``spec.stdout_format: "events"``; where the server
   lacks it, plain ``process.stdout`` chunks, coalesced, measured from their ``ts``), to 1, 100
   and 1,000 subscribers of the session's stream (``--fanout``), over WebSocket and SSE. Every
   subscriber must receive every event of the session exactly once and in order (seq
   continuity, checked against the log) or the run fails. Figures: events/s written to the log
   (the events' ``ts``), events/s delivered to every subscriber (first event's send time → the
   last arrival at the slowest subscriber) and the send → arrival delay, p50/p95/p99 over all
   subscribers' events. With more subscribers, fewer events (``--deliveries`` caps events x
   subscribers), so each run stays bounded. Baseline: the same clients, frames and pacing from
   a raw ``websockets`` / asyncio SSE server (``bench/streams_clients.py``): no database, channel
   layer, batching or auth.
2. **Idle connections**: ``--idle`` session WebSockets (100 per session) held for 2 heartbeat
   periods; every socket must get a heartbeat. Figures: server RSS before/after, KiB per
   connection, handshakes/s. Baselines: the idle server's RSS, and the same sockets held by the
   raw ``websockets`` server (KiB per connection).
3. **Concurrency**: ``--tasks`` tasks started at once on as many new sessions, each POST then a
   task WebSocket until ``stream.end``: a ``command`` agent running ``true`` (each a cold
   sandbox) and an ``llm`` agent on a scripted one-chunk model over real HTTP. Figures: wall
   time to the last terminal status, tasks/s, per-task p50/p95. Baseline: one task alone on a new
   session (median of 3, same run).

Usage: ``.venv/bin/python bench/streams.py [--server daphne] [--quick] [--record]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, bench/ comes first on sys.path, where a module of bench/ could shadow one of the
# standard library's `http` (which httpx imports).
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import argparse
import asyncio
import json
import logging
import os
import resource
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "runtime_project.settings")

import django  # noqa: E402

django.setup()  # the scripted model server lives in the sessions package, which needs settings

from bench.run import Server, pct, prepend_results  # noqa: E402
from bench.streams_clients import (  # noqa: E402
    MEASURED,
    Idle,
    Subscriber,
    hold_idle,
    subscribe_sse,
    subscribe_ws,
)
from sessions.runners.scripted_llm import ScriptedLLM, Turn  # noqa: E402
from tests.procs import free_port  # noqa: E402

logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request otherwise

PRODUCER = (
    "import json, sys, time\n"
    "n, rate = int(sys.argv[1]), float(sys.argv[2])\n"
    "t0 = time.time()\n"
    "for i in range(n):\n"
    "    if rate:\n"
    "        ahead = t0 + i / rate - time.time()\n"
    "        if ahead > 0: time.sleep(ahead)\n"
    "    sys.stdout.write(json.dumps({'i': i, 't': time.time()}) + '\\n'); sys.stdout.flush()\n"
)


def p3(values: list[float] | Any) -> str:
    """``p50 / p95 / p99`` of ``values`` (ms), or ``-`` when empty."""
    values = list(values)
    if not values:
        return "-"
    return " / ".join(f"{pct(values, q):,.1f}" for q in (0.5, 0.95, 0.99))


def rss_kib(pid: int) -> int:
    """Resident set size of process ``pid`` in KiB (``/proc/<pid>/status`` VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def server_env(args: argparse.Namespace) -> dict[str, str]:
    """Settings for the measured server: no throttles or quotas (docs/limits.md), a task slot
    for every concurrent task, short heartbeats, the scripted model on loopback allowed."""
    return {
        "THROTTLE_USER": "none",
        "THROTTLE_TEAM": "none",
        "THROTTLE_ANON": "none",
        "THROTTLE_WS_CONNECT": "none",
        "TEAM_MAX_RUNNING_TASKS": "0",
        "TEAM_MAX_SANDBOXES": "0",
        "TASK_CONCURRENCY": str(max(args.tasks, 4)),
        "STREAM_HEARTBEAT_S": str(args.heartbeat),
        "LLM_ENDPOINT_ALLOWED_HOSTS": "127.0.0.1",
    }


@dataclass
class Target:
    """A running server to measure: its URLs, a user's auth header, and its pid (for RSS)."""

    url: str
    ws_url: str
    headers: dict[str, str]
    pid: int
    close: Callable[[], None] = lambda: None


def start_server(args: argparse.Namespace) -> Target:
    """A fresh embedded-default server (``bench.run.Server``, ``--server``), with a token."""
    server = Server(server_env(args), asgi=args.server)
    return Target(server.url, server.ws_url, server.headers, server.proc.pid, server.close)


class Bench:
    """One server, its REST client, the baseline servers, and the streaming agent."""

    def __init__(self, args: argparse.Namespace, server: Target) -> None:
        self.args = args
        self.server = server
        self.headers = self.server.headers
        self.http = httpx.AsyncClient(
            base_url=self.server.url,
            headers=self.headers,
            timeout=120,
            limits=httpx.Limits(max_connections=max(args.tasks * 2, 20)),
        )
        self.ws_port, self.sse_port = free_port(), free_port()
        self.baseline = subprocess.Popen(
            [sys.executable, "-m", "bench.streams_clients", "baseline", str(self.ws_port),
             str(self.sse_port)],
            cwd=ROOT, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.baseline.stdout is not None
        assert self.baseline.stdout.readline() == "ready\n", "the baseline server did not start"
        self.events_format = "process.stdout"
        self.slug = f"bench-{uuid.uuid4().hex[:8]}"  # the agents this run creates

    async def setup(self) -> None:
        spec = {"allow_input_command": True, "stdout_format": "events"}
        r = await self.http.post("/api/v1/agents", json={"slug": self.slug, "name": "fanout",
                                                         "kind": "command", "spec": spec})  # fmt: skip
        if r.status_code == 400:  # a server without stdout_format: coalesced process.stdout
            spec.pop("stdout_format")
            r = await self.http.post("/api/v1/agents", json={"slug": self.slug, "name": "fanout",
                                                             "kind": "command", "spec": spec})  # fmt: skip
        else:
            self.events_format = "custom"
        r.raise_for_status()

    async def close(self) -> None:
        await self.http.aclose()
        self.baseline.terminate()
        self.baseline.wait(10)
        self.server.close()

    async def session(self, agent: str) -> str:
        r = await self.http.post("/api/v1/sessions", json={"agent": agent, "name": "bench"})
        r.raise_for_status()
        return str(r.json()["id"])

    async def log(self, sid: str, after: int) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        while True:
            r = await self.http.get(
                f"/api/v1/sessions/{sid}/events", params={"after": after, "limit": 1000}
            )
            page = r.json()["events"]
            if not page:
                return events
            events += page
            after = page[-1]["seq"]

    # ---- 1. fan-out ---------------------------------------------------------------------

    async def fanout(self, transport: str, n: int, events: int, real: bool) -> dict[str, Any]:
        """One fan-out run (see the module doc). Raises AssertionError on any lost,
        duplicated or reordered event, or a subscriber that failed."""
        timeout = self.args.timeout
        rate = self.args.rate
        if real:
            sid = await self.session(self.slug)
            after = (await self.http.get(f"/api/v1/sessions/{sid}")).json()["last_seq"]
            ws_url = f"{self.server.ws_url}/ws/sessions/{sid}/?after={after}"
            sse_url = f"{self.server.url}/api/v1/sessions/{sid}/events/stream?after={after}"
        else:
            after, q = 0, f"n={n}&e={events}&r={rate}"
            ws_url = f"ws://127.0.0.1:{self.ws_port}/ws?{q}"
            sse_url = f"http://127.0.0.1:{self.sse_port}/sse?{q}"
        subs = [Subscriber(after=after) for _ in range(n)]
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=None)) as client:
            gate = asyncio.Semaphore(64)  # handshakes in flight

            async def one(sub: Subscriber) -> Subscriber:
                if transport == "ws":
                    return await subscribe_ws(ws_url, sub, self.headers, timeout, gate)
                return await subscribe_sse(client, sse_url, sub, self.headers, timeout, gate)

            runs = [asyncio.ensure_future(one(s)) for s in subs]
            t_start = time.time()
            if real:
                # The warm-up task's terminal status at every subscriber: all are live.
                await self.http.post(f"/api/v1/sessions/{sid}/tasks",
                                     json={"input": {"command": "true"}})  # fmt: skip
            deadline = time.monotonic() + max(timeout, n / 20)  # at least 20 handshakes/s
            while any(s.seen_terminals < 1 and s.error is None for s in subs):
                assert time.monotonic() < deadline, (
                    f"{sum(s.seen_terminals > 0 for s in subs)} of {n} subscribers got the "
                    f"warm-up status in {time.time() - t_start:.0f} s"
                )
                await asyncio.sleep(0.05)
            connect_s = time.time() - t_start
            if real:
                argv = ["python3", "-c", PRODUCER, str(events), str(rate)]
                r = await self.http.post(f"/api/v1/sessions/{sid}/tasks",
                                         json={"input": {"argv": argv}})  # fmt: skip
                r.raise_for_status()
            await asyncio.wait_for(asyncio.gather(*runs), timeout + 30)
        failed = [s.error for s in subs if s.error]
        assert not failed, f"{len(failed)} of {n} subscribers failed: {failed[:3]}"
        out: dict[str, Any] = {"n": n, "events": events, "connect_s": connect_s}
        if real:
            log_ = await self.log(sid, after)
            assert log_[-1]["type"] == "task.status", log_[-1]
            assert log_[-1]["data"]["status"] == "succeeded", log_[-1]
            measured = [e for e in log_ if e["type"] in MEASURED]
            last = log_[-1]["seq"]
            for s in subs:
                assert s.last_seq == last, f"a subscriber stopped at {s.last_seq} of {last}"
                assert s.count == len(measured), f"{s.count} measured events of {len(measured)}"
            if self.events_format == "custom":
                assert len(measured) == events, f"{len(measured)} custom events of {events}"
                t0 = measured[0]["data"]["t"]
            else:
                t0 = datetime.fromisoformat(measured[0]["ts"]).timestamp()
            t_log = datetime.fromisoformat(measured[-1]["ts"]).timestamp()
            out["written"] = len(measured) / max(t_log - t0, 1e-6)
            count = len(measured)
        else:
            t0 = min(s.first - s.delays_ms[0] / 1000 for s in subs)
            count = events
            assert all(s.count == events for s in subs)
        # What each subscriber saw, for callers that check it again (the smoke test).
        out["subs"] = [(s.after, s.last_seq, s.count, s.error) for s in subs]
        out["retries"] = sum(s.retries for s in subs)
        out["log"] = log_ if real else None
        out["delivered"] = count / max(max(s.last for s in subs) - t0, 1e-6)
        out["delays"] = [d for s in subs for d in s.delays_ms]
        out["count"] = count
        return out

    # ---- 2. idle connections ------------------------------------------------------------

    async def idle(self, n: int, real: bool) -> dict[str, Any]:
        """Hold ``n`` idle WebSockets for 2 heartbeat periods. Raises AssertionError when a
        socket failed or (real server) got no heartbeat."""
        hb = self.args.heartbeat
        if real:
            pid = self.server.pid
            sids = [await self.session(self.slug) for _ in range(max(1, -(-n // 100)))]
            urls = [f"{self.server.ws_url}/ws/sessions/{sid}/" for sid in sids]
        else:
            pid = self.baseline.pid
            urls = [f"ws://127.0.0.1:{self.ws_port}/ws?n=1000000000&e=0"]
        # Warm up the path (imports, caches) before the "idle server" RSS is read.
        warm = asyncio.ensure_future(hold_idle(urls[0], self.headers, asyncio.Semaphore(1), Idle()))
        await asyncio.sleep(1.0)
        warm.cancel()
        await asyncio.gather(warm, return_exceptions=True)
        await asyncio.sleep(0.5)
        before = rss_kib(pid)
        gate = asyncio.Semaphore(64)
        idles = [Idle() for _ in range(n)]
        t0 = time.monotonic()
        held = [
            asyncio.ensure_future(hold_idle(urls[i % len(urls)], self.headers, gate, idle))
            for i, idle in enumerate(idles)
        ]
        deadline = t0 + max(self.args.timeout, n / 20)  # at least 20 handshakes/s
        while any(not i.connected and i.error is None for i in idles):
            assert time.monotonic() < deadline, (
                f"{sum(i.connected for i in idles)} of {n} idle sockets connected in "
                f"{time.monotonic() - t0:.0f} s"
            )
            await asyncio.sleep(0.1)
        connect_s = time.monotonic() - t0
        for i in idles:
            i.heartbeats = 0
        await asyncio.sleep(2 * hb + 1 if real else 2.0)
        after = rss_kib(pid)
        beats = [i.heartbeats for i in idles]
        errors = [i.error for i in idles if i.error]
        for h in held:
            h.cancel()
        await asyncio.gather(*held, return_exceptions=True)
        assert not errors, f"{len(errors)} of {n} idle sockets failed: {errors[:3]}"
        if real:
            silent = sum(1 for b in beats if b == 0)
            assert not silent, f"{silent} of {n} sockets got no heartbeat in {2 * hb + 1:.0f} s"
        return {"n": n, "connect_s": connect_s, "before": before, "after": after, "beats": beats,
                "retries": sum(i.retries for i in idles)}  # fmt: skip

    # ---- 3. concurrency -----------------------------------------------------------------

    async def one_task(self, sid: str, kind: str) -> float:
        """POST a task on ``sid`` and follow its WebSocket to ``stream.end``; seconds."""
        from websockets.asyncio.client import connect

        t0 = time.perf_counter()
        if kind == "command":
            r = await self.http.post(f"/api/v1/sessions/{sid}/tasks",
                                     json={"input": {"command": "true"}})  # fmt: skip
        else:
            r = await self.http.post(f"/api/v1/sessions/{sid}/messages", json={"message": "hi"})
        r.raise_for_status()
        task_id, status = r.json()["id"], None
        url = f"{self.server.ws_url}/ws/tasks/{task_id}/"
        async with connect(url, additional_headers=self.headers, ping_interval=None) as ws:
            async for raw in ws:
                frame = json.loads(raw)
                if frame.get("type") == "task.status":
                    status = frame["data"]["status"]
                if frame.get("type") == "stream.end":
                    break
        assert status == "succeeded", f"{kind} task ended {status}"
        return time.perf_counter() - t0

    async def burst(self, kind: str, n: int) -> dict[str, Any]:
        agent = self.slug if kind == "command" else f"{self.slug}-llm"
        alone = [await self.one_task(await self.session(agent), kind) for _ in range(4)][1:]
        sids = [await self.session(agent) for _ in range(n)]
        t0 = time.perf_counter()
        each = await asyncio.wait_for(
            asyncio.gather(*(self.one_task(s, kind) for s in sids)), self.args.timeout
        )
        wall = time.perf_counter() - t0
        return {"n": n, "alone": statistics.median(alone), "wall": wall, "each": each}


def fanout_counts(args: argparse.Namespace) -> list[tuple[int, int]]:
    """(subscribers, events) per fan-out run: fewer events for more subscribers."""
    out = []
    for n in args.fanout:
        out.append((n, max(20, min(args.events, args.deliveries // n))))
    return out


async def run(args: argparse.Namespace, server: Target) -> dict[str, Any]:
    """Every section of ``args.sections`` against ``server`` (closed at the end). Raises
    AssertionError when a stream lost, duplicated or reordered an event, or a task failed."""
    bench = Bench(args, server)
    res: dict[str, Any] = {"fanout": [], "idle": None, "burst": []}
    try:
        await bench.setup()
        res["format"] = bench.events_format
        if "idle" in args.sections and args.idle:
            res["idle"] = (await bench.idle(args.idle, False), await bench.idle(args.idle, True))
            log(f"idle: {res['idle'][1]['connect_s']:.1f} s to connect {args.idle}")
        if "fanout" in args.sections:
            for transport in args.transports:
                for n, events in fanout_counts(args):
                    base = await bench.fanout(transport, n, events, real=False)
                    real = await bench.fanout(transport, n, events, real=True)
                    res["fanout"].append((transport, base, real))
                    log(f"fanout {transport} x{n}: {real['delivered']:,.0f} ev/s "
                        f"(baseline {base['delivered']:,.0f})")  # fmt: skip
        if "tasks" in args.sections and args.tasks:
            with ScriptedLLM(responder=lambda request: Turn(chunks=["ok"])) as llm:
                spec = {"model": {"base_url": llm.base_url, "name": "scripted"}, "max_retries": 0}
                r = await bench.http.post("/api/v1/agents", json={
                    "slug": f"{bench.slug}-llm", "name": "scripted", "kind": "llm",
                    "spec": spec})  # fmt: skip
                r.raise_for_status()
                for kind in ("command", "llm"):
                    res["burst"].append((kind, await bench.burst(kind, args.tasks)))
                    log(f"burst {kind}: {res['burst'][-1][1]['wall']:.2f} s")
    finally:
        await bench.close()
    return res


def log(text: str) -> None:
    print(f"[streams] {text}", file=sys.stderr, flush=True)


def report(args: argparse.Namespace, res: dict[str, Any], argv: list[str]) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    versions = ", ".join(f"{p} {version(p)}" for p in (args.server, "websockets", "httpx"))
    lines = [
        f"## {when}: streams: fan-out, idle connections, concurrent tasks ({args.server})",
        "",
        f"Command: `.venv/bin/python bench/streams.py {' '.join(argv)}` ({os.cpu_count()} cores, "
        f"Python {sys.version.split()[0]}, {versions}; embedded default: SQLite, in-memory "
        "channel layer, inline executor, bubblewrap; clients in one asyncio process on the same "
        "machine).",
        "",
    ]
    if res["fanout"]:
        what = "one `custom` event per line" if res["format"] == "custom" else (
            "`process.stdout` chunks (coalesced; delay from the events' `ts`)")  # fmt: skip
        pace = f"at {args.rate:g} lines/s" if args.rate else "as fast as it can"
        lines += [
            f"Fan-out: a `command` task prints JSON lines {pace} ({what}) to N subscribers of "
            "its session stream, each of which received every event once, in order. Baseline: "
            "the same clients, frames and pacing from a raw `websockets` / asyncio SSE server "
            "(no database, channel layer or auth), same run. Delay: the line's send time → "
            "arrival, over every subscriber's events.",
            "",
            "| transport | subscribers | events | written ev/s | delivered ev/s (baseline) "
            "| ratio | delay p50 / p95 / p99 ms (baseline p95) | handshakes retried |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for transport, base, real in res["fanout"]:
            lines.append(
                f"| {'WebSocket' if transport == 'ws' else 'SSE'} | {real['n']:,} | "
                f"{real['count']:,} | {real['written']:,.0f} | {real['delivered']:,.0f} "
                f"({base['delivered']:,.0f}) | {real['delivered'] / base['delivered']:.2f}x | "
                f"{p3(real['delays'])} ({pct(base['delays'], 0.95):,.1f}) | {real['retries']:,} |"
            )
        lines.append("")
    if res["idle"]:
        base, real = res["idle"]
        n, beats = real["n"], real["beats"]
        per = (real["after"] - real["before"]) / n
        per_base = (base["after"] - base["before"]) / n
        lines += [
            f"Idle: {n:,} session WebSockets ({-(-n // 100)} sessions) held for 2 heartbeat "
            f"periods (`STREAM_HEARTBEAT_S={args.heartbeat:g}`), then the server's RSS; every "
            f"socket got a heartbeat (min {min(beats)}, median {statistics.median(beats):g}, "
            f"{sum(b >= 2 for b in beats):,} got 2). Baselines: the idle server (warmed by one "
            "connection), and the same sockets on the raw `websockets` server, same run.",
            "",
            "| figure | server | raw `websockets` (baseline) | ratio |",
            "|---|---|---|---|",
            f"| RSS idle, MiB | {real['before'] / 1024:,.1f} | {base['before'] / 1024:,.1f} | |",
            f"| RSS with {n:,} sockets, MiB | {real['after'] / 1024:,.1f} | "
            f"{base['after'] / 1024:,.1f} | {real['after'] / max(real['before'], 1):.2f}x idle |",
            f"| KiB per connection | {per:,.1f} | {per_base:,.1f} | {per / max(per_base, 1e-9):.1f}x |",
            f"| handshakes/s (64 in flight) | {n / real['connect_s']:,.0f} | "
            f"{n / base['connect_s']:,.0f} | {base['connect_s'] / real['connect_s']:.2f}x |",
            f"| handshakes dropped by the server and retried | {real['retries']:,} | "
            f"{base['retries']:,} | |",
            "",
        ]  # fmt: skip
    if res["burst"]:
        lines += [
            f"Concurrency: {args.tasks} tasks started at once, each on a new session (a cold "
            "sandbox for `command`), each client POSTing then following its task WebSocket to "
            "`stream.end`. Baseline: one task alone on a new session (median of 3), same run.",
            "",
            "| workload | one alone ms (baseline) | all, wall s | tasks/s | per task p50 / p95 "
            "/ p99 ms | wall vs alone |",
            "|---|---|---|---|---|---|",
        ]
        for kind, b in res["burst"]:
            label = "`command` running `true`" if kind == "command" else "`llm`, scripted model"
            lines.append(
                f"| {label} | {b['alone'] * 1000:,.1f} | {b['wall']:.2f} | "
                f"{b['n'] / b['wall']:,.1f} | {p3([x * 1000 for x in b['each']])} | "
                f"{b['wall'] / b['alone']:.1f}x |"
            )
        lines.append("")
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", choices=("daphne", "uvicorn"), default="uvicorn")
    parser.add_argument("--fanout", default="1,100,1000", help="subscriber counts")
    parser.add_argument("--transports", default="ws,sse")
    parser.add_argument("--events", type=int, default=2000, help="events for 1 subscriber")
    parser.add_argument("--deliveries", type=int, default=100_000, help="events x subscribers cap")
    parser.add_argument("--rate", type=float, default=0.0, help="lines/s, 0 = flood")
    parser.add_argument("--idle", type=int, default=5000, help="idle WebSockets (0: skip)")
    parser.add_argument("--heartbeat", type=float, default=5.0, help="STREAM_HEARTBEAT_S")
    parser.add_argument("--tasks", type=int, default=100, help="concurrent tasks (0: skip)")
    parser.add_argument("--sections", default="idle,fanout,tasks")
    parser.add_argument("--timeout", type=float, default=120.0, help="per-run bound, s")
    parser.add_argument("--quick", action="store_true", help="10 subscribers, 20 sockets, 5 tasks")
    parser.add_argument("--record", action="store_true", help="prepend to bench/RESULTS.md")
    args = parser.parse_args(argv)
    if args.quick:
        args.fanout, args.events, args.idle, args.tasks = "10", 50, 20, 5
        args.heartbeat = min(args.heartbeat, 1.0)
    args.fanout = [int(x) for x in str(args.fanout).split(",") if x]
    args.transports = [t for t in args.transports.split(",") if t]
    args.sections = set(args.sections.split(","))
    return args


def main() -> None:
    args = parse_args(sys.argv[1:])
    # Clients hold thousands of sockets; the server (a child) inherits the raised limit.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    need = max(args.idle, max(args.fanout, default=0)) * 2 + 200
    if need > hard:
        sys.exit(f"need {need} file descriptors, the hard limit is {hard}: lower --idle")
    res = asyncio.run(run(args, start_server(args)))
    text = report(args, res, [a for a in sys.argv[1:] if a != "--record"])
    print(text)
    if args.record:
        prepend_results(text)


if __name__ == "__main__":
    main()
