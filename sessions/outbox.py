"""Flow control for streams: a slow reader never holds up a task or another subscriber
(DESIGN §3.5, docs/streams.md).

:class:`Outbox` is the bounded queue between a stream's producer and its writer;
:func:`buffered_bytes` reads how much a connection holds unsent (server process + kernel);
:func:`flush_or_drop` and :func:`abort_transport` end a connection whose client stopped reading.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import functools
import logging
import socket
import struct
import termios
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)
TRANSPORT_KEY = "agent_runtime.transport"  # scope key: the connection's transport (see below)
_HIGH_WATER = 64 * 1024  # stop handing frames to a transport holding this much unsent data
_POLL_S = 0.02


class SlowConsumer(Exception):
    """A connection's client does not read fast enough.

    ``why`` is ``buffer_full`` (more than ``STREAM_MAX_BUFFER_BYTES`` or ``STREAM_BUFFER_LIMIT``
    frames waiting) or ``send_timeout`` (no progress for ``STREAM_SEND_TIMEOUT_S``);
    ``pending_bytes`` is what was waiting then.
    """

    def __init__(self, why: str, pending_bytes: int) -> None:
        super().__init__(why)
        self.why = why
        self.pending_bytes = pending_bytes

    def details(self) -> dict[str, Any]:
        return {
            "why": self.why,
            "pending_bytes": self.pending_bytes,
            "max_buffer_bytes": settings.STREAM_MAX_BUFFER_BYTES,
            "send_timeout_s": settings.STREAM_SEND_TIMEOUT_S,
        }


def transport_of(send: Any) -> Any | None:
    """The network transport behind an ASGI ``send`` callable, or ``None`` when unknown.

    ASGI has no standard way to ask how much a connection has buffered, and the two servers
    differ: uvicorn's ``send`` awaits its write-buffer flow control (a client that does not read
    blocks the sender), while daphne's ``send`` (``partial(Server.handle_reply, protocol)``) only
    appends to Twisted's transport buffer and returns, so a client that does not read makes
    the server's memory grow without bound. Knowing the transport lets a stream see the buffer
    either way. Unwraps channels' session wrapper (``real_send``), then recognises daphne
    (a ``functools.partial`` whose first argument is the Twisted protocol or request, both with
    ``.transport``) and uvicorn (a bound method of an object with ``.transport``: its
    WebSocket protocol or HTTP request cycle).
    """
    for _ in range(8):  # a bounded walk down the wrappers
        if isinstance(send, functools.partial):
            owner = send.args[0] if send.args else None
            return getattr(owner, "transport", None)
        owner = getattr(send, "__self__", None)
        if owner is None:
            return None
        transport = getattr(owner, "transport", None)
        if transport is not None:
            return transport
        send = getattr(owner, "real_send", None)
    return None


def remember_transport(scope: dict[str, Any], send: Any) -> dict[str, Any]:
    """``scope`` with the connection's transport under ``TRANSPORT_KEY`` (for SSE views, which
    never see ``send``: Django calls it for them). Call from the outermost ASGI application."""
    if scope.get("type") not in ("http", "websocket"):
        return scope
    return {**scope, TRANSPORT_KEY: transport_of(send)}


def buffered_bytes(transport: Any, *, kernel: bool = True) -> int | None:
    """Bytes written to ``transport`` that the client has not acknowledged (``None``: unknown;
    with ``kernel=False`` only those the server process itself still holds).

    Two parts. What the server still holds: asyncio transports (uvicorn) report it with
    ``get_write_buffer_size()``; Twisted's TCP transports (daphne) keep it in ``dataBuffer``
    (from ``offset``) plus ``_tempDataBuffer`` (``_tempDataLen`` bytes), what ``FileDescriptor``
    itself compares to its ``bufferSize`` (polling these is simpler than registering a Twisted
    producer; the HTTP channel already registers itself on the transport). And what the kernel
    holds: the socket's send queue (``SIOCOUTQ``: sent but unacknowledged, plus unsent), which
    Linux autotunes up to ``net.ipv4.tcp_wmem``'s maximum (4 MiB by default), so without it a
    client that stopped reading would look caught up while megabytes wait for it.
    """
    if transport is None:
        return None
    held: int | None = None
    size = getattr(transport, "get_write_buffer_size", None)
    if callable(size):
        with contextlib.suppress(Exception):
            held = int(size())
    else:
        data = getattr(transport, "dataBuffer", None)
        if isinstance(data, (bytes, bytearray, memoryview)):
            held = (
                len(data)
                - int(getattr(transport, "offset", 0))
                + int(getattr(transport, "_tempDataLen", 0))
            )
    if held is None:
        return None
    return held + (_kernel_send_queue(transport) if kernel else 0)


def _kernel_send_queue(transport: Any) -> int:
    """Bytes in the socket's kernel send queue (0 where the platform cannot tell)."""
    sock = getattr(transport, "socket", None)  # Twisted
    if sock is None:
        with contextlib.suppress(Exception):
            sock = transport.get_extra_info("socket")  # asyncio (uvloop: a pseudo-socket)
    try:
        raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")  # type: ignore[union-attr]
        return max(int(struct.unpack("i", raw)[0]), 0)
    except Exception:
        return 0


