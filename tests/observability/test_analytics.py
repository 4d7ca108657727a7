"""The analytics export end to end: real runs (the executor, a scripted model over HTTP, a
bubblewrap sandbox), the real outbound guard, an in-test collector over real HTTP."""

from __future__ import annotations

import json
import logging
import socket
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import Client
from prometheus_client import REGISTRY

from observability import analytics
from sandboxes.registry import get_backend
from sessions.models import Task
from sessions.runners.scripted_llm import ScriptedLLM, Turn
from sessions.services.agents import agent_create
from sessions.services.sessions import session_create
from sessions.services.tasks import task_create
from tests.factories import finish_task, make_session, make_task, make_user
from tests.helpers import wait_terminal
from tests.observability.receivers import Receiver

SELECTED = {"task.status", "usage", "error", "tool.call", "tool.result"}
TOKEN = "an-analytics-token-7f3a"


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def dropped(reason: str) -> float:
    return metric("analytics_events_dropped_total", reason=reason)


async def _run_llm(owner: Any, llm: ScriptedLLM) -> Task:
    llm.add(
        Turn(chunks=["Writing."], tool_calls=[
            {"name": "write_file", "arguments": json.dumps({"path": "a.txt", "content": "x"})},
        ]),
        Turn(chunks=["Done."]),
    )  # fmt: skip
    spec = {"model": {"base_url": llm.base_url, "name": "scripted-1"}, "max_retries": 0,
            "tools": ["write_file"]}  # fmt: skip

    def make() -> Task:
        agent = agent_create(owner=owner, slug=f"a-{time.monotonic_ns()}", name="a", kind="llm",
                             spec=spec)  # fmt: skip
        task, _ = task_create(session=session_create(owner=owner, agent=agent), user=owner,
                              input={"message": "Write a.txt"})  # fmt: skip
        return task

    return await sync_to_async(make)()


async def _finish(executor: Any, task: Task) -> Task:
    executor.kick()
    try:
        return await wait_terminal(task)
    finally:
        await get_backend().stop(str(task.session.uuid))


@pytest.mark.django_db(transaction=True)
@pytest.mark.sandbox
async def test_a_batch_retried_after_503_arrives_once_with_the_selected_events_in_order(
    executor: Any, owner: Any, llm: ScriptedLLM, collector: Receiver, export_to: Any,
    caplog: Any,
) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)
    collector.answers = [(503, {"Retry-After": "0"})]
    exporter = export_to(f"{collector.url}/ingest", allow_private=True, export_token=TOKEN)
    exported = metric("analytics_events_exported_total")
    task = await _finish(executor, await _run_llm(owner, llm))
    assert task.status == "succeeded", task.error
    # The envelopes are queued after each commit, the last one a moment after the task is
    # terminal: wait for it, then send.
    deadline = time.monotonic() + 10
    while exporter.pending() < 1 or not any(
        e["type"] == "task.status" and e["data"].get("status") == "succeeded"
        for e in list(exporter._queue)
    ):
        assert time.monotonic() < deadline
        await sync_to_async(time.sleep)(0.05)
    assert await sync_to_async(exporter.flush)(10)

    assert [r.path for r in collector.received] == ["/ingest", "/ingest"]  # 503, then 200
    first, second = (r.json() for r in collector.received)
    assert first["events"] == second["events"]  # the same batch, accepted once
    events = second["events"]
    assert {e["type"] for e in events} <= SELECTED
    assert {"task.status", "usage", "tool.call", "tool.result"} <= {e["type"] for e in events}
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert all(e["session_id"] == str(task.session.uuid) for e in events)
    assert all(e["task_id"] == str(task.uuid) for e in events)
    assert [e["data"]["status"] for e in events if e["type"] == "task.status"][-1] == "succeeded"
    [call] = [e for e in events if e["type"] == "tool.call"]
    assert call["data"]["name"] == "write_file" and call["ts"].endswith("Z")
    assert second["source"] == {"host": socket.gethostname(), "version": "0.1.0"}
    assert second["sent_at"].endswith("Z")
    headers = collector.received[1].headers
    assert headers["authorization"] == f"Bearer {TOKEN}"
    assert headers["content-type"] == "application/json"
    assert metric("analytics_events_exported_total") == exported + len(events)
    assert TOKEN not in caplog.text  # never logged
    # On the /metrics registry.
    body = (await sync_to_async(Client().get)("/metrics")).content.decode()
    assert "analytics_events_exported_total" in body and "analytics_batches_failed_total" in body


