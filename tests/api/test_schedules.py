"""Cron schedules (``/api/v1/schedules``): CRUD and validation over REST, access checks, the
next tick across daylight-saving changes, firing (at the due time, at most once per tick even
with concurrent schedulers, missed ticks skipped, one broken schedule not blocking the others,
session modes), the embedded scheduler coroutine, the Celery task and the admin."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import IntegrityError, connection, transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone as django_tz

from runtime_project.exceptions import InvalidInput, NotFound
from schedules import services
from schedules.cron import check_cron, next_tick
from schedules.models import Schedule, ScheduleRun
from schedules.scheduler import run_scheduler
from schedules.services import (
    schedule_create,
    schedule_fire,
    schedule_update,
    schedules_fire_due,
)
from schedules.tasks import fire_due_schedules
from sessions.models import Agent, Session, Task
from sessions.services.agents import agent_delete, agent_update
from sessions.services.sessions import session_delete
from tests import factories
from tests.api.helpers import API, error_of

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
INPUT = {"command": "echo hi"}
NEEDS_TICKET = {
    "type": "object",
    "required": ["ticket"],
    "properties": {"ticket": {"type": "string"}},
}


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def z(moment: datetime | None) -> str:
    """How the API renders a UTC datetime."""
    assert moment is not None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@pytest.fixture
def freeze(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``freeze(moment)``: ``django.utils.timezone.now()`` returns ``moment`` from then on."""

    def _freeze(moment: datetime) -> None:
        monkeypatch.setattr(django_tz, "now", lambda: moment)

    return _freeze


def make_schedule(owner: Any, agent: Agent, **fields: Any) -> Schedule:
    fields.setdefault("name", "hourly")
    fields.setdefault("cron", "0 * * * *")
    fields.setdefault("input", INPUT)
    return schedule_create(owner=owner, agent=agent, **fields)


def due_at(schedule: Schedule, tick: datetime) -> Schedule:
    """Pretend the schedule's next tick is ``tick`` (as if computed before ``tick``)."""
    Schedule.objects.filter(pk=schedule.pk).update(next_run_at=tick)
    schedule.refresh_from_db()
    return schedule


def runs_of(schedule: Schedule) -> list[ScheduleRun]:
    return list(ScheduleRun.objects.filter(schedule=schedule).order_by("tick"))


def task_of(run: ScheduleRun) -> Task:
    assert run.task is not None, run.error
    return run.task


def ticks(expr: str, tz_name: str, after: datetime, n: int) -> list[datetime]:
    """The ``n`` ticks of ``expr`` in ``tz_name`` following ``after``."""
    out = [after]
    for _ in range(n):
        out.append(next_tick(expr, tz_name, after=out[-1]))
    return out[1:]


def error_code(run: ScheduleRun) -> str:
    assert run.error is not None
    return str(run.error["code"])


# REST ------------------------------------------------------------------------------------------


def test_create_list_get_change_and_delete_over_rest(api_client, agent, freeze):
    freeze(utc(2026, 1, 15, 9, 20))
    created = api_client.post(
        f"{API}/schedules",
        {
            "name": "hourly report",
            "agent": "shell",
            "cron": "0  *  * * *",
            "input": INPUT,
            "config": {"timeout_s": 60},
        },
        format="json",
    )

    assert created.status_code == 201, created.content
    body = created.json()
    assert body["agent"] == {"id": str(agent.uuid), "slug": "shell"}
    assert body["cron"] == "0 * * * *"  # whitespace normalized
    assert (body["timezone"], body["session_mode"], body["enabled"]) == ("UTC", "new", True)
    assert (body["input"], body["config"]) == (INPUT, {"timeout_s": 60})
    assert body["next_run_at"] == "2026-01-15T10:00:00Z"
    assert body["last_run_at"] is body["last_task_id"] is body["session_id"] is None
    url = f"{API}/schedules/{body['id']}"

    listed = api_client.get(f"{API}/schedules").json()
    assert [s["id"] for s in listed["results"]] == [body["id"]]
    assert api_client.get(url).json() == body

    # 09:20 UTC is 10:20 in Berlin: 09:30 Berlin (08:30 UTC) next comes tomorrow.
    changed = api_client.patch(
        url, {"cron": "30 9 * * *", "timezone": "Europe/Berlin"}, format="json"
    )
    assert changed.status_code == 200, changed.content
    assert changed.json()["next_run_at"] == "2026-01-16T08:30:00Z"
    disabled = api_client.patch(url, {"enabled": False}, format="json").json()
    assert (disabled["enabled"], disabled["next_run_at"]) == (False, None)
    enabled = api_client.patch(url, {"enabled": True, "name": "renamed"}, format="json").json()
    assert (enabled["name"], enabled["next_run_at"]) == ("renamed", "2026-01-16T08:30:00Z")

    assert api_client.delete(url).status_code == 204
    error_of(api_client.get(url), 404, "not_found")


