"""The command agent end to end: a real executor, a real bubblewrap sandbox, the real event log."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from runtime_project.exceptions import InvalidInput
from sessions.models import Artifact, Event, Session
from sessions.services.agents import agent_create
from sessions.services.sessions import session_create
from sessions.services.tasks import task_cancel
from sessions.subscriptions import EventSubscription
from tests.helpers import events_of, stdout_of, wait_terminal

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sandbox]


async def test_command_streams_output_and_succeeds(executor: Any, make_task: Any) -> None:
    task = await sync_to_async(make_task)("echo hello; echo oops >&2; echo done")
    executor.kick()
    task = await wait_terminal(task)
    assert task.status == "succeeded", task.error
    assert task.result["exit_code"] == 0
    events = await sync_to_async(events_of)(task)
    types = [e.type for e in events]
    assert types[0] == "task.status" and events[0].data["status"] == "queued"
    assert "process.started" in types and "process.exit" in types
    assert types[-1] == "task.status" and events[-1].data["status"] == "succeeded"
    assert await sync_to_async(stdout_of)(task) == "hello\ndone\n"
    stderr = "".join(e.data["text"] for e in events if e.type == "process.stderr")
    assert stderr == "oops\n"
    # seq is gapless over the whole session log
    seqs = await sync_to_async(
        lambda: list(
            Event.objects.filter(session_id=task.session_id)
            .order_by("seq")
            .values_list("seq", flat=True)
        )
    )()
    assert seqs == list(range(1, len(seqs) + 1))


async def test_nonzero_exit_fails_with_exit_code(executor: Any, make_task: Any) -> None:
    task = await sync_to_async(make_task)("echo partial; exit 7")
    executor.kick()
    task = await wait_terminal(task)
    assert task.status == "failed"
    assert task.error["code"] == "command_failed"
    assert task.error["details"]["exit_code"] == 7
    exit_events = [e for e in await sync_to_async(events_of)(task) if e.type == "process.exit"]
    assert exit_events[0].data["exit_code"] == 7


async def test_output_arrives_while_the_command_runs(
    executor: Any, make_task: Any, session: Session
) -> None:
    task = await sync_to_async(make_task)("echo first; sleep 2; echo second")
    received: list[tuple[float, dict[str, Any]]] = []
    async with EventSubscription(session=session, task=task, heartbeat_s=5) as sub:
        executor.kick()
        async for envelope in sub:
            if envelope is not None:
                received.append((time.monotonic(), envelope))
    outs = [(t, e) for t, e in received if e["type"] == "process.stdout"]
    assert outs[0][1]["data"]["text"] == "first\n"
    exit_at = next(t for t, e in received if e["type"] == "process.exit")
    assert exit_at - outs[0][0] > 1.5, "the first line must arrive long before the process exits"


async def test_large_output_is_chunked_not_one_event_per_write(
    executor: Any, make_task: Any
) -> None:
    # 20,000 lines written one by one: far fewer events than writes, nothing lost.
    task = await sync_to_async(make_task)("for i in $(seq 1 20000); do echo line-$i; done")
    executor.kick()
    task = await wait_terminal(task)
    assert task.status == "succeeded"
    chunks = [e for e in await sync_to_async(events_of)(task) if e.type == "process.stdout"]
    text = "".join(e.data["text"] for e in chunks)
    assert text.splitlines() == [f"line-{i}" for i in range(1, 20001)]
    assert len(chunks) < 2000


async def test_a_large_output_burst_stays_inline_in_bounded_events(
    executor: Any, make_task: Any
) -> None:
    """One write of 300 kB (one pipe read can return far more than an event keeps inline) is
    split into events of at most 32 KiB of text, all in the log, none moved to an artifact."""
    task = await sync_to_async(make_task)(
        "python3 -c \"import sys; sys.stdout.write(''.join(chr(97 + i % 26) for i in range(300000)))\""
    )
    executor.kick()
    task = await wait_terminal(task)
    assert task.status == "succeeded"
    chunks = [e for e in await sync_to_async(events_of)(task) if e.type == "process.stdout"]
    assert all("text" in e.data and not e.data.get("truncated") for e in chunks)
    assert max(len(e.data["text"]) for e in chunks) <= 32 * 1024
    assert "".join(e.data["text"] for e in chunks) == "".join(
        chr(97 + i % 26) for i in range(300000)
    )


async def test_oversized_event_payload_goes_to_an_artifact(
    executor: Any, make_task: Any, settings: Any
) -> None:
    settings.EVENT_INLINE_MAX_BYTES = 4096
    task = await sync_to_async(make_task)(
        "python3 -c \"import sys; sys.stdout.write('x' * 20000)\""
    )
    executor.kick()
    task = await wait_terminal(task)
    assert task.status == "succeeded"
    big = [e for e in await sync_to_async(events_of)(task) if e.data.get("truncated")]
    assert big, "a 20 kB chunk must be stored as an artifact"
    artifact = await sync_to_async(Artifact.objects.get)(uuid=big[0].data["artifact"]["id"])
    stored = await sync_to_async(lambda: artifact.file.open("rb").read())()
    assert b"x" * 1000 in stored


def _alive_with_marker(marker: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            found.append(int(proc.name))
    return found


async def test_cancel_kills_the_whole_tree_including_a_setsid_grandchild(
    executor: Any, make_task: Any
) -> None:
    marker = f"marker-{time.time_ns()}"
    script = (
        'python3 -c "import os, time\n'
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        f"    os.execvp('sleep', ['sleep', '300', '{marker}'])\n"
        'time.sleep(300)" &\n'
        "echo started; wait"
    )
    task = await sync_to_async(make_task)(script)
    executor.kick()
    deadline = time.monotonic() + 20
    while not _alive_with_marker(marker):
        assert time.monotonic() < deadline, "the grandchild never started"
        await asyncio.sleep(0.1)
    await sync_to_async(task_cancel)(task=task)
    task = await wait_terminal(task, timeout=30)
    assert task.status == "cancelled"
    assert task.error["code"] == "cancelled"
    deadline = time.monotonic() + 5
    while _alive_with_marker(marker):
        assert time.monotonic() < deadline, "a process of the cancelled task survived"
        await asyncio.sleep(0.1)


async def test_wall_clock_timeout_ends_in_timed_out(executor: Any, make_task: Any) -> None:
    task = await sync_to_async(make_task)("echo going; sleep 60", config={"timeout_s": 1.5})
    started = time.monotonic()
    executor.kick()
    task = await wait_terminal(task, timeout=30)
    assert task.status == "timed_out"
    assert task.error["code"] == "timed_out"
    assert time.monotonic() - started < 15
    last = (await sync_to_async(events_of)(task))[-1]
    assert last.type == "task.status" and last.data["status"] == "timed_out"


async def test_enqueued_tasks_of_one_session_run_one_after_another(
    executor: Any, make_task: Any
) -> None:
    first = await sync_to_async(make_task)(
        "echo a > /workspace/order; sleep 1; echo a-done >> /workspace/order"
    )
    second = await sync_to_async(make_task)("echo b >> /workspace/order")
    executor.kick()
    first = await wait_terminal(first)
    second = await wait_terminal(second)
    assert first.status == second.status == "succeeded"
    assert second.started_at >= first.finished_at
    order = (Path(first.session.workspace_path) / "order").read_text().split()
    assert order == ["a", "a-done", "b"]


async def test_sandbox_has_no_network_and_cannot_read_host_secrets(
    executor: Any, make_task: Any
) -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        task = await sync_to_async(make_task)(
            f"python3 -c \"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=2)\" "
            "&& echo NET-OPEN || echo NET-BLOCKED; cat /etc/shadow 2>/dev/null && echo SHADOW-READ || echo SHADOW-BLOCKED; "
            "ls /root 2>/dev/null && echo ROOT-READ || echo ROOT-BLOCKED; id -u"
        )
        executor.kick()
        task = await wait_terminal(task)
    finally:
        server.close()
    out = await sync_to_async(stdout_of)(task)
    assert "NET-BLOCKED" in out and "NET-OPEN" not in out
    assert "SHADOW-BLOCKED" in out and "ROOT-BLOCKED" in out
    assert out.strip().splitlines()[-1] != "0"


@pytest.mark.parametrize(
    ("limits", "command", "code"),
    [
        ({"memory_mb": 128}, "python3 -c \"b = b'x' * (300 * 1024 * 1024)\"", "memory_limit"),
        ({"cpu_s": 1}, 'python3 -c "while True: pass"', "cpu_limit"),
        ({"file_size_mb": 1}, "head -c 3000000 /dev/zero > big", "file_size_limit"),
    ],
)
async def test_exceeding_a_limit_fails_with_its_own_error_code(
    executor: Any, owner: Any, make_task: Any, limits: dict[str, int], command: str, code: str
) -> None:
    def setup() -> Any:
        agent = agent_create(
            owner=owner, slug=f"limited-{code}", name="limited", kind="command",
            spec={"limits": limits},
        )  # fmt: skip
        return make_task(command, session=session_create(owner=owner, agent=agent))

    task = await sync_to_async(setup)()
    executor.kick()
    task = await wait_terminal(task)
    assert task.status == "failed"
    assert task.error["code"] == code
    assert task.error["details"]["limit"] == code.removesuffix("_limit")
    exit_event = next(e for e in await sync_to_async(events_of)(task) if e.type == "process.exit")
    assert exit_event.data["limit"] == task.error["details"]["limit"]


async def test_runaway_output_is_truncated_and_stopped_with_output_limit(
    executor: Any, owner: Any, make_task: Any
) -> None:
    def setup() -> Any:
        agent = agent_create(
            owner=owner, slug="chatty", name="chatty", kind="command",
            spec={"limits": {"output_bytes": 200_000}},
        )  # fmt: skip
        return make_task("yes", session=session_create(owner=owner, agent=agent))

    started = time.monotonic()
    task = await sync_to_async(setup)()
    executor.kick()
    task = await wait_terminal(task)
    assert time.monotonic() - started < 30  # stopped, not left to the task timeout
    assert task.status == "failed"
    assert task.error["code"] == "output_limit"
    assert task.result["output_truncated"] is True
    events = await sync_to_async(events_of)(task)
    streamed = sum(len(e.data["text"]) for e in events if e.type == "process.stdout")
    assert 0 < streamed <= 200_000
    marker = [e for e in events if e.type == "process.output_truncated"]
    assert [m.data["limit_bytes"] for m in marker] == [200_000]
    assert next(e for e in events if e.type == "process.exit").data["killed"] is True


async def test_a_growing_workspace_is_stopped_with_workspace_limit(
    executor: Any, make_task: Any
) -> None:
    # Many files, each under the file-size limit, that add up past the workspace limit.
    script = "i=0; while true; do head -c 300000 /dev/zero > f$i; i=$((i+1)); sleep 0.05; done"
    started = time.monotonic()
    task = await sync_to_async(make_task)(script, config={"limits": {"workspace_mb": 2}})
    executor.kick()
    task = await wait_terminal(task)
    assert time.monotonic() - started < 30  # stopped by the watchdog, not the task timeout
    assert (task.status, task.error["code"]) == ("failed", "workspace_limit")
    details = task.error["details"]
    assert details["limit_bytes"] == 2 * 1024 * 1024 < details["size_bytes"]
    exit_event = next(e for e in await sync_to_async(events_of)(task) if e.type == "process.exit")
    assert exit_event.data["killed"] is True


async def test_task_config_limits_tighten_the_agents(executor: Any, make_task: Any) -> None:
    task = await sync_to_async(make_task)(
        'python3 -c "while True: pass"', config={"limits": {"cpu_s": 1}}
    )
    executor.kick()
    task = await wait_terminal(task)
    assert (task.status, task.error["code"]) == ("failed", "cpu_limit")
    assert task.error["details"]["cpu_s"] == 1


@pytest.mark.parametrize(
    "limits", [{"memory_mb": 64}, {"cpu_s": 0}, {"workspace_mb": "big"}, "none"]
)
def test_bad_task_limits_are_refused_at_creation(make_task: Any, limits: Any) -> None:
    with pytest.raises(InvalidInput) as caught:
        make_task("true", config={"limits": limits})
    assert "config.limits" in caught.value.details["fields"]


async def test_stdout_format_events_turns_json_lines_into_custom_events(
    executor: Any, owner: Any
) -> None:
    """``spec.stdout_format: "events"``: each JSON-object line is one ``custom`` event, in
    order; other lines (text, a JSON list, broken JSON, a partial last line) stay output."""
    from tests.helpers import agent_task

    script = (
        "import json, sys\n"
        "for i in range(300):\n"
        "    print(json.dumps({'i': i, 'word': 'é'}))\n"
        "print('plain text')\n"
        "print('[1, 2]')\n"
        "print('{broken')\n"
        "sys.stdout.write(json.dumps({'last': True}))\n"
    )
    task = await sync_to_async(agent_task)(
        owner, "command", {"command": ["python3", "-c", script], "stdout_format": "events"}, {}
    )
    executor.kick()
    task = await wait_terminal(task)
    assert task.status == "succeeded", task.error
    events = await sync_to_async(events_of)(task)
    custom = [e.data for e in events if e.type == "custom"]
    assert custom == [{"i": i, "word": "é"} for i in range(300)] + [{"last": True}]
    assert await sync_to_async(stdout_of)(task) == "plain text\n[1, 2]\n{broken\n"


def test_an_unknown_stdout_format_is_refused(owner: Any) -> None:
    with pytest.raises(InvalidInput):
        agent_create(
            owner=owner, slug="bad-format", name="x", kind="command",
            spec={"command": "true", "stdout_format": "jsonl"},
        )  # fmt: skip
