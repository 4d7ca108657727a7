"""Following a task: Ctrl-C cancels it on the server, SSE fallback, resume after a drop."""

from __future__ import annotations

import re
import signal
import time

import httpx
import pytest

from tests.cli.conftest import Cli
from tests.cli.proxy import DroppingProxy

pytestmark = [pytest.mark.transport, pytest.mark.sandbox]


def _wait_status(rest: httpx.Client, task_id: str, wanted: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        status = rest.get(f"/api/v1/tasks/{task_id}").json()["status"]
        if status == wanted:
            break
        time.sleep(0.1)
    return status


def test_ctrl_c_cancels_the_task_on_the_server_and_exits_130(cli: Cli, rest: httpx.Client) -> None:
    proc = cli.popen("run", "shell", "--input", '{"command": "echo started; sleep 30"}')
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline() == "started\n"
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert time.monotonic() - started < 10
    task_id = re.search(r"task ([0-9a-f-]{36}) ·", err).group(1)  # type: ignore[union-attr]
    assert f"asked the server to cancel task {task_id}" in err
    assert _wait_status(rest, task_id, "cancelled") == "cancelled"


def test_sse_transport_gives_the_same_output(cli: Cli) -> None:
    result = cli("run", "shell", "--transport", "sse", "--input",
                 '{"command": "echo one; sleep 0.3; echo two >&2; exit 4"}')  # fmt: skip
    assert result.returncode == 1
    assert result.stdout == "one\n"
    assert "two" in result.stderr


def test_resumes_after_the_connection_drops(cli: Cli) -> None:
    proxy = DroppingProxy(int(cli.url.rsplit(":", 1)[1]))
    try:
        command = "for i in 1 2 3 4 5 6; do echo line-$i; sleep 0.3; done"
        proc = cli.popen("run", "shell", "--transport", "ws", "--input",
                         f'{{"command": "{command}"}}', RUNTIME_URL=proxy.url)  # fmt: skip
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first == "line-1\n"
        connections = proxy.accepted
        proxy.drop_all()  # mid-task: the CLI must reconnect with ?after=<last seq>
        rest, err = proc.communicate(timeout=60)
    finally:
        proxy.close()
    assert proc.returncode == 0, err
    # Every line exactly once, in order: nothing lost in the gap, nothing replayed twice.
    assert first + rest == "".join(f"line-{i}\n" for i in range(1, 7))
    assert "reconnecting after seq" in err
    assert proxy.accepted > connections


def test_a_question_of_the_task_is_answered_with_tasks_resume(cli: Cli) -> None:
    session_id = cli("sessions", "create", "--agent", "demo-llm", "-q").stdout.strip()
    chat = cli.popen("chat", session_id, "ask what is your name?")
    assert chat.stderr is not None
    seen = ""
    while "tasks resume" not in seen:
        line = chat.stderr.readline()
        assert line, f"chat ended without asking: {seen}"
        seen += line
    task_id = re.search(r"tasks resume ([0-9a-f-]{36}) --reply", seen).group(1)  # type: ignore[union-attr]
    assert "the task asks: what is your name?" in seen

    answered = cli("tasks", "resume", task_id, "--reply", "Bob")
    assert answered.returncode == 0, answered.stderr
    out, err = chat.communicate(timeout=60)
    assert chat.returncode == 0, err
    assert "Bob" in out.split("Calling ask_user.", 1)[1]


def test_no_follow_prints_the_task_id_at_once(cli: Cli, rest: httpx.Client) -> None:
    result = cli("run", "shell", "--no-follow", "--", "sleep", "0.2")
    assert result.returncode == 0, result.stderr
    task_id = result.stdout.strip()
    assert _wait_status(rest, task_id, "succeeded") == "succeeded"
    followed = cli("tasks", "events", task_id, "--follow")
    assert followed.returncode == 0 and followed.stdout == ""