def test_a_public_agent_of_someone_else_can_be_scheduled_by_its_id(other_client, user):
    public = factories.make_agent(user, slug="public-shell", is_public=True)

    response = other_client.post(
        f"{API}/schedules",
        {"name": "p", "agent": str(public.uuid), "cron": "@daily", "input": INPUT},
        format="json",
    )

    assert response.status_code == 201, response.content
    assert response.json()["agent"]["slug"] == "public-shell"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"cron": "61 * * * *"}, "cron"),
        ({"cron": "* * * * * *"}, "cron"),  # seconds are not supported
        ({"cron": "0 0 31 2 *"}, "cron"),  # never happens
        ({"cron": "every day"}, "cron"),
        ({"cron": "@reboot"}, "cron"),
        ({"cron": "H * * * *"}, "cron"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"timezone": "localtime"}, "timezone"),
        ({"timezone": ""}, "timezone"),
        ({"input": {"command": ""}}, "input"),
        ({"input": "echo hi"}, "input"),
        ({"config": {"timeout_s": -1}}, "config.timeout_s"),
        ({"session_mode": "sometimes"}, "session_mode"),
        ({"agent": "shell", "name": ""}, "name"),
    ],
)
def test_invalid_fields_are_400_with_field_details(api_client, agent, changes, field):
    data = {"name": "bad", "agent": "shell", "cron": "0 * * * *", "input": INPUT, **changes}

    error = error_of(api_client.post(f"{API}/schedules", data, format="json"), 400)

    assert error["code"] == "invalid_input"
    assert field in error["details"]["fields"], error
    assert not Schedule.objects.exists()


def test_every_invalid_field_is_reported_at_once(api_client, agent):
    data = {
        "name": "bad",
        "agent": "shell",
        "cron": "0 25 * * *",
        "timezone": "Europe/Nowhere",
        "input": {"command": 5},
    }

    fields = error_of(api_client.post(f"{API}/schedules", data, format="json"), 400)["details"][
        "fields"
    ]

    assert set(fields) == {"cron", "timezone", "input"}
    assert fields["input"][0]["path"] == "command"


def test_a_patch_is_validated_and_may_not_be_empty(api_client, user, agent):
    schedule = make_schedule(user, agent)
    url = f"{API}/schedules/{schedule.uuid}"

    error = error_of(api_client.patch(url, {"cron": "0 0 30 2 *"}, format="json"), 400)
    assert "cron" in error["details"]["fields"]
    error_of(api_client.patch(url, {}, format="json"), 400, "invalid_input")
    schedule.refresh_from_db()
    assert schedule.cron == "0 * * * *"


def test_a_stranger_gets_404_everywhere(api_client, other_client, user, agent):
    schedule = make_schedule(user, agent)
    url = f"{API}/schedules/{schedule.uuid}"

    for response in (
        other_client.get(url),
        other_client.patch(url, {"name": "mine"}, format="json"),
        other_client.delete(url),
        other_client.get(f"{url}/runs"),
        other_client.post(f"{url}/run"),
        other_client.get(f"{API}/schedules/not-a-uuid"),
    ):
        error_of(response, 404, "not_found")
    assert other_client.get(f"{API}/schedules").json()["count"] == 0
    # Nor may the stranger schedule the owner's private agent.
    stolen = {"name": "x", "agent": str(agent.uuid), "cron": "@hourly", "input": INPUT}
    error_of(other_client.post(f"{API}/schedules", stolen, format="json"), 404, "not_found")
    assert Schedule.objects.get().name == "hourly"
    assert ScheduleRun.objects.count() == 0


def test_anonymous_callers_are_401(anon_client):
    error_of(anon_client.get(f"{API}/schedules"), 401)


