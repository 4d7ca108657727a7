"""Session copy (branching a conversation): history, tasks, workspace files; an llm task in the
copy sees the copied history and nothing the source did afterwards."""

from __future__ import annotations

import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from debugger.models import Step
from sandboxes.registry import get_backend
from sessions.models import Event, Session, Task
from sessions.runners.scripted_llm import ScriptedLLM, Turn
from sessions.services.agents import agent_create
from sessions.services.copy import session_copy
from sessions.services.sessions import session_create
from sessions.services.tasks import task_create
from tests import factories
from tests.helpers import wait_terminal

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sandbox]


async def _run(executor: Any, session: Session, user: Any, message: str) -> Task:
    task = (await sync_to_async(task_create)(session=session, user=user,
                                             input={"message": message}))[0]  # fmt: skip
    executor.kick()
    return await wait_terminal(task, timeout=120)


def _contents(messages: list[dict[str, Any]]) -> list[Any]:
    return [m.get("content") for m in messages if m["role"] in ("user", "assistant")]


async def test_a_copy_keeps_history_and_files_and_branches_there(
    executor: Any, owner: Any, llm: ScriptedLLM, api_client_of: Any
) -> None:
    def make() -> Session:
        agent = agent_create(owner=owner, slug="chat", name="chat", kind="llm",
                             spec={"model": {"base_url": llm.base_url, "name": "scripted-1"},
                                   "tools": ["write_file"], "max_retries": 0})  # fmt: skip
        return session_create(owner=owner, agent=agent, name="talk", tags=["t"],
                              metadata={"k": 1})  # fmt: skip

    source = await sync_to_async(make)()
    llm.add(
        Turn(chunks=["Saving."], tool_calls=[{"name": "write_file", "arguments": json.dumps(
            {"path": "notes/a.txt", "content": "first"})}]),
        Turn(chunks=["Saved."]),
        Turn(chunks=["Second answer."]),
    )  # fmt: skip
    first = await _run(executor, source, owner, "First")
    assert first.status == "succeeded", first.error
    cut = await sync_to_async(lambda: Session.objects.get(pk=source.pk).last_seq)()
    second = await _run(executor, source, owner, "Second")
    assert second.status == "succeeded", second.error
    await get_backend().stop(str(source.uuid))

    def copy_via_api() -> dict[str, Any]:
        response = api_client_of(owner).post(
            f"/api/v1/sessions/{source.uuid}/copy", {"upto_seq": cut}, format="json"
        )
        assert response.status_code == 201, response.json()
        return dict(response.json())

    body = await sync_to_async(copy_via_api)()
    assert body["name"] == "talk (copy)" and body["tags"] == ["t"] and body["metadata"] == {"k": 1}
    assert body["last_seq"] > 0

    def inspect() -> Session:
        copy = Session.objects.get(uuid=body["id"])
        [task] = Task.objects.filter(session=copy)
        assert (task.forked_from_id, task.status, task.result) == (first.pk, "succeeded",
                                                                   first.result)  # fmt: skip
        assert task.uuid != first.uuid and task.input == {"message": "First"}
        source_events = list(Event.objects.filter(session=source, seq__lte=cut).order_by("seq"))
        copied = list(Event.objects.filter(session=copy).order_by("seq"))
        assert [e.seq for e in copied] == list(range(1, len(source_events) + 1))
        assert [(e.type, e.data) for e in copied] == [(e.type, e.data) for e in source_events]
        assert {e.task_id for e in copied if e.task_id} == {task.pk}
        # The copied task has its trace too (the projection ran on the copied events).
        assert Step.objects.filter(task=task, step_id="llm-2", status="succeeded").exists()
        assert (copy.workspace_path / "notes" / "a.txt").read_text() == "first"
        assert copy.owner_id == owner.pk and copy.team_id == source.team_id
        return copy

    copy = await sync_to_async(inspect)()

    llm.add(Turn(chunks=["Branch answer."]))
    before = len(llm.requests)
    branch = await _run(executor, copy, owner, "Other second")
    assert branch.status == "succeeded", branch.error
    await get_backend().stop(str(copy.uuid))
    sent = _contents(llm.requests[before]["messages"])
    assert sent == ["First", "Saving.", "Saved.", "Other second"]  # not the source's "Second"


