"""Rate limits and quotas (docs/limits.md): request throttles per credential, per team and per
anonymous IP (429 ``throttled`` with ``Retry-After``), the active-task quota of a team (429
``team_task_limit``), its live-sandbox quota (429 ``team_sandbox_limit``) and exclusive mode
(409 ``server_busy``), through REST, WebSocket frames and schedules, and under concurrency."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.core.cache import cache
from django.db import connection
from rest_framework.test import APIClient

from accounts.limits import parse_rate
from runtime_project import throttling
from runtime_project.exceptions import Conflict, TooManyRequests
from sandboxes.registry import get_backend, reset_backends
from schedules.services import schedule_create
from sessions.models import Task
from sessions.services.tasks import task_create
from tests import factories
from tests.api.helpers import API, error_of

pytestmark = pytest.mark.django_db

INPUT = {"command": "echo hi"}


@pytest.fixture(autouse=True)
def _fresh_counters() -> Iterator[None]:
    """Throttle counters and locks live in the default cache (Redis when REDIS_URL is set)."""
    cache.clear()
    yield
    cache.clear()


class Clock:
    """A settable ``time.time`` for the throttles (at 10 s into a minute window)."""

    def __init__(self) -> None:
        self.now = 60.0 * 1_000_000 + 10

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(throttling._WindowThrottle, "timer", staticmethod(clock))
    return clock


def client_for(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def create_task(client: APIClient, session: Any, **fields: Any) -> Any:
    body = {"input": INPUT, **fields}
    return client.post(f"{API}/sessions/{session.uuid}/tasks", body, format="json")


def retry_after(response: Any) -> int:
    """The ``Retry-After`` header: whole seconds, the same as ``details.retry_after_s``."""
    header = response.headers["Retry-After"]
    assert header.isdigit() and int(header) >= 1, header
    assert response.json()["error"]["details"]["retry_after_s"] == int(header)
    return int(header)


# Request rates ---------------------------------------------------------------------------------


def test_a_burst_over_the_credential_rate_gets_429_with_retry_after(
    api_client, user, settings, clock
):
    settings.THROTTLE_USER = "5/m"
    responses = [api_client.get(f"{API}/sessions") for _ in range(5 + 5)]

    assert [r.status_code for r in responses] == [200] * 5 + [429] * 5
    error = error_of(responses[5], 429, "throttled")
    # 50 s left of this window, then 12 s until its 5 requests weigh 4 (5 * 48/60).
    assert retry_after(responses[5]) == 62
    assert "Expected available" in error["message"]
    # Another key of the same user is another credential, with its own budget.
    assert client_for(factories.make_token(user)).get(f"{API}/sessions").status_code == 200

    # 30 s into the next window the full one still weighs half: 5 * 0.5 = 2.5, room for 2.
    clock.now += 80
    assert [api_client.get(f"{API}/sessions").status_code for _ in range(3)] == [200, 200, 429]
    clock.now += 60  # and in the one after: 2 * 0.5 = 1, room for 4
    assert [api_client.get(f"{API}/sessions").status_code for _ in range(5)] == [200] * 4 + [429]


def test_retry_after_says_when_the_next_request_fits(api_client, settings, clock):
    settings.THROTTLE_USER = "2/m"
    assert [api_client.get(f"{API}/sessions").status_code for _ in range(2)] == [200, 200]

    wait = retry_after(api_client.get(f"{API}/sessions"))

    # This window is full (50 s left), and in the next one its 2 requests must weigh at most
    # 1: 30 s more. A client honouring Retry-After gets in at once, not a second earlier.
    assert wait == 80
    clock.now += wait - 1
    assert api_client.get(f"{API}/sessions").status_code == 429
    clock.now += 1
    assert api_client.get(f"{API}/sessions").status_code == 200


def test_the_team_rate_of_team_rate_limit_counts_every_key_of_the_team(
    user, other_user, settings, clock
):
    settings.THROTTLE_USER = None
    team = factories.team_of(user)
    team.rate_limit = "4/min"
    team.save()
    teammate = factories.make_user()
    factories.add_member(team, teammate)
    keys = [
        client_for(factories.make_token(user)),
        client_for(factories.make_token(teammate, ["sessions:read"], team=team)),
    ]

    codes = [keys[n % 2].get(f"{API}/sessions").status_code for n in range(6)]

    assert codes == [200, 200, 200, 200, 429, 429]
    error_of(keys[1].get(f"{API}/sessions"), 429, "throttled")
    # Another team has its own budget (THROTTLE_TEAM, the default 6000/min).
    assert client_for(factories.make_token(other_user)).get(f"{API}/sessions").status_code == 200
    # The teammate's own personal team is another bucket too.
    assert client_for(factories.make_token(teammate)).get(f"{API}/sessions").status_code == 200


def test_the_team_setting_applies_unless_the_team_says_none(user, settings, clock):
    settings.THROTTLE_USER = None
    settings.THROTTLE_TEAM = "2/m"
    client = client_for(factories.make_token(user))
    assert [client.get(f"{API}/sessions").status_code for _ in range(3)] == [200, 200, 429]

    team = factories.team_of(user)
    team.rate_limit = "none"
    team.save()
    assert all(client.get(f"{API}/sessions").status_code == 200 for _ in range(5))


def test_a_browser_session_counts_against_the_users_default_team(user, settings, clock):
    settings.THROTTLE_USER = None
    settings.THROTTLE_TEAM = "3/m"
    browser = APIClient()
    browser.force_login(user)
    key = client_for(factories.make_token(user))  # bound to the personal team, the default

    codes = [c.get(f"{API}/sessions").status_code for c in (browser, key, browser, key)]

    assert codes == [200, 200, 200, 429]


def test_anonymous_requests_are_limited_per_ip_and_x_forwarded_for_is_not_trusted(
    anon_client, settings, clock
):
    settings.THROTTLE_ANON = "2/m"
    codes = [
        anon_client.get("/api/docs/", HTTP_X_FORWARDED_FOR=f"203.0.113.{n}").status_code
        for n in range(3)
    ]

    assert codes == [200, 200, 429]
    # Refused before the throttles (401): not counted, and not turned into 429.
    error_of(anon_client.get(f"{API}/sessions"), 401)


def test_the_credential_buckets():
    throttle = throttling.CredentialRateThrottle()

    def key(**user: Any) -> str | None:
        request = SimpleNamespace(user=SimpleNamespace(is_authenticated=True, pk=7, **user))
        return throttle.get_cache_key(request, None)

    assert key(credential_label="api_key:AbCd1234") == "throttle:user:api_key:AbCd1234"
    assert key(credential_label="oauth2:app1") == "throttle:user:oauth2:app1:7"
    assert key() == "throttle:user:user:7"
    assert throttle.get_cache_key(SimpleNamespace(user=None), None) is None


@pytest.mark.parametrize(
    ("value", "rate"),
    [("600/min", "600/m"), ("10/s", "10/s"), ("5 / hour", "5/h"), ("1/day", "1/d"), ("none", None)],
)
def test_rates_parse(value, rate):
    assert parse_rate(value) == rate


@pytest.mark.parametrize("value", ["", "abc", "0/min", "10/week", "-1/s", "1.5/m"])
def test_bad_rates_are_refused(value):
    with pytest.raises(ValueError, match="not a rate"):
        parse_rate(value)


# Active tasks of a team ------------------------------------------------------------------------


def test_a_create_over_the_teams_active_task_limit_is_429_until_one_finishes(
    api_client, user, agent
):
    team = factories.team_of(user)
    team.max_running_tasks = 2
    team.save()
    sessions = [factories.make_session(user, agent) for _ in range(3)]
    first = factories.make_task(sessions[0])
    assert create_task(api_client, sessions[1]).status_code == 201

    refused = create_task(api_client, sessions[2])

    error = error_of(refused, 429, "team_task_limit")
    assert retry_after(refused) == 5
    assert error["details"] == {"limit": 2, "active": 2, "retry_after_s": 5}
    assert not sessions[2].tasks.exists()
    factories.finish_task(first)
    assert create_task(api_client, sessions[2]).status_code == 201


def test_the_setting_applies_when_the_team_sets_no_limit_and_0_means_none(
    api_client, session, settings
):
    settings.TEAM_MAX_RUNNING_TASKS = 1
    assert create_task(api_client, session).status_code == 201
    error_of(create_task(api_client, session), 429, "team_task_limit")

    settings.TEAM_MAX_RUNNING_TASKS = 0
    assert all(create_task(api_client, session).status_code == 201 for _ in range(3))


def test_waiting_tasks_count_and_child_tasks_do_not(api_client, user, session, settings):
    settings.TEAM_MAX_RUNNING_TASKS = 2
    parent = factories.make_task(session)
    Task.objects.filter(pk=parent.pk).update(status="waiting")
    Task.objects.create(
        session=session, agent=session.agent, agent_version=1, created_by=user, input=INPUT,
        parent=parent, status="running",
    )  # fmt: skip
    assert create_task(api_client, session).status_code == 201  # the child holds no slot

    error_of(create_task(api_client, session), 429, "team_task_limit")


def test_interrupt_replaces_the_sessions_task_at_the_limit(api_client, user, session, settings):
    settings.TEAM_MAX_RUNNING_TASKS = 1
    factories.make_task(session)

    queued = create_task(api_client, session, multitask_strategy="interrupt")
    assert queued.status_code == 201  # the queued one was cancelled at once

    running = Task.objects.get(uuid=queued.json()["id"])
    Task.objects.filter(pk=running.pk).update(status="running")
    # A running task is only asked to stop; the session runs one task at a time anyway.
    assert create_task(api_client, session, multitask_strategy="interrupt").status_code == 201
    assert Task.objects.get(pk=running.pk).cancel_requested_at is not None
    # But a task of another session of the team still has no slot.
    other = factories.make_session(user, session.agent)
    error_of(create_task(api_client, other), 429, "team_task_limit")


def test_an_idempotent_retry_of_a_created_task_is_not_refused(api_client, session, settings):
    settings.TEAM_MAX_RUNNING_TASKS = 1
    headers = {"HTTP_IDEMPOTENCY_KEY": "once"}
    url = f"{API}/sessions/{session.uuid}/tasks"
    first = api_client.post(url, {"input": INPUT}, format="json", **headers)

    again = api_client.post(url, {"input": INPUT}, format="json", **headers)

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]


def test_a_schedule_run_records_the_limit(api_client, user, agent, settings):
    settings.TEAM_MAX_RUNNING_TASKS = 1
    factories.make_task(factories.make_session(user, agent))
    schedule = schedule_create(owner=user, agent=agent, name="s", cron="0 * * * *", input=INPUT)
    sessions_before = user.agent_sessions.count()

    run = api_client.post(f"{API}/schedules/{schedule.uuid}/run").json()

    assert run["task_id"] is None
    assert run["error"]["code"] == "team_task_limit"
    assert user.agent_sessions.count() == sessions_before  # its new session was rolled back


@pytest.mark.django_db(transaction=True)
async def test_a_websocket_task_create_frame_gets_the_error_frame(user, session, settings):
    from runtime_project.asgi import channels_app

    settings.TEAM_MAX_RUNNING_TASKS = 1
    await sync_to_async(factories.make_task)(session)
    token = await sync_to_async(factories.make_token)(user)
    ws = WebsocketCommunicator(
        channels_app,
        f"/ws/sessions/{session.uuid}/",
        headers=[(b"authorization", f"Bearer {token}".encode())],
    )
    connected, _ = await ws.connect()
    assert connected
    request = {"type": "task.create", "request_id": "r1", "input": INPUT}
    frame: dict[str, Any] = {}
    try:
        await ws.send_to(text_data=json.dumps(request))
        async with asyncio.timeout(10):
            while frame.get("type") != "error":
                frame = json.loads(await ws.receive_from(timeout=10))
    finally:
        await ws.disconnect()

    assert frame["request_id"] == "r1"
    assert frame["error"]["code"] == "team_task_limit"
    assert frame["error"]["details"]["limit"] == 1


def _race(targets: list[Any]) -> list[Any]:
    """Run every callable at once, each in its own thread (and database connection)."""
    barrier = threading.Barrier(len(targets))
    outcomes: list[Any] = [None] * len(targets)

    def run(n: int) -> None:
        barrier.wait()
        try:
            outcomes[n] = targets[n]()
        except Exception as exc:
            outcomes[n] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(targets))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return outcomes


@pytest.mark.django_db(transaction=True)
def test_concurrent_creates_never_exceed_the_team_limit(user, agent, settings):
    settings.TEAM_MAX_RUNNING_TASKS = 3
    sessions = [factories.make_session(user, agent) for _ in range(10)]

    outcomes = _race([lambda s=s: task_create(session=s, user=user, input=INPUT) for s in sessions])

    created = [o for o in outcomes if isinstance(o, tuple)]
    refused = [o for o in outcomes if isinstance(o, TooManyRequests)]
    assert (len(created), len(refused)) == (3, 7), outcomes
    assert {e.code for e in refused} == {"team_task_limit"}
    assert Task.objects.filter(session__team=factories.team_of(user)).count() == 3


# Exclusive mode --------------------------------------------------------------------------------


def test_exclusive_mode_runs_one_task_across_sessions_of_different_users(
    api_client, other_client, user, other_user, session, settings
):
    settings.EXCLUSIVE_MODE = True
    first = create_task(api_client, session)
    assert first.status_code == 201
    theirs = factories.make_session(other_user, factories.make_agent(other_user))

    busy = create_task(other_client, theirs)

    error = error_of(busy, 409, "server_busy")
    assert error["details"] == {}  # another team's task id is not theirs to know
    mine = create_task(api_client, factories.make_session(user, session.agent))
    assert error_of(mine, 409, "server_busy")["details"] == {"active_task_id": first.json()["id"]}
    error_of(create_task(api_client, session), 409, "server_busy")  # enqueue in its session too

    factories.finish_task(Task.objects.get(uuid=first.json()["id"]))
    assert create_task(other_client, theirs).status_code == 201


def test_without_exclusive_mode_sessions_run_side_by_side(
    api_client, other_client, other_user, session
):
    theirs = factories.make_session(other_user, factories.make_agent(other_user))
    assert create_task(api_client, session).status_code == 201
    assert create_task(other_client, theirs).status_code == 201


@pytest.mark.django_db(transaction=True)
def test_concurrent_creates_in_exclusive_mode_admit_one(settings):
    settings.EXCLUSIVE_MODE = True
    users = [factories.make_user() for _ in range(6)]
    sessions = [factories.make_session(u) for u in users]

    outcomes = _race(
        [
            lambda s=s, u=u: task_create(session=s, user=u, input=INPUT)
            for s, u in zip(sessions, users, strict=True)
        ]
    )

    busy = [o for o in outcomes if isinstance(o, Conflict) and o.code == "server_busy"]
    assert (len([o for o in outcomes if isinstance(o, tuple)]), len(busy)) == (1, 5), outcomes
    assert Task.objects.count() == 1


# Live sandboxes of a team ----------------------------------------------------------------------


@pytest.fixture
def fake(settings: Any) -> Iterator[Any]:
    settings.SANDBOX_BACKEND = "fake"
    reset_backends()
    yield get_backend()
    reset_backends()


def test_starting_a_sandbox_over_the_teams_limit_is_429(
    api_client, other_client, user, other_user, agent, fake
):
    team = factories.team_of(user)
    team.max_sandboxes = 2
    team.save()
    sessions = [factories.make_session(user, agent) for _ in range(3)]

    def start(client: APIClient, session: Any) -> Any:
        return client.post(f"{API}/sessions/{session.uuid}/sandbox/start")

    assert [start(api_client, s).status_code for s in sessions[:2]] == [200, 200]
    refused = start(api_client, sessions[2])

    error = error_of(refused, 429, "team_sandbox_limit")
    assert retry_after(refused) == 30
    assert error["details"] == {"limit": 2, "live": 2, "retry_after_s": 30}
    assert str(sessions[2].uuid) not in fake.sandboxes
    assert start(api_client, sessions[0]).status_code == 200  # already live: not a new one
    # Another team's sandboxes are not counted.
    theirs = factories.make_session(other_user, factories.make_agent(other_user))
    assert start(other_client, theirs).status_code == 200
    # Stopping one makes room; so does an exec in the session (it starts the sandbox too).
    assert api_client.post(f"{API}/sessions/{sessions[0].uuid}/sandbox/stop").status_code == 200
    assert start(api_client, sessions[2]).status_code == 200
    exec_ = api_client.post(
        f"{API}/sessions/{sessions[0].uuid}/sandbox/exec", {"command": "true"}, format="json"
    )
    error_of(exec_, 429, "team_sandbox_limit")
