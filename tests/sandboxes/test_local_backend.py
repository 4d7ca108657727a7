"""The local backend against real bubblewrap: isolation, streaming, limits, killing."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import signal
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from django.conf import settings
from django.test import override_settings

from runtime_project.exceptions import PayloadTooLarge
from sandboxes import paths
from sandboxes.backends import _cgroup as cgroups
from sandboxes.backends._bwrap import sandbox_uid
from sandboxes.backends.local import LocalBackend
from sandboxes.base import ExecEvent, SandboxSpec, SandboxUnavailable
from tests.procs import zombie_children
from tests.sandboxes.helpers import collect, run, spec_for

pytestmark = pytest.mark.sandbox

ROOT = os.geteuid() == 0
SANDBOX_UID = sandbox_uid("t", base=settings.SANDBOX_UID_BASE, count=settings.SANDBOX_UID_COUNT)


async def test_output_is_streamed_before_exit(backend: LocalBackend, workspace: Path) -> None:
    ex = await backend.exec(spec_for(workspace), ["sh", "-c", "echo first; sleep 1; echo second"])
    started = time.monotonic()
    seen: list[tuple[float, ExecEvent]] = []
    async for event in ex:
        seen.append((time.monotonic() - started, event))
    first_t, first = seen[0]
    exit_t, last = seen[-1]
    assert first == ExecEvent(stream="stdout", data=b"first\n")
    assert first_t < 0.7, seen
    assert exit_t >= 0.9
    assert [e.data for _, e in seen[:-1]] == [b"first\n", b"second\n"]
    assert last.stream == "exit" and last.exit_code == 0
    assert not last.timed_out and not last.killed


async def test_stdout_stderr_exit_code(backend: LocalBackend, workspace: Path) -> None:
    ex = await backend.exec(spec_for(workspace), ["sh", "-c", "echo out; echo err >&2; exit 7"])
    out, err, exit_event = await collect(ex)
    assert (out, err, exit_event.exit_code) == (b"out\n", b"err\n", 7)


async def test_big_output_in_bounded_chunks(backend: LocalBackend, workspace: Path) -> None:
    ex = await backend.exec(spec_for(workspace), ["head", "-c", "5000000", "/dev/zero"])
    sizes = []
    async for event in ex:
        if event.stream == "stdout":
            sizes.append(len(event.data))
    assert sum(sizes) == 5_000_000
    assert max(sizes) <= 64 * 1024 and len(sizes) > 1


async def test_stdin_env_cwd(backend: LocalBackend, workspace: Path) -> None:
    (workspace / "sub").mkdir()
    os.environ["HOST_ONLY_SECRET"] = "leak"
    try:
        spec = SandboxSpec(sandbox_id="t", workspace=workspace, env={"A": "1", "B": "spec"})
        ex = await backend.exec(
            spec,
            ["sh", "-c", "cat; echo; pwd; echo $A$B$HOME; env | grep -c HOST_ONLY || true"],
            cwd="sub",
            env={"B": "call"},
            stdin=b"from-stdin",
        )
        out, _, exit_event = await collect(ex)
    finally:
        del os.environ["HOST_ONLY_SECRET"]
    assert out.decode().splitlines() == ["from-stdin", "/workspace/sub", "1call/workspace", "0"]
    assert exit_event.exit_code == 0


async def test_network_is_blocked(
    backend: LocalBackend, workspace: Path, tcp_listener: int
) -> None:
    script = f"""
    import socket
    try:
        socket.create_connection(("127.0.0.1", {tcp_listener}), timeout=3)
        print("tcp: connected")
    except OSError as e:
        print("tcp: blocked", e.errno)
    try:
        socket.getaddrinfo("pypi.org", 443)
        print("dns: resolved")
    except OSError as e:
        print("dns: blocked")
    """
    out, err, _ = await run(backend, workspace, script)
    assert "tcp: blocked" in out, out + err
    assert "dns: blocked" in out, out + err

    # Control: the same probe with network="host" reaches the listener, so the check can fail.
    host = SandboxSpec(sandbox_id="t", workspace=workspace, network="host")
    ex = await backend.exec(host, ["python3", "-c", textwrap.dedent(script)])
    out2, _, _ = await collect(ex)
    assert b"tcp: connected" in out2


async def test_host_files_are_invisible(backend: LocalBackend, workspace: Path) -> None:
    script = """
    import os
    for p in ["/root", "/etc/shadow", "/work", "/home", "/var/lib", "/work/main/pyproject.toml"]:
        try:
            if os.path.isdir(p):
                os.listdir(p)
            else:
                open(p).read()
            print("READABLE", p)
        except OSError as e:
            print("denied", p, e.errno)
    """
    out, err, _ = await run(backend, workspace, script)
    assert "denied" in out, err
    assert "READABLE" not in out, out
    assert Path("/etc/shadow").exists()  # the host has it; the sandbox cannot see it


async def test_writes_outside_workspace_fail(backend: LocalBackend, workspace: Path) -> None:
    marker = f"sbx-escape-{secrets.token_hex(4)}"
    script = f"""
    for p in ["/usr/{marker}", "/etc/{marker}", "/{marker}", "/var/{marker}", "/tmp/{marker}",
              "/workspace/{marker}"]:
        try:
            open(p, "w").write("x")
            print("WROTE", p)
        except OSError as e:
            print("denied", p, e.errno)
    """
    out, err, _ = await run(backend, workspace, script)
    assert out.count("WROTE") == 2, out + err  # the private /tmp tmpfs and the workspace
    assert f"WROTE /workspace/{marker}" in out and f"WROTE /tmp/{marker}" in out
    for host in (
        f"/usr/{marker}",
        f"/etc/{marker}",
        f"/{marker}",
        f"/var/{marker}",
        f"/tmp/{marker}",
    ):
        assert not os.path.exists(host), host  # /tmp inside is not the host's /tmp
    assert (workspace / marker).read_text() == "x"


async def test_uid_and_file_owner(backend: LocalBackend, workspace: Path) -> None:
    (workspace / "from-host.txt").write_text("host wrote this")  # root-owned until exec
    ex = await backend.exec(
        spec_for(workspace),
        ["sh", "-c", "id -u; whoami; echo more >> from-host.txt; echo new > made.txt"],
    )
    out, err, exit_event = await collect(ex)
    assert exit_event.exit_code == 0, err
    uid = int(out.split()[0])
    assert uid != 0
    made = (workspace / "made.txt").stat()
    if ROOT:
        assert uid == SANDBOX_UID and SANDBOX_UID >= settings.SANDBOX_UID_BASE  # its own uid
        assert out.split()[1] == b"sandbox"  # a name in the sandbox's own /etc/passwd
        assert (made.st_uid, made.st_gid) == (SANDBOX_UID, SANDBOX_UID)
    else:
        assert made.st_uid == os.geteuid()
    assert (workspace / "from-host.txt").read_text() == "host wrote thismore\n"


async def test_host_writes_after_first_exec_stay_writable(
    backend: LocalBackend, workspace: Path
) -> None:
    await collect(await backend.exec(spec_for(workspace), ["true"]))  # first exec: owns the tree
    with paths.open_write(workspace, "later/notes.txt") as fh:  # host write between execs
        fh.write(b"host ")
    ex = await backend.exec(spec_for(workspace), ["sh", "-c", "echo sandbox >> later/notes.txt"])
    _, err, exit_event = await collect(ex)
    assert exit_event.exit_code == 0, err
    assert (workspace / "later/notes.txt").read_text() == "host sandbox\n"


@pytest.mark.skipif(not ROOT, reason="chowning the workspace needs root")
async def test_chown_does_not_follow_planted_symlinks(
    backend: LocalBackend, workspace: Path, outside: Path
) -> None:
    (workspace / "link").symlink_to(outside)
    (workspace / "filelink").symlink_to(outside / "secret.txt")
    ex = await backend.exec(spec_for(workspace), ["true"])
    await collect(ex)
    assert (workspace / "link").lstat().st_uid == SANDBOX_UID
    assert outside.stat().st_uid == 0
    assert (outside / "secret.txt").stat().st_uid == 0


TREE_SCRIPT = """
import os, signal, sys, time
marker, ignore_term = sys.argv[1], sys.argv[2] == "1"
if ignore_term:  # inherited by the children, kept across exec
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if os.fork() == 0:
    os.setsid()                      # escape the process group / session
    if os.fork() == 0:
        os.execvp("sleep", ["sleep", marker])
    os._exit(0)