async def test_copy_cuts_a_task_and_checks_access(owner: Any, api_client_of: Any) -> None:
    def run() -> None:
        agent = factories.make_agent(owner)
        source = session_create(owner=owner, agent=agent, name="s")
        (source.workspace_path / "f.txt").write_text("data")
        task = task_create(session=source, user=owner, input={"command": "true"})[0]
        copy = session_copy(session=source, user=owner, name="mine", include_workspace=False)
        [copied] = Task.objects.filter(session=copy)
        assert copied.status == "cancelled" and copied.error["code"] == "copy_cut"
        assert copied.forked_from_id == task.pk
        assert Event.objects.filter(session=copy, task=copied).last().data["status"] == "cancelled"
        assert not (copy.workspace_path / "f.txt").exists()
        assert copy.name == "mine"
        only_created = session_copy(session=source, user=owner, upto_seq=1)
        assert not Task.objects.filter(session=only_created).exists()
        assert (only_created.workspace_path / "f.txt").read_text() == "data"

        url = f"/api/v1/sessions/{source.uuid}/copy"
        stranger = factories.make_user()
        assert api_client_of(stranger).post(url, {}, format="json").status_code == 404
        viewer = factories.make_user()
        factories.add_member(factories.team_of(owner), viewer, role="viewer")
        assert api_client_of(viewer).post(url, {}, format="json").status_code == 403
        member = factories.make_user()
        factories.add_member(factories.team_of(owner), member, role="member")
        made = api_client_of(member).post(url, {"include_workspace": True}, format="json")
        assert made.status_code == 201
        assert Session.objects.get(uuid=made.json()["id"]).owner_id == member.pk
        bad = api_client_of(owner).post(url, {"upto_seq": -1}, format="json")
        assert bad.status_code == 400

    await sync_to_async(run)()


def _duration_count(status: str) -> float:
    from prometheus_client import REGISTRY

    value = REGISTRY.get_sample_value(
        "agent_runtime_task_duration_seconds_count", {"status": status}
    )
    return value or 0.0


async def test_a_copy_replays_no_activity_to_the_outside(owner: Any, settings: Any) -> None:
    """Copied events happened in the source: the team's webhook gets no second ``task.*`` /
    ``session.created`` delivery for them, and the task-duration histogram does not count the
    copied task again. A task that runs in the copy is delivered as usual."""
    from integrations.webhooks.models import WebhookDelivery
    from integrations.webhooks.services import endpoint_create

    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True

    def run() -> None:
        endpoint_create(team=factories.team_of(owner), user=owner, url="http://127.0.0.1:9/",
                        event_types=["*"])  # fmt: skip
        source = factories.make_session(owner)
        factories.finish_task(factories.make_task(source), "failed")
        delivered = WebhookDelivery.objects.order_by("pk").values_list("event_type", flat=True)
        sent = list(delivered)
        assert sent[-1] == "task.failed"
        observed = _duration_count("failed")

        source = Session.objects.get(pk=source.pk)  # its last_seq now
        copy = session_copy(session=source, user=owner, include_workspace=False)
        [copied] = Task.objects.filter(session=copy)
        assert copied.status == "failed"  # copied, with its whole log
        assert Event.objects.filter(session=copy, type="task.status").count() == 3
        assert list(delivered.all()) == sent
        assert _duration_count("failed") == observed

        factories.finish_task(factories.make_task(copy), "failed")  # live in the copy
        new = WebhookDelivery.objects.order_by("pk")[len(sent) :]
        assert [d.event_type for d in new] == [
            "task.created", "task.queued", "task.running", "task.failed",
        ]  # fmt: skip
        assert _duration_count("failed") == observed + 1

    await sync_to_async(run)()
