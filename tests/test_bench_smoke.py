"""``bench/streams.py`` end to end at minimal counts, against a real daphne on the test database:
a benchmark that silently measured broken streams would be worse than none.

One fan-out of 10 subscribers over WebSocket and over SSE, 20 idle sockets held through
heartbeats, 5 concurrent tasks of each kind; every subscriber must have every event of the
session after its cursor, once, in order, as the log holds them.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from bench import streams
from bench.streams_clients import Subscriber
from tests import procs
from tests.factories import make_token


def test_subscriber_records_gaps_duplicates_and_reordering() -> None:
    """The continuity check the benchmark relies on: it does flag a broken stream."""

    def envelope(seq: int) -> dict[str, Any]:
        return {"seq": seq, "type": "custom", "ts": "2026-01-01T00:00:00+00:00",
                "data": {"t": 1.0}}  # fmt: skip

    for seqs, error in (
        ([1, 2, 3], None),
        ([1, 3], "seq 3 after 1"),
        ([1, 2, 2], "seq 2 after 2"),
        ([2, 1], "seq 2 after 0"),
    ):
        sub = Subscriber(after=0)
        for seq in seqs:
            sub.frame(envelope(seq), 2.0)
        assert sub.error == error
        assert sub.count == len(seqs)
        assert list(sub.delays_ms) == [1000.0] * len(seqs)
    sub = Subscriber(after=0, terminals=1)
    sub.frame({"seq": 1, "type": "task.status", "data": {"status": "running"}}, 0.0)
    assert not sub.done
    sub.frame({"seq": 2, "type": "task.status", "data": {"status": "succeeded"}}, 0.0)
    assert sub.done
    assert sub.error is None


@pytest.fixture
def bench_token(transactional_db: Any) -> str:
    """A token of a new user, committed so that the server process sees it."""
    return make_token(get_user_model().objects.create_user("bench", password="x"))


@pytest.mark.timeout(400)
def test_streams_bench_quick(bench_token: str, tmp_path: Path) -> None:
    args = streams.parse_args(["--quick", "--timeout", "60", "--server", "daphne"])
    port = procs.free_port()
    proc = procs.start_daphne(port, tmp_path / "daphne.log", **streams.server_env(args))
    server = streams.Target(
        url=f"http://127.0.0.1:{port}",
        ws_url=f"ws://127.0.0.1:{port}",
        headers={"Authorization": f"Bearer {bench_token}"},
        pid=proc.pid,
        close=lambda: procs.stop(proc),
    )
    try:
        res = asyncio.run(streams.run(args, server))
    finally:
        procs.stop(proc)

    assert res["format"] == "custom"  # one event per line: spec.stdout_format "events"
    assert [(t, real["n"]) for t, _, real in res["fanout"]] == [("ws", 10), ("sse", 10)]
    for _transport, base, real in res["fanout"]:
        log = real["log"]
        seqs = [e["seq"] for e in log]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # the log itself is gapless
        assert sum(e["type"] == "custom" for e in log) == 50
        assert [e["data"]["i"] for e in log if e["type"] == "custom"] == list(range(50))
        for after, last_seq, count, error in real["subs"]:
            assert error is None
            assert after + 1 == seqs[0]
            assert last_seq == seqs[-1]
            assert count == 50
        assert len(real["delays"]) == 10 * 50
        assert all(0 <= d < 60_000 for d in real["delays"])
        assert real["delivered"] > 0
        assert real["written"] > 0
        assert all(error is None and count == 50 for _, _, count, error in base["subs"])

    base, real = res["idle"]
    assert real["n"] == 20
    assert min(real["beats"]) >= 1  # each socket got a heartbeat while held
    assert real["before"] > 0
    assert real["after"] > 0

    kinds = {kind: b for kind, b in res["burst"]}
    assert set(kinds) == {"command", "llm"}
    for b in kinds.values():
        assert len(b["each"]) == 5
        assert b["alone"] > 0
        assert b["wall"] >= max(b["each"]) * 0.99

    text = streams.report(args, res, ["--quick"])
    assert "| WebSocket | 10 | 50 |" in text
    assert "| SSE | 10 | 50 |" in text
