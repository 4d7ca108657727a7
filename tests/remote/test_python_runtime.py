"""``python -m runtime_client`` as a user runs it: a separate process attached to a live daphne
that runs ``python`` tasks on a local Jupyter kernel (the notebook runtime's code path) and
keeps the kernel's variables between tasks."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.procs import ROOT
from tests.remote.conftest import Api

pytestmark = [pytest.mark.transport]


async def _attached(api: Api, session_id: str, proc: asyncio.subprocess.Process) -> dict:
    deadline = time.monotonic() + 30
    while True:
        response = await api.client.get(f"/api/v1/sessions/{session_id}/runtime")
        if response.status_code == 200:
            return dict(response.json())
        assert proc.returncode is None, f"the client exited with {proc.returncode}"
        assert time.monotonic() < deadline, "the client did not attach"
        await asyncio.sleep(0.2)


async def test_the_cli_runs_python_tasks_on_a_local_kernel(api: Api, tmp_path: Path) -> None:
    session_id = await api.session(attach_timeout_s=30)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "runtime_client", "--url", api.server.ws_url,
        "--session", session_id, "--runtime-id", "cli-1", "--workdir", str(tmp_path),
        cwd=ROOT, env={**os.environ, "RUNTIME_TOKEN": api.token},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        assert (await _attached(api, session_id, proc))["runtime_id"] == "cli-1"
        first = await api.task(session_id, cells=["x = 21", "print(x * 2)", "x * 2"])
        first_task = await api.finished(first, timeout=90)
        second_task = await api.finished(await api.task(session_id, code="x + 1"), timeout=60)
        broken = await api.finished(await api.task(session_id, code="1 / 0"), timeout=60)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        output = (await asyncio.wait_for(proc.communicate(), 30))[0].decode(errors="replace")
    assert proc.returncode == 0, output
    assert first_task["status"] == "succeeded", (first_task, output)
    events = await api.task_events(first)
    stdout = "".join(e["data"]["text"] for e in events if e["type"] == "process.stdout")
    assert stdout == "42\n"
    displays = [e["data"]["data"] for e in events if e["type"] == "output.display"]
    assert displays == [{"text/plain": "42"}]
    assert second_task["status"] == "succeeded", second_task  # the kernel kept x
    assert second_task["result"]["output"] == {"text/plain": "22"}
    assert broken["status"] == "failed"
    assert broken["error"]["code"] == "cell_error"
    errors = [e["data"] for e in await api.task_events(broken["id"]) if e["type"] == "output.error"]
    assert errors[0]["ename"] == "ZeroDivisionError"