@pytest.mark.django_db
def test_a_private_url_is_refused_without_the_allow_flag(
    collector: Receiver, export_to: Any, caplog: Any, django_capture_on_commit_callbacks: Any
) -> None:
    exporter = export_to(f"{collector.url}/ingest", export_token=TOKEN)  # loopback, not allowed
    before, failed = dropped("refused"), metric("analytics_batches_failed_total")
    owner = make_user()
    with django_capture_on_commit_callbacks(execute=True):
        finish_task(make_task(make_session(owner)), "succeeded")
    queued = exporter.pending()
    assert queued >= 3  # task.status: queued, running, succeeded
    with caplog.at_level(logging.WARNING, logger="observability.analytics"):
        assert exporter.flush(10)
    assert collector.received == []  # nothing sent
    assert "refused" in caplog.text and "127.0.0.1" in caplog.text and TOKEN not in caplog.text
    assert dropped("refused") == before + queued
    assert metric("analytics_batches_failed_total") == failed + 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.sandbox
async def test_a_task_finishes_normally_when_the_collector_is_down(
    executor: Any, owner: Any, llm: ScriptedLLM, export_to: Any
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    exporter = export_to(f"http://127.0.0.1:{port}/ingest", allow_private=True, max_attempts=2,
                         flush_interval_s=0.05, timeout_s=2)  # fmt: skip
    before, failed = dropped("retries"), metric("analytics_batches_failed_total")
    task = await _finish(executor, await _run_llm(owner, llm))
    assert task.status == "succeeded", task.error
    await sync_to_async(time.sleep)(0.3)
    assert await sync_to_async(exporter.flush)(20)
    assert dropped("retries") > before
    assert metric("analytics_batches_failed_total") > failed


def test_overflow_drops_the_oldest_and_counts_them(export_to: Any, collector: Receiver) -> None:
    exporter = export_to(f"{collector.url}/ingest", allow_private=True, queue_max=3,
                         batch_size=10)  # fmt: skip
    before = dropped("overflow")
    exporter.put([{"seq": n, "type": "usage"} for n in range(1, 6)])
    assert exporter.pending() == 3 and dropped("overflow") == before + 2
    assert exporter.flush(10)
    [request] = collector.received
    assert [e["seq"] for e in request.json()["events"]] == [3, 4, 5]


def test_batches_split_at_the_batch_size(export_to: Any, collector: Receiver) -> None:
    exporter = export_to(f"{collector.url}/ingest", allow_private=True, batch_size=2)
    exporter.put([{"seq": n} for n in range(1, 6)])
    assert exporter.flush(10)
    assert [[e["seq"] for e in r.json()["events"]] for r in collector.received] == [
        [1, 2], [3, 4], [5]
    ]  # fmt: skip


def test_a_4xx_answer_drops_the_batch_without_retrying(export_to: Any, collector: Receiver) -> None:
    collector.answers = [(400, {})]
    exporter = export_to(f"{collector.url}/ingest", allow_private=True)
    before = dropped("rejected")
    exporter.put([{"seq": 1}])
    assert exporter.flush(10)
    assert len(collector.received) == 1 and dropped("rejected") == before + 1


def test_retry_after_and_backoff() -> None:
    assert analytics.retry_after_s("3") == 3.0
    assert analytics.retry_after_s("100000") == analytics.MAX_RETRY_AFTER_S
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 <= (analytics.retry_after_s(later) or 0) <= 30
    assert analytics.retry_after_s("soon") is None and analytics.retry_after_s(None) is None
    assert 0.8 <= analytics.backoff_s(1, 1.0) <= 1.2 and 3.2 <= analytics.backoff_s(3, 1.0) <= 4.8
    assert analytics.backoff_s(20, 1.0) <= analytics.MAX_DELAY_S * 1.2


def test_off_without_a_url(settings: Any) -> None:
    settings.ANALYTICS_EXPORT_URL = ""
    assert not analytics.configure() and analytics.exporter() is None
