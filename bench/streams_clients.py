"""Asyncio stream clients for ``bench/streams.py``, and the raw baseline servers they are
compared with.

Clients (all in the calling process's event loop):

* :func:`subscribe_ws` / :func:`subscribe_sse`: one subscriber to a session stream. Every frame
  with a ``seq`` must follow the previous one by exactly 1 (any gap, duplicate or reordering
  is recorded in :attr:`Subscriber.error`); ``custom`` (or, without ``stdout_format``,
  ``process.stdout``) events are the measured ones: arrival time and delay since their send
  time (``data.t``, the producer's ``time.time()``) or, lacking it, their ``ts``. A subscriber
  ends after it has seen ``terminals`` terminal ``task.status`` events.
* :func:`hold_idle`: an idle WebSocket that counts the server's ``stream.heartbeat`` frames.

Baseline servers (``python bench/streams_clients.py baseline WS_PORT SSE_PORT``): a plain
``websockets`` server and a plain asyncio SSE server that send each client one terminal
``task.status`` (the warm-up), then, once ``n`` clients are connected, the same paced stream of
``e`` ``custom`` envelopes to all of them (``websockets.broadcast`` / a write per client), then
a terminal ``task.status``: the same frames and pacing as the real producer, with no database,
channel layer or batching in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from array import array
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidMessage, InvalidStatus

TERMINAL = {"succeeded", "failed", "cancelled", "timed_out"}
MEASURED = {"custom", "process.stdout"}


HANDSHAKE_TRIES = 5


async def open_ws(
    url: str, headers: dict[str, str], gate: asyncio.Semaphore, timeout: float
) -> tuple[ClientConnection, int]:
    """Open a WebSocket, making the handshake while holding ``gate``. A handshake the server
    drops (daphne closes one its application has not accepted within 5 s,
    ``--websocket_connect_timeout``) is retried up to :data:`HANDSHAKE_TRIES` times, as a
    client would. Returns ``(connection, retries)``; raises the last error."""
    for attempt in range(HANDSHAKE_TRIES):
        try:
            async with gate:
                ws = await connect(
                    url, additional_headers=headers, max_size=None, ping_interval=None,
                    open_timeout=timeout,
                )  # fmt: skip
            return ws, attempt
        except (InvalidMessage, InvalidStatus, OSError, TimeoutError):
            if attempt == HANDSHAKE_TRIES - 1:
                raise
            await asyncio.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


@dataclass
class Subscriber:
    """What one subscriber saw. Times are ``time.time()`` seconds."""

    after: int
    terminals: int = 2
    last_seq: int = 0
    seen_terminals: int = 0
    count: int = 0  # measured events
    first: float = 0.0
    last: float = 0.0
    delays_ms: array[float] = field(default_factory=lambda: array("d"))
    error: str | None = None
    connected: bool = False
    done: bool = False
    retries: int = 0  # handshakes the server dropped and the client made again

    def __post_init__(self) -> None:
        self.last_seq = self.after

    def frame(self, envelope: dict[str, Any], now: float) -> None:
        """Account for one envelope received at ``now``."""
        seq = envelope.get("seq")
        if seq is None:
            return  # control frames: heartbeats, pongs
        if seq != self.last_seq + 1 and self.error is None:
            self.error = f"seq {seq} after {self.last_seq}"
        self.last_seq = seq
        kind = envelope.get("type")
        if kind in MEASURED:
            data = envelope.get("data") or {}
            sent = data.get("t") if isinstance(data.get("t"), float) else None
            if sent is None:
                sent = datetime.fromisoformat(envelope["ts"]).timestamp()
            self.delays_ms.append((now - sent) * 1000)
            self.count += 1
            if not self.first:
                self.first = now
            self.last = now
        elif kind == "task.status" and (envelope.get("data") or {}).get("status") in TERMINAL:
            self.seen_terminals += 1
            if self.seen_terminals >= self.terminals:
                self.done = True


async def subscribe_ws(
    url: str, sub: Subscriber, headers: dict[str, str], timeout: float, gate: asyncio.Semaphore
) -> Subscriber:
    """Follow ``url`` until ``sub.done`` (the handshake made holding ``gate``); errors end up in
    ``sub.error``, never raised."""
    try:
        ws, sub.retries = await open_ws(url, headers, gate, timeout)
        async with ws:
            sub.connected = True
            while not sub.done:
                raw = await asyncio.wait_for(ws.recv(), timeout)
                sub.frame(json.loads(raw), time.time())
    except Exception as exc:  # recorded: the report fails loudly on any subscriber error
        sub.error = sub.error or f"{type(exc).__name__}: {exc}"[:200]
    return sub


async def subscribe_sse(
    client: httpx.AsyncClient,
    url: str,
    sub: Subscriber,
    headers: dict[str, str],
    timeout: float,
    gate: asyncio.Semaphore,
) -> Subscriber:
    """Follow the SSE stream at ``url`` until ``sub.done`` (see :func:`subscribe_ws`)."""
    try:
        async with contextlib.AsyncExitStack() as stack:
            async with gate:
                response = await stack.enter_async_context(
                    client.stream("GET", url, headers=headers, timeout=timeout)
                )
            if response.status_code != 200:
                raise RuntimeError(f"HTTP {response.status_code}")
            sub.connected = True
            data: list[str] = []
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    data.append(line[5:].lstrip())
                elif not line and data:
                    payload, data = "\n".join(data), []
                    envelope = json.loads(payload)
                    if isinstance(envelope, dict):
                        sub.frame(envelope, time.time())
                    if sub.done:
                        break
    except Exception as exc:
        sub.error = sub.error or f"{type(exc).__name__}: {exc}"[:200]
    if not sub.done and sub.error is None:
        sub.error = "stream ended early"
    return sub


@dataclass
class Idle:
    """One idle WebSocket: heartbeats received while held."""

    heartbeats: int = 0
    error: str | None = None
    connected: bool = False
    retries: int = 0


async def hold_idle(url: str, headers: dict[str, str], gate: asyncio.Semaphore, idle: Idle) -> None:
    """Open ``url`` (at most ``gate``'s count of handshakes in flight), then count heartbeat
    frames until cancelled (no timer per socket: thousands of them would load the client)."""
    try:
        ws, idle.retries = await open_ws(url, headers, gate, 120)
        idle.connected = True
        try:
            async for raw in ws:
                frame = json.loads(raw)
                if frame.get("type") == "stream.heartbeat":
                    idle.heartbeats += 1
                elif frame.get("type") == "error":
                    raise RuntimeError(str(frame.get("error")))
            raise RuntimeError(f"closed by the server: {ws.close_code}")
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(ws.close())
    except asyncio.CancelledError:
        pass  # the holder is done with it
    except Exception as exc:
        idle.error = f"{type(exc).__name__}: {exc}"[:200]


# ---- baseline servers ----------------------------------------------------------------------


def _envelope(seq: int, kind: str, data: dict[str, Any]) -> str:
    now = time.time()
    return json.dumps(
        {
            "seq": seq,
            "session_id": "00000000-0000-0000-0000-000000000000",
            "task_id": "00000000-0000-0000-0000-000000000001",
            "type": kind,
            "ts": datetime.fromtimestamp(now).astimezone().isoformat(),
            "data": data | ({"t": now} if kind == "custom" else {}),
        }
    )


def _params(path: str) -> tuple[int, int, float]:
    q = parse_qs(urlsplit(path).query)
    return int(q["n"][0]), int(q["e"][0]), float(q.get("r", ["0"])[0])


async def _paced(e: int, rate: float, send: Any) -> None:
    """Call ``send(text)`` for seq 2..e+1 custom envelopes, then the terminal status."""
    t0 = time.time()
    for i in range(e):
        if rate:
            ahead = t0 + i / rate - time.time()
            if ahead > 0:
                await asyncio.sleep(ahead)
        await send(_envelope(i + 2, "custom", {"i": i}))
    await send(_envelope(e + 2, "task.status", {"status": "succeeded"}))


async def _baseline(ws_port: int, sse_port: int) -> None:
    from websockets.asyncio.server import broadcast, serve

    # Clients of one run share a room, named by their query (n, e, r): the room floods once it
    # has n members.
    rooms: dict[str, list[Any]] = {}

    async def join(room: str, member: Any, n: int, e: int, rate: float) -> None:
        rooms.setdefault(room, []).append(member)
        if len(rooms[room]) == n:
            await flood(room, e, rate)

    async def flood(room: str, e: int, rate: float) -> None:
        members = rooms.pop(room)
        await asyncio.sleep(0.2)

        async def send(text: str) -> None:
            if room.startswith("ws"):
                broadcast(members, text)
            else:
                chunk = f"event: x\ndata: {text}\n\n".encode()
                for writer in members:
                    writer.write(chunk)
            await asyncio.sleep(0)  # let the transports write, as a server loop would

        await _paced(e, rate, send)

    async def on_ws(ws: Any) -> None:
        n, e, rate = _params(ws.request.path)
        await ws.send(_envelope(1, "task.status", {"status": "succeeded"}))
        await join("ws" + ws.request.path, ws, n, e, rate)
        with contextlib.suppress(Exception):
            await ws.wait_closed()

    async def on_sse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        path = head.split(" ")[1]
        n, e, rate = _params(path)
        warm = _envelope(1, "task.status", {"status": "succeeded"})
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            b"Connection: close\r\n\r\n" + f"event: x\ndata: {warm}\n\n".encode()
        )
        await join("sse" + path, writer, n, e, rate)
        with contextlib.suppress(Exception):
            await reader.read()  # until the client closes
        writer.close()

    async with serve(on_ws, "127.0.0.1", ws_port, max_size=None, ping_interval=None):
        server = await asyncio.start_server(on_sse, "127.0.0.1", sse_port, backlog=4096)
        async with server:
            print("ready", flush=True)
            await asyncio.Future()


if __name__ == "__main__":
    if sys.argv[1:2] == ["baseline"]:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        asyncio.run(_baseline(int(sys.argv[2]), int(sys.argv[3])))
