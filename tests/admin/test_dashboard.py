"""The admin index: running / queued / waiting tasks and failures of the last 24 hours per
agent and per team, every number a link to exactly those tasks, the latest failures, the
stock app list still there, and a fixed number of queries however many agents there are."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from sessions.models import Task
from tests import factories
from tests.admin.conftest import claim, links, selected_rows, signed_in

pytestmark = pytest.mark.django_db

ERROR = {"code": "boom", "message": "it broke", "details": {}}


def _task(agent: Any, **kwargs: Any) -> Task:
    return factories.make_task(factories.make_session(agent.owner, agent), **kwargs)


@pytest.fixture
def fleet() -> dict[str, Any]:
    """Two teams (alice's and bob's personal teams), an agent each, tasks in every state."""
    alice, bob = factories.make_user("alice"), factories.make_user("bob")
    builder = factories.make_agent(alice, slug="builder")
    tester = factories.make_agent(bob, slug="tester")

    running = claim(_task(builder))
    factories.make_task(running.session)  # queued behind the running one
    failed = factories.finish_task(_task(builder), "failed", error=ERROR)
    old = factories.finish_task(_task(builder), "failed", error=ERROR)
    Task.objects.filter(pk=old.pk).update(finished_at=timezone.now() - timedelta(days=2))
    factories.finish_task(_task(builder), "succeeded")

    waiting = claim(_task(tester))
    waiting.save(update_fields=waiting.transition("waiting"))
    timed_out = factories.finish_task(_task(tester), "timed_out", error=ERROR)
    _task(tester)  # queued
    return {
        "alice": alice, "bob": bob, "builder": builder, "tester": tester,
        "failed": failed, "old": old, "timed_out": timed_out,
    }  # fmt: skip


def test_counts_per_agent_and_team_each_linking_to_those_tasks(
    admin_client: Any, fleet: dict[str, Any]
) -> None:
    page = admin_client.get(reverse("admin:index")).content.decode()
    team_a = factories.team_of(fleet["alice"]).slug
    team_b = factories.team_of(fleet["bob"]).slug
    shown = {label: href for href, label in links(page)}

    expected = {
        f"builder ({team_a})": {"running": 1, "queued": 1, "waiting": 0, "failed": 1},
        f"tester ({team_b})": {"running": 0, "queued": 1, "waiting": 1, "failed": 1},
        f"team {team_a}": {"running": 1, "queued": 1, "waiting": 0, "failed": 1},
        f"team {team_b}": {"running": 0, "queued": 1, "waiting": 1, "failed": 1},
        "all teams": {"running": 1, "queued": 2, "waiting": 1, "failed": 2},
    }
    for row, counts in expected.items():
        for column, count in counts.items():
            label = f"{count} {column}: {row}"
            assert label in shown, f"{label!r} not on the dashboard: {sorted(shown)}"
            # The link opens the task list filtered to exactly those tasks.
            listing = admin_client.get(shown[label])
            assert listing.status_code == 200, shown[label]
            assert selected_rows(listing.content.decode()) == count, (label, shown[label])

    # The latest failures (24 h): the failed and the timed-out task, not the 2-day-old one.
    failures = page[page.index('id="dashboard-failures"') :]
    for key in ("failed", "timed_out"):
        url = reverse("admin:agent_sessions_task_change", args=[fleet[key].pk])
        assert f'href="{url}"' in failures
    assert reverse("admin:agent_sessions_task_change", args=[fleet["old"].pk]) not in failures
    assert "it broke" in failures
    # The stock admin index is still there.
    assert 'class="app-agent_sessions module' in page
    assert 'id="recent-actions-module"' in page


def test_the_number_of_queries_does_not_grow_with_agents(
    admin_client: Any, fleet: dict[str, Any]
) -> None:
    url = reverse("admin:index")
    admin_client.get(url)  # warm up (content types, permissions cache)
    with CaptureQueriesContext(connection) as before:
        admin_client.get(url)
    for n in range(5):
        _task(factories.make_agent(fleet["alice"], slug=f"more-{n}"))
    with CaptureQueriesContext(connection) as after:
        page = admin_client.get(url).content.decode()
    assert "1 queued: more-4" in page
    assert len(after.captured_queries) == len(before.captured_queries)


def test_empty_states_and_who_sees_the_dashboard(admin_client: Any, db: Any) -> None:
    page = admin_client.get(reverse("admin:index")).content.decode()
    assert "No task is running, queued or waiting, and none failed in the last 24 hours." in page
    assert "No task failed or timed out in the last 24 hours." in page

    # Staff without the permission to view tasks get the stock index without the numbers.
    clerk = signed_in(factories.make_user("clerk", is_staff=True))
    page = clerk.get(reverse("admin:index")).content.decode()
    assert 'class="operator-dashboard"' not in page
    assert "Site administration" in page