def abort_transport(transport: Any) -> None:
    """Drop the connection now, discarding whatever it still buffers: the last resort for a
    client that stopped reading. asyncio (uvicorn): ``SO_LINGER`` 0 first, or the kernel would
    keep the unsent bytes and keep probing the client's closed window, then ``abort()``;
    Twisted (daphne): ``abortConnection()``, which does the same. Either way the client sees a
    reset."""
    sock = None
    with contextlib.suppress(Exception):
        sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(Exception):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    for name in ("abort", "abortConnection"):
        method = getattr(transport, name, None)
        if callable(method):
            with contextlib.suppress(Exception):
                method()
            return


async def flush_or_drop(
    transport: Any, stall_s: float, waiting: Callable[[int], bool] | None = None
) -> bool:
    """Wait while ``waiting(unsent bytes)`` holds (default: the transport holds unsent bytes)
    and the client keeps reading; drop the connection (:func:`abort_transport`) once the
    transport's unsent bytes have not gone down for ``stall_s`` seconds. A client that reads,
    however slowly, so gets its final frame; one that stopped reading is dropped. Returns
    ``True`` when no longer waiting, ``False`` after dropping the connection."""
    waiting = waiting or (lambda size: size > 0)
    last, since = -1, time.monotonic()
    while True:
        size = buffered_bytes(transport) or 0
        if not waiting(size):
            return True
        if last < 0 or size < last:
            since = time.monotonic()  # progress: the client read some
        last = size
        if time.monotonic() - since > stall_s:
            logger.warning(
                "dropping a stream connection: %d bytes unread for %.1f s", size, stall_s
            )
            abort_transport(transport)
            return False
        await asyncio.sleep(_POLL_S * 2)


