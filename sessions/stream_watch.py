"""One query for many quiet streams: the latest ``seq`` of each watched session.

A stream that heard nothing for ``STREAM_HEARTBEAT_S`` re-checks the log before its heartbeat
(covering a lost doorbell). Done per stream, that was one query per socket per period, all on
one thread: with ~500 idle sockets the checks fell behind, heartbeats stopped and new
handshakes timed out (bench/streams.py). :func:`session_last_seq` coalesces the checks of a
process: concurrent callers within :data:`GATHER_S` share one
``SELECT id, last_seq … WHERE id IN (…)``, and an answer younger than :data:`FRESH_S` is
reused, so N sockets on one session cost one query per :data:`FRESH_S`, and N sessions one
query per gather window.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from dataclasses import dataclass, field

from runtime_project.db import db_call
from sessions.models import Session

GATHER_S = 0.05  # seconds callers wait for others to join one query
FRESH_S = 1.0  # seconds an answer is reused; far below any heartbeat period
_CHUNK = 900  # ids per query (under SQLite's bound-parameter limit)


@dataclass
class _Watcher:
    pending: dict[int, list[asyncio.Future[int]]] = field(default_factory=dict)
    seen: dict[int, tuple[int, float]] = field(default_factory=dict)  # pk -> (last_seq, when)
    runner: asyncio.Task[None] | None = None


# Futures belong to one event loop (tests run several): one watcher per loop.
_WATCHERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Watcher] = (
    weakref.WeakKeyDictionary()
)


def _read(pks: list[int]) -> dict[int, int]:
    out: dict[int, int] = {}
    for i in range(0, len(pks), _CHUNK):
        rows = Session.objects.filter(pk__in=pks[i : i + _CHUNK]).values_list("pk", "last_seq")
        out.update(rows)
    return out


async def _run(watcher: _Watcher) -> None:
    await asyncio.sleep(GATHER_S)
    while watcher.pending:
        batch, watcher.pending = watcher.pending, {}
        try:
            found = await db_call(_read)(list(batch))
        except Exception as exc:
            for futures in batch.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(exc)
            continue
        now = time.monotonic()
        if len(watcher.seen) > 100_000:  # bounded: sessions come and go
            watcher.seen.clear()
        for pk, futures in batch.items():
            last = found.get(pk, 0)
            watcher.seen[pk] = (last, now)
            for future in futures:
                if not future.done():
                    future.set_result(last)


async def session_last_seq(session_pk: int) -> int:
    """The session's ``last_seq`` as of at most :data:`FRESH_S` ago (0 if it is gone).

    Raises what the database raises (the caller's stream then fails and the client resumes).
    """
    loop = asyncio.get_running_loop()
    watcher = _WATCHERS.get(loop)
    if watcher is None:
        watcher = _WATCHERS[loop] = _Watcher()
    hit = watcher.seen.get(session_pk)
    if hit is not None and time.monotonic() - hit[1] < FRESH_S:
        return hit[0]
    future: asyncio.Future[int] = loop.create_future()
    watcher.pending.setdefault(session_pk, []).append(future)
    if watcher.runner is None or watcher.runner.done():
        watcher.runner = loop.create_task(_run(watcher))
    return await future
