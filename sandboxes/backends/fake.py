"""The ``fake`` sandbox backend: runs nothing, for unit tests of code *around* sandboxes.

Commands are answered from scripts (:meth:`FakeBackend.script`: an argv prefix → stdout,
stderr, exit code), every call is recorded in :attr:`FakeBackend.calls`, and the lifecycle
(create, stop, info, labels, idle reaping, background processes) is kept in memory, so API,
service and admin code can be tested for what they do with a backend's answers. Isolation is
tested against the real backends (``tests/sandboxes``), never with this one.

It refuses to start outside a test run (pytest not imported): a server configured with
``SANDBOX_BACKEND=fake`` by mistake would otherwise report success for commands it never ran.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field

from django.core.exceptions import ImproperlyConfigured

from sandboxes.base import (
    Capabilities,
    ExecEvent,
    Execution,
    ProcessInfo,
    SandboxBackend,
    SandboxInfo,
    SandboxProcessNotFound,
    SandboxSpec,
)
from sandboxes.registry import register_backend


@dataclass(frozen=True)
class Script:
    """A scripted answer: output chunks, then ``exit_code`` after ``delay_s`` seconds."""

    stdout: bytes = b""
    stderr: bytes = b""
    exit_code: int = 0
    delay_s: float = 0.0


@dataclass
class _Sandbox:
    spec: SandboxSpec
    started_at: float = field(default_factory=time.time)
    last_active: float = field(default_factory=time.time)
    processes: dict[str, ProcessInfo] = field(default_factory=dict)


class FakeExecution(Execution):
    """Yields a :class:`Script`'s output and exit; ``terminate`` ends it as killed (-15)."""

    def __init__(self, script: Script) -> None:
        self._script = script
        self._terminated = asyncio.Event()

    async def __aiter__(self) -> AsyncIterator[ExecEvent]:  # type: ignore[override]
        if self._script.stdout:
            yield ExecEvent(stream="stdout", data=self._script.stdout)
        if self._script.stderr:
            yield ExecEvent(stream="stderr", data=self._script.stderr)
        try:
            await asyncio.wait_for(self._terminated.wait(), self._script.delay_s or 0.000001)
        except TimeoutError:
            yield ExecEvent(stream="exit", exit_code=self._script.exit_code)
            return
        yield ExecEvent(stream="exit", exit_code=-15, killed=True)

    async def terminate(self, *, grace_s: float = 5.0) -> None:
        self._terminated.set()

    @property
    def pid(self) -> int | None:
        return None


@register_backend("fake")
class FakeBackend(SandboxBackend):
    """In-memory sandboxes answering scripted commands (see the module docstring)."""

    def __init__(self) -> None:
        if "pytest" not in sys.modules:
            raise ImproperlyConfigured(
                "SANDBOX_BACKEND=fake runs nothing; it exists for unit tests only."
            )
        self.calls: list[tuple[str, tuple[str, ...]]] = []
        self.sandboxes: dict[str, _Sandbox] = {}
        self._scripts: list[tuple[tuple[str, ...], Script]] = []
        self._counter = 0

    def script(self, argv_prefix: Sequence[str], **answer: bytes | int | float) -> None:
        """Answer commands starting with ``argv_prefix`` with ``Script(**answer)``; the most
        recently added matching script wins; unmatched commands exit 0 with no output."""
        self._scripts.insert(0, (tuple(argv_prefix), Script(**answer)))  # type: ignore[arg-type]

    def _answer(self, argv: Sequence[str]) -> Script:
        for prefix, script in self._scripts:
            if tuple(argv[: len(prefix)]) == prefix:
                return script
        return Script()

    def _touch(self, spec: SandboxSpec) -> _Sandbox:
        box = self.sandboxes.get(spec.sandbox_id)
        if box is None:
            box = self.sandboxes[spec.sandbox_id] = _Sandbox(spec)
        box.last_active = time.time()
        return box

    def capabilities(self) -> Capabilities:
        return Capabilities("fake", "fake", False, True, details={"note": "unit tests only"})

    async def exec(
        self,
        spec: SandboxSpec,
        argv: list[str],
        *,
        cwd: str = "",
        env: Mapping[str, str] | None = None,
        stdin: bytes | None = None,
    ) -> Execution:
        self._touch(spec)
        self.calls.append((spec.sandbox_id, tuple(argv)))
        return FakeExecution(self._answer(argv))

    async def create(self, spec: SandboxSpec) -> SandboxInfo:
        self._touch(spec)
        info = await self.info(spec.sandbox_id)
        assert info is not None
        return info

    async def stop(self, sandbox_id: str) -> bool:
        return self.sandboxes.pop(sandbox_id, None) is not None

    async def info(self, sandbox_id: str) -> SandboxInfo | None:
        box = self.sandboxes.get(sandbox_id)
        if box is None:
            return None
        return SandboxInfo(
            sandbox_id=sandbox_id, backend="fake", tier="fake", state="running",
            labels=dict(box.spec.labels), started_at=box.started_at,
            last_active_at=box.last_active, usage={"pids": 1 + len(box.processes)},
            processes=tuple(box.processes.values()),
        )  # fmt: skip

    async def list_sandboxes(self, labels: Mapping[str, str] | None = None) -> list[SandboxInfo]:
        wanted = dict(labels or {})
        found = []
        for sandbox_id, box in list(self.sandboxes.items()):
            if wanted.items() <= dict(box.spec.labels).items():
                info = await self.info(sandbox_id)
                if info is not None:
                    found.append(info)
        return found

    async def reap_idle(self) -> list[str]:
        now = time.time()
        idle = [
            sandbox_id
            for sandbox_id, box in self.sandboxes.items()
            if box.spec.idle_timeout_s is not None
            and now - box.last_active > box.spec.idle_timeout_s
        ]
        for sandbox_id in idle:
            del self.sandboxes[sandbox_id]
        return idle

    async def start_process(
        self,
        spec: SandboxSpec,
        argv: list[str],
        *,
        cwd: str = "",
        env: Mapping[str, str] | None = None,
    ) -> ProcessInfo:
        box = self._touch(spec)
        self.calls.append((spec.sandbox_id, tuple(argv)))
        self._counter += 1
        process = ProcessInfo(f"p{self._counter}", tuple(argv), time.time(), running=True)
        box.processes[process.process_id] = process
        return process

    async def processes(self, sandbox_id: str) -> list[ProcessInfo]:
        box = self.sandboxes.get(sandbox_id)
        return list(box.processes.values()) if box else []

    def _process(self, sandbox_id: str, process_id: str) -> ProcessInfo:
        box = self.sandboxes.get(sandbox_id)
        if box is None or process_id not in box.processes:
            raise SandboxProcessNotFound("No such process.", details={"process_id": process_id})
        return box.processes[process_id]

    async def attach(self, sandbox_id: str, process_id: str) -> Execution:
        process = self._process(sandbox_id, process_id)
        return FakeExecution(self._answer(process.argv))

    async def write_stdin(
        self, sandbox_id: str, process_id: str, data: bytes, *, eof: bool = False
    ) -> None:
        self._process(sandbox_id, process_id)

    async def kill_process(self, sandbox_id: str, process_id: str, *, signal: int = 9) -> None:
        process = self._process(sandbox_id, process_id)
        self.sandboxes[sandbox_id].processes[process_id] = ProcessInfo(
            process.process_id, process.argv, process.started_at, running=False,
            exit_code=-signal, output_bytes=process.output_bytes,
        )  # fmt: skip
