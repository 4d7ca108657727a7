"""Sending deliveries: claim the due ones, POST them signed, record each attempt.

Where it runs (like the cron scheduler, ``schedules/``): in the server process as
:func:`run_dispatcher` (started by ``sessions.runtime.start_runtime`` unless
``TASK_EXECUTOR=celery``), woken right after a commit that queued deliveries and otherwise
polling every ``WEBHOOK_DISPATCH_INTERVAL_S``; with ``TASK_EXECUTOR=celery``, as the Celery task
``webhooks.tasks.dispatch_due_webhooks`` (beat entry ``WEBHOOKS_BEAT_SCHEDULE``, plus a message
after each commit that queued deliveries).

An attempt is sent once: :func:`deliveries_claim` takes due rows with ``SELECT … FOR UPDATE
SKIP LOCKED`` on PostgreSQL (concurrent dispatchers take different rows) and claims each with a
conditional ``UPDATE`` (``attempts = n + 1`` where it is still ``n``; on SQLite, whose
transactions are serialised, this alone decides), pushing ``next_attempt_at`` past the send's
lease. A dispatcher that dies mid-send leaves the delivery due again when the lease ends: a
receiver may then see a message twice (at-least-once, as every webhook sender; the
``Webhook-Id`` is the same), never an attempt number twice.

Outcome of an attempt (:func:`attempt_record`): 2xx → ``succeeded``; 410 Gone → ``failed`` and
the endpoint disabled; anything else (another status, a timeout, a refused or unreachable
target) → ``retrying`` after ``WEBHOOK_RETRY_SCHEDULE_S[n-1]`` seconds ±20 % jitter, or
``failed`` after ``max_attempts``. Redirects are not followed (a 3xx is a failure).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from integrations.webhooks import signing
from integrations.webhooks.models import (
    DUE_STATUSES,
    PING,
    DeliveryAttempt,
    DeliveryStatus,
    WebhookDelivery,
)
from integrations.webhooks.services import allowed_hosts, endpoint_disable, endpoint_secrets
from providers import crypto
from runtime_project.db import call_keeping_connections
from runtime_project.exceptions import OutboundFailed, OutboundRefused
from runtime_project.outbound import fetch

logger = logging.getLogger(__name__)

USER_AGENT = "agent-runtime-webhooks/1"
RESPONSE_MAX_BYTES = 2048  # of the receiver's answer, kept on the attempt
LEASE_MARGIN_S = 30.0  # beyond WEBHOOK_TIMEOUT_S before a claimed delivery is due again
JITTER = 0.2
T = TypeVar("T")


@dataclass(frozen=True)
class Claim:
    """One claimed attempt: what to send where. ``secrets`` is empty when none could be read."""

    delivery_id: int
    number: int
    url: str
    event_id: str
    event_type: str
    body: bytes
    secrets: list[str] = field(repr=False)


@dataclass(frozen=True)
class Outcome:
    """What an attempt got: ``status_code`` (None when no answer), the start of the body, the
    error, when it started and how long it took (ms)."""

    started_at: Any
    duration_ms: int
    status_code: int | None = None
    body: str = ""
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def retry_delay_s(number: int) -> float:
    """Seconds before the attempt after attempt ``number`` (1-based), with jitter."""
    schedule = settings.WEBHOOK_RETRY_SCHEDULE_S
    base = float(schedule[min(number, len(schedule)) - 1])
    return base * random.uniform(1 - JITTER, 1 + JITTER)  # jitter, not a secret


def body_bytes(payload: dict[str, Any]) -> bytes:
    """The exact bytes posted (and signed): compact JSON, UTF-8."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def _fail_disabled(now: Any) -> None:
    """Due deliveries of disabled endpoints fail unsent (pings excepted: they check a
    receiver before it is enabled again)."""
    WebhookDelivery.objects.filter(
        status__in=DUE_STATUSES, next_attempt_at__lte=now, endpoint__enabled=False
    ).exclude(event_type=PING).update(
        status=DeliveryStatus.FAILED, next_attempt_at=None, last_error="endpoint disabled"
    )


def lease_end(now: Any) -> Any:
    """When a delivery claimed at ``now`` becomes due again if its attempt never reports."""
    return now + timedelta(seconds=settings.WEBHOOK_TIMEOUT_S + LEASE_MARGIN_S)


def _claim_rows(candidates: list[tuple[int, int]], now: Any) -> list[Claim]:
    """Claim each ``(pk, attempts)`` whose row still has that many attempts (conditional
    UPDATE: of two dispatchers reading the same row, one wins)."""
    claimed: list[int] = []
    for pk, attempts in candidates:
        won = WebhookDelivery.objects.filter(
            pk=pk, attempts=attempts, status__in=DUE_STATUSES
        ).update(attempts=attempts + 1, next_attempt_at=lease_end(now), last_attempt_at=now)
        if won:
            claimed.append(pk)
    rows = WebhookDelivery.objects.select_related("endpoint").filter(pk__in=claimed)
    return [_claim(row) for row in rows.order_by("pk")]


