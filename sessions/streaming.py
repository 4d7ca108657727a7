"""Server-Sent Events for a session or one task (``text/event-stream``).

Each event is sent as ``id: <seq>`` / ``event: <type>`` / ``data: <envelope JSON>``; clients
resume with ``Last-Event-ID`` (or ``?after=``) and get every event exactly once, in order.
Comments (``: heartbeat``) keep proxies from closing quiet streams; a task stream ends with
``event: end`` after the task's terminal ``task.status``. These are plain async Django views
(DRF has no async views); their OpenAPI entries come from ``runtime_project.schema``.

A client too slow to read (more than ``STREAM_MAX_BUFFER_BYTES`` waiting for it, or no progress
for ``STREAM_SEND_TIMEOUT_S``) gets a final ``event: error`` with ``{"error": {"code":
"slow_consumer", …}, "last_seq"}`` and the stream ends; it resumes with ``Last-Event-ID``. The
connection is dropped if that final event is still unread ``STREAM_SEND_TIMEOUT_S`` later
(docs/streams.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase, JsonResponse, StreamingHttpResponse
from django.views.decorators.http import require_GET
from rest_framework.exceptions import AuthenticationFailed

from accounts import access
from accounts.models import Scope
from runtime_project.auth import BearerTokenAuthentication, bearer_challenge
from runtime_project.db import db_call
from runtime_project.exceptions import ApplicationError, InvalidInput, error_body
from sessions.fanout import envelope_json
from sessions.models import Session, Task
from sessions.outbox import TRANSPORT_KEY, Outbox, SlowConsumer, flush_or_drop
from sessions.selectors import session_get, task_get
from sessions.subscriptions import EventSubscription, parse_cursor

logger = logging.getLogger(__name__)


def _format(envelope: dict[str, Any]) -> str:
    data = envelope_json(envelope)
    return f"id: {envelope['seq']}\nevent: {envelope['type']}\ndata: {data}\n\n"


async def _pump(
    outbox: Outbox, *, session: Session, task: Task | None, after: int, done: list[bool]
) -> None:
    """Subscription → outbox (never waits for the client, except for room before frames read
    from the database). Sets ``done[0]`` once a task stream reached its end."""
    try:
        async with EventSubscription(session=session, task=task, after=after) as sub:
            sub.live_sink = lambda env: outbox.put(_format(env), env["seq"])
            async for envelope in sub:
                if envelope is None:
                    outbox.put(f": heartbeat {sub.last_seq}\n\n")
                    continue
                if sub.from_log:
                    await outbox.room()
                outbox.put(_format(envelope), envelope["seq"])
            done[0] = True
            outbox.put(f"event: end\ndata: {json.dumps({'last_seq': sub.last_seq})}\n\n")
        outbox.close()
    except SlowConsumer:
        # The generator reports it on its next pull; if Django's send is stuck (uvicorn's flow
        # control) that pull only comes as the client reads: drop it if it does not.
        _drop_unless_read(outbox)
    except asyncio.CancelledError:
        raise
    except Exception:
        logger.exception("event stream failed")
        body = error_body("internal_error", "The stream failed; reconnect with Last-Event-ID.")
        with contextlib.suppress(SlowConsumer):
            outbox.put(f"event: error\ndata: {json.dumps(body)}\n\n")
        outbox.close()


_WATCHDOGS: set[asyncio.Future[bool]] = set()  # keep a reference: tasks are weakly held


def _drop_unless_read(outbox: Outbox) -> None:
    """Once per stream: drop the connection if the client stops reading before it has read
    the final ``event: error`` (see ``flush_or_drop``)."""
    if outbox.watched:
        return
    outbox.watched = True
    watchdog = asyncio.ensure_future(
        flush_or_drop(
            outbox.transport,
            settings.STREAM_SEND_TIMEOUT_S,
            lambda size: size > 0 or not outbox.final_sent,
        )
    )
    _WATCHDOGS.add(watchdog)
    watchdog.add_done_callback(_WATCHDOGS.discard)


async def _events(
    *,
    session: Session,
    task: Task | None,
    after: int,
    cancel_on_disconnect: bool,
    transport: Any = None,
    initial: list[dict[str, Any]] | None = None,
) -> AsyncIterator[str]:
    # Committed and in the log: sent first, and the subscription goes on after them.
    first = [envelope for envelope in initial or [] if envelope["seq"] > after]
    after = max([after] + [envelope["seq"] for envelope in first])
    yield "retry: 2000\n\n"
    done = [False]
    outbox = Outbox(transport=transport)
    pump = asyncio.ensure_future(_pump(outbox, session=session, task=task, after=after, done=done))
    last_seq = after  # of the last event handed to Django (everything before it was too)
    try:
        for envelope in first:
            yield _format(envelope)
        while True:
            try:
                item = await outbox.get_batch()
            except SlowConsumer as exc:
                body = error_body(
                    "slow_consumer",
                    "The client did not read fast enough; reconnect with Last-Event-ID.",
                    exc.details(),
                )
                _drop_unless_read(outbox)
                yield f"event: error\ndata: {json.dumps(body | {'last_seq': last_seq})}\n\n"
                outbox.final_sent = True
                return
            if item is None:
                return
            text, seq = item
            yield text
            outbox.delivered(seq)  # Django's send returned: it pulls the next frame
            if seq is not None:
                last_seq = seq
    except asyncio.CancelledError:
        # Django cancels the response when the client disconnects (http.disconnect).
        if cancel_on_disconnect and task is not None and not done[0]:
            from sessions.services.tasks import task_cancel

            try:
                await db_call(task_cancel)(task=task, reason="client disconnected")
            except ApplicationError:
                pass  # already finished
        raise
    finally:
        pump.cancel()


def sse_response(
    request: HttpRequest,
    *,
    session: Session,
    task: Task | None = None,
    after: int = 0,
    cancel_on_disconnect: bool = False,
    initial: list[dict[str, Any]] | None = None,
) -> StreamingHttpResponse:
    """Stream ``session``'s events (or only ``task``'s, ending after it finishes) as SSE.

    ``after`` is the last seq the client has; ``Last-Event-ID`` on the request overrides it
    when larger. With ``cancel_on_disconnect`` the task is cancelled if the client goes away
    before it finishes (``on_disconnect=cancel``). ``initial``: envelopes the caller has just
    appended (a streaming create's ``queued`` status), sent first without reading them back
    from the log; the stream goes on after the last of them.
    """
    after = max(after, _last_event_id(request))
    response = StreamingHttpResponse(
        _events(
            session=session,
            task=task,
            after=after,
            cancel_on_disconnect=cancel_on_disconnect,
            transport=getattr(request, "scope", {}).get(TRANSPORT_KEY),
            initial=initial,
        ),
        content_type="text/event-stream",
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


def _last_event_id(request: HttpRequest) -> int:
    raw = request.headers.get("Last-Event-ID", "").strip()
    return _non_negative_int(raw, "Last-Event-ID") if raw else 0


def _non_negative_int(raw: str, name: str) -> int:
    """A cursor from a query parameter or header (see ``parse_cursor``).

    Raises:
        InvalidInput: not an integer from 0 to 2**63-1.
    """
    try:
        return parse_cursor(raw)
    except ValueError:
        raise InvalidInput(
            f"{name} must be an integer from 0 to 2**63-1.",
            details={"fields": {name: [raw[:50]]}},
        ) from None


async def authenticate(request: HttpRequest) -> Any:
    """Bearer/Token header first, then the session cookie. Returns the user, ``None``
    (anonymous), or the ``AuthenticationFailed`` of a refused credential."""

    def _auth() -> Any:
        result = BearerTokenAuthentication().authenticate(request)  # type: ignore[arg-type]
        if result is not None:
            return result[0]
        user = request.user
        return user if user.is_authenticated else None

    try:
        return await db_call(_auth)()
    except AuthenticationFailed as exc:  # a refused credential: 401 with its reason
        return exc
    except Exception:  # anything else: treat as anonymous → 401
        return None


def _error(exc: ApplicationError) -> JsonResponse:
    return JsonResponse(exc.as_dict(), status=exc.status_code)


def _unauthenticated(
    request: HttpRequest, refused: AuthenticationFailed | None = None
) -> JsonResponse:
    code = getattr(refused, "error_code", None) or "not_authenticated"
    message = (
        str(refused.detail)
        if refused is not None
        else ("Authentication credentials were not provided or are invalid.")
    )
    return JsonResponse(
        error_body(code, message),
        status=401,
        headers={"WWW-Authenticate": bearer_challenge(request)},
    )


async def _stream(
    request: HttpRequest, resolve: Callable[[Any], tuple[Session, Task | None]]
) -> HttpResponseBase:
    """Authenticate, resolve the stream's object for the caller, read the cursor (the larger of
    ``?after=`` and ``Last-Event-ID``), and answer with the SSE response or an error."""
    user = await authenticate(request)
    if user is None or isinstance(user, AuthenticationFailed):
        return _unauthenticated(request, user)
    try:
        access.require_scope(user, Scope.SESSIONS_READ)
        session, task = await db_call(resolve)(user)
        after = _non_negative_int(request.GET.get("after", "0") or "0", "after")
        after = max(after, _last_event_id(request))
    except ApplicationError as exc:
        return _error(exc)
    return sse_response(request, session=session, task=task, after=after)


@require_GET
async def session_event_stream(request: HttpRequest, session_id: str) -> HttpResponseBase:
    """GET /api/v1/sessions/{id}/events/stream — all events of the session, live."""
    return await _stream(
        request, lambda user: (session_get(user=user, session_id=session_id), None)
    )


@require_GET
async def task_event_stream(request: HttpRequest, task_id: str) -> HttpResponseBase:
    """GET /api/v1/tasks/{id}/stream — the task's events, ending after its terminal status."""

    def resolve(user: Any) -> tuple[Session, Task | None]:
        task = task_get(user=user, task_id=task_id)
        return task.session, task

    return await _stream(request, resolve)


# Names the URLconf uses.
SessionEventStreamApi = session_event_stream
TaskEventStreamApi = task_event_stream
