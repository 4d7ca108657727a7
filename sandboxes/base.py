"""The sandbox backend interface: run a command inside an isolated sandbox with a workspace.

A backend (``local``, later ``docker``) turns a :class:`SandboxSpec` plus an argv into a running,
isolated process tree whose output is streamed as :class:`ExecEvent` items. The ideas follow the
E2B ``commands.run`` / Modal ``Sandbox.exec`` shape (stream stdout/stderr separately, one final
exit record) and the measured notes in ``shared/research/sandboxes.md`` §5.1.

Contract every backend keeps:

* ``exec()`` returns an :class:`Execution`; iterating it yields ``stdout``/``stderr`` chunks as
  they are produced (never waiting for the end, never one event per byte) and exactly one final
  ``exit`` event.
* ``Execution.terminate(grace_s)`` sends SIGTERM to the whole process tree, then SIGKILL after
  ``grace_s`` seconds; afterwards no process of the execution is alive, including grandchildren
  that called ``setsid()``. It is idempotent and safe to call from another coroutine.
* The workspace is the only writable host path; ``cwd`` is relative to it.
"""

from __future__ import annotations

import abc
import asyncio
import dataclasses
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from runtime_project.exceptions import (
    ApplicationError,
    Conflict,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
)
from sandboxes import paths
from sandboxes.paths import FileEntry


class SandboxError(ApplicationError):
    """A sandbox could not be created or a command could not be started in it."""

    status_code = 500
    code = "sandbox_error"


class SandboxProcessNotFound(NotFound):
    """A background process id does not name a process of that (running) sandbox."""

    code = "process_not_found"


class SandboxStdinClosed(Conflict):
    """A write to a background process whose stdin an earlier write closed (``eof``)."""

    code = "stdin_closed"


class SandboxUnavailable(ServiceUnavailable):
    """No isolating sandbox is available and unisolated execution was not allowed."""

    code = "sandbox_unavailable"


@dataclass(frozen=True)
class Limits:
    """Resource limits for one execution.

    Attributes:
        wall_timeout_s: wall-clock limit in seconds; exceeded → the tree is killed and the exit
            event has ``timed_out=True``. ``None`` = no limit (the task timeout still applies).
        cpu_s: RLIMIT_CPU per process, seconds.
        memory_mb: address-space backstop (RLIMIT_AS) in MiB; a cgroup limit where available.
        pids: maximum processes (RLIMIT_NPROC / pids.max).
        file_size_mb: RLIMIT_FSIZE in MiB (largest file a process may write).
        tmp_mb: size of the private ``/tmp`` tmpfs in MiB.
        open_files: RLIMIT_NOFILE.
    """

    wall_timeout_s: float | None = None
    cpu_s: int = 600
    memory_mb: int = 4096
    pids: int = 512
    file_size_mb: int = 1024
    tmp_mb: int = 512
    open_files: int = 1024


