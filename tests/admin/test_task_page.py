"""A task's admin page: the live timeline's JSON endpoint (staff with view permission only;
events after a seq, in order) and the Cancel / Retry / Re-run buttons and bulk actions, each
audited, through the real services."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from accounts.models import AuditEntry
from sessions.models import Task
from sessions.services.events import event_append
from tests import factories
from tests.admin.conftest import claim, signed_in

pytestmark = pytest.mark.django_db

JSON = {"HTTP_ACCEPT": "application/json"}


def _timeline(task: Task) -> str:
    return reverse("admin:agent_sessions_task_timeline", args=[task.pk])


def _tool(task: Task, name: str) -> str:
    return reverse("admin:agent_sessions_task_tool", args=[task.pk, name])


def _change(task: Task) -> str:
    return reverse("admin:agent_sessions_task_change", args=[task.pk])


def test_the_page_has_the_live_panel_and_the_buttons(admin_client: Any, session: Any) -> None:
    task = factories.make_task(session)
    page = admin_client.get(_change(task)).content.decode()

    assert 'id="task-live-status"' in page and 'data-status="queued"' in page
    assert '<script id="task-live-config" type="application/json">' in page
    assert 'src="/static/sessions/admin/task-live.js"' in page
    for name in ("cancel", "retry", "rerun", "kill"):
        assert f'action="{_tool(task, name)}"' in page
    assert "csrfmiddlewaretoken" in page
    # Served by the static files (the page's script and the admin stylesheet).
    assert admin_client.get("/static/sessions/admin/task-live.js").status_code == 200
    assert admin_client.get("/static/sessions/admin/admin.css").status_code == 200


def test_timeline_returns_the_newest_events_then_those_after_a_seq(
    admin_client: Any, session: Any
) -> None:
    task = factories.make_task(session)
    other = factories.make_task(session)  # same session: its events are not this task's
    for n in range(3):
        event_append(session=session, task=task, type="log", data={"n": n})
        event_append(session=session, task=other, type="log", data={"n": 100 + n})

    first = admin_client.get(_timeline(task))
    assert first.status_code == 200
    body = first.json()
    assert body["task"]["id"] == str(task.uuid) and body["task"]["status"] == "queued"
    assert [e["type"] for e in body["events"]] == ["task.status", "log", "log", "log"]
    seqs = [e["seq"] for e in body["events"]]
    assert seqs == sorted(seqs) and body["next_after"] == seqs[-1]
    assert body["more"] is False

    event_append(session=session, task=task, type="process.stdout", data={"text": "hello\n"})
    claim(task)
    after = admin_client.get(_timeline(task), {"after": body["next_after"]}).json()
    assert [(e["type"], e["summary"]) for e in after["events"]] == [
        ("process.stdout", "hello\n"),
        ("task.status", "running (starting)"),
    ]
    assert after["task"]["status"] == "running" and after["task"]["terminal"] is False
    assert after["events"][0]["seq"] > body["next_after"]
    nothing = admin_client.get(_timeline(task), {"after": after["next_after"]}).json()
    assert nothing["events"] == [] and nothing["next_after"] == after["next_after"]

    bad = admin_client.get(_timeline(task), {"after": "x"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_input"
    assert admin_client.get(_timeline(task).replace(f"/{task.pk}/", "/999999/")).status_code == 404


def test_timeline_pages_through_long_logs(admin_client: Any, session: Any) -> None:
    task = factories.make_task(session)
    for n in range(450):
        event_append(session=session, task=task, type="log", data={"n": n})
    tail = admin_client.get(_timeline(task)).json()
    assert len(tail["events"]) == 100 and tail["events"][-1]["summary"] == '{"n": 449}'

    seen, after = [], 0
    while True:
        page = admin_client.get(_timeline(task), {"after": after}).json()
        seen += page["events"]
        after = page["next_after"]
        if not page["more"]:
            break
    assert len(seen) == 451  # the queued status and 450 logs, each once, in order
    assert [e["seq"] for e in seen] == sorted({e["seq"] for e in seen})


def test_timeline_is_for_staff_with_view_permission_only(user: Any, session: Any) -> None:
    task = factories.make_task(session)
    url = _timeline(task)

    anonymous = signed_in(user).get(url)  # signed in, not staff
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/admin/login/")
    clerk = factories.make_user("clerk", is_staff=True)
    assert signed_in(clerk).get(url).status_code == 403
    clerk.user_permissions.add(Permission.objects.get(codename="view_task"))
    clerk = type(clerk).objects.get(pk=clerk.pk)  # drop the permission cache
    assert signed_in(clerk).get(url).status_code == 200
    # Viewing is not acting: no change permission, no buttons that work.
    refused = signed_in(clerk).post(_tool(task, "cancel"))
    assert refused.status_code == 403
    assert Task.objects.get(pk=task.pk).status == "queued"


def test_cancel_button_cancels_a_queued_task_and_asks_a_running_one_to_stop(
    admin_client: Any, root: Any, session: Any
) -> None:
    queued = factories.make_task(session, input={"command": "echo one"})
    # A plain form post: redirected back with a message.
    response = admin_client.post(_tool(queued, "cancel"), follow=True)
    assert response.redirect_chain[-1][0] == _change(queued)
    assert f"Task {queued.uuid} cancelled." in response.content.decode()
    queued.refresh_from_db()
    assert queued.status == "cancelled"
    assert queued.error["message"] == "cancelled by root (admin)"

    running = claim(factories.make_task(session))
    # The page's script: JSON, nothing flashed.
    answer = admin_client.post(_tool(running, "cancel"), **JSON)
    assert answer.status_code == 200
    assert answer.json() == {
        "message": f"Cancel requested for task {running.uuid}.",
        "level": "success",
        "redirect": None,
    }
    running.refresh_from_db()
    assert running.status == "running" and running.cancel_requested_at is not None
    assert running.current_phase == "cancelling"
    state = admin_client.get(_timeline(running)).json()["task"]
    assert state["cancel_requested"] is True

    again = admin_client.post(_tool(queued, "cancel"), **JSON).json()
    assert again["level"] == "warning" and "already finished (cancelled)" in again["message"]
    actions = AuditEntry.objects.filter(actor=root).values_list("action", "target_id")
    assert set(actions) == {
        ("admin.task_cancel", str(queued.uuid)),
        ("admin.task_cancel", str(running.uuid)),
    }
    assert admin_client.get(_tool(queued, "cancel")).status_code == 405
    assert admin_client.post(_tool(queued, "explode")).status_code == 404


def test_retry_queues_a_copy_of_a_failed_task_and_opens_it(
    admin_client: Any, root: Any, session: Any
) -> None:
    failed = factories.make_task(
        session, input={"command": "exit 3"}, config={"timeout_s": 30}, task_type="run"
    )
    factories.finish_task(failed, "failed", error={"code": "x", "message": "m", "details": {}})

    response = admin_client.post(_tool(failed, "retry"))
    new = Task.objects.exclude(pk=failed.pk).get()
    assert response.status_code == 302 and response["Location"] == _change(new)
    assert new.status == "queued" and new.session_id == failed.session_id
    assert (new.input, new.config, new.task_type) == (failed.input, failed.config, "run")
    assert new.created_by == root
    entry = AuditEntry.objects.get(action="admin.task_retry")
    assert entry.details == {"new_task": str(new.uuid)} and entry.target_id == str(failed.uuid)
    page = admin_client.get(response["Location"]).content.decode()
    assert f"Queued task {new.uuid} (retry of {failed.uuid})." in page


def test_retry_refuses_a_succeeded_task_but_rerun_runs_it_again(
    admin_client: Any, session: Any
) -> None:
    done = factories.make_task(session, input={"command": "echo same"})
    factories.finish_task(done, "succeeded", result={"exit_code": 0})

    refused = admin_client.post(_tool(done, "retry"), **JSON).json()
    assert refused["level"] == "warning" and "use Re-run" in refused["message"]
    assert Task.objects.count() == 1

    rerun = admin_client.post(_tool(done, "rerun"), **JSON).json()
    new = Task.objects.exclude(pk=done.pk).get()
    assert rerun["redirect"] == _change(new)
    assert f"(re-run of {done.uuid})" in rerun["message"]
    assert new.input == {"command": "echo same"} and new.status == "queued"
    assert new.session_id == done.session_id and new.agent_id == done.agent_id
    assert AuditEntry.objects.filter(action="admin.task_rerun", target_id=str(done.uuid)).exists()


def test_bulk_actions_match_the_buttons(admin_client: Any, session: Any) -> None:
    done = factories.make_task(session, input={"command": "echo a"})
    factories.finish_task(done, "succeeded")
    failed = factories.make_task(session, input={"command": "echo b"})
    factories.finish_task(failed, "failed", error={"code": "x", "message": "m", "details": {}})
    changelist = reverse("admin:agent_sessions_task_changelist")

    page = admin_client.post(
        changelist,
        {"action": "retry_selected", "_selected_action": [done.pk, failed.pk]},
        follow=True,
    ).content.decode()
    assert "Queued 1 new task(s)." in page and "use Re-run" in page
    assert Task.objects.filter(input={"command": "echo b"}, status="queued").count() == 1

    page = admin_client.post(
        changelist, {"action": "rerun_selected", "_selected_action": [done.pk]}, follow=True
    ).content.decode()
    assert "Queued 1 new task(s)." in page
    assert Task.objects.filter(input={"command": "echo a"}).count() == 2
