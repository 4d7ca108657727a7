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
``sessions:read``, 4404 unknown or not yours, 4400 a bad ``after`` or a frame that is not a
JSON object (``bad_frame``), 4413 a frame over ``STREAM_MAX_FRAME_BYTES`` (``frame_too_large``),
4008 a client too slow to read its stream (``slow_consumer``, below), 1011 the stream failed,
1000 after a task stream ended, 1012 when the server shuts down (after a ``{"type":
"stream.reconnect", "reason", "last_seq"}`` frame: reconnect with ``after``). daphne (autobahn)
only sends 1000 and 3000-4999, so there 1011 and 1012 become 4011 and 4012. Protocol errors
are the server's own: a text frame that is not UTF-8 (1007), a bad opcode or an unmasked frame
(1002), a frame over the server's size limit (1009), or a dropped connection.

Slow readers (DESIGN §3.5, docs/streams.md): every frame goes through an
:class:`~sessions.outbox.Outbox`, so the subscription never waits for the client and a
task never waits for a subscriber. When more than ``STREAM_MAX_BUFFER_BYTES`` wait for the
client, or it makes no progress for ``STREAM_SEND_TIMEOUT_S``, the stream stops, the client gets
``{"type": "error", "error": {"code": "slow_consumer", …}, "last_seq"}`` and close 4008, and
reconnects with ``after=<the last seq it received>``; a client that does not even read that is
dropped ``STREAM_SEND_TIMEOUT_S`` later.
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

