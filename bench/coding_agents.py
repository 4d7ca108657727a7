"""What a coding-agent run costs on top of the command it ends up running (issue 12).

One embedded-default server (bubblewrap sandboxes without network), the scripted model on
this machine's non-loopback address (reached through each sandbox's egress proxy), and the
"fix a failing test" workspace (calc.py with a bug, tests/test_calc.py) uploaded into a new
session for every run:

* **baseline**: a plain ``command`` task running the tests (``python3 -m pytest -q tests``) on
  the fixed code: new session, sandbox start, the test run, the workspace diff;
* **opencode / codex / claude-code / aider**: a ``fix`` task of that architecture whose
  scripted model reads, edits, runs the same tests and answers (Aider: one reply, then its
  ``--auto-test``), i.e. the CLI's start-up, its model round trips through the proxy, the
  transcript conversion and the same test run.

ms from ``POST /tasks`` until the task reads terminal (polled every 20 ms), p50/p95 over
``--runs`` runs each after one warm-up (which installs the CLI if ``CODING_AGENTS_DIR`` has
not got it), the workloads interleaved; ratios against the baseline.

Usage: ``.venv/bin/python bench/coding_agents.py --runs 10 [--record]``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import django
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "runtime_project.settings")
django.setup()  # the scripted server lives in the sessions package, which needs settings

from bench.run import Server, pct, prepend_results, summary  # noqa: E402
from sessions.runners.scripted_llm import ScriptedLLM  # noqa: E402
from tests.execution import coding_agents as ca  # noqa: E402

ARCHITECTURES = ("opencode", "codex", "claude-code", "aider")
TURNS = {
    "opencode": ca.opencode_fix_turns,
    "codex": ca.codex_fix_turns,
    "claude-code": ca.claude_code_fix_turns,
    "aider": ca.aider_fix_turns,
}


def create_agents(http: httpx.Client, llm: Any) -> None:
    made = http.post("/api/v1/agents", json={
        "slug": "tests", "name": "tests", "kind": "command",
        "spec": {"allow_input_command": True}})  # fmt: skip
    assert made.status_code == 201, made.text
    for name in ARCHITECTURES:
        model = {"base_url": llm.base_url, "name": "scripted-1", "api_key_env": "BENCH_KEY"}
        if name == "claude-code":
            model.update(provider="anthropic", base_url=llm.anthropic_base_url)
        made = http.post("/api/v1/agents", json={
            "slug": name, "name": name, "kind": "command",
            "spec": {"architecture": name, "model": model, "test_command": ca.TEST_COMMAND}})  # fmt: skip
        assert made.status_code == 201, made.text


def one_run(http: httpx.Client, agent: str) -> float:
    sid = http.post("/api/v1/sessions", json={"agent": agent}).json()["id"]
    # the baseline runs the tests the CLIs end with: on the fixed code
    calc = ca.CALC_FIXED if agent == "tests" else ca.CALC_BUGGY
    files = {"calc.py": calc, "tests/test_calc.py": ca.TEST_CALC}
    for path, text in files.items():
        folder, _, name = path.rpartition("/")
        up = http.post(
            f"/api/v1/sessions/{sid}/workspace/files",
            files={"files": (name, text.encode())}, data={"path": folder} if folder else {},
        )  # fmt: skip
        assert up.status_code in (200, 201), up.text
    if agent == "tests":
        body: dict[str, Any] = {"task_type": "run", "input": {"command": ca.TEST_COMMAND}}
    else:
        body = {"task_type": "fix", "input": {"configuration": {
            "instructions": "Make the tests pass.", "files": ["calc.py"]}}}  # fmt: skip
    started = time.perf_counter()
    task = http.post(f"/api/v1/sessions/{sid}/tasks", json=body).json()
    while task["status"] not in ("succeeded", "failed", "cancelled", "timed_out"):
        time.sleep(0.02)
        task = http.get(f"/api/v1/tasks/{task['id']}").json()
    elapsed = (time.perf_counter() - started) * 1000
    assert task["status"] == "succeeded", (agent, task.get("error"))
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--record", action="store_true", help="prepend to bench/RESULTS.md")
    args = parser.parse_args()

    logging.getLogger("httpx").setLevel(logging.WARNING)
    address = ca.host_address()
    server = Server({
        "LLM_ENDPOINT_ALLOWED_HOSTS": address, "SANDBOX_EGRESS_ALLOW_PRIVATE": "1",
        "BENCH_KEY": ca.API_KEY, "CODING_AGENTS_DIR": str(ROOT / "var" / "coding-agents"),
    })  # fmt: skip
    times: dict[str, list[float]] = {name: [] for name in ("tests", *ARCHITECTURES)}
    try:
        with ScriptedLLM(host=address) as llm:
            http = httpx.Client(base_url=server.url, headers=server.headers, timeout=600)
            create_agents(http, llm)
            for i in range(args.runs + 1):
                for agent in times:
                    if agent in TURNS:
                        llm.add(*TURNS[agent]())
                    elapsed = one_run(http, agent)
                    if i:  # the first round warms up (and installs the CLIs)
                        times[agent].append(elapsed)
    finally:
        server.close()
    base = pct(times["tests"], 0.5)
    rows = [f"| {name} | {summary(values)} | {pct(values, 0.5) / base:.2f}x |"
            for name, values in times.items()]  # fmt: skip
    text = "\n".join([
        f"## Coding-agent runs: a fix task per architecture vs the plain test command "
        f"({datetime.now(UTC):%Y-%m-%d})",
        "",
        f"`.venv/bin/python bench/coding_agents.py --runs {args.runs} --record`: ms from "
        "POST /tasks to a terminal status, new session each run (sandbox start included), "
        "scripted model over real HTTP through the sandbox's egress proxy; p50 / p95.",
        "",
        "| workload | ms p50 / p95 | p50 vs baseline |",
        "|---|---|---|",
        *rows,
        "",
    ])  # fmt: skip
    text = text.replace("| tests |", "| baseline: `python3 -m pytest -q tests` |")
    print(text)
    if args.record:
        prepend_results(text)


if __name__ == "__main__":
    main()
