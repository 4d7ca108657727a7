"""The escape and abuse suite: every case runs against every sandbox tier this host offers
(``escape_target`` in conftest: ``bubblewrap``, ``landlock``, ``docker`` on Podman), through the public
``SandboxBackend`` interface only, and asserts each tier's precise outcome.

Archive traversal (zip/tar members with ``..``, absolute paths, escaping links) is refused by
the extractor before anything is written, whatever the backend: ``test_sandbox_archive.py``.
Runaway output is stopped by the command runner (``output_limit``): ``test_command_runner.py``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import secrets
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from sandboxes import paths
from sandboxes.base import Limits, SandboxBackend, SandboxSpec
from tests.sandboxes.conftest import host_pids_with
from tests.sandboxes.helpers import collect

pytestmark = pytest.mark.sandbox

SECRET_NAME = "AGENT_RUNTIME_ESCAPE_TEST_SECRET"
SECRET = "s3cr3t-" + secrets.token_hex(4)


def spec(target: tuple[str, SandboxBackend], workspace: Path, **limits: Any) -> SandboxSpec:
    return SandboxSpec(
        sandbox_id=f"escape-{target[0]}", workspace=workspace, limits=Limits(**limits)
    )


async def run_py(
    target: tuple[str, SandboxBackend], workspace: Path, script: str, **limits: Any
) -> dict[str, Any]:
    """Run a Python script in the sandbox; it prints one JSON object, which is returned."""
    backend = target[1]
    argv = ["python3", "-c", textwrap.dedent(script)]
    out, err, exit_event = await collect(
        await backend.exec(spec(target, workspace, **limits), argv)
    )
    assert exit_event.exit_code == 0, err
    result: dict[str, Any] = json.loads(out)
    return result


async def test_no_network(
    escape_target: tuple[str, SandboxBackend], workspace: Path, tcp_listener: int
) -> None:
    got = await run_py(
        escape_target,
        workspace,
        f"""
        import json, socket
        out = {{}}
        def attempt(name, fn):
            try:
                fn(); out[name] = "ok"
            except OSError as e:
                out[name] = type(e).__name__ + ":" + str(e.errno)
        attempt("tcp_host_loopback", lambda: socket.create_connection(("127.0.0.1", {tcp_listener}), timeout=3))
        attempt("tcp_outside", lambda: socket.create_connection(("192.0.2.1", 80), timeout=3))
        def udp():
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.sendto(b"x", ("8.8.8.8", 53))
        attempt("udp_dns_server", udp)
        attempt("dns_lookup", lambda: socket.getaddrinfo("example.com", 443))
        print(json.dumps(out))
        """,
    )
    if escape_target[0] in (
        "bubblewrap",
        "docker",
    ):  # its own network namespace: only its own loopback
        assert got["tcp_host_loopback"] == "ConnectionRefusedError:111"
        assert got["tcp_outside"] == "OSError:101"  # ENETUNREACH
        assert got["udp_dns_server"] == "OSError:101"
    else:  # landlock: no network namespace; seccomp refuses inet sockets outright
        assert got["tcp_host_loopback"] == "PermissionError:1"
        assert got["tcp_outside"] == "PermissionError:1"
        assert got["udp_dns_server"] == "PermissionError:1"
    assert got["dns_lookup"].startswith("gaierror:")


@pytest.fixture
def server_secret() -> Any:
    """A secret file of the server's own in its data dir (``var/secret_key`` exists only once a
    server generated it; a fresh clone's test run may not have one)."""
    path = Path(settings.VAR_DIR) / f"escape-test-{secrets.token_hex(4)}"
    path.write_text(SECRET)
    path.chmod(0o600)
    yield path
    path.unlink()


