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