def test_run_now_and_the_runs_list(api_client, user, agent):
    schedule = make_schedule(user, agent, config={"timeout_s": 30})
    url = f"{API}/schedules/{schedule.uuid}"

    fired = api_client.post(f"{url}/run")

    assert fired.status_code == 201, fired.content
    run = fired.json()
    task = Task.objects.get(uuid=run["task_id"])
    assert (run["trigger"], run["task_status"], run["error"]) == ("manual", "queued", None)
    assert run["session_id"] == str(task.session.uuid)
    assert (task.input, task.config, task.task_type) == (INPUT, {"timeout_s": 30}, "run")
    after = api_client.get(url).json()
    assert after["next_run_at"] == z(schedule.next_run_at)  # run now does not move the cron
    assert after["last_task_id"] == run["task_id"]

    # The agent's input schema changes: the next run records why it queued nothing.
    agent_update(agent=agent, user=user, input_schema=NEEDS_TICKET)
    failed = api_client.post(f"{url}/run").json()
    assert failed["task_id"] is None and failed["error"]["code"] == "invalid_input"

    runs = api_client.get(f"{url}/runs").json()
    assert runs["count"] == 2
    assert [r["id"] for r in runs["results"]] == [failed["id"], run["id"]]  # newest first
    assert runs["results"][0]["error"]["details"]["fields"]["input"]
    assert api_client.get(url).json()["last_task_id"] == run["task_id"]


# Next tick -------------------------------------------------------------------------------------


def test_next_run_at_follows_berlin_across_the_spring_forward_change(user, agent, freeze):
    # 2026-03-29 02:00 CET becomes 03:00 CEST: 02:30 does not exist that night.
    freeze(utc(2026, 3, 28, 12))
    schedule = make_schedule(user, agent, cron="30 2 * * *", timezone="Europe/Berlin")

    assert schedule.next_run_at == utc(2026, 3, 29, 1, 0)  # 03:00 CEST, when the gap ends

    schedules_fire_due(now=utc(2026, 3, 29, 1, 0, 5))
    schedule.refresh_from_db()
    assert schedule.next_run_at == utc(2026, 3, 30, 0, 30)  # 02:30 CEST
    assert ticks("30 2 * * *", "Europe/Berlin", utc(2026, 3, 27, 12), 3) == [
        utc(2026, 3, 28, 1, 30),  # 02:30 CET
        utc(2026, 3, 29, 1, 0),  # 03:00 CEST
        utc(2026, 3, 30, 0, 30),  # 02:30 CEST
    ]


def test_a_fixed_time_fires_once_when_fall_back_repeats_it_and_hourly_follows_real_time():
    # 2026-10-25 03:00 CEST becomes 02:00 CET: 02:00-02:59 happens twice.
    assert ticks("30 2 * * *", "Europe/Berlin", utc(2026, 10, 24, 12), 2) == [
        utc(2026, 10, 25, 0, 30),  # 02:30 CEST; not again at 02:30 CET
        utc(2026, 10, 26, 1, 30),
    ]
    # From 00:30 CEST: 01:00 CEST, 02:00 CEST, 02:00 CET, 03:00 CET, one per real hour.
    assert ticks("0 * * * *", "Europe/Berlin", utc(2026, 10, 24, 22, 30), 4) == [
        utc(2026, 10, 24, 23),
        utc(2026, 10, 25, 0),
        utc(2026, 10, 25, 1),
        utc(2026, 10, 25, 2),
    ]


def test_next_run_at_keeps_nine_oclock_in_new_york_across_dst(user, agent, freeze):
    freeze(utc(2026, 3, 6, 15))  # Friday 10:00 EST
    schedule = make_schedule(user, agent, cron="0 9 * * *", timezone="America/New_York")
    assert schedule.next_run_at == utc(2026, 3, 7, 14)  # 09:00 EST

    schedules_fire_due(now=utc(2026, 3, 7, 14, 0, 1))
    schedule.refresh_from_db()
    assert schedule.next_run_at == utc(2026, 3, 8, 13)  # 09:00 EDT, the clocks went forward


def test_check_cron_normalizes_aliases_and_whitespace():
    assert check_cron(" @Daily ") == "@daily"
    assert check_cron("*/15  9-17 * * MON-FRI") == "*/15 9-17 * * MON-FRI"
    assert next_tick("@hourly", "UTC", after=utc(2026, 1, 1, 10)) == utc(2026, 1, 1, 11)


# Firing ----------------------------------------------------------------------------------------


