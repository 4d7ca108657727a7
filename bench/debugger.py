"""What the debugger costs, and how fast a paused run answers, on one embedded-default server.

The workload is a ``workflow`` agent that loops over ``--items`` items with a ``condition``
body (no sandbox, no model): ``items + 3`` steps, each one a debugger checkpoint.

* **plain** (baseline): ``POST /api/v1/oneshot`` with ``mode: wait``; checkpoints take the
  fast path (no debug run, no pause requested).
* **debug**: the same with ``config.debug: true`` and a breakpoint that never matches: every
  checkpoint reads the run's breakpoints (one query each).
* **continue → done**: a debug run paused at a breakpoint on its output component;
  ms from ``POST /tasks/{id}/debug/continue`` until the task reads ``succeeded`` (polled every
  5 ms): the doorbell path through the channel layer, not the 1 s table poll.

ms p50/p95 over ``--runs`` runs each (after 3 warm-up rounds), plain and debug interleaved.

Usage: ``.venv/bin/python bench/debugger.py --runs 30 --items 50 [--record]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import Server, pct, prepend_results, summary  # noqa: E402

WARM_UP = 3


def spec() -> dict[str, Any]:
    return {
        "components": [
            {"id": "in", "type": "input"},
            {"id": "each", "type": "loop", "component": {
                "type": "condition", "expression": "item >= 0"}},
            {"id": "out", "type": "output"},
        ],
        "edges": [{"from": "in.items", "to": "each.items"},
                  {"from": "each.results", "to": "out.results"}],
    }  # fmt: skip


def measure(server: Server, runs: int, items: int) -> dict[str, list[float]]:
    http = httpx.Client(base_url=server.url, headers=server.headers, timeout=120)
    made = http.post("/api/v1/agents", json={"slug": "loop", "name": "loop", "kind": "workflow",
                                             "spec": spec()})  # fmt: skip
    assert made.status_code == 201, made.text
    data = {"items": list(range(items))}
    never = {"debug": {"breakpoints": [{"step_kind": "command", "name": "never"}]}}

    def oneshot(config: dict[str, Any]) -> float:
        started = time.perf_counter()
        answer = http.post("/api/v1/oneshot", json={"agent": "loop", "input": data,
                                                    "config": config, "mode": "wait"})  # fmt: skip
        assert answer.status_code == 200, answer.text
        assert answer.json()["task"]["status"] == "succeeded", answer.text
        return (time.perf_counter() - started) * 1000

    def resume() -> float:
        session = http.post("/api/v1/sessions", json={"agent": "loop"}).json()["id"]
        config = {"debug": {"breakpoints": [{"name": "out"}]}}
        task = http.post(f"/api/v1/sessions/{session}/tasks",
                         json={"input": data, "config": config}).json()["id"]  # fmt: skip
        while http.get(f"/api/v1/tasks/{task}/debug").json()["paused"] is None:
            time.sleep(0.01)
        started = time.perf_counter()
        assert http.post(f"/api/v1/tasks/{task}/debug/continue").status_code == 202
        while http.get(f"/api/v1/tasks/{task}").json()["status"] != "succeeded":
            time.sleep(0.005)
        return (time.perf_counter() - started) * 1000

    for _ in range(WARM_UP):
        oneshot({})
        oneshot(never)
        resume()
    out: dict[str, list[float]] = {"plain": [], "debug": [], "continue": []}
    for _ in range(runs):
        out["plain"].append(oneshot({}))
        out["debug"].append(oneshot(never))
        out["continue"].append(resume())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument("--record", action="store_true", help="prepend to bench/RESULTS.md")
    args = parser.parse_args()
    server = Server()
    try:
        figures = measure(server, args.runs, args.items)
    finally:
        server.close()
    base = pct(figures["plain"], 0.5)
    lines = [
        f"## Debugger overhead ({datetime.now(UTC):%Y-%m-%d})",
        "",
        f"`.venv/bin/python bench/debugger.py --runs {args.runs} --items {args.items}`: a "
        f"workflow of {args.items + 3} steps (a loop of `condition` components), one embedded "
        "server (SQLite, inline executor), plain and debug runs interleaved.",
        "",
        "| run | p50 / p95 ms | p50 vs plain |",
        "|---|---|---|",
        f"| plain (baseline) | {summary(figures['plain'])} | 1.00x |",
        f"| debug run, no breakpoint hit | {summary(figures['debug'])} | "
        f"{pct(figures['debug'], 0.5) / base:.2f}x |",
        f"| paused run: continue → succeeded | {summary(figures['continue'])} | — |",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.record:
        prepend_results(text)


if __name__ == "__main__":
    main()
