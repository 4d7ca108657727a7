"""The dispatcher against a real receiver on loopback: task events become signed deliveries,
failures are retried on the schedule with every attempt recorded, 410 Gone disables the
endpoint, the send-time address check stops a DNS rebinding, a rotated secret signs next to
the old one, and concurrent dispatchers never claim the same attempt."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from integrations.webhooks.dispatch import deliveries_claim, dispatch_due, run_dispatcher
from integrations.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from integrations.webhooks.services import endpoint_create, endpoint_rotate_secret, ping_create
from integrations.webhooks.tasks import dispatch_due_webhooks
from sessions.services.events import event_append
from sessions.services.tasks import task_claim_next, task_finish
from tests import factories
from tests.integrations.webhooks.conftest import Receiver, verify_signature


@pytest.fixture
def allow_loopback(settings: Any) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True


@contextlib.contextmanager
def running_dispatcher(interval_s: float = 0.2) -> Iterator[None]:
    """The in-process dispatcher loop (as the server runs it) on its own thread and loop."""
    ready, box = threading.Event(), {}

    async def main() -> None:
        box["loop"], box["stop"] = asyncio.get_running_loop(), asyncio.Event()
        ready.set()
        await run_dispatcher(box["stop"], interval_s=interval_s)

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(5)
    try:
        yield
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(10)
        assert not thread.is_alive()


def _wait_status(delivery_id: int, status: str, timeout: float = 15) -> WebhookDelivery:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        delivery = WebhookDelivery.objects.get(pk=delivery_id)
        if delivery.status == status:
            return delivery
        time.sleep(0.05)
    raise AssertionError(f"delivery is {delivery.status}, not {status}")


def _succeed_a_task(user: Any, **outcome: Any) -> Any:
    session = factories.make_session(user)
    task = factories.make_task(session)
    return factories.finish_task(task, "succeeded", **outcome)


def test_failing_receiver_is_retried_with_backoff_and_attempts_recorded(
    transactional_db: Any, settings: Any, allow_loopback: None
) -> None:
    settings.WEBHOOK_RETRY_SCHEDULE_S = [0.6, 1.2]
    settings.WEBHOOK_MAX_ATTEMPTS = 5
    user = factories.make_user()
    with Receiver([500, 500]) as rx, running_dispatcher():
        _, secret = endpoint_create(
            team=factories.team_of(user), user=user, url=rx.url, event_types=["task.succeeded"]
        )
        task = _succeed_a_task(user, result={"stdout": "done\n"})
        requests = rx.wait_for(3)
        delivery = _wait_status(WebhookDelivery.objects.get().pk, DeliveryStatus.SUCCEEDED)

    # Backoff: about 0.6 s then 1.2 s (±20 % jitter) between the attempts.
    assert requests[1].at - requests[0].at >= 0.6 * 0.8
    assert requests[2].at - requests[1].at >= 1.2 * 0.8
    assert all(verify_signature(secret, r) for r in requests)
    assert len({r.headers["webhook-id"] for r in requests}) == 1  # one message, three tries
    assert requests[0].json["type"] == "task.succeeded"
    assert requests[0].json["data"]["task"]["id"] == str(task.uuid)

    assert delivery.attempts == 3 and delivery.last_status_code == 200
    attempts = list(delivery.attempt_set.order_by("number"))
    assert [a.status_code for a in attempts] == [500, 500, 200]
    assert [a.number for a in attempts] == [1, 2, 3]
    assert attempts[0].response_body.startswith("receiver says no")
    assert len(attempts[0].response_body.encode()) <= 2048  # the receiver sent 5 KB


def test_gives_up_after_max_attempts(
    transactional_db: Any, settings: Any, allow_loopback: None
) -> None:
    settings.WEBHOOK_RETRY_SCHEDULE_S = [0.0]
    settings.WEBHOOK_MAX_ATTEMPTS = 2
    user = factories.make_user()
    with Receiver([503] * 10) as rx:
        endpoint_create(team=factories.team_of(user), user=user, url=rx.url, event_types=["*"])
        _succeed_a_task(user)
        for _ in range(10):
            dispatch_due(limit=50)
        statuses = dict(WebhookDelivery.objects.values_list("event_type", "status"))
    assert statuses == {
        "session.created": "failed",
        "task.created": "failed",
        "task.queued": "failed",
        "task.running": "failed",
        "task.succeeded": "failed",
    }
    assert set(WebhookDelivery.objects.values_list("attempts", flat=True)) == {2}
    assert len(rx.requests) == 10


def test_410_gone_disables_the_endpoint(
    transactional_db: Any, settings: Any, allow_loopback: None
) -> None:
    user = factories.make_user()
    with Receiver([410]) as rx:
        endpoint, _ = endpoint_create(
            team=factories.team_of(user), user=user, url=rx.url, event_types=["task.succeeded"]
        )
        _succeed_a_task(user)
        assert dispatch_due() == 1
        endpoint.refresh_from_db()
        assert endpoint.enabled is False and "410" in endpoint.disabled_reason
        assert WebhookDelivery.objects.get().status == DeliveryStatus.FAILED
        _succeed_a_task(user)  # nothing more is queued for a disabled endpoint
        assert WebhookDelivery.objects.count() == 1
        assert dispatch_due() == 0 and len(rx.requests) == 1


def test_send_time_check_refuses_a_name_rebound_to_loopback(
    transactional_db: Any, settings: Any, monkeypatch: Any, receiver: Receiver
) -> None:
    """DNS rebinding: the name resolved to a public address when the endpoint was created,
    and to 127.0.0.1 when the delivery is sent: the send is refused, nothing reaches the
    receiver listening there."""
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    answer = {"address": "93.184.215.14"}
    real = socket.getaddrinfo

    def resolve(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "hooks.rebind.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answer["address"], port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    user = factories.make_user()
    url = f"http://hooks.rebind.test:{receiver.port}/hooks"
    endpoint_create(
        team=factories.team_of(user), user=user, url=url, event_types=["task.succeeded"]
    )
    answer["address"] = "127.0.0.1"
    _succeed_a_task(user)
    assert dispatch_due() == 1
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == DeliveryStatus.RETRYING and delivery.attempts == 1
    assert "refused" in delivery.last_error and "127.0.0.1" in delivery.last_error
    attempt = delivery.attempt_set.get()
    assert attempt.status_code is None and "loopback" in attempt.error
    assert receiver.requests == []


def test_rotated_secret_signs_next_to_the_old_one(
    transactional_db: Any, allow_loopback: None, receiver: Receiver
) -> None:
    user = factories.make_user()
    endpoint, old = endpoint_create(
        team=factories.team_of(user), user=user, url=receiver.url, event_types=["task.failed"]
    )
    endpoint, new = endpoint_rotate_secret(endpoint=endpoint)
    assert new != old and new.startswith("whsec_")
    ping_create(endpoint=endpoint)
    dispatch_due()
    [request] = receiver.wait_for(1)
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    assert verify_signature(new, request) and verify_signature(old, request)
    assert not verify_signature("whsec_" + "A" * 44, request)


def test_concurrent_dispatchers_never_claim_the_same_attempt(
    transactional_db: Any, settings: Any, allow_loopback: None
) -> None:
    """Four dispatchers claim at once (SKIP LOCKED on PostgreSQL, serialised transactions and
    the conditional UPDATE on SQLite): every due delivery is claimed exactly once."""
    user = factories.make_user()
    endpoint, _ = endpoint_create(
        team=factories.team_of(user), user=user, url="http://127.0.0.1:9/", event_types=["*"]
    )
    for _ in range(24):
        ping_create(endpoint=endpoint)
    barrier = threading.Barrier(4)
    claimed: list[list[tuple[int, int]]] = []

    def claim() -> None:
        try:
            barrier.wait()
            got = []
            for _ in range(3):
                got += [(c.delivery_id, c.number) for c in deliveries_claim(limit=4)]
            claimed.append(got)
        finally:
            connection.close()

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    every = [pair for got in claimed for pair in got]
    assert len(claimed) == 4
    assert len(every) == len(set(every)) == 24  # each delivery once, attempt number 1
    assert {number for _, number in every} == {1}
    assert set(WebhookDelivery.objects.values_list("attempts", flat=True)) == {1}
    assert deliveries_claim(limit=100) == []  # all leased now

    ping_create(endpoint=endpoint)
    with CaptureQueriesContext(connection) as queries:
        assert len(deliveries_claim(limit=4)) == 1
    if connection.vendor == "postgresql":
        claim_sql = [q["sql"] for q in queries.captured_queries if "SKIP LOCKED" in q["sql"]]
        assert len(claim_sql) == 1 and "FOR UPDATE OF" in claim_sql[0], claim_sql


def test_disabled_endpoint_deliveries_fail_unsent(
    transactional_db: Any, allow_loopback: None, receiver: Receiver
) -> None:
    user = factories.make_user()
    endpoint, _ = endpoint_create(
        team=factories.team_of(user), user=user, url=receiver.url, event_types=["task.succeeded"]
    )
    _succeed_a_task(user)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(enabled=False)
    assert dispatch_due() == 0
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == DeliveryStatus.FAILED and delivery.last_error == "endpoint disabled"
    assert receiver.requests == []


def test_event_mapping_agent_filter_and_payload(
    transactional_db: Any, allow_loopback: None
) -> None:
    """Every status change is one webhook event (a runner's phase updates are not), the
    first is also ``task.created``; the agent filter keeps other agents' sessions out."""
    user = factories.make_user()
    agent = factories.make_agent(user, slug="watched")
    endpoint_create(team=factories.team_of(user), user=user, url="http://127.0.0.1:9/",
                    event_types=["*"], agent=agent)  # fmt: skip
    factories.make_task(factories.make_session(user))  # another agent: not delivered
    assert WebhookDelivery.objects.count() == 0

    session = factories.make_session(user, agent)
    task = factories.make_task(session)
    [claimed] = task_claim_next(worker="tests", limit=1, session_id=session.pk)
    event_append(session=session, task=claimed, type="task.status",
                 data={"status": "running", "phase": "compiling"})  # fmt: skip
    error = {"code": "exit_status", "message": "exit 2", "details": {}}
    task_finish(task=claimed, status="failed", error=error, usage={"cpu_s": 0.5})
    deliveries = list(WebhookDelivery.objects.order_by("pk"))
    assert [d.event_type for d in deliveries] == [
        "session.created", "task.created", "task.queued", "task.running", "task.failed",
    ]  # fmt: skip
    assert deliveries[0].payload["data"]["session"]["agent"]["slug"] == "watched"
    failed = deliveries[-1].payload
    assert failed["type"] == "task.failed" and failed["created_at"].endswith("Z")
    times = {key: failed["data"]["task"].pop(key) for key in ("created_at", "finished_at")}
    assert all(value.endswith("Z") for value in times.values())
    assert failed["data"]["task"] == {
        "id": str(task.uuid), "status": "failed", "phase": failed["data"]["task"]["phase"],
        "task_type": "run", "agent": {"id": str(agent.uuid), "slug": "watched"},
        "session": str(session.uuid), "started_at": failed["data"]["task"]["started_at"],
        "result": None, "error": error, "usage": {"cpu_s": 0.5},
    }  # fmt: skip
    assert failed["data"]["session"] == {"id": str(session.uuid)}
    assert len({d.event_id for d in deliveries}) == 5


def test_celery_task_sends_due_deliveries(
    transactional_db: Any, settings: Any, allow_loopback: None, receiver: Receiver
) -> None:
    assert settings.WEBHOOKS_BEAT_SCHEDULE["webhooks"]["task"] == dispatch_due_webhooks.name
    user = factories.make_user()
    endpoint, secret = endpoint_create(
        team=factories.team_of(user), user=user, url=receiver.url, event_types=["*"]
    )
    for _ in range(3):
        ping_create(endpoint=endpoint)
    settings.WEBHOOK_CONCURRENCY = 2  # two passes: a full one, then the rest
    assert dispatch_due_webhooks() == 3
    assert all(verify_signature(secret, r) for r in receiver.wait_for(3))
