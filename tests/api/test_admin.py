"""The operator's admin: pages render with few queries, actions call the services."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from sessions.models import Event, Task
from sessions.services.events import event_append
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(db) -> Client:
    client = Client()
    client.force_login(factories.make_user("root", is_staff=True, is_superuser=True))
    return client


@pytest.mark.parametrize("model", ["agent", "session", "task", "event"])
def test_changelists_render_with_a_bounded_number_of_queries(
    admin_client, session, model, django_assert_max_num_queries
):
    for _ in range(5):
        factories.make_task(session)
    url = reverse(f"admin:agent_sessions_{model}_changelist")

    with django_assert_max_num_queries(15):
        response = admin_client.get(url)

    assert response.status_code == 200


def test_change_pages_render_with_their_inlines(admin_client, session, agent):
    task = factories.make_task(session)
    for n in range(250):
        event_append(session=session, task=task, type="log", data={"n": n})

    for obj in (agent, session, task):
        url = reverse(f"admin:agent_sessions_{obj._meta.model_name}_change", args=[obj.pk])
        assert admin_client.get(url).status_code == 200, obj
    page = admin_client.get(reverse("admin:agent_sessions_task_change", args=[task.pk]))
    # Only the latest 200 events are inlined (n = 50..249), oldest first.
    shown = [int(n) for n in re.findall(r"&quot;n&quot;: (\d+)", page.content.decode())]
    assert shown == list(range(50, 250))


def test_events_are_read_only(admin_client, session):
    event = Event.objects.filter(session=session).first()

    assert admin_client.get(reverse("admin:agent_sessions_event_add")).status_code == 403
    url = reverse("admin:agent_sessions_event_delete", args=[event.pk])
    assert admin_client.post(url, {"post": "yes"}).status_code == 403
    assert Event.objects.filter(pk=event.pk).exists()


def test_cancel_action_cancels_active_tasks_and_skips_finished_ones(admin_client, session):
    done = factories.make_task(session)
    factories.finish_task(done, "succeeded")
    queued = factories.make_task(session)

    response = admin_client.post(
        reverse("admin:agent_sessions_task_changelist"),
        {"action": "cancel_selected", "_selected_action": [done.pk, queued.pk]},
        follow=True,
    )

    assert response.status_code == 200
    queued.refresh_from_db()
    done.refresh_from_db()
    assert queued.status == "cancelled"
    assert done.status == "succeeded"
    text = response.content.decode()
    assert "Cancel requested for 1 task(s)." in text
    assert "Skipped 1 finished task(s)." in text


def test_retry_action_queues_a_copy(admin_client, session):
    task = factories.make_task(session, input={"command": "echo again"})
    factories.finish_task(task, "failed", error={"code": "x", "message": "m", "details": {}})

    admin_client.post(
        reverse("admin:agent_sessions_task_changelist"),
        {"action": "retry_selected", "_selected_action": [task.pk]},
    )

    retry = Task.objects.exclude(pk=task.pk).get()
    assert retry.status == "queued"
    assert retry.input == {"command": "echo again"}
    assert retry.created_by.username == "root"


def test_the_admin_is_branded_and_links_to_the_api_docs_and_health(admin_client):
    page = admin_client.get(reverse("admin:index")).content.decode()

    assert "Agent Runtime" in page
    assert f'href="{reverse("swagger-ui")}"' in page
    assert f'href="{reverse("health")}"' in page
