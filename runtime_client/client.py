"""Connect to a server as a remote runtime (``/ws/runtimes/``, docs/remote-runtimes.md) and run
the tasks it assigns with a local executor.

:class:`RuntimeClient` registers on one session, runs each ``task.assign`` with
``await executor(task, emit, cancel)`` and streams what the executor emits as ``task.events``
frames (batched every ``flush_interval_s``), then sends ``task.complete`` or ``task.fail``.

Surviving a dropped connection: tasks keep running while the client reconnects (exponential
backoff with jitter); their events and final frame wait in an outbox and go out, in order, once
the client has registered again with ``resume`` naming every task not known to be finished on
the server. A final frame counts as delivered only when the server has answered a ``ping`` sent
after it (the server handles a connection's frames in order), so one written into a socket that
then died is sent again (the server refuses a duplicate with an error frame, which is harmless).
Tasks the server no longer lets it resume (finished, cancelled, or given to another runtime) are
cancelled locally and their output dropped.

``runtime.displaced`` (a newer runtime took the session over) stops the client for good: it
cancels its tasks and :meth:`RuntimeClient.run` returns ``"displaced"``.

Nothing here imports Django: this runs on users' machines.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import random
import re
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

logger = logging.getLogger("runtime_client")

PROTOCOL = "agent-runtime.runtime.v1"
FATAL_CLOSE_CODES = {4400: "bad_frame", 4401: "not_authenticated", 4403: "forbidden",
                     4404: "not_found"}  # fmt: skip
DISPLACED_CLOSE_CODE = 4409

Emit = Callable[[str, dict[str, Any]], None]
Executor = Callable[[dict[str, Any], Emit, asyncio.Event], Awaitable[dict[str, Any]]]


class RuntimeClientError(Exception):
    """The server refused this runtime for good (bad credential, scope, unknown session…):
    reconnecting would not help. ``code`` is the server's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class _Displaced(Exception):  # a signal, not an error
    pass


class _Throttled(Exception):  # a signal, not an error
    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"throttled; retry after {retry_after_s:g} s")
        self.retry_after_s = retry_after_s


@dataclass
class _Task:
    id: str
    task: dict[str, Any]
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    job: asyncio.Task[None] | None = None
    pending: list[dict[str, Any]] = field(default_factory=list)  # emitted, not yet framed
    final: dict[str, Any] | None = None  # task.complete / task.fail once the executor returned
    final_sent: bool = False  # written to a socket (delivered once a later pong arrives)
    abandoned: bool = False  # the server no longer takes frames for it


def default_runtime_id() -> str:
    """``<hostname>-<pid>`` made of the characters a runtime id may use."""
    return re.sub(r"[^A-Za-z0-9._:-]", "-", f"{socket.gethostname()}-{os.getpid()}")[:100]


def runtime_url(url: str) -> str:
    """``url`` with the ``/ws/runtimes/`` path when it names only a server (``ws://host:port``;
    ``http(s)://`` becomes ``ws(s)://``)."""
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    path = parts.path if parts.path not in ("", "/") else "/ws/runtimes/"
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))


def final_frame(task_id: str, outcome: Any) -> dict[str, Any]:
    """The ``task.complete``/``task.fail`` frame for an executor's outcome dict
    (``{"status", "result", "error", "usage"}``)."""
    outcome = outcome if isinstance(outcome, dict) else {"result": outcome}
    if outcome.get("status", "succeeded") == "succeeded":
        result = outcome.get("result")
        if result is not None and not isinstance(result, dict):
            result = {"value": result}
        return {"type": "task.complete", "task_id": task_id, "result": result,
                "usage": outcome.get("usage") or {}}  # fmt: skip
    error = outcome.get("error") or {}
    return {
        "type": "task.fail",
        "task_id": task_id,
        "error": {
            "code": str(error.get("code") or "failed")[:64],
            "message": str(error.get("message") or "The task failed."),
            "details": error.get("details") if isinstance(error.get("details"), dict) else {},
        },
    }