def deliveries_claim(*, limit: int) -> list[Claim]:
    """Claim up to ``limit`` due deliveries, the most overdue first. Each claimed row has
    ``attempts`` + 1 and ``next_attempt_at`` at the end of the send's lease."""
    now = timezone.now()
    due = WebhookDelivery.objects.filter(status__in=DUE_STATUSES, next_attempt_at__lte=now)
    if not due.exists():  # the usual pass: a read, no write transaction (SQLite's write lock)
        return []
    with transaction.atomic():
        _fail_disabled(now)
        due = due.order_by("next_attempt_at", "pk")
        if connection.features.has_select_for_update_skip_locked:
            due = due.select_for_update(skip_locked=True, of=("self",))
        return _claim_rows(list(due.values_list("pk", "attempts")[:limit]), now)


def _claim(row: WebhookDelivery) -> Claim:
    try:
        secrets = endpoint_secrets(row.endpoint)
    except crypto.InvalidToken:
        secrets = []
    return Claim(
        delivery_id=row.pk,
        number=row.attempts,
        url=row.endpoint.url,
        event_id=row.event_id,
        event_type=row.event_type,
        body=body_bytes(row.payload),
        secrets=secrets,
    )


def headers_for(claim: Claim, timestamp: int) -> dict[str, str]:
    """The request headers of one attempt (Standard Webhooks)."""
    signature = signing.signature_header(
        claim.secrets, msg_id=claim.event_id, timestamp=timestamp, body=claim.body
    )
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Webhook-Id": claim.event_id,
        "Webhook-Timestamp": str(timestamp),
        "Webhook-Signature": signature,
    }


async def attempt_send(claim: Claim) -> Outcome:
    """POST ``claim`` once through the outbound policy (never raises)."""
    started_at, t0 = timezone.now(), time.monotonic()

    def done(**kwargs: Any) -> Outcome:
        return Outcome(started_at, int((time.monotonic() - t0) * 1000), **kwargs)

    if not claim.secrets:
        return done(error="The signing secret cannot be decrypted (encryption keys changed).")
    try:
        result = await fetch(
            claim.url,
            method="POST",
            headers=headers_for(claim, int(time.time())),
            body=claim.body,
            max_bytes=RESPONSE_MAX_BYTES,
            timeout_s=settings.WEBHOOK_TIMEOUT_S,
            max_redirects=0,
            allow_hosts=allowed_hosts(),
        )
    except OutboundRefused as exc:
        return done(error=f"refused: {exc.message}")
    except OutboundFailed as exc:
        if exc.details.get("reason") == "too_many_redirects":
            return done(error="The receiver answered with a redirect (redirects are not followed).")
        return done(error=exc.message)
    except Exception:
        logger.exception("webhook delivery %s: unexpected error", claim.delivery_id)
        return done(error="internal error while sending")
    text = result.body.decode("utf-8", errors="replace")
    return done(status_code=result.status, body=text[:RESPONSE_MAX_BYTES])


def attempt_record(claim: Claim, outcome: Outcome) -> WebhookDelivery | None:
    """Record the attempt and move the delivery on (see the module docstring). Returns the
    delivery, or None when it was deleted meanwhile."""
    with transaction.atomic():
        delivery = WebhookDelivery.objects.select_for_update().filter(pk=claim.delivery_id).first()
        if delivery is None:
            return None
        DeliveryAttempt.objects.create(
            delivery=delivery,
            number=claim.number,
            started_at=outcome.started_at,
            duration_ms=outcome.duration_ms,
            status_code=outcome.status_code,
            response_body=outcome.body,
            error=outcome.error,
        )
        if delivery.attempts != claim.number:  # our lease ended and a newer attempt started
            return delivery
        code = outcome.status_code
        delivery.last_status_code = code
        delivery.last_error = outcome.error or ("" if outcome.ok else f"HTTP {code}")
        delivery.next_attempt_at = None
        if outcome.ok:
            delivery.status = DeliveryStatus.SUCCEEDED
        elif code == 410:
            delivery.status = DeliveryStatus.FAILED
            endpoint_disable(
                endpoint_id=delivery.endpoint_id,
                reason=f"The receiver answered 410 Gone at {timezone.now():%Y-%m-%d %H:%M:%SZ}.",
            )
        elif claim.number >= delivery.max_attempts:
            delivery.status = DeliveryStatus.FAILED
        else:
            delivery.status = DeliveryStatus.RETRYING
            delay = retry_delay_s(claim.number)
            delivery.next_attempt_at = timezone.now() + timedelta(seconds=delay)
        delivery.save(
            update_fields=[
                "status",
                "next_attempt_at",
                "last_status_code",
                "last_error",
            ]
        )
    log = logger.info if outcome.ok else logger.warning
    log("webhook %s attempt %d (%s): %s", claim.delivery_id, claim.number, claim.event_type,
        code if code is not None else outcome.error)  # fmt: skip
    return delivery


