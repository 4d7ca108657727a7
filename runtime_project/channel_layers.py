"""The embedded default's channel layer: Channels' in-memory layer, made to scale with streams.

``channels.layers.InMemoryChannelLayer`` (4.3) costs O(every channel) per call and O(every
member) twice per group message, which is what many open streams do:

- It sweeps every channel's queue and every group's members for expired entries on each
  ``receive()`` and ``group_send()``. Each open stream re-enters ``receive()`` at least once per
  heartbeat period, so N idle streams cost O(N²) per period: with 4,000 idle WebSockets the
  sweep was the largest share of the server's samples (py-spy) and handshakes slowed to a few
  per second. Here the sweep runs at most every :attr:`InMemoryChannelLayer.clean_interval_s`
  seconds; messages expire after ``expiry`` (60 s by default) and group memberships after
  ``group_expiry`` (a day), so a sweep up to a second late changes nothing a client can see.
- ``group_send()`` starts one asyncio task per member and ``deepcopy``s the message for each
  (a batch of events to 1,000 subscribers: 1,000 deep copies). Here a group message is packed
  once with msgpack and each receiver unpacks its own copy, as ``channels_redis`` does (so
  messages must be msgpack-serializable, which the Redis layer requires anyway), with no task
  per member.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgpack
from channels import layers
from channels.exceptions import ChannelFull


def _pack(message: dict[str, Any]) -> bytes:
    return msgpack.packb(message, use_bin_type=True)


class InMemoryChannelLayer(layers.InMemoryChannelLayer):
    """Channels' in-memory layer (same settings: ``expiry``, ``group_expiry``, ``capacity``,
    ``channel_capacity``) whose expiry sweep runs at most once per ``clean_interval_s`` and
    whose queues hold msgpack bytes, packed once per group message.

    Raises what Channels' layer raises: ``ChannelFull`` from :meth:`send` when a channel's
    queue is at capacity (``group_send`` skips full members, as Channels does), ``TypeError``
    for a message msgpack cannot pack."""

    clean_interval_s = 1.0
    _cleaned_at = float("-inf")  # time.monotonic() of the last sweep

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now - self._cleaned_at < self.clean_interval_s:
            return
        self._cleaned_at = now
        super()._clean_expired()

    def _queue(self, channel: str) -> asyncio.Queue[tuple[float, bytes]]:
        queue = self.channels.get(channel)
        if queue is None:
            queue = self.channels[channel] = asyncio.Queue(maxsize=self.get_capacity(channel))
        return queue

    def _put(self, channel: str, packed: bytes) -> None:
        try:
            self._queue(channel).put_nowait((time.time() + self.expiry, packed))
        except asyncio.QueueFull:
            raise ChannelFull(channel) from None

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        """Queue ``message`` on ``channel`` (a copy: the receiver gets its own)."""
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_channel_name(channel)
        assert "__asgi_channel__" not in message
        self._put(channel, _pack(message))

    async def receive(self, channel: str) -> dict[str, Any]:
        """The next message on ``channel``, waiting for one."""
        self.require_valid_channel_name(channel)
        self._clean_expired()
        queue = self._queue(channel)
        try:
            _, packed = await queue.get()
        finally:
            if queue.empty():
                self.channels.pop(channel, None)
        message: dict[str, Any] = msgpack.unpackb(packed, raw=False)
        return message

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        """Queue ``message`` on every member of ``group``; a full member misses it."""
        assert isinstance(message, dict), "Message is not a dict"
        self.require_valid_group_name(group)
        self._clean_expired()
        members = self.groups.get(group)
        if not members:
            return
        packed = _pack(message)
        for channel in list(members):
            try:
                self._put(channel, packed)
            except ChannelFull:
                pass
