"""The ``python`` kind's own cost: cells through a real daphne on the embedded default (the
kernel in a bubblewrap sandbox behind the bridge), against the same cells on an ipykernel
driven in this process by ``runtime_client.kernel.LocalKernel`` (the baseline, same invocation).

* **kernel start**: the first task of a session (sandbox + bridge + kernel) → its terminal
  status, and the ``kernel.started`` event's own ``duration_ms``; baseline: ``LocalKernel.start``.
* **cell round trip**: ``POST /sessions/{id}/tasks`` with ``{"code": "1 + 1"}`` → the terminal
  ``task.status`` at a session WebSocket, ms p50/p95 over ``--cells`` tasks; baseline: one
  ``execute`` of the same code on the local kernel.
* **output throughput**: one cell printing ``--lines`` lines of 100 bytes, flushed each: lines/s
  from the POST to the terminal status, every byte checked; baseline: the local kernel.

Usage: ``.venv/bin/python bench/python_kind.py --cells 30 --lines 20000 [--record]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import Server, pct, summary  # noqa: E402
from runtime_client.kernel import LocalKernel  # noqa: E402

TERMINAL = {"succeeded", "failed", "cancelled", "timed_out"}


def printing(lines: int) -> str:
    return f"for i in range({lines}):\n    print(f'{{i:010d}}' + 'x' * 89, flush=True)"


async def _local(cells: int, lines: int) -> dict[str, Any]:
    kernel = LocalKernel(cwd="/tmp")
    t0 = time.perf_counter()
    await kernel.start()
    start_ms = (time.perf_counter() - t0) * 1000
    rounds = []
    for i in range(cells + 3):
        t0 = time.perf_counter()
        async for _ in kernel.execute("1 + 1"):
            pass
        if i >= 3:
            rounds.append((time.perf_counter() - t0) * 1000)
    t0 = time.perf_counter()
    size = 0
    async for msg in kernel.execute(printing(lines)):
        if msg["msg_type"] == "stream":
            size += len(msg["content"]["text"])
    rate = lines / (time.perf_counter() - t0)
    assert size == lines * 100, size
    await kernel.shutdown()
    return {"start_ms": start_ms, "rounds": rounds, "rate": rate}


def served(server: Server, http: httpx.Client, cells: int, lines: int) -> dict[str, Any]:
    http.post("/api/v1/agents", json={"slug": "bench-py", "name": "b", "kind": "python",
                                      "spec": {}})  # fmt: skip
    sid = http.post("/api/v1/sessions", json={"agent": "bench-py"}).json()["id"]
    with connect(f"{server.ws_url}/ws/sessions/{sid}/", additional_headers=server.headers) as ws:

        def task(code: str) -> tuple[float, str, list[dict[str, Any]]]:
            t0 = time.perf_counter()
            task_id = http.post(f"/api/v1/sessions/{sid}/tasks",
                                json={"input": {"code": code}}).json()["id"]  # fmt: skip
            seen = []
            while True:
                frame = json.loads(ws.recv(timeout=120))
                if frame.get("task_id") != task_id:
                    continue
                seen.append(frame)
                if frame["type"] == "task.status" and frame["data"]["status"] in TERMINAL:
                    assert frame["data"]["status"] == "succeeded", frame
                    return (time.perf_counter() - t0) * 1000, task_id, seen

        first_ms, _, seen = task("1 + 1")
        started = [f["data"]["duration_ms"] for f in seen if f["type"] == "kernel.started"]
        rounds = []
        for i in range(cells + 3):
            ms, _, _ = task("1 + 1")
            if i >= 3:
                rounds.append(ms)
        ms, _, seen = task(printing(lines))
        text = "".join(f["data"]["text"] for f in seen if f["type"] == "process.stdout")
        assert len(text) == lines * 100, len(text)
    return {"first_ms": first_ms, "kernel_ms": started[0], "rounds": rounds,
            "rate": lines / (ms / 1000)}  # fmt: skip


def report(args: argparse.Namespace, base: dict[str, Any], ours: dict[str, Any]) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    p50 = pct(ours["rounds"], 0.5) / max(pct(base["rounds"], 0.5), 1e-9)
    return "\n".join([
        f"## {when}: python kind (notebook kernel in the sandbox)",
        "",
        f"Command: `.venv/bin/python bench/python_kind.py --cells {args.cells} --lines "
        f"{args.lines}` (2 cores; embedded default: SQLite, in-memory channel layer, inline "
        "executor, bubblewrap). The baseline is an ipykernel driven in the bench process by "
        "`runtime_client.kernel.LocalKernel`, same run.",
        "",
        "| figure | baseline (local kernel) | through the server | ratio |",
        "|---|---|---|---|",
        f"| kernel start ms | {base['start_ms']:,.0f} | {ours['kernel_ms']:,.0f} "
        f"(first task end to end: {ours['first_ms']:,.0f}) | "
        f"{ours['kernel_ms'] / base['start_ms']:.1f}x |",
        f"| `1 + 1` round trip p50 / p95 ms | {summary(base['rounds'])} | "
        f"{summary(ours['rounds'])} | {p50:.1f}x |",
        f"| {args.lines:,} printed lines, lines/s | {base['rate']:,.0f} | {ours['rate']:,.0f} | "
        f"{ours['rate'] / base['rate']:.2f}x |",
        "",
    ])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, default=30)
    parser.add_argument("--lines", type=int, default=20000)
    parser.add_argument("--record", action="store_true", help="prepend to bench/RESULTS.md")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "runtime_project.settings")
    base = asyncio.run(_local(args.cells, args.lines))
    server = Server()
    try:
        with httpx.Client(base_url=server.url, headers=server.headers, timeout=120) as http:
            ours = served(server, http, args.cells, args.lines)
    finally:
        server.close()
    text = report(args, base, ours)
    print(text)
    if args.record:
        from bench.run import prepend_results

        prepend_results(text)


if __name__ == "__main__":
    main()
