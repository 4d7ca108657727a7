"""Following a task's events live: the WebSocket ``/ws/tasks/{id}/?after=N``, or SSE
``/api/v1/tasks/{id}/stream`` as a fallback (docs/cli.md).

Both streams replay the task's stored events after a cursor and then deliver new ones, ending
after the task's terminal ``task.status`` (WebSocket: a ``stream.end`` frame and close 1000;
SSE: ``event: end``). The cursor is the ``seq`` of the last event handed out, so a dropped
connection is resumed with ``?after=<seq>`` (or ``Last-Event-ID``) and every event arrives
exactly once, in order. The server asks clients to reconnect when it restarts (a
``stream.reconnect`` frame, close 1012); that is resumed the same way, at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from runtime_cli.api import USER_AGENT, ApiError, connection_error, error_from_response
from runtime_cli.config import Config

PROTOCOL = "agent-runtime.v1"
TERMINAL = frozenset({"succeeded", "failed", "cancelled", "timed_out"})
# Close codes that no reconnect can fix (consumers.py): not authenticated, forbidden, not found,
# bad request. 4429 (throttled) is retried after the delay the error frame gives.
FATAL_CLOSE = {4401, 4403, 4404, 4400}
BACKOFF_S = (0.2, 0.5, 1, 2, 4, 8)


class _Reconnect(Exception):
    """The stream broke (or the server asked us to come back); resume after ``last_seq``."""

    def __init__(self, reason: str, delay: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay


class _NoWebSocket(Exception):
    """The server does not speak WebSocket here (e.g. a proxy in front that only passes HTTP)."""


class TaskStream:
    """Events of one task after ``after``: ``async for event in TaskStream(...)``.

    Yields envelopes (dicts with ``seq``), or ``None`` when ``tick_s`` passed without one (so
    the caller can refresh a status line). Ends after the task's terminal event.
    ``transport`` is ``"auto"`` (WebSocket, SSE when the WebSocket handshake is refused),
    ``"ws"`` or ``"sse"``. ``on_notice(text)`` hears about reconnects and fallbacks.

    Raises (while iterating):
        ApiError: the server refused the stream (auth, not found…), or it stayed unreachable
            through every retry (``details.last_seq`` says where to resume).
    """

    def __init__(
        self,
        config: Config,
        task_id: str,
        *,
        after: int = 0,
        transport: str = "auto",
        tick_s: float = 0.25,
        retries: int = len(BACKOFF_S),
        on_notice: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.task_id = task_id
        self.last_seq = after
        self.transport = transport
        self.tick_s = tick_s
        self.retries = retries
        self.on_notice = on_notice or (lambda text: None)
        self.reconnects = 0

    async def __aiter__(self) -> AsyncIterator[dict[str, Any] | None]:
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

        async def produce() -> None:
            try:
                async for event in self._events():
                    await queue.put(("event", event))
                await queue.put(("end", None))
            except Exception as exc:  # handed to the consumer, raised there
                await queue.put(("error", exc))

        producer = asyncio.ensure_future(produce())
        try:
            while True:
                try:
                    kind, value = await asyncio.wait_for(queue.get(), self.tick_s)
                except TimeoutError:
                    yield None
                    continue
                if kind == "end":
                    return
                if kind == "error":
                    raise value
                yield value
        finally:
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await producer

    async def _events(self) -> AsyncIterator[dict[str, Any]]:
        """Envelopes after ``last_seq`` until the end, over one transport or the other,
        reconnecting after breaks."""
        failures = 0
        while True:
            before = self.last_seq
            try:
                source = self._sse() if self.transport == "sse" else self._websocket()
                async for event in source:
                    yield event
                return
            except _NoWebSocket as exc:
                if self.transport == "ws":
                    raise ApiError("websocket_refused", str(exc)) from exc
                self.on_notice(f"{exc}; following over SSE instead")
                self.transport = "sse"
                continue
            except _Reconnect as exc:
                failures = 0 if self.last_seq > before else failures + 1
                if failures > self.retries:
                    raise ApiError(
                        "stream_lost",
                        f"Lost the event stream ({exc.reason}); resume with "
                        f"`runtime tasks events {self.task_id} --follow --after {self.last_seq}`.",
                        details={"last_seq": self.last_seq},
                    ) from exc
                delay = exc.delay if exc.delay is not None else BACKOFF_S[
                    min(max(failures - 1, 0), len(BACKOFF_S) - 1)]  # fmt: skip
                self.reconnects += 1
                self.on_notice(f"{exc.reason}; reconnecting after seq {self.last_seq}")
                await asyncio.sleep(delay)

    def _take(self, envelope: dict[str, Any]) -> bool:
        """Whether ``envelope`` is new (advancing the cursor); replays after a resume are not."""
        seq = int(envelope["seq"])
        if seq <= self.last_seq:
            return False
        self.last_seq = seq
        return True

    async def _websocket(self) -> AsyncIterator[dict[str, Any]]:
        url = f"{self.config.ws_url}/ws/tasks/{self.task_id}/?after={self.last_seq}"
        headers = {"User-Agent": USER_AGENT}
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        try:
            ws = await connect(
                url, additional_headers=headers, subprotocols=[PROTOCOL],  # type: ignore[list-item]
                open_timeout=15, max_size=2**24,
            )  # fmt: skip
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status >= 500 or status == 429:
                raise _Reconnect(f"WebSocket handshake answered HTTP {status}") from exc
            raise _NoWebSocket(f"the WebSocket handshake was refused (HTTP {status})") from exc
        except InvalidHandshake as exc:
            raise _NoWebSocket(f"the WebSocket handshake failed ({exc})") from exc
        except (OSError, TimeoutError) as exc:
            raise _Reconnect(f"cannot connect ({exc or type(exc).__name__})") from exc
        error: dict[str, Any] | None = None
        try:
            async with ws:
                async for raw in ws:
                    frame = _json_or_none(str(raw))
                    if not isinstance(frame, dict):
                        continue  # not a frame of this protocol
                    kind = frame.get("type")
                    if "seq" in frame:
                        if self._take(frame):
                            yield frame
                    elif kind == "stream.end":
                        return
                    elif kind == "stream.reconnect":
                        raise _Reconnect("the server is restarting", delay=0.2)
                    elif kind == "error":
                        error = frame.get("error") or {}
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else None
            if code in FATAL_CLOSE:
                raise _close_error(code, error) from exc
            if code == 4429:
                delay = float((error or {}).get("details", {}).get("retry_after_s", 2))
                raise _Reconnect("too many connections", delay=delay) from exc
            raise _Reconnect(f"the connection dropped (close code {code})") from exc
        except OSError as exc:
            raise _Reconnect(f"the connection dropped ({exc})") from exc
        code = ws.close_code
        if code in FATAL_CLOSE:
            raise _close_error(code, error)
        raise _Reconnect(f"the stream closed early (close code {code})")

    async def _sse(self) -> AsyncIterator[dict[str, Any]]:
        headers = {"Accept": "text/event-stream", "User-Agent": USER_AGENT,
                   "Last-Event-ID": str(self.last_seq)}  # fmt: skip
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        url = f"{self.config.url}/api/v1/tasks/{self.task_id}/stream"
        timeout = httpx.Timeout(15, read=90)  # the server sends a heartbeat every ~15 s
        try:
            async with (
                httpx.AsyncClient(timeout=timeout) as client,
                client.stream("GET", url, headers=headers) as response,
            ):
                if response.is_error:
                    await response.aread()
                    error = error_from_response(response)
                    if response.status_code >= 500:
                        raise _Reconnect(f"the SSE stream answered HTTP {response.status_code}")
                    raise error
                event_name, data = "message", ""
                async for line in response.aiter_lines():
                    if line == "":
                        if event_name == "end":
                            return
                        envelope = _json_or_none(data)
                        if isinstance(envelope, dict) and "seq" in envelope:
                            fresh = self._take(envelope)
                            if fresh:
                                yield envelope
                        event_name, data = "message", ""
                    elif line.startswith(":"):
                        continue
                    else:
                        name, _, value = line.partition(":")
                        value = value[1:] if value.startswith(" ") else value
                        if name == "event":
                            event_name = value
                        elif name == "data":
                            data = f"{data}\n{value}" if data else value
        except httpx.ConnectError as exc:
            raise _Reconnect(connection_error(exc, self.config.url).message) from exc
        except (httpx.TransportError, httpx.RemoteProtocolError) as exc:
            raise _Reconnect(f"the connection dropped ({exc or type(exc).__name__})") from exc
        raise _Reconnect("the stream closed early")


def _json_or_none(data: str) -> Any:
    try:
        return json.loads(data) if data else None
    except ValueError:
        return None


def _close_error(code: int | None, error: dict[str, Any] | None) -> ApiError:
    """The ApiError of a WebSocket the server closed on purpose, from its error frame."""
    error = error or {}
    status = {4401: 401, 4403: 403, 4404: 404, 4400: 400}.get(code or 0)
    return ApiError(
        str(error.get("code") or "websocket_closed"),
        str(error.get("message") or f"The server closed the stream (close code {code})."),
        status=status,
        details=error.get("details") if isinstance(error.get("details"), dict) else {},
    )
