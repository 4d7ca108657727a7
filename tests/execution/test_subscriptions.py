"""EventSubscription (the core of SSE and WebSocket streams) against the configured channel
layer: every event exactly once, in order, whatever path it arrives by."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from sessions.services.events import EventDraft, events_append
from sessions.subscriptions import EventSubscription

pytestmark = [pytest.mark.django_db(transaction=True)]


def _append_batch(session: Any, task: Any, texts: list[str], final: str) -> list[int]:
    drafts = [
        EventDraft(
            type="process.stdout",
            data={"text": t, "process_id": "p"},
            task_id=task.pk,
            task_uuid=str(task.uuid),
        )
        for t in texts
    ]
    drafts.append(
        EventDraft(
            type="task.status", data={"status": final}, task_id=task.pk, task_uuid=str(task.uuid)
        )
    )
    return [e.seq for e in events_append(session=session, drafts=drafts)]


@pytest.mark.parametrize("broadcast_max_bytes", [1, 256 * 1024])
async def test_a_task_stream_delivers_a_whole_batch_that_ends_with_the_terminal_status(
    make_task: Any, session: Any, settings: Any, broadcast_max_bytes: int
) -> None:
    """A batch too big to publish with its payload is backfilled from the log; when that batch
    holds the terminal status, the events before it must still be delivered."""
    settings.EVENT_BROADCAST_MAX_BYTES = broadcast_max_bytes
    task = await sync_to_async(make_task)("true")
    received: list[dict[str, Any]] = []
    async with EventSubscription(session=session, task=task, after=0, heartbeat_s=5) as sub:
        stream = sub.__aiter__()
        received.append(await asyncio.wait_for(stream.__anext__(), 10))  # replay: queued
        # Appended while the subscriber is live, so it arrives through the channel layer.
        seqs = await sync_to_async(_append_batch)(
            session, task, [f"chunk-{i}\n" for i in range(20)], "succeeded"
        )

        async def collect() -> None:
            async for envelope in stream:
                if envelope is not None:
                    received.append(envelope)

        await asyncio.wait_for(collect(), 10)
    assert [e["seq"] for e in received] == sorted({e["seq"] for e in received})  # no duplicate
    live = [e for e in received if e["seq"] >= seqs[0]]
    assert [e["seq"] for e in live] == seqs
    assert "".join(e["data"]["text"] for e in live[:-1]) == "".join(
        f"chunk-{i}\n" for i in range(20)
    )
    assert live[-1]["data"]["status"] == "succeeded"


async def test_quiet_streams_share_their_log_checks(
    make_task: Any, session: Any, monkeypatch: Any
) -> None:
    """Many quiet streams re-checking the log at once cost one query, and each still sees its
    own session's newest seq (sessions.stream_watch)."""
    from sessions import stream_watch
    from sessions.models import Session

    other = await sync_to_async(lambda: Session.objects.create(
        owner=session.owner, team=session.team, agent=session.agent
    ))()  # fmt: skip
    task = await sync_to_async(make_task)("true")
    reads: list[list[int]] = []
    real_read = stream_watch._read

    def counted(pks: list[int]) -> dict[int, int]:
        reads.append(sorted(pks))
        return real_read(pks)

    monkeypatch.setattr(stream_watch, "_read", counted)
    session_seq = await sync_to_async(lambda: Session.objects.get(pk=session.pk).last_seq)()
    answers = await asyncio.gather(
        *[stream_watch.session_last_seq(pk) for pk in [session.pk, other.pk] * 100]
    )
    assert answers == [session_seq, 0] * 100
    assert reads == [sorted([session.pk, other.pk])]

    # A newer event is seen once the answer is older than FRESH_S.
    seqs = await sync_to_async(_append_batch)(session, task, ["x"], "succeeded")
    await asyncio.sleep(stream_watch.FRESH_S + 0.05)
    assert await stream_watch.session_last_seq(session.pk) == seqs[-1]
    assert len(reads) == 2


async def _take(stream: Any, count: int) -> list[dict[str, Any]]:
    """The next ``count`` envelopes of ``stream`` (heartbeats skipped)."""
    out: list[dict[str, Any]] = []
    while len(out) < count:
        envelope = await asyncio.wait_for(stream.__anext__(), 10)
        if envelope is not None:
            out.append(envelope)
    return out


