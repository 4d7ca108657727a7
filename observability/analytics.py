"""Analytics export: selected events POSTed in JSON batches to a collector (docs/observability.md).

Off unless ``ANALYTICS_EXPORT_URL`` is set. Then :func:`configure` (``ObservabilityConfig.ready``)
starts an :class:`Exporter` and registers :func:`analytics_projector` for
``ANALYTICS_EVENT_TYPES``: it turns each batch's selected events into envelopes (the same
``{"seq", "session_id", "task_id", "type", "ts", "data"}`` clients get, already masked) inside
the append transaction and, after the commit, puts them on a bounded in-process queue
(``ANALYTICS_QUEUE_MAX``; when full the oldest is dropped and counted). A daemon thread sends
batches of up to ``ANALYTICS_BATCH_SIZE`` every ``ANALYTICS_FLUSH_INTERVAL_S`` (or as soon as a
batch is full)::

    {"events": [envelope, ...], "sent_at": "2026-…Z", "source": {"host": "…", "version": "0.1.0"}}

Delivery is at most ``ANALYTICS_MAX_ATTEMPTS`` POSTs per batch through the outbound guard
(``runtime_project.outbound.fetch``: private addresses are refused unless
``ANALYTICS_ALLOW_PRIVATE``; redirects are not followed). 2xx: exported. 408, 429, 5xx, a
timeout or a connection error: retried after ``Retry-After`` when the answer has one, else
``ANALYTICS_RETRY_BASE_S`` * 2^(n-1) (at most 60 s) ±20 % jitter. A refused URL or another
status: the batch is dropped at once. Per session, events arrive in ``seq`` order (commit order); a
retried batch holds back the ones after it. Nothing here ever blocks or fails a task.
Each process exports what it writes; at exit the queue is flushed, best effort (a few seconds).
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import email.utils
import functools
import json
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from django.conf import settings
from django.db import transaction

from observability.metrics import ANALYTICS_BATCHES_FAILED, ANALYTICS_DROPPED, ANALYTICS_EXPORTED
from runtime_project.exceptions import OutboundFailed, OutboundRefused

logger = logging.getLogger(__name__)

USER_AGENT = "agent-runtime-analytics/1"
MAX_DELAY_S = 60.0  # backoff cap
MAX_RETRY_AFTER_S = 300.0  # a collector asking for longer gets this
JITTER = 0.2
SHUTDOWN_TIMEOUT_S = 5.0
_RETRIABLE = frozenset({408, 429})


@dataclass(frozen=True)
class Config:
    """What :class:`Exporter` needs (from the ``ANALYTICS_*`` settings)."""

    url: str
    token: str
    types: frozenset[str]
    batch_size: int
    flush_interval_s: float
    queue_max: int
    allow_private: bool
    max_attempts: int
    retry_base_s: float
    timeout_s: float

    @classmethod
    def from_settings(cls) -> Config:
        return cls(
            url=settings.ANALYTICS_EXPORT_URL,
            token=settings.ANALYTICS_EXPORT_TOKEN,
            types=frozenset(settings.ANALYTICS_EVENT_TYPES),
            batch_size=settings.ANALYTICS_BATCH_SIZE,
            flush_interval_s=settings.ANALYTICS_FLUSH_INTERVAL_S,
            queue_max=settings.ANALYTICS_QUEUE_MAX,
            allow_private=settings.ANALYTICS_ALLOW_PRIVATE,
            max_attempts=settings.ANALYTICS_MAX_ATTEMPTS,
            retry_base_s=settings.ANALYTICS_RETRY_BASE_S,
            timeout_s=settings.ANALYTICS_TIMEOUT_S,
        )


def retry_after_s(value: str | None) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (delta-seconds or an HTTP date), capped
    at :data:`MAX_RETRY_AFTER_S`; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_S)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max((when - datetime.now(UTC)).total_seconds(), 0.0), MAX_RETRY_AFTER_S)


def backoff_s(attempt: int, base_s: float) -> float:
    """Seconds before the attempt after attempt ``attempt`` (1-based), with jitter."""
    delay = min(base_s * 2 ** (attempt - 1), MAX_DELAY_S)
    return delay * random.uniform(1 - JITTER, 1 + JITTER)  # jitter, not a secret


class Exporter:
    """The queue and the sending thread of one configuration (see the module docstring)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._queue: collections.deque[dict[str, Any]] = collections.deque()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._in_flight = 0
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0
        host = httpx.URL(config.url).host if config.url else ""
        self._allow_hosts = (host,) if config.allow_private and host else ()
        self._headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        if config.token:
            self._headers["Authorization"] = f"Bearer {config.token}"
        self._source = {"host": socket.gethostname(), "version": settings.SERVER_VERSION}

    # Producer side (the thread that committed) ------------------------------------------------

    def put(self, envelopes: list[dict[str, Any]]) -> None:
        """Queue ``envelopes`` (never blocks; when full, the oldest are dropped and counted)."""
        if self._stopping.is_set():
            ANALYTICS_DROPPED.labels("shutdown").inc(len(envelopes))
            return
        overflow = 0
        with self._lock:
            self._ensure_thread()
            for envelope in envelopes:
                if len(self._queue) >= self.config.queue_max:
                    self._queue.popleft()
                    overflow += 1
                self._queue.append(envelope)
            full = len(self._queue) >= self.config.batch_size
        if overflow:
            ANALYTICS_DROPPED.labels("overflow").inc(overflow)
        if full:
            self._wake.set()

    def _ensure_thread(self) -> None:
        """Start the sender (again in a forked child, whose copy of the thread is gone)."""
        if self._thread is None or self._pid != os.getpid():
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="analytics-export", daemon=True)
            self._thread.start()

    # Sender thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            while not self._stopping.is_set():
                self._wake.wait(self.config.flush_interval_s)
                self._wake.clear()
                self._drain(loop)
            self._drain(loop)  # the final flush at shutdown
        finally:
            loop.run_until_complete(loop.shutdown_default_executor())  # fetch's DNS threads
            loop.close()

    def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        while True:
            with self._lock:
                count = min(self.config.batch_size, len(self._queue))
                batch = [self._queue.popleft() for _ in range(count)]
                self._in_flight = count
            try:
                if not batch:
                    return
                self._send(loop, batch)
            except Exception:
                logger.exception("analytics export: sending a batch failed")
                ANALYTICS_DROPPED.labels("error").inc(len(batch))
                ANALYTICS_BATCHES_FAILED.inc()
            finally:
                with self._lock:
                    self._in_flight = 0
                    self._idle.notify_all()

    def _send(self, loop: asyncio.AbstractEventLoop, batch: list[dict[str, Any]]) -> None:
        """POST ``batch`` with retries; count it exported or dropped."""
        from runtime_project.outbound import fetch

        for attempt in range(1, self.config.max_attempts + 1):
            payload = {"events": batch, "sent_at": _now(), "source": self._source}
            body = json.dumps(payload, separators=(",", ":"), default=str).encode()
            wait: float | None = None
            try:
                result = loop.run_until_complete(fetch(
                    self.config.url, method="POST", headers=self._headers, body=body,
                    max_bytes=1024, timeout_s=self.config.timeout_s, max_redirects=0,
                    allow_hosts=self._allow_hosts,
                ))  # fmt: skip
            except OutboundRefused as exc:
                # The message names the host and address, never the URL's path or the token.
                logger.warning("analytics export refused by the outbound guard: %s", exc)
                return self._give_up(batch, "refused")
            except OutboundFailed as exc:
                reason = f"{exc.details.get('reason', 'failed')}" if exc.details else "failed"
                logger.info("analytics export attempt %d failed (%s)", attempt, reason)
            else:
                status = result.status
                if 200 <= status < 300:
                    ANALYTICS_EXPORTED.inc(len(batch))
                    return None
                if status not in _RETRIABLE and status < 500:
                    logger.warning("analytics collector rejected a batch (HTTP %d)", status)
                    return self._give_up(batch, "rejected")
                logger.info("analytics export attempt %d: HTTP %d", attempt, status)
                wait = retry_after_s(result.headers.get("retry-after"))
            if attempt == self.config.max_attempts or self._stopping.is_set():
                break
            delay = wait if wait is not None else backoff_s(attempt, self.config.retry_base_s)
            if self._stopping.wait(delay):
                break  # shutting down: no more waiting
        logger.warning("analytics export: a batch of %d events dropped after %d attempts",
                       len(batch), attempt)  # fmt: skip
        return self._give_up(batch, "retries")

    @staticmethod
    def _give_up(batch: list[dict[str, Any]], reason: str) -> None:
        ANALYTICS_DROPPED.labels(reason).inc(len(batch))
        ANALYTICS_BATCHES_FAILED.inc()

    # Control ----------------------------------------------------------------------------------

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Send what is queued now and wait until it is sent or given up (True) or
        ``timeout_s`` passes (False)."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            if not self._queue and not self._in_flight:
                return True
            self._ensure_thread()
        self._wake.set()
        with self._idle:
            while self._queue or self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._wake.set()
                self._idle.wait(min(left, 0.1))
        return True

    def stop(self, timeout_s: float = SHUTDOWN_TIMEOUT_S) -> None:
        """Flush (one attempt per batch, no waiting between retries) and stop the thread;
        what is left after ``timeout_s`` is counted as dropped (``shutdown``)."""
        self._stopping.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread.is_alive() and self._pid == os.getpid():
            thread.join(timeout_s)
        with self._lock:
            left, self._queue = len(self._queue), collections.deque()
        if left:
            ANALYTICS_DROPPED.labels("shutdown").inc(left)

    def pending(self) -> int:
        with self._lock:
            return len(self._queue) + self._in_flight


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