@dataclass(frozen=True)
class SandboxSpec:
    """What one sandbox looks like.

    Attributes:
        sandbox_id: stable id (the session's public id) used for labels, state dirs and logs.
        workspace: host directory mounted read-write at ``/workspace`` inside the sandbox.
        env: extra environment variables (the sandbox starts from a clean environment).
        network: ``"none"`` (default: loopback only, in its own network namespace) or ``"host"``.
        limits: resource limits applied to every execution.
        readonly_paths: extra host paths bound read-only at the same path (toolchains).
        labels: ownership labels (``session``, ``agent``, ``owner``), kept by the backend and
            used by :meth:`SandboxBackend.list` and the reapers (docker: container labels).
        image: container image (``docker`` backend; ``None`` = ``SANDBOX_DOCKER_IMAGE``). The
            ``local`` backend always uses the host's ``/usr`` read-only.
        allow_hosts: egress allow-list (``"host:port"`` items) used when ``network`` is
            ``"none"`` and the backend supports it; empty = no network at all.
        idle_timeout_s: a running sandbox with no activity (exec, file operation, attached
            client) for this many seconds is stopped; ``None`` = never (idle policy ``keep``).
    """

    sandbox_id: str
    workspace: Path
    env: Mapping[str, str] = field(default_factory=dict)
    network: Literal["none", "host"] = "none"
    limits: Limits = field(default_factory=Limits)
    readonly_paths: tuple[Path, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    image: str | None = None
    allow_hosts: tuple[str, ...] = ()
    idle_timeout_s: float | None = 900.0


@dataclass(frozen=True)
class ProcessInfo:
    """A background process of a sandbox (E2B ``commands.list`` / OpenHands background cmds).

    Attributes:
        process_id: backend-assigned id, stable for the life of the sandbox.
        argv: the command.
        started_at: epoch seconds.
        running: whether it is still alive.
        exit_code: ``-N`` when killed by signal N; ``None`` while running.
        output_bytes: stdout+stderr bytes produced so far (the backend retains the last
            ``SANDBOX_PROCESS_RETAIN_BYTES`` of it for re-attaching clients).
    """

    process_id: str
    argv: tuple[str, ...]
    started_at: float
    running: bool
    exit_code: int | None = None
    output_bytes: int = 0


@dataclass(frozen=True)
class SandboxInfo:
    """Live state of one sandbox, as the backend sees it.

    Attributes:
        sandbox_id: the spec's id.
        backend / tier: which backend and isolation tier run it.
        state: ``running`` or ``stopped`` (a stopped sandbox keeps its workspace; using it
            again starts it).
        labels: the spec's labels.
        started_at / last_active_at: epoch seconds, ``None`` when stopped.
        usage: ``memory_bytes``, ``pids``, ``cpu_s`` where the backend can measure them.
        processes: background processes (running and recently exited).
    """

    sandbox_id: str
    backend: str
    tier: str
    state: Literal["running", "stopped"]
    labels: Mapping[str, str] = field(default_factory=dict)
    started_at: float | None = None
    last_active_at: float | None = None
    usage: Mapping[str, float] = field(default_factory=dict)
    processes: tuple[ProcessInfo, ...] = ()


@dataclass(frozen=True)
class ExecEvent:
    """One item of an execution's output stream.

    ``stream`` is ``"stdout"`` or ``"stderr"`` with ``data`` bytes, or ``"exit"`` (always last,
    exactly once) with ``exit_code`` (``-N`` when killed by signal N), ``timed_out`` and
    ``killed`` (terminated on request), and ``limit``: the resource limit that ended the
    command, if one did (``"memory"``: the cgroup's OOM killer; ``"cpu"``: RLIMIT_CPU's
    SIGXCPU; ``"file_size"``: RLIMIT_FSIZE's SIGXFSZ).
    """

    stream: Literal["stdout", "stderr", "exit"]
    data: bytes = b""
    exit_code: int | None = None
    timed_out: bool = False
    killed: bool = False
    limit: Literal["memory", "cpu", "file_size"] | None = None


@dataclass(frozen=True)
class Capabilities:
    """What the active backend isolates, reported by ``/health`` and the start-up log.

    Attributes:
        backend: backend name (``local``, ``docker``).
        tier: isolation tier (``bubblewrap``, ``unisolated``, …).
        isolated: ``False`` only for the explicitly allowed unisolated tier.
        available: whether tasks can run at all.
        reason: why a stronger tier was not chosen, or why nothing is available.
        details: backend-specific facts (network, pid namespace, uid, cgroup, versions).
    """

    backend: str
    tier: str
    isolated: bool
    available: bool
    reason: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)


class Execution(abc.ABC):
    """A running command. Iterate it for :class:`ExecEvent` items; terminate it to stop it."""

    @abc.abstractmethod
    def __aiter__(self) -> AsyncIterator[ExecEvent]:
        """Yield output chunks as they are produced, then one ``exit`` event."""

    @abc.abstractmethod
    async def terminate(self, *, grace_s: float = 5.0) -> None:
        """SIGTERM the whole process tree, SIGKILL it after ``grace_s`` seconds; idempotent."""

    @property
    @abc.abstractmethod
    def pid(self) -> int | None:
        """Host pid of the outermost process (for operators and tests), if any."""


