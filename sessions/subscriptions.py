"""Live event subscriptions with replay: the shared core of SSE and WebSocket streams (DESIGN §3).

Order of operations guarantees "no gap, no duplicate": join the channel-layer group *first*,
then replay from the database after the client's cursor, then deliver live batches, skipping
any ``seq`` already sent and backfilling from the database whenever a batch does not start
right after the last ``seq`` sent (a dropped doorbell, an over-capacity channel, or a large
batch that was published without its payload).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings

from runtime_project.db import db_call, unique_or_none
from sessions import fanout
from sessions.broadcast import session_group
from sessions.choices import TERMINAL_STATUSES
from sessions.models import Event, Session, Task
from sessions.selectors import event_list
from sessions.stream_watch import session_last_seq

logger = logging.getLogger(__name__)

_PAGE = 500
_WOKEN = {"type": "events.delivered"}  # the live batches were delivered by offer()
INBOX_MAX = 256  # live batches queued for a busy iterator; past that it reads the log instead


class EventSubscription:
    """Async iterator over a session's (or one task's) events after ``after``.

    Yields envelopes, or ``None`` when ``heartbeat_s`` passed without events (callers send a
    heartbeat then). For a task stream, iteration ends after the task's terminal
    ``task.status`` event. Use as ``async with EventSubscription(...) as sub: async for …``.

    Live batches reach it through the process's :class:`sessions.fanout.SessionFanout` for the
    session. A caller that sets ``live_sink`` (a function taking one envelope, which must not
    wait) gets a live batch straight from the fan-out while the iterator is idle and caught
    up, without waking its own task: that is how a thousand streams of one session keep up
    (bench/streams.py). What the sink raises (``SlowConsumer``) is raised by the iteration.
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
        self.hub: fanout.SessionFanout | None = None
        self.finished = False
        self.from_log = True
        self.live_sink: Callable[[dict[str, Any]], None] | None = None
        self._task_started = False
        self._task_ended = False  # the task had ended when this stream first read the log
        self._inbox: collections.deque[dict[str, Any]] = collections.deque()
        self._wake = asyncio.Event()
        self._error: BaseException | None = None
        self._parked = False  # the iterator waits in _receive() with nothing pending
        self._delivered_at = 0.0  # time.monotonic() of offer()'s last delivery

    async def __aenter__(self) -> EventSubscription:
        if self.layer is not None:
            self.hub = await fanout.join(self.layer, session_group(self.session.uuid), self)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        hub, self.hub = self.hub, None
        if hub is not None:
            with contextlib.suppress(Exception):
                await fanout.leave(hub, self)

    def offer(self, message: dict[str, Any]) -> None:
        """A live ``events.appended`` message from the fan-out (never waits). Delivered to
        ``live_sink`` at once when the iterator is idle and the batch follows on from the last
        seq; otherwise queued for the iterator (which backfills a gap from the log)."""
        if self.finished:
            return
        events = message.get("events")
        sink = self.live_sink
        if (
            sink is not None
            and self._parked
            and not self._inbox
            and events
            and message.get("first_seq", 0) <= self.last_seq + 1
        ):
            try:
                for envelope in events:
                    for accepted in self._accept(envelope):
                        sink(accepted)
            except Exception as exc:  # the sink's SlowConsumer: the iteration raises it
                self.fail(exc)
                return
            self._delivered_at = time.monotonic()
            if self.finished:
                self._wake.set()
            return
        if len(self._inbox) >= INBOX_MAX:
            # A stream paced by its client (a replay far behind) while the session writes on:
            # keep one doorbell instead of every batch, and read them from the log when it
            # gets there, as the channel layer's capacity used to make it do.
            self._inbox.clear()
            message = {"type": "events.appended", "first_seq": 0, "events": None}
        self._inbox.append(message)
        self._wake.set()

    def fail(self, exc: BaseException) -> None:
        """The iteration raises ``exc`` once it has taken what is queued."""
        if self._error is None:
            self._error = exc
        self._wake.set()

    async def _backfill(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            if self.task is not None and not self._task_started:
                self._task_ended, self.last_seq, page = await db_call(self._task_first_page)()
                self._task_started = True
            else:
                page = await db_call(event_list)(
                    session=self.session, after=self.last_seq, limit=_PAGE
                )
            for envelope in page:
                out.extend(self._accept(envelope))
            if len(page) < _PAGE:
                return out

    def _task_first_page(self) -> tuple[bool, int, list[dict[str, Any]]]:
        """A task stream's first read, in one thread hop: ``(the task had ended, the cursor,
        the page)``. The log is read from the task's first event on (a streaming create on a
        long session used to re-read the whole log), after its status: a task that had ended
        has its terminal event in this read (``_accept`` sets ``finished``); one that ends
        later is published after its commit to the group this stream has joined, like every
        event after this read."""
        assert self.task is not None
        statuses = Task.objects.filter(pk=self.task.pk).values_list("status", flat=True)
        ended = unique_or_none(statuses) in TERMINAL_STATUSES
        first = (
            Event.objects.filter(task_id=self.task.pk)
            .order_by("seq")
            .values_list("seq", flat=True)
            .first()
        )
        after = self.last_seq if first is None else max(self.last_seq, first - 1)
        return ended, after, event_list(session=self.session, after=after, limit=_PAGE)

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
        # `from_log` tells the caller whether the envelope it gets was read from the database
        # (a replay or a backfill: the caller may pace those) or arrived live on the layer.
        self.from_log = True
        for envelope in await self._backfill():
            yield envelope
        if self.finished:
            return
        if self._task_ended:
            # Ended before the read without its terminal event (a row repaired by hand, a
            # log cut short): nothing more will come.
            return
        while not self.finished:
            message = await self._receive()
            if message is None:
                yield None
                continue
            if message.get("type") != "events.appended":
                continue
            events = message.get("events")
            self.from_log = events is None or message.get("first_seq", 0) > self.last_seq + 1
            if self.from_log or events is None:
                batch = await self._backfill()
            else:
                batch = [e for env in events for e in self._accept(env)]
            # `finished` may already be set by _accept for the batch's last event: deliver the
            # whole batch before stopping.
            for envelope in batch:
                yield envelope

    async def _receive(self) -> dict[str, Any] | None:
        if self.hub is None:
            # No channel layer configured: fall back to a slow poll of the log.
            await asyncio.sleep(min(self.heartbeat_s, 1.0))
            return {"type": "events.appended", "first_seq": self.last_seq + 2, "events": None}
        wait_s = self.heartbeat_s
        while not self._inbox:
            if self._error is not None:
                raise self._error
            if self.finished:
                return _WOKEN
            self._wake.clear()
            self._parked = True  # offer() may hand batches to live_sink only while this waits
            try:
                async with asyncio.timeout(wait_s):
                    await self._wake.wait()
                continue
            except TimeoutError:
                pass
            finally:
                self._parked = False
            quiet_s = time.monotonic() - self._delivered_at
            if quiet_s < self.heartbeat_s:  # offer() delivered meanwhile: not quiet yet
                wait_s = self.heartbeat_s - quiet_s
                continue
            # Quiet period: re-check the log (covers a lost doorbell), ask for a heartbeat.
            if await session_last_seq(self.session.pk) > self.last_seq:
                return {"type": "events.appended", "first_seq": self.last_seq + 2, "events": None}
            return None
        return self._inbox.popleft()


MAX_SEQ = 2**63 - 1  # seq is a 64-bit signed column: a larger cursor would overflow the query


def parse_cursor(raw: str) -> int:
    """A stream cursor (``?after=``, ``Last-Event-ID``): ASCII digits, 0 ≤ value ≤ 2**63-1.

    Raises ValueError for anything else (``-1``, ``abc``, ``1e3``, ``+1``, non-ASCII digits,
    too large).
    """
    raw = raw.strip()
    if not raw or not raw.isascii() or not raw.isdigit() or len(raw) > 19 or int(raw) > MAX_SEQ:
        raise ValueError(f"not a cursor: {raw[:30]!r}")
    return int(raw)
