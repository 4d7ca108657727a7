"""Host side of the per-sandbox supervisor (``sbxd``): start it, talk to it, stop it.

One :class:`Supervisor` is one running sandbox: the tier's wrapper (``bwrap …``, or a plain
process when unisolated) running ``sbxd.py``, which inherits a listening unix socket. The
socket file lives in ``SANDBOX_DATA_DIR/run`` (mode 0700, never bound into a sandbox), next to
a small JSON state file, so every server process on this host (daphne, ``run_worker``) can
reach a sandbox that another one started.

Lifetime: the wrapper is started with ``--die-with-parent`` from one long-lived spawner thread
(``PR_SET_PDEATHSIG`` fires when the *thread* that forked exits, so short-lived executor
threads must not do it): a server that dies takes its sandboxes with it and the next use starts
a fresh one on the surviving workspace. sbxd stops itself after the spec's idle timeout.

:class:`SupervisedExecution` is one command: its output frames become :class:`ExecEvent` items.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import concurrent.futures
import contextlib
import hashlib
import json
import logging
import os
import queue
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sandboxes.backends._cgroup import ExecCgroup
from sandboxes.base import (
    ExecEvent,
    Execution,
    ProcessInfo,
    SandboxError,
    SandboxProcessNotFound,
    SandboxStdinClosed,
)

logger = logging.getLogger(__name__)

HEADER = struct.Struct("!cI")
CHUNK_BYTES = 64 * 1024
HIGH_WATER_BYTES = 1024 * 1024  # unconsumed output (bytes) above which we stop reading
TIMEOUT_GRACE_S = 1.0
STOP_WAIT_S = 5.0
MAX_JSON = 16 * 1024 * 1024


class _Spawner:
    """A daemon thread that forks every sandbox wrapper and lives as long as the process."""

    def __init__(self) -> None:
        self._jobs: queue.Queue[tuple[Callable[[], Any], concurrent.futures.Future[Any]]]
        self._jobs = queue.Queue()
        threading.Thread(target=self._run, name="sandbox-spawner", daemon=True).start()

    def _run(self) -> None:
        while True:
            job, future = self._jobs.get()
            try:
                future.set_result(job())
            except BaseException as exc:
                future.set_exception(exc)

    def call(self, job: Callable[[], Any]) -> Any:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._jobs.put((job, future))
        return future.result()


_spawner: _Spawner | None = None
_spawner_lock = threading.Lock()


def spawn(job: Callable[[], Any]) -> Any:
    """Run ``job`` (which forks) on the spawner thread and return its result (blocking)."""
    global _spawner
    with _spawner_lock:
        if _spawner is None:
            _spawner = _Spawner()
    return _spawner.call(job)


@dataclass
class Supervisor:
    """A running sandbox as the host sees it.

    Attributes:
        sandbox_id: the spec's id.
        socket_path: sbxd's unix socket.
        tier: isolation tier that runs it.
        workspace_in: the workspace's path as seen inside the sandbox.
        started_at: epoch seconds.
        labels: the spec's labels.
        cgroup: the sandbox's cgroup (all its processes), if any.
        process: the wrapper, when this server process started it (else ``None``: another
            server process owns it and we only talk to its socket).
        fingerprint: what a spec must match to reuse it (``_local_lifecycle.fingerprint``).
    """

    sandbox_id: str
    socket_path: Path
    tier: str
    workspace_in: str
    started_at: float
    labels: Mapping[str, str] = field(default_factory=dict)
    cgroup: ExecCgroup | None = None
    process: subprocess.Popen[bytes] | None = None
    fingerprint: str = ""
    idle_timeout_s: float | None = None
    last_active: float = field(default_factory=time.time)

    @property
    def alive(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        return _answers(self.socket_path)

    def touch(self) -> None:
        self.last_active = time.time()

    # ---------------------------------------------------------------- requests

    async def _open(self, request: Mapping[str, Any]) -> _Conn:
        try:
            reader, writer = await asyncio.open_unix_connection(os.fspath(self.socket_path))
        except OSError as exc:
            raise SandboxError("The sandbox is not running.") from exc
        conn = _Conn(reader, writer)
        conn.send(b"J", json.dumps(request).encode())
        self.touch()
        return conn

    async def call(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """One request, one JSON reply (ping, list, write, kill, shutdown)."""
        conn = await self._open(request)
        try:
            kind, payload = await conn.read_frame()
        finally:
            conn.close()
        if kind != b"J":
            raise SandboxError("The sandbox supervisor sent an unexpected reply.")
        reply: dict[str, Any] = json.loads(payload)
        if not reply.get("ok"):
            if reply.get("code") == "not_found":
                raise SandboxProcessNotFound("No such process in this sandbox.")
            if reply.get("code") == "stdin_closed":
                raise SandboxStdinClosed("The process's stdin is closed (a write sent `eof`).")
            raise SandboxError(
                "The sandbox refused the request.", details={"reason": reply.get("error")}
            )
        return reply

    async def run(
        self,
        argv: list[str],
        *,
        cwd: str,
        env: Mapping[str, str],
        rlimits: Mapping[str, int],
        stdin: bytes | None,
        background: bool = False,
        wall_timeout_s: float | None = None,
    ) -> SupervisedExecution | str:
        """Start ``argv``; a foreground run returns its execution, a background one its id."""
        request = {
            "op": "run", "argv": argv, "cwd": cwd, "env": dict(env), "rlimits": dict(rlimits),
            "stdin": stdin is not None, "background": background,
        }  # fmt: skip
        conn = await self._open(request)
        oom_before = self.cgroup.oom_kills() if self.cgroup is not None else 0
        try:
            kind, payload = await conn.read_frame()
            reply = json.loads(payload) if kind == b"J" else {}
        except BaseException:
            conn.close()
            raise
        if not reply.get("ok"):
            conn.close()
            raise SandboxError(
                "The command could not be started.", details={"reason": reply.get("error")}
            )
        if background:
            conn.close()
            return str(reply["id"])
        if stdin is not None:
            for start in range(0, len(stdin), CHUNK_BYTES):
                conn.send(b"I", stdin[start : start + CHUNK_BYTES])
            conn.send(b"C", b"")
        return SupervisedExecution(self, conn, oom_before, wall_timeout_s=wall_timeout_s)

    async def attach(self, process_id: str) -> SupervisedExecution:
        conn = await self._open({"op": "attach", "id": process_id})
        kind, payload = await conn.read_frame()
        reply = json.loads(payload) if kind == b"J" else {}
        if not reply.get("ok"):
            conn.close()
            raise SandboxProcessNotFound("No such process in this sandbox.")
        return SupervisedExecution(self, conn, None, wall_timeout_s=None)

    async def write_stdin(self, process_id: str, data: bytes, *, eof: bool) -> None:
        await self.call(
            {"op": "write", "id": process_id, "data": base64.b64encode(data).decode(), "eof": eof}
        )

    async def processes(self) -> list[dict[str, Any]]:
        reply = await self.call({"op": "list"})
        return [p for p in reply["processes"] if p.get("background")]


def _answers(path: Path) -> bool:
    """Whether an sbxd listens on ``path`` (a blocking ping with a 2 s timeout)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2.0)
            s.connect(os.fspath(path))
            body = b'{"op": "ping"}'
            s.sendall(HEADER.pack(b"J", len(body)) + body)
            head = s.recv(HEADER.size, socket.MSG_WAITALL)
            return len(head) == HEADER.size and head[:1] == b"J"
    except OSError:
        return False


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def send(self, kind: bytes, payload: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(HEADER.pack(kind, len(payload)) + payload)

    async def read_frame(self) -> tuple[bytes, bytes]:
        """The next frame; ``(b"", b"")`` when sbxd closed the connection."""
        try:
            head = await self.reader.readexactly(HEADER.size)
            kind, length = HEADER.unpack(head)
            if length > MAX_JSON and kind == b"J":
                raise SandboxError("The sandbox supervisor sent an oversized reply.")
            return kind, await self.reader.readexactly(length)
        except (asyncio.IncompleteReadError, ConnectionError):
            return b"", b""

    def close(self) -> None:
        self.writer.close()


class SupervisedExecution(Execution):
    """One command run by sbxd: output frames → :class:`ExecEvent` items.

    A reader task takes frames off the connection as they come, so ``terminate`` sees the exit
    even while nobody iterates; above :data:`HIGH_WATER_BYTES` of unconsumed output it stops
    reading, and the back-pressure reaches the command through sbxd (whose pipes pause).

    Exit codes are ``-N`` for signal N. ``limit`` is ``"memory"`` when the sandbox's cgroup
    counted a new OOM kill while the command ran and it died of SIGKILL, ``"cpu"`` for SIGXCPU,
    ``"file_size"`` for SIGXFSZ. Abandoning the iterator (or a server crash) closes the
    connection, and sbxd then kills the command's whole tree.
    """

    def __init__(
        self,
        supervisor: Supervisor,
        conn: _Conn,
        oom_before: int | None,
        *,
        wall_timeout_s: float | None,
    ) -> None:
        self._sup = supervisor
        self._conn = conn
        self._oom_before = oom_before
        self._timed_out = False
        self._killed = False
        self._code: int | None = None
        self._exited = asyncio.Event()
        self._iterated = False
        self._queue: collections.deque[tuple[bytes, bytes]] = collections.deque()
        self._queued = 0
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        loop = asyncio.get_running_loop()
        self._reader = loop.create_task(self._read())
        self._timer = (
            loop.call_later(wall_timeout_s, self._on_timeout)
            if wall_timeout_s is not None
            else None
        )

    @property
    def pid(self) -> int | None:
        return None  # the command's pid lives in the sandbox's own pid namespace

    async def _read(self) -> None:
        try:
            while True:
                if self._queued > HIGH_WATER_BYTES and not (self._killed or self._timed_out):
                    self._room.clear()
                    await self._room.wait()
                kind, payload = await self._conn.read_frame()
                if kind in (b"O", b"E"):
                    self._sup.touch()
                    self._queue.append((kind, payload))
                    self._queued += len(payload)
                elif kind == b"J":
                    message = json.loads(payload)
                    if message.get("event") == "exit":
                        self._code = message.get("code")
                        break
                else:  # sbxd went away (the sandbox was stopped or crashed)
                    self._code = -signal.SIGKILL
                    self._killed = self._killed or not self._timed_out
                    break
                self._wake.set()
        finally:
            # Nothing follows the exit frame: close now (sbxd half-closed and waits for this),
            # whether or not anyone iterates the events (they are queued already).
            self._conn.close()
            self._exited.set()
            self._wake.set()

    def _send(self, request: Mapping[str, Any]) -> None:
        self._room.set()  # a kill must be able to read through to the exit frame
        self._conn.send(b"J", json.dumps(request).encode())

    def _on_timeout(self) -> None:
        if not self._exited.is_set():
            self._timed_out = True
            self._send({"op": "terminate", "grace_s": TIMEOUT_GRACE_S})

    async def terminate(self, *, grace_s: float = 5.0) -> None:
        """SIGTERM the command's tree, SIGKILL it after ``grace_s``; wait until it exited."""
        if self._exited.is_set():
            return
        if not self._killed:
            self._killed = True
            self._send({"op": "terminate", "grace_s": grace_s})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._exited.wait(), grace_s + STOP_WAIT_S)

    def __aiter__(self) -> AsyncIterator[ExecEvent]:
        if self._iterated:
            raise RuntimeError("an Execution can be iterated only once")
        self._iterated = True
        return self._events()

    async def _events(self) -> AsyncIterator[ExecEvent]:
        try:
            while True:
                while self._queue:
                    kind, payload = self._queue.popleft()
                    self._queued -= len(payload)
                    if self._queued <= HIGH_WATER_BYTES // 4:
                        self._room.set()
                    stream: Literal["stdout", "stderr"] = "stdout" if kind == b"O" else "stderr"
                    for start in range(0, len(payload), CHUNK_BYTES):
                        yield ExecEvent(stream=stream, data=payload[start : start + CHUNK_BYTES])
                if self._exited.is_set() and not self._queue:
                    break
                self._wake.clear()
                if not self._queue and not self._exited.is_set():
                    await self._wake.wait()
            await self._reader  # re-raises a reader failure
            code = self._code
            yield ExecEvent(
                stream="exit",
                exit_code=code,
                timed_out=self._timed_out,
                killed=self._killed and not self._timed_out,
                limit=None if self._killed or self._timed_out else self._limit(code),
            )
        finally:
            if self._timer is not None:
                self._timer.cancel()
            if not self._reader.done():
                self._reader.cancel()
            self._conn.close()

    def _limit(self, code: int | None) -> Literal["memory", "cpu", "file_size"] | None:
        cgroup = self._sup.cgroup
        if (
            code == -signal.SIGKILL
            and cgroup is not None
            and self._oom_before is not None
            and cgroup.oom_kills() > self._oom_before
        ):
            return "memory"
        # -N: the command itself died of signal N; 128+N: a shell reported a child that did.
        if code in (-signal.SIGXCPU, 128 + signal.SIGXCPU):
            return "cpu"
        if code in (-signal.SIGXFSZ, 128 + signal.SIGXFSZ):
            return "file_size"
        return None


