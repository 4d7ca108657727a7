"""WebSocket streams: ``/ws/sessions/{id}/?after=N`` and ``/ws/tasks/{id}/?after=N``.

Frames are JSON. Server → client: event envelopes (DESIGN §3: ``seq``, ``session_id``,
``task_id``, ``type``, ``ts``, ``data``) and control frames without ``seq``:
``{"type": "stream.heartbeat", "last_seq"}``, ``{"type": "stream.end", "last_seq"}`` (task
streams), ``{"type": "task.created", "request_id", "task"}``, ``{"type": "task.cancelling", …}``,
``{"type": "pong"}`` and ``{"type": "error", "request_id", "error": {"code", "message",
"details"}}``. Client → server (session streams): ``task.create`` (same fields as the REST
body, plus ``request_id``), ``task.cancel`` (``task_id``), ``ping``; write frames need the
``tasks:write`` scope and the member role. Task streams take ``task.cancel`` and the
debugger's ``debug.*`` frames (``debugger/frames.py``).

Close codes: 4401 not authenticated, 4429 too many handshakes for the credential
(``THROTTLE_WS_CONNECT``; the error frame has ``retry_after_s``), 4403 the credential lacks
``sessions:read``, 4404 unknown or not yours, 4400 a frame that is not JSON, 1000 after a
task stream ended, 1012 when the server shuts down (after a ``{"type": "stream.reconnect",
"reason", "last_seq"}`` frame: reconnect with ``after``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import weakref
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from accounts import access
from accounts.audit import audit_record
from accounts.models import Role, Scope
from observability.metrics import websocket_closed, websocket_opened
from runtime_project.exceptions import ApplicationError, InvalidInput, error_body
from runtime_project.throttling import WebSocketConnectThrottle, retry_after_s
from sessions.choices import MultitaskStrategy, TaskType
from sessions.models import Session, Task
from sessions.selectors import session_get, task_get
from sessions.services.tasks import task_cancel, task_create
from sessions.subscriptions import EventSubscription

logger = logging.getLogger(__name__)

PROTOCOL = "agent-runtime.v1"
LIVE: weakref.WeakSet[_StreamConsumer] = weakref.WeakSet()  # open streams, drained on SIGTERM


def task_summary(task: Task) -> dict[str, Any]:
    return {
        "id": str(task.uuid),
        "status": task.status,
        "current_phase": task.current_phase,
        "task_type": task.task_type,
    }


def _connect_refused_for(user: Any) -> int:
    """Seconds to wait when ``user``'s credential is over ``THROTTLE_WS_CONNECT`` (else 0)."""
    throttle = WebSocketConnectThrottle()
    if throttle.allow_request(SimpleNamespace(user=user, META={}), None):
        return 0
    return retry_after_s(throttle)


def _may_write(user: Any, session: Session) -> None:
    """A write frame needs ``tasks:write`` and, re-read now (roles may have changed since the
    connection opened), the member role in the session's team.

    Raises:
        Forbidden: the scope or the role is missing. NotFound: no longer a member.
    """
    access.require_scope(user, Scope.TASKS_WRITE)
    access.forget_roles(user)
    access.require_role(user, session.team_id, Role.MEMBER, what="Session")


class _StreamConsumer(AsyncWebsocketConsumer):
    session: Session
    task: Task | None = None
    pump: asyncio.Task[None] | None = None
    last_seq = 0  # of the last event sent: where the client resumes

    async def connect(self) -> None:
        offered = self.scope.get("subprotocols") or []
        chosen = PROTOCOL if PROTOCOL in offered else (offered[0] if offered else None)
        await self.accept(subprotocol=chosen)
        websocket_opened(self)  # agent_runtime_websocket_connections
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self._fail(
                4401,
                "not_authenticated",
                "Send a token (Authorization header or token.<key> subprotocol).",
            )
            return
        wait = await database_sync_to_async(_connect_refused_for)(user)
        if wait:
            await self.send_json(
                error_body("throttled", "Too many connections; retry later.",
                           {"retry_after_s": wait}) | {"type": "error"}
            )  # fmt: skip
            await self.close(code=4429)
            return
        try:
            access.require_scope(user, Scope.SESSIONS_READ)
            await self.resolve(user)
            after = int(
                parse_qs(self.scope.get("query_string", b"").decode()).get("after", ["0"])[0]
            )
            if after < 0:
                raise ValueError
        except ApplicationError as exc:
            close = {404: 4404, 403: 4403}.get(exc.status_code, 4400)
            await self._fail(close, exc.code, exc.message)
            return
        except ValueError:
            await self._fail(4400, "invalid_input", "after must be a non-negative integer.")
            return
        self.last_seq = after
        self.pump = asyncio.ensure_future(self._pump(after))
        LIVE.add(self)

    async def drain(self) -> None:
        """The server is shutting down: tell the client where to resume, then close with 1012
        (Service Restart), so it reconnects (to another web process) with ``after``."""
        if self.pump is not None:
            self.pump.cancel()
        with contextlib.suppress(Exception):
            await self.send_json({"type": "stream.reconnect", "reason": "server_shutdown",
                                  "last_seq": self.last_seq})  # fmt: skip
            await self.close(code=1012)

    async def resolve(self, user: Any) -> None:
        raise NotImplementedError(".resolve() must be overridden")

    async def _fail(self, code: int, error_code: str, message: str) -> None:
        await self.send_json(error_body(error_code, message) | {"type": "error"})
        await self.close(code=code)

    async def send_json(self, content: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(content, default=str))

    async def _pump(self, after: int) -> None:
        try:
            async with EventSubscription(session=self.session, task=self.task, after=after) as sub:
                async for envelope in sub:
                    if envelope is None:
                        await self.send_json({"type": "stream.heartbeat", "last_seq": sub.last_seq})
                    else:
                        await self.send_json(envelope)
                        self.last_seq = envelope["seq"]
                await self.send_json({"type": "stream.end", "last_seq": sub.last_seq})
            await self.close(code=1000)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("websocket stream failed")
            with contextlib.suppress(Exception):
                await self._fail(
                    1011, "internal_error", "The stream failed; reconnect with ?after=<last seq>."
                )

    async def disconnect(self, code: int) -> None:
        websocket_closed(self)
        if self.pump is not None:
            self.pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.pump

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            frame = json.loads(text_data or (bytes_data or b"").decode())
            if not isinstance(frame, dict):
                raise ValueError("not an object")  # noqa: TRY004 - handled right below
        except ValueError:
            await self._fail(4400, "bad_frame", "Frames must be JSON objects.")
            return
        request_id = frame.get("request_id")
        try:
            await self.handle_frame(frame)
        except ApplicationError as exc:
            await self.send_json({"type": "error", "request_id": request_id, **exc.as_dict()})

    async def handle_frame(self, frame: dict[str, Any]) -> None:
        if frame.get("type") == "ping":
            await self.send_json({"type": "pong", "request_id": frame.get("request_id")})
            return
        raise InvalidInput(f"Unknown frame type {frame.get('type')!r}.", code="bad_frame")