class SandboxBackend(abc.ABC):
    """A way to run commands in isolation. Instances are process-wide singletons."""

    name: str = ""

    @abc.abstractmethod
    def capabilities(self) -> Capabilities:
        """Detected isolation (cached after the first call)."""

    @abc.abstractmethod
    async def exec(
        self,
        spec: SandboxSpec,
        argv: list[str],
        *,
        cwd: str = "",
        env: Mapping[str, str] | None = None,
        stdin: bytes | None = None,
    ) -> Execution:
        """Start ``argv`` in the sandbox described by ``spec``.

        Args:
            spec: the sandbox (workspace, limits, network, env).
            argv: program and arguments; resolved inside the sandbox's ``PATH``.
            cwd: directory relative to the workspace (``""`` = workspace root).
            env: variables added on top of ``spec.env``.
            stdin: bytes written to the program's stdin, then closed (``None`` = empty stdin).

        Raises:
            SandboxUnavailable: no isolation is available and unisolated runs are not allowed.
            SandboxError: the command could not be started.
        """

    async def create(self, spec: SandboxSpec) -> SandboxInfo:
        """Start the sandbox for ``spec`` if it is not running (idempotent); ``exec`` and the
        process methods call it implicitly, so calling it is only needed to pre-warm.

        Raises:
            SandboxUnavailable / SandboxError: as for :meth:`exec`.
        """
        raise SandboxError(f"The {self.name} backend cannot create long-lived sandboxes.")

    async def stop(self, sandbox_id: str) -> bool:
        """Stop the sandbox's processes (background ones included); keep its workspace.

        Returns whether it was running. Idempotent; afterwards no process of it is alive.
        """
        return False

    async def destroy(self, spec: SandboxSpec) -> None:
        """Stop the sandbox and release everything the backend holds for it (container,
        cgroup, state dir). The workspace directory itself belongs to the caller."""
        await self.stop(spec.sandbox_id)

    async def is_running(self, sandbox_id: str) -> bool:
        """Whether the sandbox is running now (cheap; ``exec`` starts it when it is not)."""
        info = await self.info(sandbox_id)
        return info is not None and info.state == "running"

    async def info(self, sandbox_id: str) -> SandboxInfo | None:
        """Live state and usage of one sandbox this backend knows, else ``None``."""
        return None

    async def list_sandboxes(self, labels: Mapping[str, str] | None = None) -> list[SandboxInfo]:
        """Sandboxes of this backend whose labels include every item of ``labels``."""
        return []

    async def reap_idle(self) -> list[str]:
        """Stop running sandboxes idle for longer than their ``idle_timeout_s``; returns their
        ids. Called periodically by the executor."""
        return []

    # ---------------------------------------------------------------- files

    async def read_file(self, spec: SandboxSpec, path: str, *, max_bytes: int) -> bytes:
        """The file at ``path`` (relative to the workspace) as the sandbox sees it.

        The default reads the host side of the workspace through :mod:`sandboxes.paths`
        (symlinks never followed out of it), which is the sandbox's ``/workspace`` for every
        backend that bind-mounts it; a backend whose workspace lives elsewhere (a remote
        docker engine) overrides these with its own transfer (``get_archive``).

        Raises:
            WorkspacePathError: a path that leaves the workspace. WorkspaceFileNotFound: no
                such file. PayloadTooLarge: larger than ``max_bytes``.
        """

        def read() -> bytes:
            with paths.open_read(spec.workspace, path) as fh:
                data = fh.read(max_bytes + 1)
            if len(data) > max_bytes:
                raise PayloadTooLarge(
                    "The file is too large to read.", details={"limit_bytes": max_bytes}
                )
            return data

        return await asyncio.to_thread(read)

    async def write_file(self, spec: SandboxSpec, path: str, data: bytes) -> None:
        """Create or replace the file at ``path`` (parents created), owned like its parent.

        Raises:
            WorkspacePathError: a path that leaves the workspace or crosses a symlink.
        """

        def write() -> None:
            with paths.open_write(spec.workspace, path) as fh:
                fh.write(data)

        await asyncio.to_thread(write)

    async def list_files(self, spec: SandboxSpec, path: str = "") -> list[FileEntry]:
        """The entries of the directory ``path`` (``""``: the workspace root).

        Raises:
            WorkspacePathError / WorkspaceFileNotFound: as for :meth:`read_file`.
        """
        return await asyncio.to_thread(paths.list_dir, spec.workspace, path)

    # ---------------------------------------------------------------- background processes

    async def start_process(
        self,
        spec: SandboxSpec,
        argv: list[str],
        *,
        cwd: str = "",
        env: Mapping[str, str] | None = None,
    ) -> ProcessInfo:
        """Start ``argv`` in the background (stdin kept open for :meth:`write_stdin`).

        Raises:
            SandboxError: the backend has no background processes, or the start failed.
        """
        raise SandboxError(f"The {self.name} backend has no background processes.")

    async def processes(self, sandbox_id: str) -> list[ProcessInfo]:
        """Background processes of a running sandbox (``[]`` when it is stopped)."""
        return []

    async def attach(self, sandbox_id: str, process_id: str) -> Execution:
        """Re-attach to a background process: its retained output from the start, then live
        output, then one ``exit`` event. ``terminate()`` on the result kills the process.

        Raises:
            SandboxProcessNotFound: no such process (or the sandbox is stopped).
        """
        raise SandboxProcessNotFound("No such process.")

    async def write_stdin(
        self, sandbox_id: str, process_id: str, data: bytes, *, eof: bool = False
    ) -> None:
        """Send ``data`` to a background process's stdin (``eof`` closes it afterwards).

        Raises:
            SandboxProcessNotFound: no such running process.
        """
        raise SandboxProcessNotFound("No such process.")

    async def kill_process(self, sandbox_id: str, process_id: str, *, signal: int = 9) -> None:
        """Signal a background process's whole tree.

        Raises:
            SandboxProcessNotFound: no such process.
        """
        raise SandboxProcessNotFound("No such process.")


def checked_request(
    spec: SandboxSpec, argv: list[str] | None, cwd: str, env: Mapping[str, str] | None
) -> tuple[SandboxSpec, str, dict[str, str]]:
    """What every backend checks before it starts anything: ``(spec with an absolute
    workspace, cwd relative to the workspace, spec env + call env)``.

    Raises:
        SandboxError: an empty argv or one with NUL bytes.
        WorkspacePathError: a cwd that leaves the workspace.
        InvalidInput: an environment variable name or value that cannot be passed on.
    """
    if argv is not None and (not argv or any("\x00" in a for a in argv)):
        raise SandboxError("The command must be a non-empty list of strings without NUL.")
    rel_cwd = paths.normalize(cwd)
    if not spec.workspace.is_absolute():  # sandboxes start with cwd "/"
        spec = dataclasses.replace(spec, workspace=Path(os.path.abspath(spec.workspace)))
    merged = {**spec.env, **(env or {})}
    for key, value in merged.items():
        if not key or "=" in key or "\x00" in key or "\x00" in str(value):
            raise InvalidInput("Invalid environment variable.", details={"name": key[:100]})
    return spec, rel_cwd, merged