def test_fire_due_queues_the_task_at_the_due_time_and_advances(user, agent, freeze):
    freeze(utc(2026, 1, 15, 9, 20))
    schedule = make_schedule(user, agent, name="report", config={"timeout_s": 60})
    assert schedule.next_run_at == utc(2026, 1, 15, 10)

    assert schedules_fire_due(now=utc(2026, 1, 15, 9, 59, 59)) == []
    [task] = schedules_fire_due(now=utc(2026, 1, 15, 10, 0, 2))

    assert (task.input, task.config, task.task_type, task.status) == (
        INPUT,
        {"timeout_s": 60},
        "run",
        "queued",
    )
    assert (task.created_by, task.session.owner, task.session.agent) == (user, user, agent)
    assert task.session.name == "report"
    assert task.session.metadata == {"schedule_id": str(schedule.uuid)}
    [run] = runs_of(schedule)
    assert (run.tick, run.trigger, run.task, run.error) == (
        utc(2026, 1, 15, 10),
        "cron",
        task,
        None,
    )
    schedule.refresh_from_db()
    assert schedule.next_run_at == utc(2026, 1, 15, 11)
    assert (schedule.last_run_at, schedule.last_task) == (utc(2026, 1, 15, 10, 0, 2), task)


def test_the_same_tick_never_fires_twice(user, agent):
    schedule = due_at(make_schedule(user, agent), utc(2026, 1, 15, 10))
    now = utc(2026, 1, 15, 10, 0, 1)

    first = schedules_fire_due(now=now)
    Schedule.objects.filter(pk=schedule.pk).update(next_run_at=utc(2026, 1, 15, 10))  # stale read
    second = schedules_fire_due(now=now)

    assert (len(first), second) == (1, [])
    assert len(runs_of(schedule)) == 1
    assert Task.objects.filter(session__agent=agent).count() == 1
    with pytest.raises(IntegrityError), transaction.atomic():
        ScheduleRun.objects.create(schedule=schedule, tick=utc(2026, 1, 15, 10))


def test_missed_ticks_are_skipped_not_fired_in_a_burst(user, agent):
    schedule = due_at(make_schedule(user, agent), utc(2026, 1, 15, 10))

    # The scheduler was down from 10:00 to 15:30: one run (for 10:00), then 16:00.
    fired = schedules_fire_due(now=utc(2026, 1, 15, 15, 30))

    assert len(fired) == 1
    assert [r.tick for r in runs_of(schedule)] == [utc(2026, 1, 15, 10)]
    schedule.refresh_from_db()
    assert schedule.next_run_at == utc(2026, 1, 15, 16)
    assert schedules_fire_due(now=utc(2026, 1, 15, 15, 45)) == []


def test_a_broken_schedule_records_its_error_and_does_not_block_another(user, agent):
    broken = due_at(make_schedule(user, agent, name="broken"), utc(2026, 1, 15, 9))
    other_agent = factories.make_agent(user, slug="other")
    healthy = due_at(make_schedule(user, other_agent, name="healthy"), utc(2026, 1, 15, 10))
    agent_update(agent=agent, user=user, input_schema=NEEDS_TICKET)
    sessions_before = Session.objects.filter(agent=agent).count()

    fired = schedules_fire_due(now=utc(2026, 1, 15, 10, 0, 1))

    [run] = runs_of(broken)
    assert run.task is None and error_code(run) == "invalid_input"
    assert [t.session.agent for t in fired] == [other_agent]
    assert runs_of(healthy)[0].task == fired[0]
    assert Session.objects.filter(agent=agent).count() == sessions_before  # none made for nothing
    for schedule in (broken, healthy):
        schedule.refresh_from_db()
        assert schedule.next_run_at == utc(2026, 1, 15, 11)
    assert broken.last_task is None


def test_a_deleted_agent_is_recorded_as_not_found(user, agent):
    schedule = due_at(make_schedule(user, agent), utc(2026, 1, 15, 10))
    agent_delete(agent=agent)

    assert schedules_fire_due(now=utc(2026, 1, 15, 10, 1)) == []
    assert error_code(runs_of(schedule)[0]) == "not_found"
    with pytest.raises(NotFound):
        schedule_create(owner=user, agent=agent, name="x", cron="@daily", input=INPUT)