class SessionStreamConsumer(_StreamConsumer):
    """Events of one session; accepts ``task.create`` and ``task.cancel`` frames."""

    async def resolve(self, user: Any) -> None:
        sid = self.scope["url_route"]["kwargs"]["session_id"]
        self.session = await database_sync_to_async(session_get)(user=user, session_id=sid)

    async def handle_frame(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        request_id = frame.get("request_id")
        user = self.scope["user"]
        if kind in ("task.create", "task.cancel"):
            await database_sync_to_async(_may_write)(user, self.session)
        if kind == "task.create":
            task_type = frame.get("task_type", TaskType.RUN)
            strategy = frame.get("multitask_strategy", MultitaskStrategy.ENQUEUE)
            payload, config = frame.get("input", {}), frame.get("config", {})
            problems = {}
            if task_type not in TaskType.values:
                problems["task_type"] = [f"one of {TaskType.values}"]
            if strategy not in MultitaskStrategy.values:
                problems["multitask_strategy"] = [f"one of {MultitaskStrategy.values}"]
            if not isinstance(payload, dict):
                problems["input"] = ["must be an object"]
            if not isinstance(config, dict):
                problems["config"] = ["must be an object"]
            if problems:
                raise InvalidInput(
                    "The task.create frame is not valid.", details={"fields": problems}
                )
            task, created = await database_sync_to_async(task_create)(
                session=self.session,
                user=user,
                task_type=task_type,
                input=payload,
                config=config,
                multitask_strategy=strategy,
                idempotency_key=frame.get("idempotency_key") or None,
            )
            if created:
                await database_sync_to_async(audit_record)(
                    actor=user, action="task.create", target=task, details={"via": "websocket"}
                )
            await self.send_json(
                {
                    "type": "task.created",
                    "request_id": request_id,
                    "created": created,
                    "task": task_summary(task),
                }
            )
        elif kind == "task.cancel":
            task = await database_sync_to_async(task_get)(user=user, task_id=frame.get("task_id"))
            if task.session_id != self.session.pk:
                raise InvalidInput("That task belongs to another session.", code="wrong_session")
            task = await database_sync_to_async(task_cancel)(task=task)
            await database_sync_to_async(audit_record)(
                actor=user, action="task.cancel", target=task, details={"via": "websocket"}
            )
            await self.send_json(
                {"type": "task.cancelling", "request_id": request_id, "task": task_summary(task)}
            )
        else:
            await super().handle_frame(frame)


class TaskStreamConsumer(_StreamConsumer):
    """Events of one task; closes with 1000 after the task's terminal status."""

    async def resolve(self, user: Any) -> None:
        tid = self.scope["url_route"]["kwargs"]["task_id"]
        self.task = await database_sync_to_async(task_get)(user=user, task_id=tid)
        self.session = self.task.session

    async def handle_frame(self, frame: dict[str, Any]) -> None:
        if str(frame.get("type")).startswith("debug."):  # debugger commands (debugger/frames.py)
            from debugger.frames import handle_debug_frame

            await handle_debug_frame(self, self.task, frame)
            return
        if frame.get("type") == "task.cancel":
            assert self.task is not None
            await database_sync_to_async(_may_write)(self.scope["user"], self.session)
            task = await database_sync_to_async(task_cancel)(task=self.task)
            await database_sync_to_async(audit_record)(
                actor=self.scope["user"], action="task.cancel", target=task,
                details={"via": "websocket"},
            )  # fmt: skip
            await self.send_json(
                {
                    "type": "task.cancelling",
                    "request_id": frame.get("request_id"),
                    "task": task_summary(task),
                }
            )
            return
        await super().handle_frame(frame)