class Outbox:
    """The bounded queue between a stream's producer (the subscription pump, control frames)
    and its writer (a WebSocket ``send`` loop, or Django pulling an SSE generator).

    ``put()`` never blocks: the producer keeps draining its channel-layer channel whatever the
    client does, so the layer never holds messages for it. Frames wait here while the
    transport holds more than 64 KiB unsent; ``put()`` raises :class:`SlowConsumer` when the
    frames waiting here plus the transport's unsent bytes exceed ``max_bytes`` (or more than
    ``max_frames`` frames wait), or when frames have waited ``stall_s`` seconds without the
    writer taking any (its send is stuck: uvicorn's flow control). ``get()`` raises it when the
    transport does not drain below 64 KiB for ``stall_s`` (daphne: Twisted buffers instead).
    Sizes are bytes of UTF-8 text; times are seconds.
    """

    def __init__(
        self,
        *,
        transport: Any = None,
        max_bytes: int | None = None,
        max_frames: int | None = None,
        stall_s: float | None = None,
    ) -> None:
        self.transport = transport
        self.max_bytes = max_bytes if max_bytes is not None else settings.STREAM_MAX_BUFFER_BYTES
        self.max_frames = max_frames if max_frames is not None else settings.STREAM_BUFFER_LIMIT
        self.stall_s = stall_s if stall_s is not None else settings.STREAM_SEND_TIMEOUT_S
        self.frames: collections.deque[tuple[str, int | None, int]] = collections.deque()
        self.bytes = 0
        self.failed: SlowConsumer | None = None
        self.closed = False
        self.sent_seq: int | None = None  # seq of the last event the writer handed over
        self.final_sent = False  # the writer handed over its final frame (SSE)
        self.watched = False  # a flush_or_drop watchdog runs for it (SSE)
        self.waiting_since = time.monotonic()  # of the oldest frame nobody has taken yet
        self._ready = asyncio.Event()

    def pending(self) -> int:
        """Bytes waiting here plus bytes the transport has not written to the socket yet."""
        return self.bytes + (buffered_bytes(self.transport) or 0)

    async def room(self) -> None:
        """Wait until less than half of ``max_bytes`` is pending: the pump calls it before
        frames it reads from the database (a replay, a backfill), which can wait at no cost,
        so a client resuming far behind is paced, not disconnected. Raises SlowConsumer
        (``send_timeout``) after ``stall_s`` seconds without room."""
        started = time.monotonic()
        while self.pending() >= self.max_bytes // 2:
            if self.failed is not None:
                raise self.failed
            if time.monotonic() - started > self.stall_s:
                self.fail(SlowConsumer("send_timeout", self.pending()))
            await asyncio.sleep(_POLL_S)

    def put(self, text: str, seq: int | None = None) -> None:
        """Queue one frame (``seq`` for an event). Raises SlowConsumer (and stays failed)."""
        if self.failed is not None:
            raise self.failed
        if self.closed:
            return
        if not self.frames:
            self.waiting_since = time.monotonic()
        size = len(text.encode())
        self.frames.append((text, seq, size))
        self.bytes += size
        self._ready.set()
        waiting = self.pending()
        if waiting > self.max_bytes or len(self.frames) > self.max_frames:
            self.fail(SlowConsumer("buffer_full", waiting))
        if time.monotonic() - self.waiting_since > self.stall_s:
            self.fail(SlowConsumer("send_timeout", waiting))

    def close(self) -> None:
        """No more frames: ``get()`` returns ``None`` once the queue is empty."""
        self.closed = True
        self._ready.set()

    def fail(self, exc: SlowConsumer) -> None:
        """Give up (the first reason sticks): drop the waiting frames, since the client resumes
        from its last ``seq`` anyway, and raise the SlowConsumer."""
        if self.failed is None:
            self.failed = exc
            logger.warning(
                "slow stream consumer disconnected: %s (transport %s)",
                exc.details(),
                type(self.transport).__name__,
            )
        self.frames.clear()
        self.bytes = 0
        self._ready.set()
        raise self.failed

    async def get(self) -> tuple[str, int | None] | None:
        """The next ``(text, seq)``, once the transport has room; ``None`` after ``close()``.

        Raises SlowConsumer when the outbox failed or the transport stayed above 64 KiB
        unsent for ``stall_s`` seconds.
        """
        while not self.frames:
            if self.failed is not None:
                raise self.failed
            if self.closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        started = time.monotonic()
        while (buffered_bytes(self.transport, kernel=False) or 0) > _HIGH_WATER:
            if self.failed is not None:
                raise self.failed
            if time.monotonic() - started > self.stall_s:
                self.fail(SlowConsumer("send_timeout", self.pending()))
            await asyncio.sleep(_POLL_S)
        if self.failed is not None:
            raise self.failed
        text, seq, size = self.frames.popleft()
        self.bytes -= size
        return text, seq

    async def get_batch(self, limit: int = _HIGH_WATER) -> tuple[str, int | None] | None:
        """Like :meth:`get`, joined with the frames already waiting behind it (up to ``limit``
        bytes): one write per batch instead of one per event, for a writer that may join frames
        (SSE: ~3k events/s one chunk each under uvicorn, bench/peer.py). The seq is the batch's
        last one."""
        first = await self.get()
        if first is None:
            return None
        texts, seq = [first[0]], first[1]
        size = len(first[0])
        while self.frames and size < limit and self.failed is None:
            text, frame_seq, frame_size = self.frames.popleft()
            self.bytes -= frame_size
            texts.append(text)
            size += frame_size
            if frame_seq is not None:
                seq = frame_seq
        return "".join(texts), seq

    def delivered(self, seq: int | None) -> None:
        """The writer handed a frame to the transport (and, under uvicorn, its send returned)."""
        self.waiting_since = time.monotonic()
        if seq is not None:
            self.sent_seq = seq
