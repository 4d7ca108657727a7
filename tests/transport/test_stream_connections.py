"""A request answered with a stream gives its thread and database connection back at once
(``runtime_project.handlers.ASGIHandler._detach``), over a real daphne on PostgreSQL: streams
that last do not pin one PostgreSQL connection each (it allows 100 by default)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.db import connection

from tests.transport.conftest import DaphneServer, live_daphne

pytestmark = [pytest.mark.transport, pytest.mark.sandbox]

STREAMS = 12
# The loop's default pool (``runtime_project.db.db_call``) keeps a connection per thread, and so
# does each idle request thread the handler keeps (``ASGI_IDLE_THREADS``): at most this many
# together, whatever the number of streams.
IDLE_THREADS = 2
POOL = min(32, (os.cpu_count() or 1) + 4) + IDLE_THREADS


@pytest.fixture
def daphne_server(transactional_db: Any, tmp_path: Path) -> Iterator[DaphneServer]:
    with live_daphne(tmp_path, STREAM_HEARTBEAT_S=1, ASGI_IDLE_THREADS=IDLE_THREADS) as server:
        yield server


def _server_connections() -> int:
    """Connections to the test database other than this test's own."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        )
        return int(cursor.fetchone()[0])


@pytest.mark.parametrize("kind", ["sandbox exec", "task create"])
def test_streamed_answers_do_not_hold_a_connection_each(
    kind: str, daphne_server: Any, http: httpx.Client
) -> None:
    """``sandbox exec`` streams a command's output from a sync view whose body makes its own
    ORM calls; ``task create`` with ``stream: true`` answers from a sync DRF view with the
    task's events (``sse_response``)."""
    if connection.vendor != "postgresql":
        pytest.skip("counts PostgreSQL connections (CI runs it on PostgreSQL)")
    # 4 sessions (the team's sandbox quota is 10); their tasks queue behind each other, and a
    # queued task's stream is open too.
    sids = [http.post("/api/v1/sessions", json={"agent": "shell"}).json()["id"]
            for _ in range(4)]  # fmt: skip
    command = "echo up; sleep 2; echo done"
    if kind == "sandbox exec":
        urls = [f"/api/v1/sessions/{sids[0]}/sandbox/exec"] * STREAMS
        body: dict[str, Any] = {"command": command, "stream": True}
    else:
        urls = [f"/api/v1/sessions/{sids[i % len(sids)]}/tasks" for i in range(STREAMS)]
        body = {"input": {"command": command}, "stream": True}
    for sid in sids:  # start the sandboxes, warm the server
        warm = http.post(f"/api/v1/sessions/{sid}/sandbox/exec", json={"command": "true"})
        assert warm.status_code == 200, warm.text
    time.sleep(1.0)
    idle = _server_connections()

    started, done = threading.Barrier(STREAMS + 1), []

    def stream(url: str) -> None:
        with http.stream("POST", url, json=body) as response:
            assert response.status_code == 200
            lines = response.iter_lines()
            for line in lines:  # the first frame: the stream is open
                if line.startswith("data:"):
                    break
            started.wait(timeout=60)
            done.append("".join(lines))

    readers = [threading.Thread(target=stream, args=(url,)) for url in urls]
    for reader in readers:
        reader.start()
    started.wait(timeout=60)
    time.sleep(0.5)
    during = _server_connections()
    for reader in readers:
        reader.join(timeout=60)
    assert len(done) == STREAMS and all("done" in text for text in done)
    # Pool threads may open one each; one per stream is what must not happen.
    assert during - idle <= min(POOL, STREAMS - 2), (idle, during)
