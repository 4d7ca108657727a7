"""What an integration adds to a run: the same short task (the ``shell`` demo agent running
``true``) started and awaited through each way in, against ``POST /api/v1/oneshot`` with
``mode: wait`` (the baseline, same invocation, same server).

* **oneshot** (baseline): ``POST /api/v1/oneshot`` → the finished task as JSON.
* **agent endpoint**: ``POST /api/agents/shell/run`` (sync) → 200 with the finished task.
* **OpenAI chat**: ``client.chat.completions.create`` with the official ``openai`` SDK.
* **OpenAI chat, streaming**: the same with ``stream=True``, to the end of the stream.
* **MCP tools/call**: ``call_tool("shell", …)`` with the official ``mcp`` SDK client, one
  Streamable HTTP connection for all calls.

Each figure is ms p50/p95 from the request to the answer over ``--runs`` calls (after 3 warm-up
rounds), each call a new session and task in a sandbox. The HTTP ways are measured in
interleaved rounds; MCP (one async connection) after them.

Usage: ``.venv/bin/python bench/integrations.py --runs 30 [--record]``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import Server, pct, summary  # noqa: E402

INPUT = {"command": "true"}
WARM_UP = 3


def measure(server: Server, runs: int) -> dict[str, list[float]]:
    from openai import OpenAI

    http = httpx.Client(base_url=server.url, headers=server.headers, timeout=120)
    client = OpenAI(base_url=f"{server.url}/v1", api_key=server.token, max_retries=0)

    def oneshot() -> None:
        body = {"agent": "shell", "input": INPUT, "mode": "wait"}
        answer = http.post("/api/v1/oneshot", json=body)
        assert answer.status_code == 200, answer.text
        assert answer.json()["task"]["status"] == "succeeded"

    def endpoint() -> None:
        answer = http.post("/api/agents/shell/run", json=INPUT)
        assert answer.status_code == 200, answer.text

    def chat() -> None:
        reply = client.chat.completions.create(
            model="shell", messages=[{"role": "user", "content": "true"}]
        )
        assert reply.choices[0].finish_reason == "stop"

    def chat_stream() -> None:
        chunks = client.chat.completions.create(
            model="shell", stream=True, messages=[{"role": "user", "content": "true"}]
        )
        assert any(c.choices and c.choices[0].finish_reason == "stop" for c in chunks)

    # Interleaved rounds (one call of each way per round), so a warming or busy machine weighs
    # on every way alike.
    calls = {"oneshot": oneshot, "endpoint": endpoint, "chat": chat, "chat_stream": chat_stream}
    figures: dict[str, list[float]] = {key: [] for key in calls}
    for i in range(runs + WARM_UP):
        for key, call in calls.items():
            t0 = time.perf_counter()
            call()
            if i >= WARM_UP:
                figures[key].append((time.perf_counter() - t0) * 1000)
    figures["mcp"] = asyncio.run(_mcp(server, runs))
    return figures


async def _mcp(server: Server, runs: int) -> list[float]:
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    out = []
    url = f"{server.url}/mcp"
    async with (
        httpx2.AsyncClient(headers=server.headers, timeout=120) as http,
        Client(streamable_http_client(url, http_client=http)) as mcp,
    ):
        for i in range(runs + WARM_UP):
            t0 = time.perf_counter()
            result = await mcp.call_tool("shell", INPUT)
            assert not result.is_error, result
            if i >= WARM_UP:
                out.append((time.perf_counter() - t0) * 1000)
    return out


LABELS = {
    "oneshot": "`POST /api/v1/oneshot` (baseline)",
    "endpoint": "`POST /api/agents/shell/run` (agent endpoint, sync)",
    "chat": "`/v1/chat/completions` (openai SDK)",
    "chat_stream": "`/v1/chat/completions`, `stream=True`",
    "mcp": "MCP `tools/call` (mcp SDK)",
}


def table(figures: dict[str, list[float]]) -> str:
    base = pct(figures["oneshot"], 0.5)
    rows = ["| way in | p50 / p95 ms | ratio (p50) |", "|---|---|---|"]
    for key, label in LABELS.items():
        rows.append(f"| {label} | {summary(figures[key])} | {pct(figures[key], 0.5) / base:.2f}x |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--record", action="store_true", help="prepend to bench/RESULTS.md")
    args = parser.parse_args(argv)
    server = Server()
    try:
        figures = measure(server, args.runs)
    finally:
        server.close()
    result = table(figures)
    print(result)
    if args.record:
        _record(result, args)


def _record(result: str, args: Any) -> None:
    from bench.run import prepend_results

    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    prepend_results(
        f"## {stamp}: the same task through each integration\n\n"
        f"Command: `.venv/bin/python bench/integrations.py --runs {args.runs}` (2 cores; "
        "embedded default: SQLite, in-memory channel layer, inline executor, bubblewrap). "
        "Each call is a new session and a `shell` task running `true`; the baseline is "
        "`POST /api/v1/oneshot` on the same server, same run.\n\n"
        f"{result}\n"
    )


if __name__ == "__main__":
    main()