from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from accounts import access
from accounts.audit import audit_record
from accounts.models import Role, Scope
from observability.metrics import websocket_closed, websocket_opened
from runtime_project.db import db_call
from runtime_project.exceptions import ApplicationError, InvalidInput, error_body
from runtime_project.throttling import WebSocketConnectThrottle, retry_after_s
from sessions.choices import MultitaskStrategy, TaskType
from sessions.fanout import envelope_json
from sessions.models import Session, Task
from sessions.outbox import TRANSPORT_KEY, Outbox, SlowConsumer, flush_or_drop, transport_of
from sessions.selectors import session_get, task_get
from sessions.services.tasks import task_cancel, task_create
from sessions.subscriptions import EventSubscription, parse_cursor

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
    writer: asyncio.Task[None] | None = None
    outbox: Outbox | None = None
    close_code = 1000  # sent by the writer once the outbox is closed and flushed
    overflowing = False
    last_seq = 0  # of the last event sent: where the client resumes
    answered: asyncio.Event | None = None  # clear while a client frame is being handled

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
        wait = await db_call(_connect_refused_for)(user)
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
            query = parse_qs(self.scope.get("query_string", b"").decode())
            after = parse_cursor(query.get("after", ["0"])[0])
        except ApplicationError as exc:
            close = {404: 4404, 403: 4403}.get(exc.status_code, 4400)
            await self._fail(close, exc.code, exc.message)
            return
        except ValueError:  # also a query string that is not UTF-8
            await self._fail(4400, "invalid_input", "after must be an integer from 0 to 2**63-1.")
            return
        self.last_seq = after
        transport = self.scope.get(TRANSPORT_KEY) or transport_of(self.base_send)
        self.outbox = Outbox(transport=transport)
        self.writer = asyncio.ensure_future(self._write(self.outbox))
        self.pump = asyncio.ensure_future(self._pump(after))
        LIVE.add(self)

    async def drain(self) -> None:
        """The server is shutting down: tell the client where to resume, then close with 1012
        (Service Restart), so it reconnects (to another web process) with ``after``."""
        if self.pump is not None:
            self.pump.cancel()
        outbox, writer = self.outbox, self.writer
        if outbox is not None and writer is not None and not outbox.failed:
            # Frames already queued go first: the client's last seq is the last one queued.
            with contextlib.suppress(SlowConsumer):
                outbox.put(self._reconnect_frame(outbox))
                self.close_code = 1012
                outbox.close()
                await asyncio.wait({writer}, timeout=2.0)
                if writer.done():
                    return
            writer.cancel()
        with contextlib.suppress(Exception):
            await self.send(text_data=self._reconnect_frame(outbox))
            await self.close(code=1012)

    def _reconnect_frame(self, outbox: Outbox | None) -> str:
        queued = [seq for _text, seq, _size in (outbox.frames if outbox else []) if seq]
        last = queued[-1] if queued else self.last_seq
        return json.dumps({"type": "stream.reconnect", "reason": "server_shutdown",
                           "last_seq": last})  # fmt: skip

    async def resolve(self, user: Any) -> None:
        raise NotImplementedError(".resolve() must be overridden")

    async def _fail(self, code: int, error_code: str, message: str) -> None:
        """Send an error frame, then close with ``code`` (after the frames already queued)."""
        text = json.dumps(error_body(error_code, message) | {"type": "error"})
        outbox = self.outbox
        if outbox is None or outbox.failed or self.writer is None or self.writer.done():
            await self.send(text_data=text)
            await self.close(code=code)
            return
        if self.pump is not None:
            self.pump.cancel()
        with contextlib.suppress(SlowConsumer):
            outbox.put(text)
            self.close_code = code
            outbox.close()

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        """Close with ``code``; where the server refuses a 1xxx code other than 1000 (daphne's
        autobahn raises for them), close with 4xxx instead (1011 → 4011, 1012 → 4012)."""
        try:
            await super().close(code=code, reason=reason)
        except Exception:
            if not isinstance(code, int) or isinstance(code, bool) or not 1000 < code < 2000:
                raise
            await super().close(code=code + 3000, reason=reason)

    async def send_json(self, content: dict[str, Any]) -> None:
        """Queue a frame behind the stream's events (or send it, before the stream started)."""
        text = json.dumps(content, default=str)
        if self.outbox is None:
            await self.send(text_data=text)
            return
        try:
            self.outbox.put(text)
        except SlowConsumer as exc:
            await self._overflow(exc)

    async def _pump(self, after: int) -> None:
        """Subscription → outbox. Never waits for the client, except for room before frames it
        reads from the database (those can wait at no cost; see ``Outbox.room``)."""
        outbox = self.outbox
        assert outbox is not None
        try:
            async with EventSubscription(session=self.session, task=self.task, after=after) as sub:
                sub.live_sink = lambda env: outbox.put(envelope_json(env), env["seq"])
                async for envelope in sub:
                    if envelope is None:
                        beat = {"type": "stream.heartbeat", "last_seq": sub.last_seq}
                        outbox.put(json.dumps(beat))
                        continue
                    if sub.from_log:
                        await outbox.room()
                    outbox.put(envelope_json(envelope), envelope["seq"])
                await self._frames_answered()
                outbox.put(json.dumps({"type": "stream.end", "last_seq": sub.last_seq}))
            outbox.close()  # the writer flushes, then closes with 1000
        except SlowConsumer as exc:
            await self._overflow(exc)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("websocket stream failed")
            with contextlib.suppress(Exception):
                await self._fail(
                    1011, "internal_error", "The stream failed; reconnect with ?after=<last seq>."
                )

    async def _frames_answered(self, timeout_s: float = 10.0) -> None:
        """Wait (at most ``timeout_s`` seconds) for the client frames being handled, so a
        request that ended the task (``debug.abort``, ``task.cancel``) gets its answer before
        ``stream.end`` and the close: the task's last events can overtake the handler's own
        database call."""
        if self.answered is not None and not self.answered.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.answered.wait(), timeout_s)

    async def _write(self, outbox: Outbox) -> None:
        """Outbox → client, one frame at a time (under uvicorn ``send`` waits for the client;
        under daphne ``Outbox.get`` waits for Twisted's buffer to drain)."""
        try:
            while (item := await outbox.get()) is not None:
                text, seq = item
                await self.send(text_data=text)
                outbox.delivered(seq)
                if seq is not None:
                    self.last_seq = seq
            await self.close(code=self.close_code)
        except SlowConsumer as exc:
            await self._overflow(exc)

    async def _overflow(self, exc: SlowConsumer) -> None:
        """The client is too slow (``exc``): stop streaming, let the send in flight finish,
        send the ``slow_consumer`` error frame and, once the client has read that far, close
        with 4008. Whenever the client reads nothing for ``STREAM_SEND_TIMEOUT_S`` on the way,
        the connection is dropped instead (``flush_or_drop``).

        Runs once, in the pump or the writer (whichever noticed first). The pump is cancelled
        at once, leaving the channel-layer group; under uvicorn the writer's ``send`` is what
        is stuck, under daphne the frames sit in Twisted's buffer: both drain as the client
        reads."""
        if self.overflowing:
            return
        self.overflowing = True
        outbox = self.outbox
        assert outbox is not None
        grace = settings.STREAM_SEND_TIMEOUT_S
        me = asyncio.current_task()
        if self.pump is not None and self.pump is not me:
            self.pump.cancel()
        writer = self.writer if self.writer is not me else None
        if writer is not None and not await flush_or_drop(
            outbox.transport, grace, lambda _size: not writer.done()
        ):
            writer.cancel()
            return
        frame = {
            "type": "error",
            "error": {
                "code": "slow_consumer",
                "message": "The client did not read fast enough; reconnect with "
                "?after=<the last seq you received>.",
                "details": exc.details(),
            },
            "last_seq": self.last_seq,
        }
        try:
            await asyncio.wait_for(self.send(text_data=json.dumps(frame)), grace)
            # Under daphne the send only queued it: close once the client has read that far
            # (autobahn drops the connection 1 s after its close frame if unanswered).
            if await flush_or_drop(outbox.transport, grace):
                await asyncio.wait_for(self.close(code=4008), grace)
        except Exception:  # gone already, or dropped
            return

    async def disconnect(self, code: int) -> None:
        websocket_closed(self)
        for task in (self.pump, self.writer):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """One client frame: a JSON object, as a text frame or a UTF-8 binary frame.

        Errors: too large → ``frame_too_large`` + close 1009; not a JSON object (or not UTF-8,
        or nested too deep to parse) → ``bad_frame`` + close 4400; a frame the handler refuses
        → an ``error`` frame with its code (the connection stays open); a handler bug → an
        ``internal_error`` frame (logged; the connection stays open)."""
        raw = text_data if text_data is not None else bytes_data or b""
        if len(raw) > settings.STREAM_MAX_FRAME_BYTES:  # characters or bytes: both bound it
            await self._fail(
                4413, "frame_too_large",
                f"Frames are limited to {settings.STREAM_MAX_FRAME_BYTES} bytes.",
            )  # fmt: skip
            return
        try:
            frame = json.loads(raw if isinstance(raw, str) else raw.decode())
            if not isinstance(frame, dict):
                raise ValueError("not an object")  # noqa: TRY004 - handled right below
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            await self._fail(4400, "bad_frame", "Frames must be JSON objects.")
            return
        request_id = frame.get("request_id")
        # Channels hands a consumer its frames one at a time: one handler at most is running.
        if self.answered is None:
            self.answered = asyncio.Event()
        self.answered.clear()
        try:
            await self.handle_frame(frame)
        except ApplicationError as exc:
            await self.send_json({"type": "error", "request_id": request_id, **exc.as_dict()})
        except Exception:
            logger.exception("websocket frame %.50r failed", frame.get("type"))
            await self.send_json(
                {"type": "error", "request_id": request_id}
                | error_body("internal_error", "The frame could not be handled.")
            )
        finally:
            self.answered.set()

    async def handle_frame(self, frame: dict[str, Any]) -> None:
        if frame.get("type") == "ping":
            await self.send_json({"type": "pong", "request_id": frame.get("request_id")})
            return
        raise InvalidInput(f"Unknown frame type {frame.get('type')!r}.", code="bad_frame")