async def test_host_secrets_are_out_of_reach(
    escape_target: tuple[str, SandboxBackend],
    workspace: Path,
    monkeypatch: pytest.MonkeyPatch,
    server_secret: Path,
) -> None:
    monkeypatch.setenv(SECRET_NAME, SECRET)  # in the server's environment from now on
    targets = [
        "/root", "/etc/shadow", f"{settings.BASE_DIR}/runtime_project/settings.py",
        str(server_secret), f"/proc/{os.getpid()}/environ",
    ]  # fmt: skip
    got = await run_py(
        escape_target,
        workspace,
        f"""
        import json, os
        out = {{"env": {SECRET!r} in repr(dict(os.environ))}}
        for p in {targets!r}:
            try:
                out[p] = "listed" if os.path.isdir(p) and os.listdir(p) is not None else (
                    "read" if open(p, "rb").read() is not None else "?")
            except OSError as e:
                out[p] = e.errno
        print(json.dumps(out))
        """,
    )
    assert got.pop("env") is False
    # bubblewrap: none of these exists in its mount namespace (ENOENT); landlock: the paths
    # exist but Landlock refuses to open them (EACCES).
    expected = dict.fromkeys(targets, 13 if escape_target[0] == "landlock" else 2)
    if escape_target[0] == "docker":
        expected["/root"] = 13  # the image's own /root (mode 0700), not the host's
    assert got == expected
    assert Path(targets[2]).exists()  # control: the host has the files the sandbox cannot open
    assert server_secret.read_text() == SECRET


async def test_no_writes_outside_the_workspace(
    escape_target: tuple[str, SandboxBackend], workspace: Path, outside: Path
) -> None:
    targets = [f"{outside}/planted", "/etc/planted", "/usr/planted", f"{settings.VAR_DIR}/x"]
    got = await run_py(
        escape_target,
        workspace,
        f"""
        import json
        out = {{}}
        for p in {targets!r} + ["/workspace-or-cwd"]:
            try:
                open(p if p != "/workspace-or-cwd" else "inside.txt", "w").write("x")
                out[p] = "written"
            except OSError as e:
                out[p] = e.errno
        print(json.dumps(out))
        """,
    )
    assert got.pop("/workspace-or-cwd") == "written"
    if escape_target[0] in (
        "bubblewrap",
        "docker",
    ):  # a read-only root; the outside dir is not mounted
        assert got == {targets[0]: 2, targets[1]: 30, targets[2]: 30, targets[3]: 2}
    else:
        assert got == dict.fromkeys(targets, 13)
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert (workspace / "inside.txt").read_text() == "x"


async def test_server_processes_cannot_be_signalled(
    escape_target: tuple[str, SandboxBackend], workspace: Path
) -> None:
    got = await run_py(
        escape_target,
        workspace,
        f"""
        import json, os, signal
        out = {{"pids": len([p for p in os.listdir("/proc") if p.isdigit()])}}
        for sig in (0, signal.SIGTERM, signal.SIGKILL):
            try:
                os.kill({os.getpid()}, sig); out[str(int(sig))] = "delivered"
            except OSError as e:
                out[str(int(sig))] = e.errno
        print(json.dumps(out))
        """,
    )
    if escape_target[0] in (
        "bubblewrap",
        "docker",
    ):  # its own pid namespace: the server does not exist
        assert got["pids"] <= 4
        assert (got["0"], got["15"], got["9"]) == (3, 3, 3)  # ESRCH
    else:  # the host's process list is visible; Landlock's signal scope refuses
        assert got["pids"] > 10
        assert (got["0"], got["15"], got["9"]) == (1, 1, 1)  # EPERM


async def test_fork_bomb_is_contained(
    escape_target: tuple[str, SandboxBackend], workspace: Path
) -> None:
    script = """
    import json, os, time
    made = 0
    try:
        for _ in range(10_000):
            if os.fork() == 0:
                time.sleep(30); os._exit(0)
            made += 1
        print(json.dumps({"made": made, "stopped_by": None}))
    except OSError as e:
        print(json.dumps({"made": made, "stopped_by": e.errno}))
    """
    started = time.monotonic()
    got = await run_py(escape_target, workspace, script, pids=32)
    assert got["stopped_by"] == 11 and 0 < got["made"] < 32  # EAGAIN at the process limit
    assert time.monotonic() - started < 30  # the children die with the command, not later


async def test_memory_and_cpu_hogs_are_stopped(
    escape_target: tuple[str, SandboxBackend], workspace: Path
) -> None:
    backend = escape_target[1]
    hog = ["python3", "-c", "b = bytearray(400 * 1024 * 1024); print(len(b))"]
    _, _, memory = await collect(
        await backend.exec(spec(escape_target, workspace, memory_mb=128), hog)
    )
    assert memory.limit == "memory" and memory.exit_code == -9
    spin = ["python3", "-c", "while True: pass"]
    started = time.monotonic()
    _, _, cpu = await collect(await backend.exec(spec(escape_target, workspace, cpu_s=1), spin))
    assert cpu.limit == "cpu" and time.monotonic() - started < 15


