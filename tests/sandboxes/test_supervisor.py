"""The long-lived sandbox: one supervisor (sbxd) per sandbox, reused by every exec, background
processes with re-attach, idle stop and stop, all against real bubblewrap."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sandboxes.backends.local import LocalBackend
from sandboxes.base import SandboxProcessNotFound, SandboxSpec
from tests.sandboxes.helpers import collect

pytestmark = pytest.mark.sandbox


def spec(workspace: Path, **kwargs: object) -> SandboxSpec:
    return SandboxSpec(sandbox_id=f"sup-{workspace.parent.name}", workspace=workspace, **kwargs)  # type: ignore[arg-type]


async def until(predicate: Callable[[], object], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return True
        await asyncio.sleep(0.05)
    return False


async def test_execs_share_one_sandbox_whose_state_persists(
    backend: LocalBackend, workspace: Path
) -> None:
    s = spec(workspace)
    out1, _, _ = await collect(
        await backend.exec(s, ["sh", "-c", "echo $PPID; echo x > /tmp/mark"])
    )
    info = await backend.info(s.sandbox_id)
    assert info is not None and info.state == "running" and info.tier == "bubblewrap"
    out2, _, exit2 = await collect(await backend.exec(s, ["sh", "-c", "echo $PPID; cat /tmp/mark"]))
    # Same supervisor (pid 2 in the sandbox's pid namespace) and the same private /tmp.
    assert out1.split()[0] == out2.split()[0] == b"2"
    assert out2.split()[1] == b"x" and exit2.exit_code == 0
    again = await backend.info(s.sandbox_id)
    assert again is not None and again.started_at == info.started_at
    assert again.usage["pids"] >= 2 and again.usage["memory_bytes"] > 0
    assert await backend.stop(s.sandbox_id) is True
    assert await backend.info(s.sandbox_id) is None
    # Using it again starts a fresh one transparently; the workspace survived, /tmp did not.
    out3, _, _ = await collect(await backend.exec(s, ["sh", "-c", "ls /tmp; ls"]))
    assert b"mark" not in out3
    await backend.stop(s.sandbox_id)


async def test_background_process_reattach_stdin_and_kill(
    backend: LocalBackend, workspace: Path
) -> None:
    s = spec(workspace)
    script = "echo hello; while read line; do echo got $line; done; echo eof; sleep 600"
    process = await backend.start_process(s, ["sh", "-c", script])
    assert process.running and process.argv == ("sh", "-c", script)
    first = await backend.attach(s.sandbox_id, process.process_id)
    it = first.__aiter__()
    assert (await asyncio.wait_for(it.__anext__(), 10)).data == b"hello\n"
    await it.aclose()  # the client goes away: the process keeps running
    await backend.write_stdin(s.sandbox_id, process.process_id, b"one\ntwo\n", eof=True)

    # A new backend instance (another server process, or after a reconnect) sees the list and
    # re-attaches: the retained output from the start, then live output, then the exit.
    other = LocalBackend()
    listed = await other.processes(s.sandbox_id)
    assert [p.process_id for p in listed] == [process.process_id] and listed[0].running
    again = await other.attach(s.sandbox_id, process.process_id)
    seen = b""
    it = again.__aiter__()
    while b"eof\n" not in seen:
        seen += (await asyncio.wait_for(it.__anext__(), 10)).data
    assert seen == b"hello\ngot one\ngot two\neof\n"
    await other.kill_process(s.sandbox_id, process.process_id, signal=9)
    rest = [event async for event in it]
    assert rest[-1].stream == "exit" and rest[-1].exit_code == -9
    (done,) = await backend.processes(s.sandbox_id)
    assert not done.running and done.exit_code == -9 and done.output_bytes == len(seen)
    with pytest.raises(SandboxProcessNotFound):
        await backend.write_stdin(s.sandbox_id, process.process_id, b"late")
    with pytest.raises(SandboxProcessNotFound):
        await backend.attach(s.sandbox_id, "p999")
    await backend.stop(s.sandbox_id)


async def test_stop_kills_background_processes(
    backend: LocalBackend, workspace: Path, host_pids: Callable[[str], list[int]]
) -> None:
    s = spec(workspace)
    marker = f"7200.{secrets.randbelow(10**9)}"
    await backend.start_process(s, ["sh", "-c", f"setsid sleep {marker} & sleep {marker}"])
    assert await until(lambda: len(host_pids(f"sleep {marker}")) >= 2)
    assert await backend.stop(s.sandbox_id) is True
    assert host_pids(f"sleep {marker}") == []
    assert await backend.processes(s.sandbox_id) == []
    assert await backend.stop(s.sandbox_id) is False  # idempotent


async def test_an_idle_sandbox_stops_itself(backend: LocalBackend, workspace: Path) -> None:
    s = spec(workspace, idle_timeout_s=0.5)
    await backend.start_process(s, ["sleep", "600"])  # background work does not keep it alive
    await collect(await backend.exec(s, ["true"]))
    assert await backend.is_running(s.sandbox_id)
    assert await until(lambda: not_running(backend, s))
    out, _, exit_event = await collect(await backend.exec(s, ["echo", "back"]))
    assert out == b"back\n" and exit_event.exit_code == 0  # started again on demand
    await backend.stop(s.sandbox_id)


async def not_running(backend: LocalBackend, s: SandboxSpec) -> bool:
    return not await backend.is_running(s.sandbox_id)


async def test_a_foreground_command_keeps_its_sandbox_busy(
    backend: LocalBackend, workspace: Path
) -> None:
    s = spec(workspace, idle_timeout_s=0.3)
    out, _, exit_event = await collect(await backend.exec(s, ["sh", "-c", "sleep 1.5; echo ok"]))
    assert out == b"ok\n" and exit_event.exit_code == 0 and not exit_event.killed
    await backend.stop(s.sandbox_id)


async def test_an_abandoned_command_is_killed_with_its_tree(
    backend: LocalBackend, workspace: Path, host_pids: Callable[[str], list[int]]
) -> None:
    s = spec(workspace)
    marker = f"3600.{secrets.randbelow(10**9)}"
    ex = await backend.exec(
        s, ["sh", "-c", f"setsid sleep {marker} & echo started; sleep {marker}"]
    )
    it = ex.__aiter__()
    assert (await asyncio.wait_for(it.__anext__(), 10)).data == b"started\n"
    assert await until(lambda: len(host_pids(f"sleep {marker}")) >= 2)
    await it.aclose()  # e.g. the client of an exec stream disconnected
    assert await until(lambda: host_pids(f"sleep {marker}") == [])
    assert await backend.is_running(s.sandbox_id)  # the sandbox itself stays
    await backend.stop(s.sandbox_id)


async def test_a_changed_spec_restarts_the_sandbox(backend: LocalBackend, workspace: Path) -> None:
    await collect(await backend.exec(spec(workspace), ["true"]))
    first = await backend.info(spec(workspace).sandbox_id)
    tighter = spec(workspace, network="host")
    out, _, _ = await collect(await backend.exec(tighter, ["cat", "/proc/net/dev"]))
    second = await backend.info(tighter.sandbox_id)
    assert first is not None and second is not None
    assert second.started_at != first.started_at
    assert len(out.splitlines()) > 3  # the host's interfaces: a new sandbox with network=host
    await backend.stop(tighter.sandbox_id)


async def test_stdin_a_command_does_not_read_never_loses_its_exit(
    backend: LocalBackend, workspace: Path
) -> None:
    """A command that exits before sbxd has read the stdin frames sent to it: closing the
    connection then used to reset it and drop the exit frame (reported as -9, "killed")."""
    s = spec(workspace)
    for _ in range(60):
        out, _, exit_event = await collect(
            await backend.exec(s, ["echo", "1"], stdin=b'{"a": 1}\n' * 100)
        )
        assert (out, exit_event.exit_code, exit_event.killed) == (b"1\n", 0, False)
    await backend.stop(s.sandbox_id)
