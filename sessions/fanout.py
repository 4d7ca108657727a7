"""One channel-layer membership per session per process, shared by its local subscribers.

Every stream used to join the session's group itself, so a batch of events to N subscribers in
one process cost N layer messages: N queue puts and wake-ups (N Redis list pushes with
``channels_redis``), N msgpack decodes and N JSON encodings of the same envelopes. A
:class:`SessionFanout` joins the group once for all subscribers of that session on this event
loop, reads each ``events.appended`` message once and offers it to every local subscriber in
turn (:meth:`Member.offer`), with each envelope's JSON encoded at most once
(:func:`envelope_json`). What a subscriber sees does not change: it still joins before it
replays, skips seqs it has, and backfills on a gap (``sessions.subscriptions``).

The layer is at-most-once and a full channel drops messages (``capacity``): a subscriber that
misses a batch sees a gap in ``seq`` and reads it from the log. If the layer's ``receive``
fails (Redis gone), every member gets the error and the hub closes; the next subscriber
starts a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import weakref
from typing import Any, Protocol

logger = logging.getLogger(__name__)


class LiveEnvelope(dict[str, Any]):
    """An event envelope as the hub hands it to every local subscriber (shared: read-only),
    with its JSON text once someone asked for it (:func:`envelope_json`)."""

    __slots__ = ("text",)
    text: str


def envelope_json(envelope: dict[str, Any]) -> str:
    """``json.dumps(envelope, default=str)``, computed once per live envelope however many
    subscribers send it."""
    text: str | None = getattr(envelope, "text", None)
    if text is None:
        text = json.dumps(envelope, default=str)
        if isinstance(envelope, LiveEnvelope):
            envelope.text = text
    return text


class Member(Protocol):
    """A local subscriber of a :class:`SessionFanout`."""

    def offer(self, message: dict[str, Any]) -> None:
        """Take ``message`` (an ``events.appended`` message, shared: do not mutate) without
        waiting; called on the event loop, in arrival order."""

    def fail(self, exc: BaseException) -> None:
        """The layer failed: the member's next wait raises ``exc``."""


class SessionFanout:
    """The process's membership of one channel-layer ``group`` on one event loop.

    Use :func:`join` and :func:`leave`; ``members`` are offered each message in the order
    they joined."""

    def __init__(self, layer: Any, group: str) -> None:
        self.layer = layer
        self.group = group
        self.members: dict[Member, None] = {}  # insertion-ordered set
        self.channel: str | None = None
        self.closed = False
        self.joined: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.reader: asyncio.Task[None] = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        try:
            self.channel = await self.layer.new_channel("stream.")
            await self.layer.group_add(self.group, self.channel)
        except BaseException as exc:
            self._close()
            if isinstance(exc, asyncio.CancelledError):
                self.joined.cancel()
                raise
            self.joined.set_exception(exc)
            return  # raised to every member waiting in join()
        self.joined.set_result(None)
        try:
            while True:
                message = await self.layer.receive(self.channel)
                if message.get("type") != "events.appended":
                    continue
                if message.get("events"):
                    message["events"] = [LiveEnvelope(e) for e in message["events"]]
                for member in list(self.members):
                    try:
                        member.offer(message)
                    except Exception:  # one subscriber's bug must not cost the others
                        logger.exception("a stream subscriber failed to take a batch")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning("channel layer receive on %s failed: %r", self.group, exc)
            self._close()
            for member in list(self.members):
                member.fail(exc)

    def _close(self) -> None:
        self.closed = True
        hubs = _HUBS.get(asyncio.get_running_loop())
        if hubs is not None and hubs.get(self.group) is self:
            del hubs[self.group]

    async def shut(self) -> None:
        """Stop reading and leave the group (the last member left)."""
        self._close()
        self.reader.cancel()
        with contextlib.suppress(BaseException):
            await self.reader
        joined = self.joined.done() and not self.joined.cancelled() and not self.joined.exception()
        if self.channel is not None and joined:
            with contextlib.suppress(Exception):
                await self.layer.group_discard(self.group, self.channel)


_HUBS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, SessionFanout]] = (
    weakref.WeakKeyDictionary()
)


_SHUTTING: set[asyncio.Future[None]] = set()


async def join(layer: Any, group: str, member: Member) -> SessionFanout:
    """Add ``member`` to this process's membership of ``group``, joining the group first if
    nobody here has; returns once the group is joined (messages sent from then on reach
    ``member``). Raises what the layer's ``new_channel``/``group_add`` raise."""
    loop = asyncio.get_running_loop()
    hubs = _HUBS.setdefault(loop, {})
    hub = hubs.get(group)
    if hub is None or hub.closed:
        hub = hubs[group] = SessionFanout(layer, group)
    hub.members[member] = None
    try:
        await asyncio.shield(hub.joined)
    except BaseException:
        hub.members.pop(member, None)
        if not hub.members and not hub.closed:  # cancelled while joining, alone
            shutting = asyncio.ensure_future(hub.shut())
            _SHUTTING.add(shutting)  # tasks are weakly held
            shutting.add_done_callback(_SHUTTING.discard)
        raise
    return hub


async def leave(hub: SessionFanout, member: Member) -> None:
    """Remove ``member``; the last one out leaves the group."""
    hub.members.pop(member, None)
    if not hub.members and not hub.closed:
        await hub.shut()


def members_of(group: str) -> int:
    """Local subscribers of ``group`` on the running loop (0 when none): for tests and
    metrics."""
    hub = _HUBS.get(asyncio.get_running_loop(), {}).get(group)
    return len(hub.members) if hub is not None and not hub.closed else 0