class SupervisedProcesses:
    """Background-process methods of a backend whose sandboxes run sbxd (``local``,
    ``docker``): the backend provides ``_find(sandbox_id) -> Supervisor | None`` (blocking)."""

    def _find(self, sandbox_id: str) -> Supervisor | None:
        raise NotImplementedError

    async def _running(self, sandbox_id: str) -> Supervisor:
        sup = await asyncio.to_thread(self._find, sandbox_id)
        if sup is None:
            raise SandboxProcessNotFound("The sandbox is not running.")
        return sup

    async def _started(self, sandbox_id: str, process_id: str, argv: list[str]) -> ProcessInfo:
        """The :class:`ProcessInfo` of a process just started (it may already have exited)."""
        for process in await self.processes(sandbox_id):
            if process.process_id == process_id:
                return process
        return ProcessInfo(process_id, tuple(argv), time.time(), running=False)

    async def processes(self, sandbox_id: str) -> list[ProcessInfo]:
        sup = await asyncio.to_thread(self._find, sandbox_id)
        return [] if sup is None else [process_info(p) for p in await sup.processes()]

    async def attach(self, sandbox_id: str, process_id: str) -> Execution:
        return await (await self._running(sandbox_id)).attach(process_id)

    async def write_stdin(
        self, sandbox_id: str, process_id: str, data: bytes, *, eof: bool = False
    ) -> None:
        await (await self._running(sandbox_id)).write_stdin(process_id, data, eof=eof)

    async def kill_process(self, sandbox_id: str, process_id: str, *, signal: int = 9) -> None:
        await (await self._running(sandbox_id)).call(
            {"op": "kill", "id": process_id, "sig": signal}
        )


