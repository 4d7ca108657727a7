"""``/ws/monitor/{monitor_id}/?since=…``: the runs mirrored to a monitor, live (issue 10, item 4).

Authentication, throttling, close codes, heartbeats and the shutdown drain are the session
streams' (``sessions.consumers._StreamConsumer``): 4401 not authenticated, 4403 the credential
lacks ``sessions:read``, 4404 the monitor is unknown or not yours (only the owner subscribes),
4400 a bad ``since`` or a frame that is not JSON, 4429 too many handshakes.

Server → client frames:

- ``{"type": "monitor.task", "task": {id, session_id, status, current_phase, task_type,
  agent, integration, debug, created_at}}`` — once per task, before its first event;
- the task's event envelopes (``{"seq", "session_id", "task_id", "type", "ts", "data"}``), in
  ``seq`` order per session, without duplicates (a monitor sees only mirrored tasks, so a
  session's ``seq`` may skip the events of its other tasks);
- ``{"type": "stream.heartbeat"}`` every ``STREAM_HEARTBEAT_S``;
  ``{"type": "monitor.caught_up", "events": n}`` after the catch-up;
- ``{"type": "pong", "request_id"}``; ``{"type": "error", "request_id", "error": {…}}``.

Catch-up: on connect the events of the monitor's still-active tasks are sent from the database
(with ``?since=<ISO 8601 time | Unix seconds>``, also those of tasks that finished since then,
and only events since then), so a console opened mid-run is not blank.

Client frames are dispatched by ``type`` through :data:`FRAME_HANDLERS`; ``ping`` is built in.
Another module adds frames without touching this class::

    from debugger.consumers import MonitorConsumer, monitor_frame

    @monitor_frame("debug.continue")
    async def debug_continue(consumer: MonitorConsumer, frame: dict) -> None:
        ...  # consumer.monitor, consumer.scope["user"], await consumer.send_json({...})

A handler raising ``ApplicationError`` answers an ``error`` frame with the ``request_id``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from debugger import mirror
from debugger.models import Monitor
from debugger.monitors import monitor_get, monitor_group
from runtime_project.db import db_call
from runtime_project.exceptions import InvalidInput
from sessions.consumers import _StreamConsumer, task_summary
from sessions.models import Task

logger = logging.getLogger(__name__)

FrameHandler = Callable[["MonitorConsumer", dict[str, Any]], Awaitable[None]]
FRAME_HANDLERS: dict[str, FrameHandler] = {}


def monitor_frame(frame_type: str) -> Callable[[FrameHandler], FrameHandler]:
    """Register ``handler(consumer, frame)`` for client frames of ``frame_type``."""

    def register(handler: FrameHandler) -> FrameHandler:
        FRAME_HANDLERS[frame_type] = handler
        return handler

    return register


def monitor_task_summary(task: Task) -> dict[str, Any]:
    """The ``task`` of a ``monitor.task`` frame."""
    config = task.config or {}
    return {
        **task_summary(task),
        "session_id": str(task.session.uuid),
        "agent": {"id": str(task.agent.uuid), "slug": task.agent.slug} if task.agent else None,
        "integration": config.get("integration"),
        "debug": config.get("debug"),
        "created_at": task.created_at,
    }


def parse_since(raw: str | None) -> dt.datetime | None:
    """``since`` as an aware datetime: ISO 8601 (naive means UTC) or Unix seconds.

    Raises:
        InvalidInput: neither.
    """
    if raw in (None, ""):
        return None
    assert raw is not None
    try:
        return dt.datetime.fromtimestamp(float(raw), tz=dt.UTC)
    except (ValueError, OverflowError, OSError):
        pass
    parsed = parse_datetime(raw.replace(" ", "+"))  # a "+" of a query string decodes to " "
    if parsed is None:
        raise InvalidInput(
            "since must be an ISO 8601 time or Unix seconds.",
            details={"fields": {"since": ["ISO 8601 time or Unix seconds"]}},
        )
    return parsed if timezone.is_aware(parsed) else parsed.replace(tzinfo=dt.UTC)


class MonitorConsumer(_StreamConsumer):
    """The mirror of one monitor; only its owner may subscribe."""

    monitor: Monitor
    group: str | None = None
    since: dt.datetime | None = None

    async def resolve(self, user: Any) -> None:
        monitor_id = self.scope["url_route"]["kwargs"]["monitor_id"]
        query = parse_qs(self.scope.get("query_string", b"").decode())
        self.since = parse_since(query.get("since", [""])[0])
        self.monitor = await db_call(monitor_get)(user=user, monitor_id=monitor_id)
        self.monitor_uuid = str(self.monitor.uuid)
        self.seen_tasks: set[str] = set()
        self.last_seqs: dict[str, int] = {}  # session uuid → last seq sent
        self.caught_up = asyncio.Event()
        if self.channel_layer is not None:
            # Join before reading the database: nothing committed in between is missed.
            self.group = monitor_group(self.monitor_uuid)
            await self.channel_layer.group_add(self.group, self.channel_name)

    async def _pump(self, after: int) -> None:
        """Catch up from the database, then send heartbeats; live batches arrive through
        :meth:`monitor_events` (held back until the catch-up is sent)."""
        try:
            envelopes = await db_call(mirror.catch_up)(
                monitor_uuid=self.monitor_uuid, since=self.since
            )
            await self._deliver(envelopes)
            await self.send_json({"type": "monitor.caught_up", "events": len(envelopes)})
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("monitor catch-up failed")
        finally:
            self.caught_up.set()
        while True:
            await asyncio.sleep(settings.STREAM_HEARTBEAT_S)
            await self.send_json({"type": "stream.heartbeat"})

    async def monitor_events(self, message: dict[str, Any]) -> None:
        """A mirrored batch (``debugger.mirror``): send what is new, reading the rows from the
        database for a doorbell (no inline events)."""
        await self.caught_up.wait()
        session_uuid = message["session_id"]
        envelopes = message.get("events")
        if envelopes is None:
            envelopes = await db_call(mirror.mirrored_events)(
                monitor_uuid=self.monitor_uuid,
                session_uuid=session_uuid,
                after=self.last_seqs.get(session_uuid, 0),
                upto=message["last_seq"],
            )
        elif envelopes and session_uuid in self.last_seqs:
            last = self.last_seqs[session_uuid]
            if envelopes[0]["seq"] > last + 1:
                # Either the session's other (unmirrored) events, or a lost message: the
                # database says which.
                missed = await db_call(mirror.mirrored_events)(
                    monitor_uuid=self.monitor_uuid, session_uuid=session_uuid,
                    after=last, upto=envelopes[0]["seq"] - 1,
                )  # fmt: skip
                envelopes = [*missed, *envelopes]
        await self._deliver(envelopes)

    async def _deliver(self, envelopes: list[dict[str, Any]]) -> None:
        """Send ``envelopes`` skipping any seq already sent for its session, each new task
        announced by a ``monitor.task`` frame first."""
        for envelope in envelopes:
            session_uuid = envelope["session_id"]
            if envelope["seq"] <= self.last_seqs.get(session_uuid, 0):
                continue
            task_uuid = envelope.get("task_id")
            if task_uuid and task_uuid not in self.seen_tasks:
                self.seen_tasks.add(task_uuid)
                task = await db_call(mirror.mirrored_task)(
                    monitor_uuid=self.monitor_uuid, task_uuid=task_uuid
                )
                if task is not None:
                    await self.send_json(
                        {"type": "monitor.task", "task": monitor_task_summary(task)}
                    )
            await self.send_json(envelope)
            self.last_seqs[session_uuid] = envelope["seq"]

    async def disconnect(self, code: int) -> None:
        if self.group is not None and self.channel_layer is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)
        await super().disconnect(code)

    async def handle_frame(self, frame: dict[str, Any]) -> None:
        handler = FRAME_HANDLERS.get(str(frame.get("type")))
        if handler is not None:
            await handler(self, frame)
            return
        await super().handle_frame(frame)  # ping, else a bad_frame error
