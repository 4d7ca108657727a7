"""Live event subscriptions with replay: the shared core of SSE and WebSocket streams (DESIGN §3).

Order of operations guarantees "no gap, no duplicate": join the channel-layer group *first*,
then replay from the database after the client's cursor, then deliver live batches, skipping
any ``seq`` already sent and backfilling from the database whenever a batch does not start
right after the last ``seq`` sent (a dropped doorbell, an over-capacity channel, or a large
batch that was published without its payload).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from sessions.broadcast import session_group
from sessions.choices import TERMINAL_STATUSES
from sessions.models import Session, Task
from sessions.selectors import event_list

logger = logging.getLogger(__name__)

_PAGE = 500


class EventSubscription:
    """Async iterator over a session's (or one task's) events after ``after``.

    Yields envelopes, or ``None`` when ``heartbeat_s`` passed without events (callers send a
    heartbeat then). For a task stream, iteration ends after the task's terminal
    ``task.status`` event. Use as ``async with EventSubscription(...) as sub: async for …``.
    """

    def __init__(
        self,
        *,
        session: Session,
        task: Task | None = None,
        after: int = 0,
        heartbeat_s: float | None = None,
    ) -> None:
        self.session = session
        self.task = task
        self.task_uuid = str(task.uuid) if task is not None else None
        self.last_seq = max(int(after), 0)
        self.heartbeat_s = heartbeat_s if heartbeat_s is not None else settings.STREAM_HEARTBEAT_S
        self.layer = get_channel_layer()
        self.channel: str | None = None
        self.finished = False

    async def __aenter__(self) -> EventSubscription:
        if self.layer is not None:
            self.channel = await self.layer.new_channel("stream.")
            await self.layer.group_add(session_group(self.session.uuid), self.channel)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self.layer is not None and self.channel is not None:
            with contextlib.suppress(Exception):
                await self.layer.group_discard(session_group(self.session.uuid), self.channel)

    async def _backfill(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            page = await database_sync_to_async(event_list)(
                session=self.session, after=self.last_seq, limit=_PAGE
            )
            for envelope in page:
                out.extend(self._accept(envelope))
            if len(page) < _PAGE:
                return out

    def _accept(self, envelope: dict[str, Any]) -> list[dict[str, Any]]:
        """Advance the cursor; return ``[envelope]`` if the caller should deliver it."""
        if envelope["seq"] <= self.last_seq:
            return []
        self.last_seq = envelope["seq"]
        if self.task_uuid is not None and envelope.get("task_id") != self.task_uuid:
            return []
        if (
            self.task_uuid is not None
            and envelope["type"] == "task.status"
            and envelope["data"].get("status") in TERMINAL_STATUSES
        ):
            self.finished = True
        return [envelope]

    async def __aiter__(self) -> AsyncIterator[dict[str, Any] | None]:
        for envelope in await self._backfill():
            yield envelope
        if self.finished:
            return
        if self.task is not None and await self._task_already_finished():
            # Finished between our replay and now with its last events already replayed.
            for envelope in await self._backfill():
                yield envelope
            return
        while not self.finished:
            message = await self._receive()
            if message is None:
                yield None
                continue
            if message.get("type") != "events.appended":
                continue
            events = message.get("events")
            if events is None or message.get("first_seq", 0) > self.last_seq + 1:
                batch = await self._backfill()
            else:
                batch = [e for env in events for e in self._accept(env)]
            # `finished` may already be set by _accept for the batch's last event: deliver the
            # whole batch before stopping.
            for envelope in batch:
                yield envelope

    async def _receive(self) -> dict[str, Any] | None:
        if self.layer is None or self.channel is None:
            # No channel layer configured: fall back to a slow poll of the log.
            await asyncio.sleep(min(self.heartbeat_s, 1.0))
            return {"type": "events.appended", "first_seq": self.last_seq + 2, "events": None}
        try:
            return await asyncio.wait_for(self.layer.receive(self.channel), self.heartbeat_s)
        except TimeoutError:
            # Quiet period: re-check the log (covers a lost doorbell) and ask for a heartbeat.
            if await database_sync_to_async(self._has_newer)():
                return {"type": "events.appended", "first_seq": self.last_seq + 2, "events": None}
            return None

    def _has_newer(self) -> bool:
        return Session.objects.filter(pk=self.session.pk, last_seq__gt=self.last_seq).exists()

    async def _task_already_finished(self) -> bool:
        status = await database_sync_to_async(
            lambda: Task.objects.filter(pk=self.task.pk).values_list("status", flat=True).first()  # type: ignore[union-attr]
        )()
        return status in TERMINAL_STATUSES