class RuntimeClient:
    """A remote runtime attached to one session.

    Args:
        url: the server (``ws://host:port``) or the full ``/ws/runtimes/`` URL.
        token: an API key (or OAuth2 access token) with the ``tasks:write`` scope.
        session_id: the session to attach to (you must be a member of its team).
        runtime_id: this runtime's name (default ``<hostname>-<pid>``).
        executor: ``await executor(task, emit, cancel) -> {"status", "result", "error",
            "usage"}``; ``emit(type, data)`` must be called on the client's event loop.
        kinds, capabilities: what the runtime declares (tasks are only given to a runtime
            whose kinds include the agent's ``runtime_kind``).
        reconnect: reconnect after a dropped connection (else :meth:`run` returns).
    """

    def __init__(
        self,
        url: str,
        token: str | None,
        session_id: str,
        runtime_id: str | None = None,
        executor: Executor | None = None,
        kinds: list[str] | tuple[str, ...] = ("python",),
        capabilities: dict[str, Any] | None = None,
        reconnect: bool = True,
        *,
        flush_interval_s: float = 0.02,
        backoff_initial_s: float = 0.25,
        backoff_max_s: float = 30.0,
        stop_grace_s: float = 5.0,
    ) -> None:
        if executor is None:
            raise ValueError("an executor is required")
        self.url = runtime_url(url)
        self.token = token
        self.session_id = str(session_id)
        self.runtime_id = runtime_id or default_runtime_id()
        self.executor = executor
        self.kinds = list(kinds)
        self.capabilities = dict(capabilities or {"can_execute_code": True})
        self.reconnect = reconnect
        self.flush_interval_s = flush_interval_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.stop_grace_s = stop_grace_s
        self.heartbeat_s = 15.0
        self.registrations = 0  # how many times the server accepted runtime.register
        self.displaced_by: str | None = None  # the runtime that took the session from us
        self.took_over_from: str | None = None  # the runtime we displaced when registering
        self.close_code: int | None = None  # of the last connection
        self.registered = asyncio.Event()  # set while registered on a live connection
        self._tasks: dict[str, _Task] = {}
        self._outbox: deque[tuple[str, dict[str, Any]]] = deque()  # (task id, frame)
        self._acks: dict[str, list[str]] = {}  # ping request_id → tasks whose final preceded it
        self._ids = itertools.count(1)
        self._socket: ClientConnection | None = None  # the open connection
        self._ws: ClientConnection | None = None  # the same, once registered: frames may go
        self._send_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()

    # Public API --------------------------------------------------------------------------------
    async def run(self) -> str:
        """Serve until stopped. Returns ``"displaced"`` (a newer runtime took the session),
        ``"stopped"`` (:meth:`stop`) or ``"disconnected"`` (the connection dropped and
        ``reconnect`` is off).

        Raises:
            RuntimeClientError: the server refused this runtime (never retried).
        """
        flusher = asyncio.ensure_future(self._flush_forever())
        attempt, reason = 0, "stopped"
        try:
            while not self._stopping.is_set():
                before, wait_at_least = self.registrations, 0.0
                try:
                    await self._connection()
                except _Displaced:
                    reason = "displaced"
                    break
                except _Throttled as exc:
                    logger.warning("runtime connection refused: %s", exc)
                    wait_at_least = exc.retry_after_s
                except (OSError, InvalidHandshake, ConnectionClosed, TimeoutError) as exc:
                    logger.warning("runtime connection failed: %s", exc)
                if self._stopping.is_set():
                    break
                if not self.reconnect:
                    reason = "disconnected"
                    break
                attempt = 0 if self.registrations > before else attempt + 1
                delay = min(self.backoff_max_s, self.backoff_initial_s * 2**attempt)
                delay = max(delay * random.uniform(0.5, 1), wait_at_least)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
        finally:
            flusher.cancel()
            await self._cancel_tasks()
        return reason

    async def stop(self) -> None:
        """Close the connection and stop (running tasks are cancelled)."""
        self._stopping.set()
        if self._socket is not None:
            await self._socket.close()

    async def drop_connection(self) -> None:
        """Abort the current connection as a network failure would (the client reconnects and
        resumes its tasks); for tests and for forcing a reconnect."""
        if self._socket is not None:
            self._socket.transport.abort()

    @property
    def running(self) -> list[str]:
        """Ids of the tasks whose executor has not returned."""
        return [t.id for t in self._tasks.values() if t.final is None and not t.abandoned]

    # One connection ----------------------------------------------------------------------------
    async def _connection(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        async with connect(
            self.url,
            additional_headers=headers,
            subprotocols=[PROTOCOL],  # type: ignore[list-item]
            open_timeout=15,
            max_size=2**24,
        ) as ws:
            self._socket = ws
            try:
                await self._register(ws)
                pinger = asyncio.ensure_future(self._ping_forever(ws))
                try:
                    async for raw in ws:
                        await self._on_frame(json.loads(raw))
                finally:
                    pinger.cancel()
            except ConnectionClosed:
                pass
            finally:
                self._ws = self._socket = None
                self.registered.clear()
                self.close_code = ws.close_code
        code = self.close_code
        if code == DISPLACED_CLOSE_CODE or self.displaced_by is not None:
            raise _Displaced
        if code in FATAL_CLOSE_CODES:
            raise RuntimeClientError(FATAL_CLOSE_CODES[code], f"the server closed with {code}")

    async def _register(self, ws: ClientConnection) -> None:
        resume = [t.id for t in self._tasks.values() if not t.abandoned]
        frame = {
            "type": "runtime.register",
            "request_id": "register",
            "runtime_id": self.runtime_id,
            "session_id": self.session_id,
            "kinds": self.kinds,
            "capabilities": self.capabilities,
            "resume": resume,
        }
        await ws.send(json.dumps(frame))
        while True:
            reply = json.loads(await asyncio.wait_for(ws.recv(), timeout=30))
            if reply.get("type") in ("runtime.registered", "error"):
                break
        if reply["type"] == "error":
            error = reply.get("error") or {}
            if error.get("code") == "throttled":
                raise _Throttled(float((error.get("details") or {}).get("retry_after_s") or 1))
            raise RuntimeClientError(str(error.get("code")), str(error.get("message")))
        self.heartbeat_s = float(reply.get("heartbeat_s") or self.heartbeat_s)
        accepted = set(reply.get("resumed", resume))
        for task_id in resume:
            t = self._tasks[task_id]
            if task_id not in accepted:
                logger.warning("task %s: the server no longer takes it; dropping it", task_id)
                self._abandon(t)
            elif t.final is not None and t.final_sent:
                # Written before the drop but never acknowledged: send it again.
                self._outbox.append((task_id, t.final))
        self._ws = ws
        self.registrations += 1
        self.registered.set()
        self.took_over_from = reply.get("displaced")
        if self.took_over_from:
            logger.info("runtime %s displaced %s", self.runtime_id, self.took_over_from)
        self._wake.set()

    async def _on_frame(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "task.assign":
            task = frame.get("task") or {}
            known = self._tasks.get(str(task.get("id")))
            if known is not None and not known.abandoned:
                return  # already running it (a repeated assignment)
            new = _Task(id=str(task["id"]), task=task)
            self._tasks[new.id] = new
            new.job = asyncio.ensure_future(self._execute(new))
        elif kind == "task.cancel":
            cancelled = self._tasks.get(str(frame.get("task_id")))
            if cancelled is not None:
                cancelled.cancel.set()
        elif kind == "runtime.displaced":
            self.displaced_by = str(frame.get("by"))
            logger.warning("displaced by runtime %s; stopping", self.displaced_by)
        elif kind == "pong":
            for task_id in self._acks.pop(str(frame.get("request_id")), []):
                done = self._tasks.get(task_id)
                if done is not None and done.final is not None and done.final_sent:
                    del self._tasks[task_id]  # delivered: nothing more to resume
        elif kind == "error":
            self._on_error(frame)

    def _on_error(self, frame: dict[str, Any]) -> None:
        error = frame.get("error") or {}
        task_id = (error.get("details") or {}).get("task_id")
        t = self._tasks.get(str(task_id)) if task_id else None
        if error.get("code") == "task_not_assigned" and t is not None:
            # Finished, cancelled or handed to another runtime server-side: stop and forget it.
            self._abandon(t)
            self._tasks.pop(t.id, None)
        else:
            logger.warning("server error: %s: %s", error.get("code"), error.get("message"))

    def _abandon(self, t: _Task) -> None:
        t.abandoned = True
        t.pending.clear()
        t.cancel.set()
        self._outbox = deque(item for item in self._outbox if item[0] != t.id)

    # Tasks -------------------------------------------------------------------------------------
    async def _execute(self, t: _Task) -> None:
        def emit(event_type: str, data: dict[str, Any]) -> None:
            if not t.abandoned:
                t.pending.append({"type": event_type, "data": data})
                self._wake.set()

        try:
            outcome = await self.executor(t.task, emit, t.cancel)
        except asyncio.CancelledError:
            outcome = {"status": "failed", "error": {"code": "cancelled",
                       "message": "The runtime stopped.", "details": {}}}  # fmt: skip
        except Exception as exc:
            logger.exception("task %s: the executor failed", t.id)
            outcome = {"status": "failed", "error": {"code": "executor_error",
                       "message": str(exc)[:500] or type(exc).__name__,
                       "details": {"type": type(exc).__name__}}}  # fmt: skip
        if t.abandoned:
            return
        self._frame_events(t)
        t.final = final_frame(t.id, outcome)
        self._outbox.append((t.id, t.final))
        self._wake.set()

    def _frame_events(self, t: _Task) -> None:
        if t.pending:
            events, t.pending = t.pending, []
            self._outbox.append((t.id, {"type": "task.events", "task_id": t.id, "events": events}))

    async def _cancel_tasks(self) -> None:
        jobs = [t.job for t in self._tasks.values() if t.job is not None and not t.job.done()]
        for t in self._tasks.values():
            t.cancel.set()
        if jobs:
            _, late = await asyncio.wait(jobs, timeout=self.stop_grace_s)
            for job in late:
                job.cancel()

    # Sending -----------------------------------------------------------------------------------
    async def _flush_forever(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(self.flush_interval_s)  # collect a batch
            self._wake.clear()
            for t in list(self._tasks.values()):
                self._frame_events(t)
            ws = self._ws
            if ws is not None:
                with contextlib.suppress(ConnectionClosed):
                    await self._drain(ws)

    async def _drain(self, ws: ClientConnection) -> None:
        """Send the outbox in order; a frame leaves it only once written."""
        finals: list[str] = []
        async with self._send_lock:
            while self._outbox and self._ws is ws:
                task_id, frame = self._outbox[0]
                await ws.send(json.dumps(frame))
                self._outbox.popleft()
                if frame["type"] in ("task.complete", "task.fail"):
                    finals.append(task_id)
                    if task_id in self._tasks:
                        self._tasks[task_id].final_sent = True
            if finals:
                token = f"ack-{next(self._ids)}"
                self._acks[token] = finals
                await ws.send(json.dumps({"type": "ping", "request_id": token}))

    async def _ping_forever(self, ws: ClientConnection) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            async with self._send_lock:
                with contextlib.suppress(ConnectionClosed):
                    await ws.send(json.dumps({"type": "ping"}))
