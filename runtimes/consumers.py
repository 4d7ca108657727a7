"""``/ws/runtimes/``: external runtimes attach to a session and run its ``remote`` tasks.

The consumer is a relay with checks: it authenticates the runtime, records the attachment
(``runtimes.services``), forwards each valid task frame to the runner of that task over the
channel layer, and delivers what runners send (``task.assign``, ``task.cancel``) as frames.
It never changes a task: the runner (``sessions.runners.remote``) and the executor own the
task's status. Frames and close codes: docs/remote-runtimes.md and ``runtimes.protocol``.

A connection only speaks for the tasks assigned to it (``assigned``): those a runner sent it,
and those it named in ``resume`` that are still running on its session. Anything else gets an
error frame (``task_not_assigned``), never a close, so a runtime that comes back after its task
ended server-side just learns that its stale frames were refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from accounts import access
from accounts.audit import audit_record
from accounts.models import Scope
from observability.metrics import websocket_closed, websocket_opened
from runtime_project.db import db_call
from runtime_project.exceptions import (
    ApplicationError,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    error_body,
)
from runtimes import protocol
from runtimes.models import Runtime, RuntimeStatus
from runtimes.selectors import runtime_displaced_by, runtime_resumable_tasks
from runtimes.services import runtime_attach, runtime_detach, runtime_touch
from sessions.consumers import _connect_refused_for
from sessions.models import Session
from sessions.selectors import session_get

logger = logging.getLogger(__name__)


def _writable_session(user: Any, session_id: str) -> Session:
    """The session a runtime may attach to: one of ``user``'s teams, where the user is a member.

    Raises:
        NotFound: unknown or not the user's. Forbidden: a viewer.
    """
    access.forget_roles(user)  # roles may have changed since the handshake
    return session_get(user=user, session_id=session_id, for_write=True)


class RuntimeConsumer(AsyncWebsocketConsumer):
    runtime: Runtime | None = None
    session: Session | None = None
    admitted = False  # the handshake checks passed (frames racing a refusal are ignored)
    displaced = False
    heartbeat: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        offered = self.scope.get("subprotocols") or []
        chosen = (
            protocol.PROTOCOL if protocol.PROTOCOL in offered else (offered[0] if offered else None)
        )
        await self.accept(subprotocol=chosen)
        websocket_opened(self)  # agent_runtime_websocket_connections
        self.assigned: set[str] = set()
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self._fail(
                protocol.CLOSE_UNAUTHENTICATED,
                "not_authenticated",
                "Send a token (Authorization header or token.<key> subprotocol).",
            )
            return
        wait = await db_call(_connect_refused_for)(user)
        if wait:
            await self._send_error(
                "throttled", "Too many connections; retry later.", {"retry_after_s": wait}
            )
            await self.close(code=protocol.CLOSE_THROTTLED)
            return
        if not access.has_scope(user, Scope.TASKS_WRITE):
            await self._fail(
                protocol.CLOSE_FORBIDDEN,
                "insufficient_scope",
                f"This credential lacks the '{Scope.TASKS_WRITE}' scope.",
            )
            return
        self.admitted = True

    # Frames from the runtime -------------------------------------------------------------------
    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if not self.admitted:
            return  # refused at the handshake; the close is on its way
        try:
            frame = json.loads(text_data or (bytes_data or b"").decode())
            if not isinstance(frame, dict):
                raise ValueError("not an object")  # noqa: TRY004 - handled right below
        except ValueError:
            await self._fail(protocol.CLOSE_BAD_FRAME, "bad_frame", "Frames must be JSON objects.")
            return
        request_id = frame.get("request_id")
        try:
            await self._handle(frame)
        except ApplicationError as exc:
            await self.send_json({"type": "error", "request_id": request_id, **exc.as_dict()})
            if frame.get("type") == "runtime.register" and isinstance(exc, NotFound | Forbidden):
                # Not a session this credential may run: nothing more to say on this socket.
                self.admitted = False
                close = (
                    protocol.CLOSE_NOT_FOUND
                    if isinstance(exc, NotFound)
                    else protocol.CLOSE_FORBIDDEN
                )
                await self.close(code=close)

    async def _handle(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "ping":
            await self.send_json({"type": "pong", "request_id": frame.get("request_id")})
        elif kind == "runtime.register":
            await self._register(frame)
        elif kind not in ("task.event", "task.events", "task.complete", "task.fail"):
            raise InvalidInput(f"Unknown frame type {kind!r}.", code="bad_frame")
        elif self.runtime is None or self.displaced:
            raise InvalidInput("Send runtime.register first.", code="not_registered")
        else:
            await self._task_frame(kind, frame)

    async def _register(self, frame: dict[str, Any]) -> None:
        if self.runtime is not None:
            raise Conflict("This connection is registered already.", code="already_registered")
        registration = protocol.parse_register(frame)
        user = self.scope["user"]
        session = await db_call(_writable_session)(user, registration.session_id)
        # Join before reading which tasks may be resumed: a revoke sent meanwhile still lands.
        await self.channel_layer.group_add(protocol.runtimes_group(session.uuid), self.channel_name)
        resumable = await db_call(runtime_resumable_tasks)(
            session_id=session.pk, task_ids=registration.resume
        )
        runtime, old = await db_call(runtime_attach)(
            user=user, session=session, registration=registration, channel_name=self.channel_name
        )
        self.runtime, self.session = runtime, session
        runtime.session = session
        self.assigned = set(resumable)
        # Runners hear of the new runtime before the old one is told to go, so a runner never
        # mistakes the displaced connection's close for a lost runtime.
        await self.channel_layer.group_send(
            protocol.runners_group(session.uuid),
            {
                "type": "remote.attached",
                "channel": self.channel_name,
                "runtime_id": runtime.runtime_id,
                "kinds": runtime.kinds,
                "capabilities": runtime.capabilities,
                "resume": resumable,
            },
        )
        if old is not None:
            await self.channel_layer.send(
                old.channel_name, {"type": "runtime.displace", "by": runtime.runtime_id}
            )
        await db_call(audit_record)(
            actor=user,
            action="runtime.attach",
            target=runtime,
            details={"runtime_id": runtime.runtime_id, "session_id": str(session.uuid),
                     "displaced": old.runtime_id if old else None},
        )  # fmt: skip
        await self.send_json(
            {
                "type": "runtime.registered",
                "request_id": frame.get("request_id"),
                "runtime_id": runtime.runtime_id,
                "session_id": str(session.uuid),
                "displaced": old.runtime_id if old is not None else None,
                "heartbeat_s": settings.RUNTIME_HEARTBEAT_S,
                "resumed": resumable,
            }
        )
        self.heartbeat = asyncio.ensure_future(self._heartbeat())

    async def _task_frame(self, kind: str, frame: dict[str, Any]) -> None:
        task_id = protocol.parse_task_id(frame)
        message: dict[str, Any] = {"channel": self.channel_name, "task_id": task_id}
        if kind in ("task.event", "task.events"):
            message |= {"type": "remote.events", "events": protocol.parse_events(frame)}
        elif kind == "task.complete":
            result, usage = protocol.parse_complete(frame)
            message |= {"type": "remote.complete", "result": result, "usage": usage}
        else:
            message |= {"type": "remote.fail", "error": protocol.parse_fail(frame)}
        if task_id not in self.assigned:
            raise Conflict(
                "That task is not assigned to this runtime (it may have finished).",
                code="task_not_assigned",
                details={"task_id": task_id},
            )
        await self.channel_layer.group_send(protocol.task_group(task_id), message)
        if kind in ("task.complete", "task.fail"):
            self.assigned.discard(task_id)

    # Messages from runners and other consumers (channel layer) -----------------------------------
    async def runtime_assign(self, message: dict[str, Any]) -> None:
        if self.runtime is None or self.displaced:
            return  # the runner hears of the runtime that replaced this one and re-assigns
        task_id = str(message["task"]["id"])
        self.assigned.add(task_id)
        await self.send_json(
            {"type": "task.assign", "task": message["task"], "resumed": bool(message["resumed"])}
        )

    async def runtime_cancel(self, message: dict[str, Any]) -> None:
        if message.get("task_id") in self.assigned and not self.displaced:
            await self.send_json({"type": "task.cancel", "task_id": message["task_id"]})

    async def runtime_revoke(self, message: dict[str, Any]) -> None:
        """The task ended server-side (cancelled, timed out, lost): its frames are stale now."""
        self.assigned.discard(message.get("task_id", ""))

    async def runtime_displace(self, message: dict[str, Any]) -> None:
        if self.displaced:
            return
        self.displaced = True
        self.assigned.clear()
        with contextlib.suppress(Exception):
            await self.send_json({"type": "runtime.displaced", "by": message.get("by")})
            await self.close(code=protocol.CLOSE_DISPLACED)

    # Lifecycle ---------------------------------------------------------------------------------
    async def _heartbeat(self) -> None:
        """Keep ``last_seen_at`` fresh (runners treat a row not seen for three heartbeats as a
        dead server's), and close if the row says a newer runtime took over (a lost
        ``runtime.displace``)."""
        assert self.runtime is not None
        while True:
            await asyncio.sleep(settings.RUNTIME_HEARTBEAT_S)
            try:
                status = await db_call(runtime_touch)(runtime=self.runtime)
            except Exception:
                logger.warning("runtime heartbeat failed", exc_info=True)
                continue
            if status != RuntimeStatus.CONNECTED:
                by = await db_call(runtime_displaced_by)(runtime_pk=self.runtime.pk)
                await self.runtime_displace({"by": by})
                return

    async def disconnect(self, code: int) -> None:
        websocket_closed(self)
        if self.heartbeat is not None:
            self.heartbeat.cancel()
        if self.runtime is None or self.session is None:
            return
        with contextlib.suppress(Exception):
            await self.channel_layer.group_discard(
                protocol.runtimes_group(self.session.uuid), self.channel_name
            )
        try:
            detached = await db_call(runtime_detach)(runtime=self.runtime)
        except Exception:
            # The row stays "connected" until it goes stale (three heartbeats): runners then
            # count the runtime as gone, so the task still ends.
            logger.exception("could not record that runtime %s detached", self.runtime.runtime_id)
            return
        if detached:
            await self.channel_layer.group_send(
                protocol.runners_group(self.session.uuid),
                {
                    "type": "remote.detached",
                    "channel": self.channel_name,
                    "runtime_id": self.runtime.runtime_id,
                },
            )

    # Helpers -----------------------------------------------------------------------------------
    async def send_json(self, content: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(content, default=str))

    async def _send_error(
        self, code: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        body = error_body(code, message, details)
        await self.send_json({"type": "error", "request_id": None, **body})

    async def _fail(self, close_code: int, error_code: str, message: str) -> None:
        await self._send_error(error_code, message)
        await self.close(code=close_code)