_exporter: Exporter | None = None
_registered: set[str] = set()


def exporter() -> Exporter | None:
    """The running exporter, or None when the export is off."""
    return _exporter


def configure() -> bool:
    """(Re)start the export from the settings; returns whether it is on. A previous exporter
    is stopped first (flushed, best effort). Call it again after changing the settings."""
    global _exporter
    previous, _exporter = _exporter, None
    if previous is not None:
        previous.stop()
    config = Config.from_settings()
    if not config.url or not config.types:
        return False
    _exporter = Exporter(config)
    _register(config.types)
    _atexit_once()
    host = httpx.URL(config.url).host
    logger.info("analytics export of %s events to %s", ",".join(sorted(config.types)), host)
    return True


def _register(types: frozenset[str]) -> None:
    """Register the projector for the types not registered yet (a reconfiguration with new
    types adds a projector for those; each filters by the current configuration)."""
    from sessions.services.events import event_projector_register

    new = frozenset(types - _registered)
    if new:
        projector: Callable[[Any, list[Any]], None] = functools.partial(analytics_projector)
        event_projector_register(types=new, projector=projector)
        _registered.update(new)


@functools.cache
def _atexit_once() -> None:
    atexit.register(shutdown)


def shutdown() -> None:
    """Flush and stop (atexit)."""
    global _exporter
    current, _exporter = _exporter, None
    if current is not None:
        current.stop()


def _uuids_of(task_ids: set[int]) -> dict[int, str]:
    """Public ids of tasks by pk (one indexed query; none when the events have no task).
    Not cached across batches: a pk may come back after a database reset."""
    from sessions.models import Task

    if not task_ids:
        return {}
    return {pk: str(u) for pk, u in Task.objects.filter(pk__in=task_ids).values_list("pk", "uuid")}


def analytics_projector(session: Any, events: list[Any]) -> None:
    """Event-log projector: envelopes of the selected events, queued after the commit."""
    current = _exporter
    if current is None:
        return
    selected = [e for e in events if e.type in current.config.types]
    if not selected:
        return
    session_uuid = str(session.uuid)
    tasks = _uuids_of({e.task_id for e in selected if e.task_id is not None})
    envelopes = [
        e.envelope(session_uuid=session_uuid, task_uuid=tasks.get(e.task_id, ""))
        if e.task_id is not None
        else e.envelope(session_uuid=session_uuid)
        for e in selected
    ]
    transaction.on_commit(functools.partial(current.put, envelopes))
