"""The append-only event log (DESIGN §3).

``events_append`` is the one write path: it allocates gapless per-session ``seq`` numbers by
advancing ``Session.last_seq`` under the session row lock, in one ``UPDATE … RETURNING``
(PostgreSQL's row lock; SQLite's IMMEDIATE transactions serialise writers), bulk-inserts the
batch and publishes the envelopes after commit. :class:`EventBuffer` sits in front of it for
runners: it collects events for a few milliseconds, coalesces consecutive chunks of one stream,
and writes each batch in one transaction, so token or output streaming does not become one row
and one round-trip per chunk.

Secrets (``sessions.services.masking``): a buffer given a masker masks every event it queues,
stream chunks through a per-stream tail buffer so a value split across two chunks is masked too
(the held tail is released when the stream's ``process.*``/``message.*`` event that ends it
arrives, or on ``close()``); ``events_append`` masks drafts not masked by a buffer with the
masker registered for the session while a run is in progress. Nothing unmasked is written or
published.

Projections: :func:`event_projector_register` adds a function called with the saved events of
each batch inside ``events_append``'s transaction (the debugger's step trace is one), so a
projection is exactly as durable as the log. A projector declares the event types it reads;
a batch without any of them costs one set lookup per event. History copied from another log
(``events_append(history=True)``: a session copy, a fork's replayed context) reaches only the
projectors that build the log's own read models (``history=True``, the step trace); those that
report activity (webhooks, monitors, metrics, traces, analytics) see only what happens here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from observability.metrics import count_events
from sessions.broadcast import publish_events
from sessions.models import Event, Session, Task
from sessions.services import masking
from sessions.services.artifacts import artifact_create
from sessions.services.locks import session_seqs_reserve

logger = logging.getLogger(__name__)

# Event types whose consecutive chunks (same stream key) are merged inside one batch window.
_COALESCE_KEYS = {
    "process.stdout": "process_id",
    "process.stderr": "process_id",
    "message.delta": "message_id",
}
_COALESCE_MAX_CHARS = 32 * 1024
# A NUL character (output of a binary, a crafted string) cannot be stored in PostgreSQL's jsonb
# ("unsupported Unicode escape sequence"): it becomes U+FFFD, as invalid UTF-8 already does.
# A "\\u0000" in the JSON text counts only after an even number of backslashes (else it is a
# literal backslash followed by "u0000").
_NUL_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")

Projector = Callable[[Session, list[Event]], None]
# (event types read, or None for all; projector; sees copied history); filled by
# AppConfig.ready() of the apps that project.
_PROJECTORS: list[tuple[frozenset[str] | None, Projector, bool]] = []


def event_projector_register(
    *, types: frozenset[str] | None, projector: Projector, history: bool = False
) -> None:
    """Call ``projector(session, events)`` with the events of ``types`` (``None``: every
    event) of every batch written by :func:`events_append`, inside its transaction, after the
    insert (each event has its ``seq``). A projector that raises is logged and rolled back to a
    savepoint: the events are written anyway. Registering the same projector twice is a
    no-op.

    ``history``: also call it for history copied from another log (``events_append(
    history=True)``). Only a projection the log's own readers need (the step trace) wants it;
    one that tells the outside world something happened must not hear it twice.
    """
    if all(p is not projector for _, p, _ in _PROJECTORS):
        _PROJECTORS.append((None if types is None else frozenset(types), projector, history))


def _project(session: Session, events: list[Event], *, history: bool) -> None:
    """Run every projector on its events of the batch (only the ``history`` ones for copied
    history). All of them share one savepoint (two queries per batch instead of two per
    projector, on the hot path of every append); if one raises, that savepoint is rolled back
    and they run again one savepoint each, so only the failing projection is lost."""
    work = []
    for types, projector, on_history in _PROJECTORS:
        if history and not on_history:
            continue
        selected = events if types is None else [e for e in events if e.type in types]
        if selected:
            work.append((projector, selected))
    if not work:
        return
    try:
        with transaction.atomic():
            for projector, selected in work:
                projector(session, selected)
        return
    except Exception:
        logger.warning("an event projector failed; running each in its own savepoint")
    for projector, selected in work:
        try:
            with transaction.atomic():
                projector(session, selected)
        except Exception:
            logger.exception("event projector %r failed", projector)


@dataclass
class EventDraft:
    """An event not yet written: ``type``, JSON ``data`` and the task it belongs to (if any)."""

    type: str
    data: dict[str, Any]
    task_id: int | None = None
    task_uuid: str | None = None
    created_at: Any = field(default_factory=timezone.now)
    masked: bool = False  # already masked by an EventBuffer (events_append skips it)
    # The Task instance the writer holds, as stored in its transaction (event_append's
    # ``task``): projectors read it instead of the row (:func:`event_task`).
    task: Task | None = None


def _externalize(session: Session, draft: EventDraft) -> dict[str, Any]:
    """Move a payload over ``EVENT_INLINE_MAX_BYTES`` into an Artifact; the event keeps a
    reference and a short preview (DESIGN §3: big payloads go to an artifact)."""
    raw = json.dumps(draft.data, default=str)
    if "\\u0000" in raw:
        raw = _NUL_ESCAPE.sub(r"\1\\ufffd", raw)
        draft.data = json.loads(raw)
    if len(raw) <= settings.EVENT_INLINE_MAX_BYTES:
        return draft.data
    artifact = artifact_create(
        session=session, task_id=draft.task_id, name=f"{draft.type}.json",
        content=raw.encode(), content_type="application/json",
    )  # fmt: skip
    small = {
        k: v
        for k, v in draft.data.items()
        if isinstance(v, int | float | bool) or (isinstance(v, str) and len(v) <= 200)
    }
    text = draft.data.get("text")
    return {
        **small,
        "truncated": True,
        "preview": text[:1024] if isinstance(text, str) else raw[:1024],
        "artifact": {
            "id": str(artifact.uuid),
            "size": artifact.size,
            "content_type": artifact.content_type,
        },
    }


def events_append(
    *, session: Session, drafts: list[EventDraft], history: bool = False
) -> list[Event]:
    """Append ``drafts`` to ``session``'s log in one transaction and publish them after commit.

    Returns the saved events with their ``seq``. Safe to call inside an outer transaction (the
    publish then waits for the outer commit). Raises ``Session.DoesNotExist`` if the session row
    is gone. ``history``: the drafts are copied from another log (they happened there, not
    here), so only the projectors registered with ``history=True`` see them.
    """
    if not drafts:
        return []
    masker = masking.masker_for_session(session.pk)
    if masker:
        for d in drafts:
            if not d.masked:
                d.data = masker.mask_data(d.data)
                d.masked = True
    payloads = [_externalize(session, d) for d in drafts]
    # No savepoint inside a caller's transaction (two statements saved on every create): none
    # of them catches an error of this block and goes on, so it rolls back with theirs.
    with transaction.atomic(savepoint=False):
        # The session's row lock and its seq counter in one statement.
        last, session_uuid = session_seqs_reserve(pk=session.pk, count=len(drafts))
        first = last - len(drafts) + 1
        events = [
            Event(
                session_id=session.pk,
                task_id=d.task_id,
                seq=first + i,
                type=d.type,
                data=payload,
                created_at=d.created_at,
            )
            for i, (d, payload) in enumerate(zip(drafts, payloads, strict=True))
        ]
        for event, draft in zip(events, drafts, strict=True):
            if draft.task is not None:
                event.task = draft.task  # for the projectors (event_task)
        Event.objects.bulk_create(events)
        if _PROJECTORS:
            _project(session, events, history=history)
        session.last_seq = last
        envelopes = [
            e.envelope(session_uuid=session_uuid, task_uuid=d.task_uuid)
            for e, d in zip(events, drafts, strict=True)
        ]
        transaction.on_commit(lambda: publish_events(session_uuid, envelopes))
    count_events(events)  # agent_runtime_events_total (observability/metrics.py)
    return events


def event_append(
    *, session: Session, type: str, data: dict[str, Any], task: Task | None = None
) -> Event:
    """Append one event now (services use this for status changes; runners use EventBuffer).

    ``task`` is the Task instance as the caller stored it in this transaction (its status and
    phase written): projectors read it through :func:`event_task` instead of the row."""
    draft = EventDraft(
        type=type,
        data=data,
        task_id=task.pk if task is not None else None,
        task_uuid=str(task.uuid) if task is not None else None,
        task=task,
    )
    return events_append(session=session, drafts=[draft])[0]


def event_task(event: Event) -> Task | None:
    """The Task instance the writer of ``event`` passed to :func:`event_append` (a projector
    may read its fields without a query, as stored in the same transaction), or None when the
    event came with its task's id only (a runner's :class:`EventBuffer`, a copy)."""
    return event.task if Event.task.is_cached(event) else None


class EventBuffer:
    """Batches a runner's events and writes them at most every ``EVENT_FLUSH_INTERVAL_MS``
    (the first event after a quiet interval is written at once).

    ``emit()`` is synchronous and never blocks the runner; a background flusher writes batches
    through :func:`events_append` in a worker thread. ``flush()`` forces a write now (used before
    status changes so the order of events is kept); ``close()`` flushes and stops the flusher.
    ``on_error`` is told when a write fails (the batch is retried on the next flush).
    """

    def __init__(
        self,
        *,
        session: Session,
        task_id: int | None,
        task_uuid: str | None,
        interval_ms: int | None = None,
        on_error: Callable[[BaseException], None] | None = None,
        masker: masking.Masker | None = None,
    ) -> None:
        self.session = session
        self.task_id = task_id
        self.task_uuid = task_uuid
        self.interval = (
            interval_ms if interval_ms is not None else settings.EVENT_FLUSH_INTERVAL_MS
        ) / 1000
        self._pending: list[EventDraft] = []
        self._lock = asyncio.Lock()
        self._wakeup = asyncio.Event()
        self._closing = asyncio.Event()
        self._closed = False
        self._flusher: asyncio.Task[None] | None = None
        self._on_error = on_error
        self.emitted = 0
        self.masker = masking.Masker()
        self._streams = masking.StreamMasker(self.masker)
        self._stream_fields: dict[tuple[str, Any], dict[str, Any]] = {}
        if masker is not None:
            self.set_masker(masker)

    def set_masker(self, masker: masking.Masker) -> None:
        """Mask the values of ``masker`` in every event queued from now on (call it before the
        run emits anything: earlier events are not revisited)."""
        self.masker = masker
        self._streams = masking.StreamMasker(masker)

    def mask(self, data: Any) -> Any:
        """``data`` (a string or JSON) with this run's secret values masked."""
        return self.masker.mask_data(data)

    def start(self) -> None:
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(
                self._run(), name="event-flusher"
            )

    def emit(self, type: str, data: dict[str, Any]) -> None:
        """Queue an event; consecutive stdout/stderr/delta chunks of one stream are merged.
        With a masker, secret values are masked first (see the module docstring)."""
        if self._closed:
            raise RuntimeError("EventBuffer is closed")
        if not self.masker:
            self._queue(type, data)
            return
        key = _COALESCE_KEYS.get(type)
        if key and isinstance(data.get("text"), str):
            stream = (type, data.get(key))
            fields = self.masker.mask_data({k: v for k, v in data.items() if k != "text"})
            text = self._streams.feed(stream, data["text"])
            if self._streams.holds(stream):
                self._stream_fields[stream] = fields  # for the held tail's event
            else:
                self._stream_fields.pop(stream, None)
            if text:
                self._queue(type, {**fields, "text": text})
            return
        self._release_streams(data)
        self._queue(type, self.masker.mask_data(data))

    def _release_streams(self, data: dict[str, Any] | None) -> None:
        """Queue the held tails of the streams an event ends (same ``process_id`` or
        ``message_id``), or of every stream when ``data`` is None."""
        for stream in self._streams.held_keys():
            assert isinstance(stream, tuple)  # (event type, process or message id)
            type, stream_id = stream
            if data is None or stream_id in (data.get("process_id"), data.get("message_id")):
                text = self._streams.flush(stream)
                fields = self._stream_fields.pop(stream, {})
                if text:
                    self._queue(type, {**fields, "text": text})

    def _queue(self, type: str, data: dict[str, Any]) -> None:
        key = _COALESCE_KEYS.get(type)
        text = data.get("text") if key else None
        if isinstance(text, str) and len(text) > _COALESCE_MAX_CHARS:
            # One pipe read can exceed what an event keeps inline; split it so streamed output
            # stays in the log (an oversized event would become an artifact with a preview).
            for start in range(0, len(text), _COALESCE_MAX_CHARS):
                self._queue(type, {**data, "text": text[start : start + _COALESCE_MAX_CHARS]})
            return
        self.emitted += 1
        if key and self._pending:
            last = self._pending[-1]
            if (
                last.type == type
                and last.data.get(key) == data.get(key)
                and isinstance(last.data.get("text"), str)
                and isinstance(data.get("text"), str)
                and len(last.data["text"]) + len(data["text"]) <= _COALESCE_MAX_CHARS
            ):
                last.data = {**last.data, "text": last.data["text"] + data["text"]}
                return
        self._pending.append(
            EventDraft(
                type=type,
                data=data,
                task_id=self.task_id,
                task_uuid=self.task_uuid,
                masked=bool(self.masker),
            )
        )
        self._wakeup.set()

    async def flush(self) -> list[Event]:
        """Write everything pending now; returns the written events."""
        async with self._lock:
            if not self._pending:
                return []
            batch, self._pending = self._pending, []
            write = asyncio.ensure_future(
                sync_to_async(events_append, thread_sensitive=False)(
                    session=self.session, drafts=batch
                )
            )
            try:
                return await asyncio.shield(write)
            except asyncio.CancelledError:
                # The write runs in a thread and commits anyway: wait for it so a caller that
                # flushes again after a cancel cannot write newer events before these.
                with contextlib.suppress(Exception):
                    await write
                raise
            except Exception as exc:
                # Keep the batch (in order, before newer events) so nothing emitted is lost.
                self._pending = batch + self._pending
                if self._on_error:
                    self._on_error(exc)
                raise

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last_flush = -self.interval
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            # Leading edge: after a quiet interval the first event is written at once (a
            # command's first output line reaches subscribers without the batching delay);
            # during a burst, writes happen at most once per interval.
            wait = last_flush + self.interval - loop.time()
            if not self._closed and wait > 0:
                # Collect a batch until the interval is up, unless close() asks to write now.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), wait)
            last_flush = loop.time()
            try:
                await self.flush()
            except Exception:
                logger.exception("event flush failed; retrying")
                await asyncio.sleep(0.5)
                self._wakeup.set()
                continue
            if self._closed:
                return

    async def close(self) -> None:
        """Release held stream tails, flush what is pending and stop the background flusher."""
        if not self._closed:
            self._release_streams(None)
        self._closed = True
        self._closing.set()
        self._wakeup.set()
        if self._flusher is not None:
            flusher, self._flusher = self._flusher, None
            with contextlib.suppress(Exception):
                await flusher
        await self.flush()
