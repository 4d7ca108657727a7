"""The embedded default's channel layer (``runtime_project.channel_layers``): Channels'
in-memory layer semantics, with one pack per group message and a bounded expiry sweep."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from channels import layers
from channels.exceptions import ChannelFull

from runtime_project.channel_layers import InMemoryChannelLayer


async def test_every_member_gets_its_own_copy_of_a_group_message() -> None:
    layer = InMemoryChannelLayer()
    a, b = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("g", a)
    await layer.group_add("g", b)
    sent: dict[str, Any] = {
        "type": "events.appended",
        "events": [{"seq": 1, "data": {"text": "x", "b": b"\0"}}],
    }
    await layer.group_send("g", sent)
    got_a, got_b = await layer.receive(a), await layer.receive(b)
    assert got_a == got_b == sent
    got_a["events"][0]["data"]["text"] = "changed by one receiver"
    assert got_b["events"][0]["data"]["text"] == "x"
    assert sent["events"][0]["data"]["text"] == "x"
    await layer.group_discard("g", b)
    await layer.group_send("g", {"type": "only.a"})
    assert (await layer.receive(a))["type"] == "only.a"
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(layer.receive(b), 0.05)


async def test_a_full_member_misses_a_group_message_and_a_direct_send_raises() -> None:
    layer = InMemoryChannelLayer(capacity=2)
    full, ok = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("g", full)
    await layer.send(full, {"type": "one"})
    await layer.send(full, {"type": "two"})
    await layer.group_add("g", ok)
    await layer.group_send("g", {"type": "three"})
    assert (await layer.receive(ok))["type"] == "three"
    with pytest.raises(ChannelFull):
        await layer.send(full, {"type": "four"})
    assert [(await layer.receive(full))["type"] for _ in range(2)] == ["one", "two"]


async def test_messages_still_expire_with_the_sweep_bounded() -> None:
    layer = InMemoryChannelLayer(expiry=0.05)
    layer.clean_interval_s = 0.2
    waiting, idle = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("g", waiting)
    await layer.send(waiting, {"type": "stale"})
    await asyncio.sleep(0.3)  # expired, and the sweep may run again
    await layer.send(idle, {"type": "fresh"})
    assert (await layer.receive(idle))["type"] == "fresh"  # receive() sweeps
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(layer.receive(waiting), 0.05)
    # Channels' rule: a channel that let a message expire leaves its groups.
    assert waiting not in layer.groups.get("g", {})


async def test_the_sweep_runs_at_most_once_per_interval() -> None:
    layer = InMemoryChannelLayer()
    sweeps: list[float] = []
    channels = [await layer.new_channel() for _ in range(200)]
    for channel in channels:
        await layer.group_add("g", channel)
    started = time.monotonic()
    real = layers.InMemoryChannelLayer._clean_expired

    def counting(self: InMemoryChannelLayer = layer) -> None:
        sweeps.append(time.monotonic())
        real(self)

    layers.InMemoryChannelLayer._clean_expired = counting  # type: ignore[method-assign]
    try:
        for _ in range(500):
            await layer.group_send("g", {"type": "tick"})
            await asyncio.gather(*(layer.receive(c) for c in channels[:5]))
    finally:
        layers.InMemoryChannelLayer._clean_expired = real  # type: ignore[method-assign]
    elapsed = time.monotonic() - started
    assert 1 <= len(sweeps) <= elapsed / layer.clean_interval_s + 1, (len(sweeps), elapsed)