def test_session_mode_reuse_keeps_one_session_and_new_makes_one_per_run(user, agent):
    reuse = due_at(make_schedule(user, agent, session_mode="reuse"), utc(2026, 1, 15, 10))
    new = due_at(make_schedule(user, agent, session_mode="new"), utc(2026, 1, 15, 10))

    schedules_fire_due(now=utc(2026, 1, 15, 10, 0, 1))
    schedules_fire_due(now=utc(2026, 1, 15, 11, 0, 1))

    reused = {task_of(r).session_id for r in runs_of(reuse)}
    made = {task_of(r).session_id for r in runs_of(new)}
    assert len(runs_of(reuse)) == len(runs_of(new)) == 2
    assert len(reused) == 1 and len(made) == 2
    reuse.refresh_from_db()
    assert reuse.session_id in reused
    assert reuse.session is not None
    assert Task.objects.filter(session=reuse.session).count() == 2

    # A deleted session is replaced by a new one on the next run.
    session_delete(session=reuse.session)
    schedule_fire(schedule=reuse)
    reuse.refresh_from_db()
    assert reuse.session_id not in reused
    # Switching to "new" forgets the kept session.
    assert schedule_update(schedule=reuse, session_mode="new").session is None


def test_run_now_fires_a_disabled_schedule_and_leaves_its_cron_alone(user, agent):
    schedule = make_schedule(user, agent, enabled=False)
    assert schedule.next_run_at is None

    run = schedule_fire(schedule=schedule, now=utc(2026, 1, 15, 10))

    assert run.trigger == "manual" and run.task is not None
    assert run.tick == utc(2026, 1, 15, 10) + timedelta(microseconds=1)  # off the cron's minutes
    schedule.refresh_from_db()
    assert (schedule.next_run_at, schedule.last_task) == (None, run.task)
    assert schedules_fire_due(now=utc(2026, 1, 16)) == []


def test_update_rejects_fields_it_cannot_change_and_checks_a_new_agent(user, other_user, agent):
    schedule = make_schedule(user, agent)
    with pytest.raises(TypeError):
        schedule_update(schedule=schedule, owner=other_user)
    private = factories.make_agent(other_user, slug="private")
    with pytest.raises(NotFound):
        schedule_update(schedule=schedule, agent=private)
    needs_ticket = factories.make_agent(user, slug="ticketed", input_schema=NEEDS_TICKET)
    with pytest.raises(InvalidInput) as caught:
        schedule_update(schedule=schedule, agent=needs_ticket)
    assert "input" in caught.value.details["fields"]
    # A schedule its agent no longer accepts can still be disabled.
    agent_update(agent=agent, user=user, input_schema=NEEDS_TICKET)
    assert schedule_update(schedule=schedule, enabled=False).next_run_at is None


# Concurrency -----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_schedulers_racing_for_one_tick_fire_it_once(user, agent, monkeypatch, caplog):
    """Both schedulers read the tick as due before either claims it (the barrier); the unique
    (schedule, tick) constraint makes the second claim fail. On PostgreSQL the second insert
    waits for the first transaction; on SQLite the second transaction waits for the first."""
    schedule = due_at(make_schedule(user, agent), utc(2026, 1, 15, 10))
    now = utc(2026, 1, 15, 10, 0, 1)
    barrier = threading.Barrier(2, timeout=30)
    real_fire = services._fire

    def fire_after_both_read(**kwargs: Any) -> Any:
        barrier.wait()
        return real_fire(**kwargs)

    monkeypatch.setattr(services, "_fire", fire_after_both_read)
    caplog.set_level(logging.DEBUG, logger="schedules.services")
    results, errors = run_in_threads(2, lambda: schedules_fire_due(now=now))

    assert errors == []
    assert sorted(len(r) for r in results) == [0, 1]
    assert len(runs_of(schedule)) == 1
    assert Task.objects.filter(session__agent=agent).count() == 1
    claimed = [r for r in caplog.records if "already claimed" in r.getMessage()]
    assert len(claimed) == 1  # the loser was stopped by the constraint


@pytest.mark.django_db(transaction=True)
def test_many_schedulers_fire_many_schedules_once_each(user, agent):
    schedules = [
        due_at(make_schedule(user, agent, name=f"s{n}"), utc(2026, 1, 15, 10)) for n in range(5)
    ]

    results, errors = run_in_threads(4, lambda: schedules_fire_due(now=utc(2026, 1, 15, 10, 1)))

    assert errors == []
    assert sum(len(r) for r in results) == 5
    assert [len(runs_of(s)) for s in schedules] == [1] * 5
    assert Task.objects.filter(session__agent=agent).count() == 5


