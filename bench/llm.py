"""The ``llm`` agent loop's own cost: a scripted OpenAI-compatible model (real HTTP, no delay
between chunks) behind a real daphne on the embedded default, against the ``openai`` SDK
reading the same scripted stream directly (the baseline, measured in the same invocation).

* **first token**: ``POST /sessions/{id}/messages`` → the first ``message.delta`` at a session
  WebSocket, and → the terminal ``task.status``; baseline: request → first content chunk and →
  the end of the stream through the SDK alone. ms, p50/p95 over ``--turns`` turns of a 20-chunk
  reply (each turn carries the session's growing history).
* **token throughput**: one reply of ``--chunks`` chunks: chunks/s from the request to
  ``message.completed`` at the WebSocket, every chunk's text received (deltas of one message
  are coalesced per flush interval, so the text is checked, not the event count); baseline:
  the SDK reading the same reply.

Usage: ``.venv/bin/python bench/llm.py --turns 30 --chunks 5000 [--record]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import django
import httpx
import openai
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "runtime_project.settings")
django.setup()  # the scripted server lives in the sessions package, which needs settings

from bench.run import Server, pct, summary  # noqa: E402
from sessions.runners.scripted_llm import ScriptedLLM, Turn  # noqa: E402

TERMINAL = {"succeeded", "failed", "cancelled", "timed_out"}


def respond(request: dict[str, Any]) -> Turn:
    """``n=<count>`` in the last user message sets the reply's chunk count (default 20)."""
    said = str(request["messages"][-1].get("content") or "")
    n = int(said.split("n=")[1]) if "n=" in said else 20
    return Turn(chunks=[f"t{i} " for i in range(n)])


def direct(llm: ScriptedLLM, turns: int, chunks: int) -> tuple[list[float], list[float], float]:
    client = openai.OpenAI(base_url=llm.base_url, api_key="unused", max_retries=0)
    first, done = [], []
    for i in range(turns + 3):
        t0 = time.perf_counter()
        stream = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        t_first = None
        for chunk in stream:
            if t_first is None and chunk.choices and chunk.choices[0].delta.content:
                t_first = time.perf_counter()
        if i >= 3:  # warm-up
            first.append(((t_first or t0) - t0) * 1000)
            done.append((time.perf_counter() - t0) * 1000)
    t0 = time.perf_counter()
    text = ""
    stream = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": f"n={chunks}"}], stream=True
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
    rate = chunks / (time.perf_counter() - t0)
    assert text.count(" ") == chunks
    return first, done, rate


def served(
    server: Server, http: httpx.Client, llm: ScriptedLLM, turns: int, chunks: int
) -> tuple[list[float], list[float], float]:
    spec = {"model": {"base_url": llm.base_url, "name": "scripted"}, "max_retries": 0}
    http.post("/api/v1/agents", json={"slug": "bench-llm", "name": "b", "kind": "llm",
                                      "spec": spec})  # fmt: skip
    sid = http.post("/api/v1/sessions", json={"agent": "bench-llm"}).json()["id"]
    first, done = [], []

    def turn(message: str) -> tuple[float, float, float, float, str]:
        t0 = time.perf_counter()
        response = http.post(f"/api/v1/sessions/{sid}/messages", json={"message": message})
        task_id = response.json()["id"]
        t_first = t_completed = None
        text = ""
        while True:
            frame = json.loads(ws.recv(timeout=60))
            if frame.get("task_id") != task_id:
                continue
            if frame["type"] == "message.delta":
                t_first = t_first or time.perf_counter()
                text += frame["data"]["text"]
            elif frame["type"] == "message.completed":
                t_completed = time.perf_counter()
            elif frame["type"] == "task.status" and frame["data"]["status"] in TERMINAL:
                assert frame["data"]["status"] == "succeeded", frame
                end = time.perf_counter()
                return t0, t_first or t0, t_completed or end, end, text

    with connect(f"{server.ws_url}/ws/sessions/{sid}/", additional_headers=server.headers) as ws:
        for i in range(turns + 3):
            t0, t_first, _, end, _ = turn("hi")
            if i >= 3:
                first.append((t_first - t0) * 1000)
                done.append((end - t0) * 1000)
        t0, _, t_completed, _, text = turn(f"n={chunks}")
    assert text.count(" ") == chunks, "a token was lost"
    return first, done, chunks / max(t_completed - t0, 1e-9)


def report(args: argparse.Namespace, base: tuple, ours: tuple) -> str:
    (bf, bd, br), (of, od, orate) = base, ours
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    ratio = pct(of, 0.5) / max(pct(bf, 0.5), 1e-9)
    return "\n".join([
        f"## {when}: llm agent loop (scripted model)",
        "",
        f"Command: `.venv/bin/python bench/llm.py --turns {args.turns} --chunks {args.chunks}` "
        "(2 cores; embedded default: SQLite, in-memory channel layer, inline executor). The "
        "baseline is the openai SDK reading the same scripted server directly, same run.",
        "",
        "| figure | baseline (SDK alone) | through the server | ratio |",
        "|---|---|---|---|",
        f"| first token p50 / p95 ms | {summary(bf)} | {summary(of)} | {ratio:.1f}x |",
        f"| whole 20-chunk turn p50 / p95 ms | {summary(bd)} | {summary(od)} | "
        f"{pct(od, 0.5) / max(pct(bd, 0.5), 1e-9):.1f}x |",
        f"| {args.chunks}-chunk reply, chunks/s | {br:,.0f} | {orate:,.0f} | "
        f"{orate / br:.2f}x |",
        "",
    ])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=30)
    parser.add_argument("--chunks", type=int, default=5000)
    parser.add_argument("--record", action="store_true", help="prepend to bench/RESULTS.md")
    args = parser.parse_args()
    with ScriptedLLM(responder=respond) as llm:
        base = direct(llm, args.turns, args.chunks)
        server = Server()
        try:
            with httpx.Client(base_url=server.url, headers=server.headers, timeout=60) as http:
                ours = served(server, http, llm, args.turns, args.chunks)
        finally:
            server.close()
    text = report(args, base, ours)
    print(text)
    if args.record:
        from bench.run import prepend_results

        prepend_results(text)


if __name__ == "__main__":
    main()