async def test_setsid_grandchildren_die_on_cancel_and_stop(
    escape_target: tuple[str, SandboxBackend], workspace: Path
) -> None:
    backend = escape_target[1]
    marker = f"{secrets.randbelow(10**6) + 700000}"
    script = f"""
    import os, time
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.execvp("sleep", ["sleep", "{marker}"])
        if os.fork() == 0:  # also scrubs its environment, so only stopping the sandbox finds it
            os.execve("/bin/sleep", ["sleep", "{int(marker) + 1}"], {{}})
        os._exit(0)
    print("ready", flush=True)
    time.sleep(600)
    """
    execution = await backend.exec(
        spec(escape_target, workspace), ["python3", "-c", textwrap.dedent(script)]
    )
    events = execution.__aiter__()
    assert (await asyncio.wait_for(events.__anext__(), 10)).data == b"ready\n"
    deadline = time.monotonic() + 10
    while not (host_pids_with(f"sleep {marker}") and host_pids_with(f"sleep {int(marker) + 1}")):
        assert time.monotonic() < deadline, "control: the grandchildren never started"
        await asyncio.sleep(0.05)
    await execution.terminate(grace_s=1)
    deadline = time.monotonic() + 10
    while host_pids_with(f"sleep {marker}") and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert host_pids_with(f"sleep {marker}") == []  # the marked setsid grandchild
    assert await backend.stop(f"escape-{escape_target[0]}") is True
    deadline = time.monotonic() + 10
    while host_pids_with(f"sleep {int(marker) + 1}") and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert host_pids_with(f"sleep {int(marker) + 1}") == []  # and the scrubbed one


async def test_symlink_and_dotdot_paths_are_refused(
    escape_target: tuple[str, SandboxBackend], workspace: Path, outside: Path
) -> None:
    backend = escape_target[1]
    sandbox = spec(escape_target, workspace)
    argv = ["sh", "-c", f"ln -s {outside} out; ln -s {outside}/secret.txt s.txt; mkdir d"]
    await collect(await backend.exec(sandbox, argv))
    for path in ("out/secret.txt", "s.txt"):
        with pytest.raises(paths.WorkspaceFileNotFound):
            await backend.read_file(sandbox, path, max_bytes=100)
    for path in ("../outside/secret.txt", "/etc/passwd", "d/../../x"):
        with pytest.raises(paths.WorkspacePathError):
            await backend.read_file(sandbox, path, max_bytes=100)
    with pytest.raises(paths.WorkspaceFileNotFound):  # writing through a planted link
        await backend.write_file(sandbox, "out/planted", b"x")
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    with pytest.raises(paths.WorkspacePathError):  # a cwd that leaves the workspace
        await backend.exec(sandbox, ["true"], cwd="../..")


async def test_huge_output_is_streamed_in_bounded_chunks_and_can_be_cut(
    escape_target: tuple[str, SandboxBackend], workspace: Path
) -> None:
    backend = escape_target[1]
    execution = await backend.exec(spec(escape_target, workspace), ["cat", "/dev/zero"])
    received = 0
    async for event in execution:
        assert len(event.data) <= 64 * 1024
        received += len(event.data)
        if received > 8 * 1024 * 1024:
            break  # a consumer that stops reading: the producer is paused, then killed
    await execution.terminate(grace_s=0)
    deadline = time.monotonic() + 10
    while host_pids_with("cat /dev/zero") and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert host_pids_with("cat /dev/zero") == []


@pytest.fixture(autouse=True)
async def _stop_after(escape_target: tuple[str, SandboxBackend]) -> Any:
    yield
    await escape_target[1].stop(f"escape-{escape_target[0]}")


def test_targets_cover_the_tiers_this_host_has(escape_target: tuple[str, SandboxBackend]) -> None:
    caps = escape_target[1].capabilities()
    assert caps.available and caps.isolated and caps.tier == escape_target[0]
    assert dataclasses.asdict(caps)["details"]["seccomp"] is True