async def test_streams_of_one_session_share_one_group_membership(
    make_task: Any, session: Any
) -> None:
    """Fifty streams of a session in one process join its channel-layer group once
    (sessions.fanout); each still gets every live event once, in order; the others go on when
    one leaves, and the last one out leaves the group."""
    from channels.layers import InMemoryChannelLayer, get_channel_layer

    from sessions import fanout
    from sessions.broadcast import session_group

    layer = get_channel_layer()
    group = session_group(session.uuid)
    task = await sync_to_async(make_task)("true")
    subs = [EventSubscription(session=session, task=None, after=0, heartbeat_s=5)
            for _ in range(50)]  # fmt: skip
    for sub in subs:
        await sub.__aenter__()
    streams = [sub.__aiter__() for sub in subs]
    assert fanout.members_of(group) == 50
    in_memory = isinstance(layer, InMemoryChannelLayer)
    if in_memory:  # the embedded default's layer: one channel in the group
        assert len(layer.groups[group]) == 1
    before = await sync_to_async(lambda: type(session).objects.get(pk=session.pk).last_seq)()
    replayed = await asyncio.gather(*[_take(s, before) for s in streams])
    seqs = await sync_to_async(_append_batch)(session, task, ["a", "b", "c"], "running")
    live = await asyncio.gather(*[_take(s, len(seqs)) for s in streams])
    for got, old in zip(live, replayed, strict=True):
        assert [e["seq"] for e in old] == list(range(1, before + 1))
        assert [e["seq"] for e in got] == seqs
        assert [e["data"].get("text") for e in got[:3]] == ["a", "b", "c"]

    for sub in subs[1:]:
        await sub.__aexit__(None, None, None)
    assert fanout.members_of(group) == 1
    more = await sync_to_async(_append_batch)(session, task, ["d"], "succeeded")
    assert [e["seq"] for e in await _take(streams[0], len(more))] == more
    await subs[0].__aexit__(None, None, None)
    assert fanout.members_of(group) == 0
    if in_memory:
        assert not layer.groups.get(group)


async def test_a_live_sink_takes_batches_and_its_failure_ends_the_stream(
    make_task: Any, session: Any
) -> None:
    """A stream's ``live_sink`` gets live envelopes in order while the stream waits; what the
    sink raises (a slow client's SlowConsumer) is raised by the stream."""
    from sessions.outbox import SlowConsumer

    task = await sync_to_async(make_task)("true")
    before = await sync_to_async(lambda: type(session).objects.get(pk=session.pk).last_seq)()
    sunk: list[int] = []
    fail_at: list[int] = []

    def sink(envelope: dict[str, Any]) -> None:
        if fail_at and envelope["seq"] >= fail_at[0]:
            raise SlowConsumer("buffer_full", 123)
        sunk.append(envelope["seq"])

    async with EventSubscription(session=session, after=before, heartbeat_s=5) as sub:
        sub.live_sink = sink
        stream = sub.__aiter__()
        pending = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(0.1)  # the stream waits for live batches
        seqs = await sync_to_async(_append_batch)(session, task, ["a", "b"], "running")
        for _ in range(100):
            if len(sunk) == len(seqs):
                break
            await asyncio.sleep(0.05)
        assert sunk == seqs
        assert not pending.done()  # delivered without waking the stream
        fail_at.append(seqs[-1] + 2)
        more = await sync_to_async(_append_batch)(session, task, ["c", "d"], "succeeded")
        with pytest.raises(SlowConsumer):
            await asyncio.wait_for(pending, 10)
    assert sunk == seqs + more[:1]


async def test_a_stream_that_lags_keeps_a_bounded_queue_and_reads_the_rest_from_the_log(
    make_task: Any, session: Any
) -> None:
    """Live batches queue for a stream that is not reading (its client is slow to take a
    replay) up to ``INBOX_MAX``; past that it keeps a doorbell and reads the log: every event
    still arrives once, in order."""
    from sessions import subscriptions

    task = await sync_to_async(make_task)("true")
    before = await sync_to_async(lambda: type(session).objects.get(pk=session.pk).last_seq)()
    batches = subscriptions.INBOX_MAX + 40
    async with EventSubscription(session=session, after=before, heartbeat_s=5) as sub:
        stream = sub.__aiter__()

        def write() -> list[int]:
            seqs: list[int] = []
            for i in range(batches):
                seqs += _append_batch(session, task, [f"line {i}"], "running")
            return seqs

        seqs = await sync_to_async(write)()
        await asyncio.sleep(0.2)  # the last doorbells arrive
        assert len(sub._inbox) <= subscriptions.INBOX_MAX  # the bound itself
        got = await _take(stream, len(seqs))
    assert [e["seq"] for e in got] == seqs