print("ready", flush=True)
time.sleep(600)
"""


async def test_execs_reuse_one_sandbox_and_leave_no_zombies(
    backend: LocalBackend, workspace: Path
) -> None:
    for _ in range(30):
        await collect(await backend.exec(spec_for(workspace), ["true"]))
    out, err, exit_event = await run(
        backend,
        workspace,
        """
        import os
        procs = {}
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                stat = open(f"/proc/{pid}/stat").read()
                procs[int(pid)] = stat[stat.rfind(")") + 2]
        print(sorted(procs.items()))
        """,
    )
    assert exit_event.exit_code == 0, err
    # One sandbox for all 31 commands: bwrap's init (1), sbxd (2) and this command; the 30
    # finished ones were reaped inside the sandbox, none is a zombie.
    procs = dict(eval(out))
    assert sorted(procs) == [1, 2, max(procs)] and "Z" not in procs.values(), procs
    assert zombie_children() == []


async def _wait_for(predicate: object, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.05)
    return bool(predicate())  # type: ignore[operator]


@pytest.mark.parametrize("ignore_term", [False, True], ids=["sigterm", "sigkill"])
async def test_terminate_kills_setsid_grandchild(
    backend: LocalBackend,
    workspace: Path,
    host_pids: Callable[[str], list[int]],
    ignore_term: bool,
) -> None:
    marker = f"3600.{secrets.randbelow(10**9)}"
    argv = ["python3", "-c", TREE_SCRIPT, marker, "1" if ignore_term else "0"]
    ex = await backend.exec(spec_for(workspace), argv)
    it = ex.__aiter__()
    first = await asyncio.wait_for(it.__anext__(), 10)
    assert first.data == b"ready\n"
    assert await _wait_for(lambda: host_pids(f"sleep {marker}"))  # control: it runs
    started = time.monotonic()
    await ex.terminate(grace_s=0.5)
    elapsed = time.monotonic() - started
    assert elapsed < 5
    if ignore_term:
        assert elapsed >= 0.5  # SIGTERM was ignored: SIGKILL after the grace period did it
    rest = [event async for event in it]
    assert rest[-1].stream == "exit" and rest[-1].killed and not rest[-1].timed_out
    expected = -signal.SIGKILL if ignore_term else -signal.SIGTERM
    assert rest[-1].exit_code == expected
    assert host_pids(f"sleep {marker}") == []
    assert zombie_children() == []
    await ex.terminate()  # idempotent


async def test_terminate_sends_sigterm_first(backend: LocalBackend, workspace: Path) -> None:
    script = "trap 'echo got-term; exit 0' TERM; echo ready; while :; do sleep 0.1; done"
    ex = await backend.exec(spec_for(workspace), ["sh", "-c", script])
    it = ex.__aiter__()
    assert (await asyncio.wait_for(it.__anext__(), 10)).data == b"ready\n"
    await ex.terminate(grace_s=5.0)
    rest = [event async for event in it]
    assert b"got-term" in b"".join(e.data for e in rest)
    assert rest[-1].killed


async def test_wall_timeout(
    backend: LocalBackend, workspace: Path, host_pids: Callable[[str], list[int]]
) -> None:
    marker = f"3600.{secrets.randbelow(10**9)}"
    ex = await backend.exec(
        spec_for(workspace, wall_timeout_s=0.5), ["python3", "-c", TREE_SCRIPT, marker, "1"]
    )
    started = time.monotonic()
    _, _, exit_event = await collect(ex)
    assert exit_event.timed_out and not exit_event.killed
    assert 0.4 < time.monotonic() - started < 5
    assert exit_event.exit_code is not None and exit_event.exit_code < 0
    assert host_pids(f"sleep {marker}") == []


async def test_abandoned_iteration_kills_tree(
    backend: LocalBackend, workspace: Path, host_pids: Callable[[str], list[int]]
) -> None:
    marker = f"3600.{secrets.randbelow(10**9)}"
    ex = await backend.exec(spec_for(workspace), ["python3", "-c", TREE_SCRIPT, marker, "1"])
    it = ex.__aiter__()
    assert (await asyncio.wait_for(it.__anext__(), 10)).data == b"ready\n"
    assert await _wait_for(lambda: host_pids(f"sleep {marker}"))
    outer = ex.pid
    await it.aclose()  # type: ignore[attr-defined]
    assert await _wait_for(lambda: not host_pids(f"sleep {marker}"))
    assert not os.path.exists(f"/proc/{outer}")
    assert zombie_children() == []


async def test_file_size_limit(backend: LocalBackend, workspace: Path) -> None:
    ex = await backend.exec(
        spec_for(workspace, file_size_mb=1), ["sh", "-c", "head -c 3000000 /dev/zero > big"]
    )
    _, _, exit_event = await collect(ex)
    assert exit_event.exit_code != 0
    assert exit_event.limit == "file_size"
    assert (workspace / "big").stat().st_size == 1024 * 1024


async def test_cpu_limit(backend: LocalBackend, workspace: Path) -> None:
    ex = await backend.exec(spec_for(workspace, cpu_s=1), ["python3", "-c", "while True: pass"])
    _, _, exit_event = await collect(ex)
    assert exit_event.limit == "cpu"
    assert not exit_event.timed_out


# Touches every page (b"x" * n), so the memory is really used, not only reserved.
MEMORY_HOG = "b = b'x' * (300 * 1024 * 1024); print('allocated')"


async def test_memory_limit_is_a_cgroup_oom_kill(backend: LocalBackend, workspace: Path) -> None:
    """With a cgroup (this machine has a writable hierarchy), the kernel's OOM killer ends the
    sandbox at its memory limit and the exit event says so."""
    assert backend.capabilities().details["cgroup"] in ("v1", "v2")
    ex = await backend.exec(spec_for(workspace, memory_mb=128), ["python3", "-c", MEMORY_HOG])
    out, _, exit_event = await collect(ex)
    assert out == b""
    assert exit_event.limit == "memory"
    assert exit_event.exit_code == -signal.SIGKILL
    ex = await backend.exec(spec_for(workspace, memory_mb=1024), ["python3", "-c", MEMORY_HOG])
    out, _, exit_event = await collect(ex)
    assert out == b"allocated\n"  # control: the same script fits a bigger limit
    assert exit_event.limit is None


async def test_without_cgroups_rlimit_as_bounds_memory(workspace: Path) -> None:
    with override_settings(SANDBOX_FORCE_TIER=None, SANDBOX_CGROUPS=False):
        plain = LocalBackend()
        assert plain.capabilities().details["cgroup"] is False
        ex = await plain.exec(spec_for(workspace, memory_mb=128), ["python3", "-c", MEMORY_HOG])
        _, err, exit_event = await collect(ex)
    assert b"MemoryError" in err
    assert exit_event.exit_code == 1
    assert exit_event.limit is None


async def test_pids_limit_stops_a_fork_bomb(backend: LocalBackend, workspace: Path) -> None:
    script = textwrap.dedent("""
        import os, time
        made = 0
        try:
            for _ in range(200):
                if os.fork() == 0:
                    time.sleep(30)
                    os._exit(0)
                made += 1
        except BlockingIOError:
            pass
        print(made, flush=True)
    """)
    started = time.monotonic()
    ex = await backend.exec(spec_for(workspace, pids=32), ["python3", "-c", script])
    out, _, exit_event = await collect(ex)
    assert 0 < int(out) < 32
    # The sleeping children die with the sandbox when the main process exits (pid namespace).
    assert exit_event.exit_code == 0
    assert time.monotonic() - started < 20


async def test_a_stopped_sandbox_leaves_no_cgroup_behind(
    backend: LocalBackend, workspace: Path
) -> None:
    support = backend._setup.cgroup  # type: ignore[union-attr]
    assert support is not None
    mine = "x-" + cgroups.owner_tag(settings.SANDBOX_DATA_DIR)  # not another checkout's

    def cgroups_now() -> set[Path]:
        return {c for p in support.parents.values() for c in p.glob(f"{mine}*")}

    await backend.stop("t")
    before = cgroups_now()  # other sandboxes of this test run may be running
    ex = await backend.exec(spec_for(workspace), ["true"])
    await collect(ex)
    mine_now = cgroups_now() - before
    assert len(mine_now) == len(support.parents)  # the running sandbox's own cgroup
    assert await backend.stop("t") is True

    deadline = time.monotonic() + 5
    while mine_now & cgroups_now() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert mine_now & cgroups_now() == set()


async def test_readonly_paths(backend: LocalBackend, workspace: Path, outside: Path) -> None:
    spec = SandboxSpec(sandbox_id="t", workspace=workspace, readonly_paths=(outside,))
    ex = await backend.exec(spec, ["sh", "-c", f"cat {outside}/secret.txt; touch {outside}/x"])
    out, err, exit_event = await collect(ex)
    assert out == b"host secret\n"
    assert exit_event.exit_code != 0 and b"Read-only" in err
    assert not (outside / "x").exists()


async def test_bad_cwd(backend: LocalBackend, workspace: Path) -> None:
    from sandboxes.paths import WorkspaceFileNotFound, WorkspacePathError

    with pytest.raises(WorkspacePathError):
        await backend.exec(spec_for(workspace), ["true"], cwd="../x")
    with pytest.raises(WorkspaceFileNotFound):
        await backend.exec(spec_for(workspace), ["true"], cwd="missing")


async def test_unknown_command(backend: LocalBackend, workspace: Path) -> None:
    _, err, exit_event = await collect(await backend.exec(spec_for(workspace), ["no-such-cmd"]))
    assert exit_event.exit_code != 0 and b"no-such-cmd" in err


# ------------------------------------------------------------------ unisolated tier


async def test_unisolated_requires_explicit_allow(workspace: Path) -> None:
    with override_settings(SANDBOX_FORCE_TIER="unisolated", SANDBOX_ALLOW_UNISOLATED=False):
        b = LocalBackend()
        caps = b.capabilities()
        assert not caps.available and caps.reason
        with pytest.raises(SandboxUnavailable) as info:
            await b.exec(spec_for(workspace), ["true"])
    assert "install-system-deps.sh" in info.value.message
    assert "SANDBOX_ALLOW_UNISOLATED" in info.value.message
    assert info.value.status_code == 503


async def test_missing_bwrap_falls_back_to_landlock_never_to_unisolated(workspace: Path) -> None:
    with override_settings(SANDBOX_BWRAP_PATH="/nonexistent/bwrap", SANDBOX_ALLOW_UNISOLATED=True):
        caps = LocalBackend().capabilities()
        assert (caps.tier, caps.isolated) == ("landlock", True)
        assert "bubblewrap (bwrap) is not installed" in caps.reason
    with override_settings(
        SANDBOX_BWRAP_PATH="/nonexistent/bwrap", SANDBOX_FORCE_TIER="bubblewrap"
    ):  # no fallback when a tier is forced
        b = LocalBackend()
        caps = b.capabilities()
        assert not caps.available and "bubblewrap" in caps.reason
        with pytest.raises(SandboxUnavailable):
            await b.exec(spec_for(workspace), ["true"])
    with override_settings(SANDBOX_FORCE_TIER="unisolated", SANDBOX_ALLOW_UNISOLATED=True):
        caps = LocalBackend().capabilities()
        assert caps.available and caps.tier == "unisolated" and not caps.isolated


async def test_unisolated_runs_and_terminates(workspace: Path, tcp_listener: int) -> None:
    with override_settings(SANDBOX_FORCE_TIER="unisolated", SANDBOX_ALLOW_UNISOLATED=True):
        b = LocalBackend()
        caps = b.capabilities()
        assert (caps.tier, caps.isolated, caps.available) == ("unisolated", False, True)
        script = f"import os, socket; print(os.getcwd()); socket.create_connection(('127.0.0.1', {tcp_listener}))"
        ex = await b.exec(spec_for(workspace), [sys.executable, "-c", script])
        out, err, exit_event = await collect(ex)
        assert exit_event.exit_code == 0, err
        assert out.decode().strip() == str(workspace)  # no isolation: the host path, host network

        ex = await b.exec(
            spec_for(workspace, file_size_mb=1),
            ["sh", "-c", "exec head -c 3000000 /dev/zero > big"],
        )
        _, _, exit_event = await collect(ex)
        assert exit_event.exit_code == -signal.SIGXFSZ  # rlimits still apply
        assert (workspace / "big").stat().st_size == 1024 * 1024

        ex = await b.exec(spec_for(workspace), ["sh", "-c", "echo ready; sleep 600"])
        it = ex.__aiter__()
        assert (await asyncio.wait_for(it.__anext__(), 10)).data == b"ready\n"
        await ex.terminate(grace_s=1)
        rest = [event async for event in it]
        assert rest[-1].killed and rest[-1].exit_code == -signal.SIGTERM

        ex = await b.exec(spec_for(workspace, wall_timeout_s=0.3), ["sleep", "30"])
        _, _, exit_event = await collect(ex)
        assert exit_event.timed_out


def test_sweep_removes_stale_empty_cgroups_only(backend: LocalBackend) -> None:
    """Start-up sweeps cgroups a crashed server left behind, but not a fresh one that another
    server process may be about to join."""
    from sandboxes.backends import _cgroup

    support = backend._setup.cgroup  # type: ignore[union-attr]
    assert support is not None
    parent = support.parents[next(iter(support.parents))]
    stale, fresh = parent / "x-stale-test", parent / "x-fresh-test"
    stale.mkdir()
    fresh.mkdir()
    try:
        old = time.time() - 2 * _cgroup.SWEEP_MIN_AGE_S
        os.utime(stale, (old, old))
        _cgroup.sweep(support)
        assert not stale.exists()
        assert fresh.exists()
    finally:
        for path in (stale, fresh):
            if path.exists():
                path.rmdir()


@pytest.mark.skipif(not ROOT, reason="per-sandbox uids need root")
async def test_each_sandbox_has_its_own_uid_and_process_limit(
    backend: LocalBackend, sandbox_root: Path
) -> None:
    """RLIMIT_NPROC counts every process of a uid on the host: with one shared uid, a busy
    sandbox would use up a neighbour's process limit."""
    (sandbox_root / "a").mkdir(mode=0o755)
    (sandbox_root / "b").mkdir(mode=0o755)
    busy = dataclasses.replace(spec_for(sandbox_root / "b", pids=64), sandbox_id="busy")
    small = dataclasses.replace(spec_for(sandbox_root / "a", pids=16), sandbox_id="small")
    try:
        for _ in range(24):  # more processes than the small sandbox may have
            await backend.start_process(busy, ["sleep", "600"])
        out, err, exit_event = await collect(
            await backend.exec(small, ["sh", "-c", "id -u; sleep 0 & sleep 0 & wait; echo ok"])
        )
        assert exit_event.exit_code == 0, err
        uid, ok = out.decode().split()
        assert ok == "ok"
        busy_uid = (sandbox_root / "b").stat().st_uid
        assert int(uid) == (sandbox_root / "a").stat().st_uid != busy_uid
    finally:
        await backend.stop("busy")
        await backend.stop("small")