class SessionStreamConsumer(_StreamConsumer):
    """Events of one session; accepts ``task.create`` and ``task.cancel`` frames."""

    async def resolve(self, user: Any) -> None:
        sid = self.scope["url_route"]["kwargs"]["session_id"]
        self.session = await db_call(session_get)(user=user, session_id=sid)

    async def handle_frame(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        request_id = frame.get("request_id")
        user = self.scope["user"]
        if kind in ("task.create", "task.cancel"):
            await db_call(_may_write)(user, self.session)
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
            task, created = await db_call(task_create)(
                session=self.session,
                user=user,
                task_type=task_type,
                input=payload,
                config=config,
                multitask_strategy=strategy,
                idempotency_key=frame.get("idempotency_key") or None,
            )
            if created:
                await db_call(audit_record)(
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
            task = await db_call(task_get)(user=user, task_id=frame.get("task_id"))
            if task.session_id != self.session.pk:
                raise InvalidInput("That task belongs to another session.", code="wrong_session")
            task = await db_call(task_cancel)(task=task)
            await db_call(audit_record)(
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
        self.task = await db_call(task_get)(user=user, task_id=tid)
        self.session = self.task.session

    async def handle_frame(self, frame: dict[str, Any]) -> None:
        if str(frame.get("type")).startswith("debug."):  # debugger commands (debugger/frames.py)
            from debugger.frames import handle_debug_frame

            await handle_debug_frame(self, self.task, frame)
            return
        if frame.get("type") == "task.cancel":
            assert self.task is not None
            await db_call(_may_write)(self.scope["user"], self.session)
            task = await db_call(task_cancel)(task=self.task)
            await db_call(audit_record)(
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