def run_in_threads(n: int, fn: Any) -> tuple[list[Any], list[BaseException]]:
    """Run ``fn`` in ``n`` threads started together; their results and exceptions."""
    start = threading.Barrier(n, timeout=30)
    results: list[Any] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            start.wait()
            results.append(fn())
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()  # each thread has its own connection

    threads = [threading.Thread(target=target) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(t.is_alive() for t in threads)
    return results, errors


# Placements ------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_embedded_scheduler_fires_due_schedules_until_stopped(user, agent):
    schedule = due_at(make_schedule(user, agent), django_tz.now() - timedelta(minutes=1))

    def fired() -> bool:
        try:
            return ScheduleRun.objects.filter(schedule=schedule, task__isnull=False).exists()
        finally:
            connection.close()

    async def main() -> None:
        stop = asyncio.Event()
        scheduler = asyncio.create_task(run_scheduler(stop, interval_s=0.05))
        for _ in range(200):
            if await sync_to_async(fired, thread_sensitive=False)():
                break
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(scheduler, 10)

    asyncio.run(main())

    assert len(runs_of(schedule)) == 1
    schedule.refresh_from_db()
    assert schedule.next_run_at is not None and schedule.next_run_at > django_tz.now()


def test_the_embedded_scheduler_does_nothing_when_disabled(user, agent, settings):
    settings.SCHEDULER_ENABLED = False
    due_at(make_schedule(user, agent), utc(2026, 1, 15, 10))

    asyncio.run(asyncio.wait_for(run_scheduler(asyncio.Event()), 5))

    assert not ScheduleRun.objects.exists()


def test_the_celery_task_fires_due_schedules(user, agent):
    schedule = due_at(make_schedule(user, agent), utc(2026, 1, 15, 10))

    [task_id] = fire_due_schedules()

    assert str(task_of(runs_of(schedule)[0]).uuid) == task_id
    assert fire_due_schedules() == []


@pytest.mark.parametrize("value", ["0", "soon"])
def test_a_bad_scheduler_interval_stops_the_server(value, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(SCHEDULER_INTERVAL_S=value, SECRET_KEY="k" * 50, VAR_DIR=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode != 0
    assert "SCHEDULER_INTERVAL_S" in result.stderr


# Admin -----------------------------------------------------------------------------------------


@pytest.fixture
def admin_client(db: Any) -> Client:
    client = Client()
    client.force_login(factories.make_user("root", is_staff=True, is_superuser=True))
    return client


def test_admin_lists_schedules_runs_them_now_and_inlines_runs(admin_client, user, agent):
    schedule = make_schedule(user, agent)
    changelist = reverse("admin:schedules_schedule_changelist")

    page = admin_client.get(changelist)
    assert page.status_code == 200 and b"0 * * * *" in page.content
    response = admin_client.post(
        changelist, {"action": "run_now", "_selected_action": [schedule.pk]}, follow=True
    )
    assert b"Queued 1 task(s)." in response.content
    run = ScheduleRun.objects.get(schedule=schedule)
    assert run.trigger == "manual" and run.task is not None
    change = admin_client.get(reverse("admin:schedules_schedule_change", args=[schedule.pk]))
    assert change.status_code == 200 and str(run.task).encode() in change.content


def test_the_admin_form_checks_fields_and_computes_the_next_run(admin_client, user, agent, freeze):
    freeze(utc(2026, 1, 15, 9, 20))
    form = {
        "owner": user.pk,
        "team": agent.team_id,
        "agent": agent.pk,
        "name": "from admin",
        "cron": "99 * * * *",
        "timezone": "Nowhere/City",
        "input": '{"command": "echo hi"}',
        "config": "{}",
        "session_mode": "new",
        "enabled": "on",
        "runs-TOTAL_FORMS": "0",
        "runs-INITIAL_FORMS": "0",
    }
    add = reverse("admin:schedules_schedule_add")

    refused = admin_client.post(add, form)
    assert refused.status_code == 200
    assert set(refused.context["adminform"].form.errors) >= {"cron", "timezone"}
    assert not Schedule.objects.exists()

    added = admin_client.post(add, {**form, "cron": "@daily", "timezone": "Europe/Berlin"})
    assert added.status_code == 302, added.content[:2000]
    assert Schedule.objects.get().next_run_at == utc(2026, 1, 15, 23)  # midnight in Berlin
    assert Schedule.objects.get().team_id == agent.team_id