async def test_file_operations_see_what_the_sandbox_sees(
    backend: LocalBackend, workspace: Path, outside: Path
) -> None:
    spec = spec_for(workspace)
    await backend.write_file(spec, "notes/in.txt", b"from the host\n")
    out, err, exit_event = await collect(
        await backend.exec(spec, ["sh", "-c", "cat notes/in.txt; echo made > notes/out.txt"])
    )
    assert (out, exit_event.exit_code) == (b"from the host\n", 0), err
    assert await backend.read_file(spec, "notes/out.txt", max_bytes=100) == b"made\n"
    listed = await backend.list_files(spec, "notes")
    assert [(e.path, e.type) for e in listed] == [
        ("notes/in.txt", "file"), ("notes/out.txt", "file"),
    ]  # fmt: skip
    await collect(await backend.exec(spec, ["ln", "-s", str(outside), "escape"]))
    with pytest.raises(paths.WorkspaceFileNotFound):  # a symlink is never followed
        await backend.read_file(spec, "escape/secret.txt", max_bytes=100)
    with pytest.raises(paths.WorkspacePathError):
        await backend.write_file(spec, "../outside/x", b"no")
    with pytest.raises(PayloadTooLarge):
        await backend.read_file(spec, "notes/in.txt", max_bytes=4)
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    await backend.stop("t")
