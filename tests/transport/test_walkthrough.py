"""The README walkthrough, end to end, against a real sdist and a real daphne.

pip downloads the sdist of a real open-source package (six); it is uploaded into a session's
workspace and unpacked; the seeded ``pytest`` agent runs the project's own test suite in the
sandbox while the client follows the SSE stream; the result carries the JUnit counts, the
report can be downloaded from the workspace, and the admin shows the task.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from tests.transport.sse import iter_sse

pytestmark = [pytest.mark.transport, pytest.mark.sandbox]


def _pip_download(dest: Path) -> Path:
    """``pip download`` the sdist of six, as the README does (PyPI is reachable here; a
    transient failure is retried twice, and the last one fails with pip's own message)."""
    pip = shutil.which("pip3") or shutil.which("pip")
    argv = [pip] if pip else [sys.executable, "-m", "pip"]
    argv += ["download", "--no-binary", ":all:", "--no-deps", "--dest", str(dest), "six==1.17.0"]
    for attempt in range(3):
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if result.returncode == 0:
            break
        time.sleep(2 * (attempt + 1))
    assert result.returncode == 0, result.stderr[-2000:]
    return next(dest.glob("six-*.tar.gz"))


def test_run_a_real_projects_test_suite(http: httpx.Client, api_user: Any, tmp_path: Path) -> None:
    sdist = _pip_download(tmp_path)

    session = http.post("/api/v1/sessions", json={"agent": "pytest", "name": "six tests"}).json()
    sid = session["id"]
    with sdist.open("rb") as fh:
        upload = http.post(
            f"/api/v1/sessions/{sid}/workspace/files",
            files={"files": (sdist.name, fh, "application/gzip")},
            data={"extract": "true"},
        )
    assert upload.status_code == 201, upload.text
    listing = http.get(
        f"/api/v1/sessions/{sid}/workspace/files", params={"recursive": "true"}
    ).json()
    assert listing["truncated"] is False
    paths = {entry["path"] for entry in listing["entries"]}
    assert "six-1.17.0/test_six.py" in paths

    task = http.post(f"/api/v1/sessions/{sid}/tasks", json={"task_type": "run", "input": {}})
    assert task.status_code == 201, task.text
    task_id = task.json()["id"]

    stdout = []
    statuses = []
    with http.stream("GET", f"/api/v1/tasks/{task_id}/stream") as response:
        for message in iter_sse(response):
            if message["event"] == "end":
                break
            if message["event"] == "process.stdout":
                stdout.append(message["data"]["data"]["text"])
            if message["event"] == "task.status":
                statuses.append(message["data"]["data"]["status"])
    output = "".join(stdout)
    assert "passed" in output, output[-2000:]
    assert statuses[0] in {"queued", "running"}
    assert statuses[-1] == "succeeded", output[-3000:]

    result = http.get(f"/api/v1/tasks/{task_id}/result").json()
    tests = result["result"]["tests"]
    assert tests["total"] > 50
    assert tests["failed"] == 0
    assert tests["errors"] == 0
    assert tests["passed"] + tests["skipped"] == tests["total"]

    report = http.get(f"/api/v1/sessions/{sid}/workspace/files/.agent/junit.xml")
    assert report.status_code == 200
    assert b"<testsuite" in report.content

    admin = get_user_model().objects.create_superuser("operator", password="pw-operator-1")
    client = Client()
    client.force_login(admin)
    page = client.get("/admin/agent_sessions/task/")
    assert page.status_code == 200
    assert task_id in page.content.decode()
