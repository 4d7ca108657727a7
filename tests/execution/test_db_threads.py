"""``sessions.executors.threads``: the loop's default pool closes its threads' database
connections when it shuts down, instead of leaving them to the garbage collector."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db import connection, connections

from sessions.executors.threads import ClosingThreadPool, install_closing_pool

pytestmark = pytest.mark.django_db(transaction=True)


def _query() -> Any:
    """Run a query in this thread; return its connection handle and the server-side id."""
    handle = connections["default"]  # this thread's wrapper (``connection`` is a proxy)
    with handle.cursor() as cursor:
        cursor.execute("SELECT 1")
    backend = handle.connection.info.backend_pid if handle.vendor == "postgresql" else 0
    return handle, backend


def _backends_alive(pids: list[int]) -> set[int]:
    if connection.vendor != "postgresql":
        return set()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE pid = ANY(%s)", [pids])
        return {row[0] for row in cursor.fetchall()}


@pytest.mark.parametrize("pool_class", [ClosingThreadPool, ThreadPoolExecutor])
def test_shutting_the_pool_down_closes_its_threads_connections(pool_class: type) -> None:
    """A plain pool (the control) leaves every thread's connection open after shutdown."""
    pool = pool_class(max_workers=3)
    used = [pool.submit(_query).result(timeout=30) for _ in range(6)]
    handles = {id(h): h for h, _ in used}.values()
    pids = [pid for _, pid in used]
    assert all(h.connection is not None for h in handles)
    pool.shutdown(wait=True)
    closed = all(h.connection is None for h in handles)
    assert closed is (pool_class is ClosingThreadPool)
    if pool_class is ClosingThreadPool:
        assert not _backends_alive(pids)  # PostgreSQL: the server-side sessions ended too
    else:
        for h in handles:  # the control's cleanup, so it leaks nothing either
            h.inc_thread_sharing()
            h.close()


def test_a_loop_with_the_pool_installed_closes_them_when_it_ends() -> None:
    """What ``asyncio.run`` (``execute_task``, a Celery task) and every test's loop do."""

    async def main() -> Any:
        install_closing_pool()
        return await asyncio.to_thread(_query)

    handle, pid = asyncio.run(main())
    assert handle.connection is None
    assert not _backends_alive([pid])