def process_info(p: Mapping[str, Any]) -> ProcessInfo:
    """A :class:`ProcessInfo` from sbxd's ``list`` entry."""
    return ProcessInfo(
        process_id=str(p["id"]), argv=tuple(p["argv"]), started_at=float(p["started_at"]),
        running=bool(p["running"]), exit_code=p.get("exit_code"),
        output_bytes=int(p.get("output_bytes", 0)),
    )  # fmt: skip


def support_file(source: Path, folder: Path) -> Path:
    """``source`` (sbxd.py, the Landlock launcher) copied into ``folder`` (0755; the file
    0644: the sandbox uid must read it, and the checkout may live under /root), named by
    content hash so a new version never replaces the file a running sandbox uses."""
    data = source.read_bytes()
    target = folder / f"{source.stem}-{hashlib.sha256(data).hexdigest()[:12]}.py"
    if not target.exists():
        folder.mkdir(mode=0o755, parents=True, exist_ok=True)
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        tmp.chmod(0o644)
        tmp.replace(target)  # atomic: a concurrent starter never sees half a file
    return target


def write_state(path: Path, sup: Supervisor) -> None:
    """Record a sandbox for other server processes (atomic replace)."""
    state = {
        "sandbox_id": sup.sandbox_id, "socket": os.fspath(sup.socket_path), "tier": sup.tier,
        "workspace_in": sup.workspace_in, "started_at": sup.started_at, "labels": dict(sup.labels),
        "owner_pid": os.getpid(), "fingerprint": sup.fingerprint,
        "idle_timeout_s": sup.idle_timeout_s,
        "cgroup": {k: os.fspath(v) for k, v in sup.cgroup.dirs.items()} if sup.cgroup else None,
    }  # fmt: skip
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    tmp.replace(path)


def read_state(path: Path) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return state
