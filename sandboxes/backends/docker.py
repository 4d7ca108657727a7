"""The ``docker`` sandbox backend: one container per session sandbox, through the docker SDK.

Works with Docker Engine and with Podman's Docker-compatible API (what the tests run against,
research note §8), on the same host as the server (the workspace is a bind mount).

A sandbox is a container created with ``network_mode="none"`` (``"bridge"`` for
``network="host"``), a read-only root filesystem with a sized ``/tmp`` tmpfs, every capability
dropped, ``no-new-privileges``, a non-root user (the sandbox's own uid, as in the ``local``
backend), ``init`` (tini/catatonit reaps zombies), memory (no swap), pids and CPU limits,
explicit ulimits, the workspace bound at ``/workspace``, and ownership labels
(``agent-runtime.owner`` = this deployment's data dir tag, ``agent-runtime.sandbox``, and the
spec's labels as ``agent-runtime.label.<key>``). Its command is our supervisor ``sbxd``
(bound read-only at ``/.sbxd.py``) listening on a unix socket in a per-sandbox directory bound
at ``/.sbxd``, so exec, streaming, timeouts, tree kills, background processes, re-attach and
stdin behave exactly as in the ``local`` backend (the Docker API has no exec kill or timeout,
research note §5.3). The image therefore needs ``python3`` on its ``PATH``
(``SANDBOX_DOCKER_IMAGE``, default ``python:3.12-slim``; an agent spec's ``image`` overrides).

Memory kills are read from the container's cgroup (found through its init's
``/proc/<pid>/cgroup``), so they end a command with ``limit="memory"`` like the local backend's.
Stopped (idle) containers and containers of this deployment whose supervisor no longer answers
are removed on start-up and by :meth:`DockerBackend.reap_idle`.

Settings: ``SANDBOX_DOCKER_URL`` (default: the ``DOCKER_HOST`` environment),
``SANDBOX_DOCKER_IMAGE``, ``SANDBOX_DOCKER_MOUNTS`` (extra ``host:container[:ro]`` binds for
every sandbox, e.g. a shared toolchain), ``SANDBOX_DOCKER_CPUS`` (1.0),
``SANDBOX_DOCKER_RUNTIME`` (e.g. ``runsc`` for gVisor).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import docker
import docker.errors
from django.conf import settings

from sandboxes import paths
from sandboxes.backends import _cgroup as cgroups
from sandboxes.backends._bwrap import (
    MIB,
    SANDBOX_TMP,
    WORKSPACE,
    chown_tree,
    sandbox_uid,
)
from sandboxes.backends._local_spawn import base_env
from sandboxes.backends._supervised import SupervisedProcesses, Supervisor, _answers, support_file
from sandboxes.base import (
    Capabilities,
    Execution,
    ProcessInfo,
    SandboxBackend,
    SandboxError,
    SandboxInfo,
    SandboxSpec,
    SandboxUnavailable,
    checked_request,
)
from sandboxes.registry import register_backend

logger = logging.getLogger(__name__)

SBXD_SOURCE = Path(__file__).with_name("sbxd.py")
LABEL = "agent-runtime"
START_TIMEOUT_S = 30.0
STOP_WAIT_S = 5.0


def _owner() -> str:
    return cgroups.owner_tag(getattr(settings, "SANDBOX_DATA_DIR", "")).rstrip("-")


def _key(sandbox_id: str) -> str:
    return hashlib.sha256(sandbox_id.encode()).hexdigest()[:20]


@register_backend("docker")
class DockerBackend(SupervisedProcesses, SandboxBackend):
    """Containers as sandboxes (see the module docstring)."""

    def __init__(self) -> None:
        self._client: docker.DockerClient | None = None
        self._caps: Capabilities | None = None
        self._lock = threading.Lock()
        self._start_locks: dict[str, threading.Lock] = {}
        self._supervisors: dict[str, Supervisor] = {}

    # ---------------------------------------------------------------- engine

    def _docker(self) -> docker.DockerClient:
        if self._client is None:
            url = getattr(settings, "SANDBOX_DOCKER_URL", "") or None
            self._client = (
                docker.DockerClient(base_url=url, timeout=60)
                if url
                else docker.from_env(timeout=60)
            )
        return self._client

    def capabilities(self) -> Capabilities:
        """Ping the engine once (cached); remove this deployment's stopped containers."""
        with self._lock:
            if self._caps is None:
                try:
                    client = self._docker()
                    version = client.version()
                    info = client.info()
                except (docker.errors.DockerException, OSError) as exc:
                    self._caps = Capabilities(
                        "docker", "none", False, False, reason=f"docker engine: {exc}"[:300]
                    )
                    return self._caps
                security = " ".join(info.get("SecurityOptions") or [])
                details = {
                    "engine": version.get("Components", [{}])[0].get("Name", "engine"),
                    "version": version.get("Version"), "api": version.get("ApiVersion"),
                    "image": settings.SANDBOX_DOCKER_IMAGE, "seccomp": "seccomp" in security,
                    "network": "none (network_mode=none) unless network='host' (bridge)",
                    "pid_namespace": True, "read_only_rootfs": True, "cap_drop": "ALL",
                    "cgroup": "engine",
                }  # fmt: skip
                self._caps = Capabilities("docker", "docker", True, True, details=details)
                with contextlib.suppress(SandboxUnavailable):  # the next sweep retries
                    self._remove_orphans()
            return self._caps

    def _containers(
        self, labels: Mapping[str, str] | None = None, *, all_: bool = True
    ) -> list[Any]:
        """This deployment's containers having every label of ``labels``.

        Raises:
            SandboxUnavailable: the engine does not answer (a 503 for API callers, not a 500).
        """
        wanted = [f"{LABEL}.owner={_owner()}"] + [f"{k}={v}" for k, v in (labels or {}).items()]
        try:
            return list(self._docker().containers.list(all=all_, filters={"label": wanted}))
        except (docker.errors.DockerException, OSError) as exc:
            raise SandboxUnavailable(
                "The docker engine is not reachable.", details={"reason": str(exc)[:300]}
            ) from exc

    def _remove_orphans(self) -> list[str]:
        """Remove this deployment's containers that stopped or whose supervisor is gone."""
        removed = []
        for container in self._containers():
            sandbox_id = container.labels.get(f"{LABEL}.sandbox", "")
            if container.status != "running" or not _answers(self._socket(sandbox_id)):
                with contextlib.suppress(docker.errors.DockerException):
                    container.remove(force=True)
                self._supervisors.pop(sandbox_id, None)
                removed.append(sandbox_id)
        return removed

    # ---------------------------------------------------------------- state on the host

    def _run_dir(self, sandbox_id: str) -> Path:
        return Path(settings.SANDBOX_DATA_DIR) / "run" / "docker" / _key(sandbox_id)

    def _socket(self, sandbox_id: str) -> Path:
        return self._run_dir(sandbox_id) / "sbxd.sock"

    def _uid(self, sandbox_id: str) -> int:
        if os.geteuid() != 0:
            return os.geteuid()
        base, count = settings.SANDBOX_UID_BASE, settings.SANDBOX_UID_COUNT
        return sandbox_uid(sandbox_id, base=base, count=count) if count else settings.SANDBOX_UID

    @contextlib.contextmanager
    def _start_lock(self, sandbox_id: str) -> Iterator[None]:
        folder = self._run_dir(sandbox_id).parent
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        with self._lock:
            lock = self._start_locks.setdefault(sandbox_id, threading.Lock())
        with lock, open(folder / f"{_key(sandbox_id)}.lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    # ---------------------------------------------------------------- start / find

    def _fingerprint(self, spec: SandboxSpec) -> str:
        lim = spec.limits
        parts = (
            self._image(spec), os.fspath(spec.workspace), spec.network, lim.memory_mb, lim.pids,
            lim.tmp_mb, lim.open_files, tuple(map(os.fspath, spec.readonly_paths)),
            tuple(settings.SANDBOX_DOCKER_MOUNTS), self._uid(spec.sandbox_id),
        )  # fmt: skip
        return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]

    def _image(self, spec: SandboxSpec) -> str:
        return spec.image or settings.SANDBOX_DOCKER_IMAGE

    def _find(self, sandbox_id: str) -> Supervisor | None:
        """The running sandbox's supervisor: a known one that answers (no engine round trip
        per exec), else from the engine's running container with that key."""
        sup = self._supervisors.get(sandbox_id)
        if sup is not None and _answers(sup.socket_path):
            return sup
        found = self._containers({f"{LABEL}.key": _key(sandbox_id)}, all_=False)
        if not found or not _answers(self._socket(sandbox_id)):
            self._supervisors.pop(sandbox_id, None)
            return None
        sup = self._supervisor(sandbox_id, found[0])
        self._supervisors[sandbox_id] = sup
        return sup

    def _supervisor(self, sandbox_id: str, container: Any) -> Supervisor:
        labels = container.labels
        idle = labels.get(f"{LABEL}.idle_timeout_s")
        return Supervisor(
            sandbox_id=sandbox_id, socket_path=self._socket(sandbox_id), tier="docker",
            workspace_in=WORKSPACE, started_at=float(labels.get(f"{LABEL}.started_at", 0)),
            labels={k.removeprefix(f"{LABEL}.label."): v for k, v in labels.items()
                    if k.startswith(f"{LABEL}.label.")},
            cgroup=_container_cgroup(container), fingerprint=labels.get(f"{LABEL}.fingerprint", ""),
            idle_timeout_s=float(idle) if idle else None,
        )  # fmt: skip

    def _ensure_blocking(self, spec: SandboxSpec) -> Supervisor:
        with self._start_lock(spec.sandbox_id):
            found = self._find(spec.sandbox_id)
            if found is not None and found.fingerprint == self._fingerprint(spec):
                return found
            self._stop_blocking(spec.sandbox_id)
            return self._start(spec)

    def _start(self, spec: SandboxSpec) -> Supervisor:
        uid = self._uid(spec.sandbox_id)
        run_dir = self._run_dir(spec.sandbox_id)
        run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        spec.workspace.mkdir(mode=0o755, parents=True, exist_ok=True)
        if os.geteuid() == 0:
            os.chown(run_dir, uid, uid)
            chown_tree(spec.workspace, uid, uid)
        sbxd = support_file(SBXD_SOURCE, run_dir.parent)
        lim = spec.limits
        volumes = {
            os.fspath(spec.workspace): {"bind": WORKSPACE, "mode": "rw"},
            os.fspath(run_dir): {"bind": "/.sbxd", "mode": "rw"},
            os.fspath(sbxd): {"bind": "/.sbxd.py", "mode": "ro"},
        }
        for ro in spec.readonly_paths:
            volumes[os.fspath(ro)] = {"bind": os.fspath(ro), "mode": "ro"}
        for mount in settings.SANDBOX_DOCKER_MOUNTS:
            host, _, rest = str(mount).partition(":")
            target, _, mode = rest.partition(":")
            volumes[host] = {"bind": target or host, "mode": mode or "ro"}
        labels = {
            f"{LABEL}.owner": _owner(), f"{LABEL}.sandbox": spec.sandbox_id,
            f"{LABEL}.key": _key(spec.sandbox_id), f"{LABEL}.fingerprint": self._fingerprint(spec),
            f"{LABEL}.started_at": str(time.time()),
            **{f"{LABEL}.label.{k}": str(v) for k, v in spec.labels.items()},
        }  # fmt: skip
        retain = str(settings.SANDBOX_PROCESS_RETAIN_BYTES)
        env = {**base_env(WORKSPACE, host_tmp=False), "SBXD_LISTEN": "/.sbxd/sbxd.sock",
               "SBXD_PIDNS": "1", "SBXD_RETAIN_BYTES": retain}  # fmt: skip
        if spec.idle_timeout_s is not None:
            env["SBXD_IDLE_S"] = str(spec.idle_timeout_s)
            labels[f"{LABEL}.idle_timeout_s"] = str(spec.idle_timeout_s)
        ulimit, fsize = docker.types.Ulimit, lim.file_size_mb * MIB
        try:
            container = self._docker().containers.run(
                self._image(spec), ["python3", "-I", "-S", "/.sbxd.py"], detach=True,
                name=f"{LABEL}-{_owner()}-{_key(spec.sandbox_id)}", labels=labels,
                environment=env, user=f"{uid}:{uid}", working_dir=WORKSPACE, volumes=volumes,
                network_mode="none" if spec.network == "none" else "bridge",
                read_only=True, tmpfs={SANDBOX_TMP: f"size={lim.tmp_mb}m,mode=1777"},
                cap_drop=["ALL"], security_opt=["no-new-privileges"], init=True,
                mem_limit=f"{lim.memory_mb}m", memswap_limit=f"{lim.memory_mb}m",
                pids_limit=lim.pids, nano_cpus=int(settings.SANDBOX_DOCKER_CPUS * 1e9),
                runtime=settings.SANDBOX_DOCKER_RUNTIME or None,
                ulimits=[ulimit(name="nofile", soft=lim.open_files, hard=lim.open_files),
                         ulimit(name="nproc", soft=lim.pids, hard=lim.pids),
                         ulimit(name="fsize", soft=fsize, hard=fsize),
                         ulimit(name="core", soft=0, hard=0)],
            )  # fmt: skip
        except docker.errors.ImageNotFound as exc:
            raise SandboxError(
                "The sandbox image is not available.", details={"image": self._image(spec)}
            ) from exc
        except docker.errors.DockerException as exc:
            raise SandboxError("The sandbox container could not be started.") from exc
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _answers(self._socket(spec.sandbox_id)):
            container.reload()
            if container.status not in ("created", "running") or time.monotonic() > deadline:
                logs = container.logs(tail=20).decode(errors="replace")[-500:]
                with contextlib.suppress(docker.errors.DockerException):
                    container.remove(force=True)
                raise SandboxError(
                    "The sandbox container did not start its supervisor (the image needs "
                    "python3).", details={"image": self._image(spec), "log": logs},
                )  # fmt: skip
            time.sleep(0.02)
        container.reload()
        sup = self._supervisor(spec.sandbox_id, container)
        self._supervisors[spec.sandbox_id] = sup
        logger.info("sandbox %s started (docker %s)", spec.sandbox_id, container.short_id)
        return sup

    def _stop_blocking(self, sandbox_id: str) -> bool:
        self._supervisors.pop(sandbox_id, None)
        running = False
        # remove(force=True) kills every process of the container at once (its pid namespace
        # dies with it), so there is no graceful shutdown to wait for.
        for container in self._containers({f"{LABEL}.key": _key(sandbox_id)}):
            running = running or container.status == "running"
            for attempt in range(3):
                try:
                    container.remove(force=True)
                    break
                except docker.errors.NotFound:
                    break
                except docker.errors.DockerException:
                    if attempt == 2:
                        logger.exception("cannot remove container %s", container.short_id)
                    time.sleep(0.2)  # the engine is still tearing it down
        return running

    # ---------------------------------------------------------------- interface

    async def _prepared(
        self, spec: SandboxSpec, argv: list[str] | None, cwd: str, env: Mapping[str, str] | None
    ) -> tuple[Supervisor, str, dict[str, str]]:
        caps = await asyncio.to_thread(self.capabilities)
        if not caps.available:
            raise SandboxUnavailable(
                "The docker engine is not reachable.", details={"reason": caps.reason}
            )
        spec, rel_cwd, merged = checked_request(spec, argv, cwd, env)
        if rel_cwd:
            entry = await asyncio.to_thread(paths.stat, spec.workspace, rel_cwd)
            if entry.type != "directory":
                raise paths.WorkspacePathError("cwd is not a directory.")
        if spec.allow_hosts:
            raise SandboxError("allow_hosts is not supported by the docker backend yet.")
        sup = await asyncio.to_thread(self._ensure_blocking, spec)
        cwd_in = f"{WORKSPACE}/{rel_cwd}" if rel_cwd else WORKSPACE
        full_env = base_env(WORKSPACE, host_tmp=False)
        return sup, cwd_in, {**full_env, **merged}

    async def exec(
        self,
        spec: SandboxSpec,
        argv: list[str],
        *,
        cwd: str = "",
        env: Mapping[str, str] | None = None,
        stdin: bytes | None = None,
    ) -> Execution:
        """Run ``argv`` in the sandbox's container (see :meth:`SandboxBackend.exec`)."""
        sup, cwd_in, full_env = await self._prepared(spec, argv, cwd, env)
        execution = await sup.run(
            argv, cwd=cwd_in, env=full_env, rlimits=_rlimits(spec), stdin=stdin,
            background=False, wall_timeout_s=spec.limits.wall_timeout_s,
        )  # fmt: skip
        assert isinstance(execution, Execution)
        return execution

    async def create(self, spec: SandboxSpec) -> SandboxInfo:
        await self._prepared(spec, None, "", None)
        info = await self.info(spec.sandbox_id)
        if info is None:
            raise SandboxError("The sandbox stopped right after it started.")
        return info

    async def start_process(
        self,
        spec: SandboxSpec,
        argv: list[str],
        *,
        cwd: str = "",
        env: Mapping[str, str] | None = None,
    ) -> ProcessInfo:
        sup, cwd_in, full_env = await self._prepared(spec, argv, cwd, env)
        process_id = await sup.run(
            argv, cwd=cwd_in, env=full_env, rlimits=_rlimits(spec), stdin=None, background=True,
            wall_timeout_s=None,
        )  # fmt: skip
        return await self._started(spec.sandbox_id, str(process_id), argv)

    async def stop(self, sandbox_id: str) -> bool:
        return await asyncio.to_thread(self._stop_blocking, sandbox_id)

    async def is_running(self, sandbox_id: str) -> bool:
        return await asyncio.to_thread(self._find, sandbox_id) is not None

    async def info(self, sandbox_id: str) -> SandboxInfo | None:
        sup = await asyncio.to_thread(self._find, sandbox_id)
        if sup is None:
            return None
        usage: dict[str, float] = {}
        if sup.cgroup is not None:
            usage["pids"] = float(len(sup.cgroup.pids()))
            memory = sup.cgroup.memory_bytes()
            if memory is not None:
                usage["memory_bytes"] = float(memory)
        return SandboxInfo(
            sandbox_id=sandbox_id, backend="docker", tier="docker", state="running",
            labels=dict(sup.labels), started_at=sup.started_at, last_active_at=sup.last_active,
            usage=usage, processes=tuple(await self.processes(sandbox_id)),
        )  # fmt: skip

    async def list_sandboxes(self, labels: Mapping[str, str] | None = None) -> list[SandboxInfo]:
        wanted = {f"{LABEL}.label.{k}": v for k, v in (labels or {}).items()}
        containers = await asyncio.to_thread(self._containers, wanted, all_=False)
        infos = [await self.info(c.labels.get(f"{LABEL}.sandbox", "")) for c in containers]
        return [i for i in infos if i is not None]

    async def reap_idle(self) -> list[str]:
        """Remove containers whose supervisor stopped itself after its idle timeout."""
        return await asyncio.to_thread(self._remove_orphans)


def _rlimits(spec: SandboxSpec) -> dict[str, int]:
    lim = spec.limits
    return {"cpu": lim.cpu_s, "fsize": lim.file_size_mb * MIB, "nofile": lim.open_files}


def _container_cgroup(container: Any) -> cgroups.ExecCgroup | None:
    """A read-only view of the container's cgroup on this host (memory, pids, OOM kills),
    found through its init's ``/proc/<pid>/cgroup``; ``None`` for a remote engine."""
    pid = (container.attrs.get("State") or {}).get("Pid")
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except (OSError, ValueError):
        return None
    found = {}
    for line in lines:
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else ["unified"]:
            found[controller] = path
    root = Path("/sys/fs/cgroup")
    if "memory" in found and "pids" in found:  # v1 (or hybrid: v1 controllers win)
        dirs = {c: root / c / found[c].lstrip("/") for c in ("memory", "pids")}
        return cgroups.ExecCgroup.existing(cgroups.CgroupSupport(1, {}), dirs)
    if "unified" in found:
        dirs = {"unified": root / found["unified"].lstrip("/")}
        return cgroups.ExecCgroup.existing(cgroups.CgroupSupport(2, {}), dirs)
    return None