async def _send_all(claims: list[Claim]) -> list[Outcome]:
    return list(await asyncio.gather(*(attempt_send(c) for c in claims)))


def _send_and_record(claims: list[Claim]) -> int:
    if not claims:
        return 0
    outcomes = async_to_sync(_send_all)(claims)
    for claim, outcome in zip(claims, outcomes, strict=True):
        attempt_record(claim, outcome)
    return len(claims)


def dispatch_due(*, limit: int | None = None) -> int:
    """One synchronous pass (the Celery task, tests): claim, send concurrently, record.
    Returns the number of attempts made. Call it from a thread without a running event loop
    (a sync view or task; async code uses :func:`dispatch_pass`)."""
    return _send_and_record(deliveries_claim(limit=limit or settings.WEBHOOK_CONCURRENCY))


def delivery_send_now(*, delivery: WebhookDelivery) -> bool:
    """Make the next attempt of ``delivery`` now, whatever its ``next_attempt_at`` (the "test"
    API call), in the calling thread. Returns False when it is not pending or retrying, or a
    dispatcher claimed it meanwhile."""
    with transaction.atomic():
        claims = _claim_rows([(delivery.pk, delivery.attempts)], timezone.now())
    return _send_and_record(claims) == 1


# The in-process dispatcher ---------------------------------------------------------------------

_db_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="webhooks-db")
_loop: asyncio.AbstractEventLoop | None = None
_wakeup: asyncio.Event | None = None
_lock = threading.Lock()


async def _db(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    # Each of the pool's two threads keeps its connection from one pass to the next instead
    # of connecting again for every pass (CONN_MAX_AGE=0 is for request threads).
    loop = asyncio.get_running_loop()
    call = functools.partial(call_keeping_connections, fn, *args, **kwargs)
    return await loop.run_in_executor(_db_pool, call)  # type: ignore[no-any-return]


async def _deliver(claim: Claim) -> None:
    outcome = await attempt_send(claim)
    await _db(attempt_record, claim, outcome)


async def dispatch_pass(*, limit: int | None = None) -> int:
    """One pass on the running loop (database work in a small thread pool); returns the
    number of attempts made."""
    claims = await _db(deliveries_claim, limit=limit or settings.WEBHOOK_CONCURRENCY)
    await asyncio.gather(*(_deliver(c) for c in claims))
    return len(claims)


def wake() -> None:
    """Tell the dispatcher that deliveries were queued (call after commit, from any thread):
    the in-process loop of this process runs a pass now; under Celery a pass is queued."""
    with _lock:
        loop, event = _loop, _wakeup
    if loop is not None and event is not None and not loop.is_closed():
        loop.call_soon_threadsafe(event.set)
    elif settings.TASK_EXECUTOR == "celery":
        try:
            from runtime_project.celery import app

            app.send_task("webhooks.tasks.dispatch_due_webhooks")
        except Exception:
            logger.warning("could not queue a webhook pass; beat runs one soon", exc_info=True)


async def run_dispatcher(stop: asyncio.Event, *, interval_s: float | None = None) -> None:
    """Send due deliveries until ``stop`` is set: a pass at once, then after each wake-up
    (:func:`wake`) or every ``interval_s`` (default ``WEBHOOK_DISPATCH_INTERVAL_S``), and at
    once again while a pass was full. A failing pass is logged and retried. Returns at once
    when ``WEBHOOK_DISPATCHER_ENABLED`` or ``WEBHOOKS_ENABLED`` is off."""
    global _loop, _wakeup
    if not (settings.WEBHOOKS_ENABLED and settings.WEBHOOK_DISPATCHER_ENABLED):
        logger.info("webhooks: in-process dispatcher disabled")
        return
    interval = settings.WEBHOOK_DISPATCH_INTERVAL_S if interval_s is None else interval_s
    event = asyncio.Event()
    with _lock:
        _loop, _wakeup = asyncio.get_running_loop(), event
    try:
        while not stop.is_set():
            event.clear()
            full = False
            try:
                full = await dispatch_pass() >= settings.WEBHOOK_CONCURRENCY
            except Exception:
                logger.exception("webhooks: a dispatch pass failed; retrying in %.1f s", interval)
            if full:
                continue
            stopping = asyncio.ensure_future(stop.wait())
            woken = asyncio.ensure_future(event.wait())
            try:
                await asyncio.wait({stopping, woken}, timeout=interval,
                                   return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
            finally:
                stopping.cancel()
                woken.cancel()
    finally:
        with _lock:
            if _wakeup is event:
                _loop, _wakeup = None, None
