"""GET /metrics through the Django test client: exposition, our collectors, access rules."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.test.utils import override_settings
from prometheus_client.parser import text_string_to_metric_families

from tests.factories import finish_task, make_agent, make_session, make_task, make_user

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: Client | None = None, **headers: Any) -> Samples:
    response = (client or Client()).get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.mark.django_db
def test_tasks_queue_and_duration_follow_tasks(django_capture_on_commit_callbacks: Any) -> None:
    owner = make_user()
    agent = make_agent(owner, slug="metrics-agent")
    before = scrape()
    session = make_session(owner, agent=agent)
    with django_capture_on_commit_callbacks(execute=True):
        done = make_task(session)
        make_task(session)  # stays queued behind nothing once the first is finished
        finish_task(done, "succeeded")
    after = scrape()

    assert value(after, "agent_runtime_tasks", status="queued", agent="metrics-agent") == 1
    assert value(after, "agent_runtime_tasks", status="succeeded", agent="metrics-agent") == 1
    assert (
        value(after, "agent_runtime_task_queue_depth")
        == value(before, "agent_runtime_task_queue_depth") + 1
    )
    count = "agent_runtime_task_duration_seconds_count"
    assert value(after, count, status="succeeded") == value(before, count, status="succeeded") + 1
    # task.status events: 2 queued + running + succeeded, all counted under the "task" prefix
    events = "agent_runtime_events_total"
    assert value(after, events, type="task") >= value(before, events, type="task") + 4
    assert value(after, "agent_runtime_collector_up") == 1
    # django-prometheus's request metrics are there too
    assert any(name.startswith("django_http_requests") for name, _ in after)


@pytest.mark.django_db
def test_sandboxes_gauge_counts_started_not_stopped() -> None:
    from django.utils import timezone

    from sandboxes.models import Sandbox

    owner = make_user()
    running, stopped = make_session(owner), make_session(owner)
    now = timezone.now()
    Sandbox.objects.create(session=running, backend="fake", last_started_at=now)
    Sandbox.objects.create(
        session=stopped, backend="fake", last_started_at=now, last_stopped_at=now
    )
    assert value(scrape(), "agent_runtime_sandboxes", backend="fake") == 1


@pytest.mark.django_db
def test_a_failing_query_does_not_fail_the_scrape(monkeypatch: pytest.MonkeyPatch) -> None:
    from observability import collectors

    def broken() -> Any:
        raise RuntimeError("database is down")
        yield  # pragma: no cover

    broken.__name__ = "_tasks"
    monkeypatch.setattr(collectors.RuntimeCollector, "parts", (broken, collectors._queue_depth))
    samples = scrape()
    assert value(samples, "agent_runtime_collector_up") == 0
    assert ("agent_runtime_task_queue_depth", frozenset()) in samples


@pytest.mark.django_db
@override_settings(METRICS_TOKEN="s3cret-metrics")
def test_token_is_required_when_set() -> None:
    client = Client()
    assert client.get("/metrics").status_code == 401
    wrong = client.get("/metrics", HTTP_AUTHORIZATION="Bearer nope")
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "not_authenticated"
    assert wrong["WWW-Authenticate"].startswith("Bearer")
    # with the token, any address is served
    ok = Client(REMOTE_ADDR="203.0.113.9")
    scrape(ok, HTTP_AUTHORIZATION="Bearer s3cret-metrics")


@pytest.mark.django_db
def test_without_token_only_local_direct_clients() -> None:
    assert Client(REMOTE_ADDR="93.184.216.34").get("/metrics").status_code == 403
    assert Client(REMOTE_ADDR="203.0.113.9").get("/metrics").status_code == 403  # not private
    assert Client(REMOTE_ADDR="2001:db8::1").get("/metrics").status_code == 403
    # a proxy on the same host relays public clients: refused without a token
    relayed = Client(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert relayed.get("/metrics").status_code == 403
    scrape(Client(REMOTE_ADDR="10.1.2.3"))
    scrape(Client(REMOTE_ADDR="::1"))
    scrape(Client(REMOTE_ADDR="::ffff:192.168.1.5"))


@pytest.mark.django_db
@override_settings(METRICS_ENABLED=False)
def test_disabled_is_404() -> None:
    assert Client().get("/metrics").status_code == 404


@pytest.mark.django_db
def test_not_in_the_openapi_schema_and_get_only() -> None:
    schema = Client().get("/api/schema/", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200
    assert "/metrics" not in schema.json()["paths"]
    assert Client().post("/metrics").status_code == 405
