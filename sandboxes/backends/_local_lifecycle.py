"""Long-lived sandboxes for the ``local`` backend: start, reuse, stop, inspect, processes.

Mixed into :class:`sandboxes.backends.local.LocalBackend`. A sandbox is one ``sbxd``
supervisor (see ``sbxd.py``) started lazily by the first ``exec`` for a ``sandbox_id`` and
reused by the following ones; ``_supervised`` holds the host-side plumbing.

Reuse rule: a running sandbox is reused when its *fingerprint* (workspace, network,
read-only paths, memory/pids/tmp limits) equals the new spec's; otherwise it is stopped and a
new one started on the same workspace (e.g. the agent's limits changed). Per-command limits
(CPU seconds, file size, address space, open files, wall time) are applied per exec.

State files: ``SANDBOX_DATA_DIR/run/sandboxes/<key>.{json,log,lock}`` and the socket
``<key>.<random>.sock`` (a new name per start; directory mode 0700). ``<key>`` is a hash of
the sandbox id, so ids of any length fit the 108-byte limit of unix socket paths.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import select
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from django.conf import settings

from sandboxes.backends import _cgroup as cgroups
from sandboxes.backends import _egress, _landlock
from sandboxes.backends._bwrap import (
    MIB,
    WORKSPACE,
    Setup,
    parse_init_pid,
)
from sandboxes.backends._local_spawn import base_env, egress_on, launch_command
from sandboxes.backends._supervised import (
    HEADER,
    SupervisedExecution,
    SupervisedProcesses,
    Supervisor,
    _answers,
    process_info,
    read_state,
    spawn,
    support_file,
    write_state,
)
from sandboxes.base import (
    ProcessInfo,
    SandboxError,
    SandboxInfo,
    SandboxSpec,
)

logger = logging.getLogger("sandboxes.backends.local")

SBXD_SOURCE = Path(__file__).with_name("sbxd.py")
START_TIMEOUT_S = 10.0
STOP_WAIT_S = 5.0

# Sandboxes this process started, by socket path (process-wide: backend instances come and go
# in tests, the sandboxes and the spawner thread stay).
_owned: dict[str, Supervisor] = {}
_owned_lock = threading.Lock()
_start_locks: dict[str, threading.Lock] = {}


def fingerprint(spec: SandboxSpec, setup: Setup) -> str:
    """What a running sandbox must share with a spec (and the backend's detected set-up) to be
    reused for it."""
    lim = spec.limits
    parts = (
        setup.tier, setup.uid, setup.seccomp is not None, setup.cgroup is not None,
        os.fspath(spec.workspace), spec.network, tuple(map(os.fspath, spec.readonly_paths)),
        spec.allow_hosts, lim.memory_mb, lim.pids, lim.tmp_mb, lim.open_files,
    )  # fmt: skip
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def stop_owned(timeout_s: float = STOP_WAIT_S) -> None:
    """Stop every sandbox this process started (blocking); used at exit and by the tests."""
    with _owned_lock:
        owned = list(_owned.values())
    for sup in owned:
        _shutdown_blocking(sup, timeout_s)


atexit.register(stop_owned, 2.0)


def _call_blocking(sup: Supervisor, request: Mapping[str, Any]) -> None:
    """Send one request to sbxd and wait (at most 2 s) for its reply; errors are ignored (a
    sandbox that does not answer is stopped by the caller's fallback)."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(2.0)
        s.connect(os.fspath(sup.socket_path))
        body = json.dumps(request).encode()
        s.sendall(HEADER.pack(b"J", len(body)) + body)
        s.recv(4096)


def _shutdown_blocking(sup: Supervisor, timeout_s: float) -> None:
    _call_blocking(sup, {"op": "shutdown"})
    if sup.process is not None:
        try:
            sup.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            logger.exception("sandbox %s ignored shutdown; killing it", sup.sandbox_id)
            if sup.cgroup is not None:
                sup.cgroup.kill()
            sup.process.kill()
            sup.process.wait(timeout_s)
    else:
        deadline = time.monotonic() + timeout_s
        while _answers(sup.socket_path) and time.monotonic() < deadline:
            time.sleep(0.05)


class SupervisedSandboxes(SupervisedProcesses):
    """The long-lived-sandbox half of ``LocalBackend`` (see the module docstring)."""

    name: str
    _setup: Setup | None

    # ---------------------------------------------------------------- locations

    def _run_dir(self) -> Path:
        run = Path(getattr(settings, "SANDBOX_DATA_DIR", "var")) / "run" / "sandboxes"
        run.mkdir(mode=0o700, parents=True, exist_ok=True)
        return run

    def _paths(self, sandbox_id: str) -> dict[str, Path]:
        key = hashlib.sha256(sandbox_id.encode()).hexdigest()[:24]
        run = self._run_dir()
        return {ext: run / f"{key}.{ext}" for ext in ("json", "log", "lock")}

    def _support_file(self, source_path: Path = SBXD_SOURCE) -> Path:
        """A file a sandbox runs, copied under ``SANDBOX_DATA_DIR/sbxd`` (``support_file``)."""
        folder = Path(getattr(settings, "SANDBOX_DATA_DIR", "var")) / "sbxd"
        return support_file(source_path, folder)

    # ---------------------------------------------------------------- find / start

    def _find(self, sandbox_id: str) -> Supervisor | None:
        """The running sandbox ``sandbox_id`` (ours or another server process's), if any."""
        paths = self._paths(sandbox_id)
        with _owned_lock:
            sup = _owned.get(os.fspath(paths["json"]))
            if sup is not None and not sup.alive:
                del _owned[os.fspath(paths["json"])]
                sup = None
        if sup is not None:
            return sup
        state = read_state(paths["json"])
        if state is None or not _answers(Path(state.get("socket", ""))):
            return None
        cgroup = None
        if state.get("cgroup") and self._setup is not None and self._setup.cgroup is not None:
            dirs = {k: Path(v) for k, v in state["cgroup"].items()}
            cgroup = cgroups.ExecCgroup.existing(self._setup.cgroup, dirs)
        return Supervisor(
            sandbox_id=sandbox_id, socket_path=Path(state["socket"]), tier=state.get("tier", ""),
            workspace_in=state.get("workspace_in", WORKSPACE),
            started_at=float(state.get("started_at", 0)), labels=state.get("labels") or {},
            cgroup=cgroup, fingerprint=state.get("fingerprint", ""),
            idle_timeout_s=state.get("idle_timeout_s"),
        )  # fmt: skip

    @contextlib.contextmanager
    def _start_lock(self, sandbox_id: str) -> Iterator[None]:
        """One starter per sandbox: a thread lock in this process, ``flock`` across processes."""
        lock_path = self._paths(sandbox_id)["lock"]
        with _owned_lock:
            lock = _start_locks.setdefault(os.fspath(lock_path), threading.Lock())
        with lock, open(lock_path, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _ensure_blocking(self, setup: Setup, spec: SandboxSpec) -> tuple[Supervisor, bool]:
        """The running sandbox for ``spec``, started if needed; ``(supervisor, started)``."""
        with self._start_lock(spec.sandbox_id):
            sup = self._find(spec.sandbox_id)
            if sup is not None and sup.fingerprint == fingerprint(spec, setup):
                if sup.idle_timeout_s != spec.idle_timeout_s:  # policy changed: tell sbxd
                    _call_blocking(sup, {"op": "configure", "idle_s": spec.idle_timeout_s})
                    sup.idle_timeout_s = spec.idle_timeout_s
                    write_state(self._paths(spec.sandbox_id)["json"], sup)
                return sup, False
            if sup is not None:
                logger.info("sandbox %s: spec changed, restarting it", spec.sandbox_id)
                _shutdown_blocking(sup, STOP_WAIT_S)
            return self._start(setup, spec), True

    def _start(self, setup: Setup, spec: SandboxSpec) -> Supervisor:
        paths = self._paths(spec.sandbox_id)
        stale = read_state(paths["json"])
        if stale is not None:  # left by a crashed server: nobody answers on it (see _find)
            with contextlib.suppress(OSError):
                Path(stale["socket"]).unlink()
        # A new name per start: the stopped one's reaper may still be tidying its own files.
        paths["sock"] = paths["json"].with_suffix(f".{uuid.uuid4().hex[:8]}.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        cgroup: cgroups.ExecCgroup | None = None
        try:
            listener.bind(os.fspath(paths["sock"]))
            os.chmod(paths["sock"], 0o600)
            listener.listen(128)
            if setup.cgroup is not None:
                cgroups.remove_pending()
                cgroup = cgroups.ExecCgroup(
                    setup.cgroup, memory_mb=spec.limits.memory_mb, pids=spec.limits.pids,
                    tag=cgroups.owner_tag(getattr(settings, "SANDBOX_DATA_DIR", "")),
                )  # fmt: skip
            sup = self._spawn_sbxd(setup, spec, listener, cgroup, paths)
        except BaseException:
            if cgroup is not None:
                cgroup.remove()
            raise
        finally:
            listener.close()  # sbxd holds its own copy
        sup.fingerprint = fingerprint(spec, setup)
        write_state(paths["json"], sup)
        with _owned_lock:
            _owned[os.fspath(paths["json"])] = sup
        logger.info("sandbox %s started (%s)", spec.sandbox_id, setup.tier)
        return sup

    def _spawn_sbxd(
        self,
        setup: Setup,
        spec: SandboxSpec,
        listener: socket.socket,
        cgroup: cgroups.ExecCgroup | None,
        paths: dict[str, Path],
    ) -> Supervisor:
        launch = launch_command(
            setup, spec, listener.fileno(), cgroup,
            sbxd=self._support_file(), launcher=self._support_file(_landlock.LAUNCHER_SOURCE),
        )  # fmt: skip
        cmd, cwd, spawn_environ, fds = launch.cmd, launch.cwd, launch.env, launch.fds
        info_r, info_w, seccomp_fd, egress = (
            launch.info_r, launch.info_w, launch.seccomp_fd, launch.egress
        )  # fmt: skip
        log = open(paths["log"], "ab")  # noqa: SIM115 - handed to the child
        try:
            process: subprocess.Popen[bytes] = spawn(
                lambda: subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    cwd=cwd,
                    env=spawn_environ,
                    pass_fds=tuple(fds),
                    start_new_session=True,
                )
            )
        except OSError as exc:
            if egress is not None:
                egress[0].close()
            raise SandboxError("The sandbox could not be started.") from exc
        finally:
            log.close()
            if egress is not None:
                egress[1].close()  # sbxd holds it now
            for fd in (info_w, seccomp_fd):
                if fd is not None:
                    os.close(fd)
        if egress is not None:
            _egress.serve(
                egress[0], sandbox_id=spec.sandbox_id, rules=_egress.parse_rules(spec.allow_hosts),
                allow_private=bool(getattr(settings, "SANDBOX_EGRESS_ALLOW_PRIVATE", False)),
            )  # fmt: skip
        init_pid = _read_info(info_r) if info_r is not None else None
        init_fd = None
        if init_pid is not None:
            # Pin the namespace init's identity now: once bwrap is gone it is our (subreaper's)
            # child to reap, and a pid number alone could meanwhile name another process.
            with contextlib.suppress(ProcessLookupError):
                init_fd = os.pidfd_open(init_pid)
        sup = Supervisor(
            sandbox_id=spec.sandbox_id, socket_path=paths["sock"], tier=setup.tier,
            workspace_in=launch.workspace_in, started_at=time.time(), labels=dict(spec.labels),
            cgroup=cgroup, process=process, idle_timeout_s=spec.idle_timeout_s,
        )  # fmt: skip
        threading.Thread(
            target=_reap_when_done, daemon=True,
            args=(sup, init_fd, paths, setup.uid if setup.tier == "landlock" else None),
            name=f"sandbox-reaper-{spec.sandbox_id[:12]}",
        ).start()  # fmt: skip
        return sup

    async def _ensure(self, setup: Setup, spec: SandboxSpec) -> tuple[Supervisor, bool]:
        return await asyncio.to_thread(self._ensure_blocking, setup, spec)

    # ---------------------------------------------------------------- exec

    async def _exec_supervised(
        self,
        setup: Setup,
        spec: SandboxSpec,
        argv: list[str],
        rel_cwd: str,
        env: Mapping[str, str],
        stdin: bytes | None,
        *,
        background: bool = False,
    ) -> SupervisedExecution | str:
        for attempt in (1, 2):
            sup, _ = await self._ensure(setup, spec)
            cwd = f"{sup.workspace_in}/{rel_cwd}" if rel_cwd else sup.workspace_in
            full_env = base_env(sup.workspace_in, host_tmp=sup.tier != "bubblewrap")
            if sup.tier == "landlock":
                data_dir = Path(settings.SANDBOX_DATA_DIR)
                full_env["TMPDIR"] = os.fspath(_landlock.private_tmp(data_dir, spec.sandbox_id))
            if egress_on(spec) and sup.tier == "bubblewrap":
                full_env.update(_egress.proxy_env())
            full_env.update(env)
            try:
                return await sup.run(
                    argv, cwd=cwd, env=full_env, rlimits=exec_rlimits(spec, setup),
                    stdin=stdin, background=background, wall_timeout_s=spec.limits.wall_timeout_s,
                )  # fmt: skip
            except SandboxError:
                if attempt == 2 or sup.alive:
                    raise
                logger.info("sandbox %s stopped under us; starting it again", spec.sandbox_id)
        raise AssertionError("unreachable")

    # ---------------------------------------------------------------- lifecycle

    async def is_running(self, sandbox_id: str) -> bool:
        """Whether the sandbox is running (a cheap check before ``create``/``exec``)."""
        return await asyncio.to_thread(self._find, sandbox_id) is not None

    async def stop(self, sandbox_id: str) -> bool:
        sup = await asyncio.to_thread(self._find, sandbox_id)
        if sup is None:
            return False
        await asyncio.to_thread(_shutdown_blocking, sup, STOP_WAIT_S)
        return True

    async def info(self, sandbox_id: str) -> SandboxInfo | None:
        sup = await asyncio.to_thread(self._find, sandbox_id)
        if sup is None:
            return None
        processes: list[ProcessInfo] = []
        with contextlib.suppress(SandboxError):
            processes = [process_info(p) for p in await sup.processes()]
        return SandboxInfo(
            sandbox_id=sandbox_id, backend=self.name, tier=sup.tier, state="running",
            labels=sup.labels, started_at=sup.started_at, last_active_at=sup.last_active,
            usage=_usage(sup), processes=tuple(processes),
        )  # fmt: skip

    async def list_sandboxes(self, labels: Mapping[str, str] | None = None) -> list[SandboxInfo]:
        found = []
        for state_file in sorted(self._run_dir().glob("*.json")):
            state = read_state(state_file) or {}
            have = state.get("labels") or {}
            if labels and any(have.get(k) != v for k, v in labels.items()):
                continue
            info = await self.info(str(state.get("sandbox_id", "")))
            if info is not None:
                found.append(info)
        return found

    async def reap_idle(self) -> list[str]:
        """sbxd stops itself after its idle timeout; here we only forget the ones that ended."""
        gone = []
        with _owned_lock:
            for key, sup in list(_owned.items()):
                if not sup.alive:
                    gone.append(sup.sandbox_id)
                    _owned.pop(key, None)
        return gone


def exec_rlimits(spec: SandboxSpec, setup: Setup) -> dict[str, int]:
    """Per-command rlimits applied by sbxd (bytes / seconds / count)."""
    lim = spec.limits
    address_space = lim.memory_mb * (4 if setup.cgroup is not None else 1)
    return {
        "cpu": lim.cpu_s, "as": address_space * MIB, "fsize": lim.file_size_mb * MIB,
        "nofile": lim.open_files,
    }  # fmt: skip


def _usage(sup: Supervisor) -> dict[str, float]:
    cgroup = sup.cgroup
    if cgroup is None:
        return {}
    usage: dict[str, float] = {"pids": float(len(cgroup.pids()))}
    memory = cgroup.memory_bytes()
    if memory is not None:
        usage["memory_bytes"] = float(memory)
    cpu = cgroup.cpu_seconds()
    if cpu is not None:
        usage["cpu_s"] = cpu
    return usage


def _read_info(fd: int) -> int | None:
    """bwrap's ``--info-fd`` JSON (blocking, bounded), then the namespace init's host pid."""
    chunks = []
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            data = os.read(fd, 4096)
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(fd)
    return parse_init_pid(b"".join(chunks))


def _reap_when_done(
    sup: Supervisor, init_fd: int | None, paths: dict[str, Path], straggler_uid: int | None
) -> None:
    """Reaper thread: wait for the wrapper, reap the namespace init bwrap orphans (we are the
    subreaper; ``init_fd`` is its pidfd), then remove the cgroup and the state files.

    Without a pid namespace (``landlock``), whatever escaped the supervisor's kills (a
    ``setsid`` grandchild that scrubbed its environment) is killed through the cgroup or, with
    none, as every process of the sandbox's dedicated uid (``straggler_uid``)."""
    assert sup.process is not None
    sup.process.wait()
    if straggler_uid is not None and straggler_uid != os.getuid():  # not a non-root server's
        if sup.cgroup is not None:
            sup.cgroup.kill()
        else:
            _landlock.kill_uid(straggler_uid)
        _landlock.reap_orphans(straggler_uid)
    if init_fd is not None:
        # Blocking is fine on this thread, and needed: under load the init (killed with its
        # parent through PR_SET_PDEATHSIG) can take longer than any fixed poll to exit, and an
        # unreaped one stays a zombie of the server. ECHILD: bwrap reaped it itself.
        with contextlib.suppress(ChildProcessError):
            os.waitid(os.P_PIDFD, init_fd, os.WEXITED)
        os.close(init_fd)
    if sup.cgroup is not None:
        deadline = time.monotonic() + STOP_WAIT_S
        while not sup.cgroup.remove() and time.monotonic() < deadline:
            time.sleep(0.05)
    with _owned_lock:
        if _owned.get(os.fspath(paths["json"])) is sup:
            del _owned[os.fspath(paths["json"])]
        with contextlib.suppress(OSError):
            sup.socket_path.unlink()  # its own name (see _start)
        # The state file only if it is still ours: a new sandbox with the same id may own it.
        state = read_state(paths["json"])
        if state is not None and state.get("socket") == os.fspath(sup.socket_path):
            with contextlib.suppress(FileNotFoundError):
                paths["json"].unlink()
    code = sup.process.returncode
    log = logger.info if code in (0, -9, 137) else logger.warning
    log("sandbox %s stopped (exit %s)", sup.sandbox_id, code)
    if code not in (0, -9, 137):
        with contextlib.suppress(OSError):
            tail = paths["log"].read_bytes()[-2000:].decode(errors="replace")
            logger.warning("sandbox %s supervisor log tail: %s", sup.sandbox_id, tail)
