from __future__ import annotations

from typing import Any

import pytest

from sessions.models import Task
from sessions.services.tasks import task_finish
from tests import factories
from tests.api.helpers import API, error_of

pytestmark = pytest.mark.django_db


def create(client: Any, session: Any, key: str | None = None, **fields: Any) -> Any:
    body = {"input": {"command": "echo hi"}, **fields}
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return client.post(f"{API}/sessions/{session.uuid}/tasks", body, format="json", **headers)


def test_it_queues_a_task(api_client, session, agent):
    response = create(api_client, session, task_type="plan", config={"timeout_s": 30})

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["session_id"] == str(session.uuid)
    assert body["agent"] == {"id": str(agent.uuid), "slug": agent.slug}
    assert body["agent_version"] == 1
    assert body["task_type"] == "plan"
    assert body["input"] == {"command": "echo hi"}
    assert body["config"] == {"timeout_s": 30}
    assert body["status"] == "queued"
    assert body["queue_position"] == 0
    assert body["multitask_strategy"] == "enqueue"
    assert body["result"] is None and body["error"] is None
    assert body["started_at"] is None and body["duration_ms"] is None
    assert Task.objects.get(uuid=body["id"]).session == session


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"input": "x"}, "input"),
        ({"config": ["timeout_s"]}, "config"),
        ({"task_type": "dance"}, "task_type"),
        ({"multitask_strategy": "rollback"}, "multitask_strategy"),
        ({"on_disconnect": "maybe"}, "on_disconnect"),
        ({"stream": "sometimes"}, "stream"),
    ],
)
def test_wrong_types_are_400_naming_the_field(api_client, session, fields, field):
    response = create(api_client, session, **fields)

    assert field in error_of(response, 400, "invalid_input")["details"]["fields"]
    assert not session.tasks.exists()


def test_an_input_not_matching_the_agent_schema_is_400(api_client, user):
    agent = factories.make_agent(
        user,
        input_schema={"type": "object", "required": ["q"], "properties": {"q": {"type": "string"}}},
    )
    session = factories.make_session(user, agent)

    response = create(api_client, session, input={"q": 3})

    assert "input" in error_of(response, 400, "invalid_input")["details"]["fields"]


def test_a_timeout_over_the_limit_is_400(api_client, session, settings):
    settings.TASK_MAX_TIMEOUT_S = 60

    response = create(api_client, session, config={"timeout_s": 61})

    error_of(response, 400, "invalid_input")


def test_the_same_idempotency_key_returns_the_same_task(api_client, session):
    first = create(api_client, session, key="order-1")
    again = create(api_client, session, key="order-1", input={"command": "other"})

    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["idempotency_key"] == "order-1"
    assert session.tasks.count() == 1


def test_the_same_idempotency_key_on_another_session_is_409(api_client, user, session, agent):
    other_session = factories.make_session(user, agent)
    assert create(api_client, session, key="k").status_code == 201

    error = error_of(create(api_client, other_session, key="k"), 409, "idempotency_key_reused")

    assert error["details"]["task_id"] == str(session.tasks.get().uuid)
    assert not other_session.tasks.exists()


def test_an_overlong_idempotency_key_is_400(api_client, session):
    response = create(api_client, session, key="k" * 256)

    assert "Idempotency-Key" in error_of(response, 400, "invalid_input")["details"]["fields"]


def test_enqueue_keeps_both_tasks_queued_in_order(api_client, session):
    first = create(api_client, session).json()
    second = create(api_client, session).json()

    assert (first["queue_position"], second["queue_position"]) == (0, 1)
    listed = api_client.get(f"{API}/sessions/{session.uuid}/tasks").json()["results"]
    assert [(t["id"], t["status"], t["queue_position"]) for t in listed] == [
        (second["id"], "queued", 1),
        (first["id"], "queued", 0),
    ]


def test_reject_is_409_session_busy_while_another_task_is_active(api_client, session):
    first = create(api_client, session).json()

    response = create(api_client, session, multitask_strategy="reject")

    error = error_of(response, 409, "session_busy")
    assert error["details"]["active_task_ids"] == [first["id"]]
    assert session.tasks.count() == 1


def test_reject_is_fine_when_the_session_is_free(api_client, session):
    assert create(api_client, session, multitask_strategy="reject").status_code == 201


def test_interrupt_cancels_the_earlier_queued_task(api_client, session):
    first = create(api_client, session).json()

    second = create(api_client, session, multitask_strategy="interrupt")

    assert second.status_code == 201
    assert second.json()["queue_position"] == 0
    earlier = api_client.get(f"{API}/tasks/{first['id']}").json()
    assert earlier["status"] == "cancelled"
    assert earlier["queue_position"] is None
    assert earlier["error"]["code"] == "cancelled"


def test_list_filters_by_status(api_client, session):
    done = factories.make_task(session)
    task_finish(task=done, status="failed", error={"code": "x", "message": "m", "details": {}})
    cancelled = factories.make_task(session)
    api_client.post(f"{API}/tasks/{cancelled.uuid}/cancel")
    queued = factories.make_task(session)
    url = f"{API}/sessions/{session.uuid}/tasks"

    def ids(**params: str) -> set[str]:
        response = api_client.get(url, params)
        assert response.status_code == 200, response.json()
        return {t["id"] for t in response.json()["results"]}

    assert ids(status="queued") == {str(queued.uuid)}
    assert ids(status="failed,cancelled") == {str(done.uuid), str(cancelled.uuid)}
    assert ids() == {str(done.uuid), str(cancelled.uuid), str(queued.uuid)}
    error_of(api_client.get(url, {"status": "queued,lost"}), 400, "invalid_input")


def test_task_detail_shows_the_task(api_client, session):
    task = factories.make_task(session, idempotency_key="abc")

    body = api_client.get(f"{API}/tasks/{task.uuid}").json()

    assert body["id"] == str(task.uuid)
    assert body["idempotency_key"] == "abc"
    assert body["cancel_requested_at"] is None
    assert body["attempt"] == 0
    assert set(body) >= {
        "current_phase",
        "usage",
        "on_disconnect",
        "created_at",
        "finished_at",
        "duration_ms",
    }


def test_cancel_a_queued_task_then_cancel_again_is_409(api_client, session):
    task = factories.make_task(session)
    url = f"{API}/tasks/{task.uuid}/cancel"

    response = api_client.post(url)

    assert response.status_code == 202
    assert response.json()["status"] == "cancelled"
    assert response.json()["finished_at"] is not None
    error = error_of(api_client.post(url), 409, "illegal_transition")
    assert error["details"]["status"] == "cancelled"


def test_result_is_409_while_the_task_is_active(api_client, session):
    task = factories.make_task(session)

    error = error_of(api_client.get(f"{API}/tasks/{task.uuid}/result"), 409, "task_not_finished")

    assert error["details"]["status"] == "queued"


def test_result_of_a_finished_task(api_client, session):
    task = factories.make_task(session)
    factories.finish_task(task, "succeeded", result={"answer": 42}, usage={"cpu_s": 1.5})

    response = api_client.get(f"{API}/tasks/{task.uuid}/result")

    assert response.status_code == 200
    assert response.json() == {
        "status": "succeeded",
        "result": {"answer": 42},
        "error": None,
        "usage": {"cpu_s": 1.5},
    }


@pytest.mark.parametrize("suffix", ["", "/cancel", "/events", "/result"])
def test_a_strangers_task_is_404(other_client, session, suffix):
    task = factories.make_task(session)
    method = other_client.post if suffix == "/cancel" else other_client.get

    error_of(method(f"{API}/tasks/{task.uuid}{suffix}"), 404, "not_found")
    task.refresh_from_db()
    assert task.status == "queued"


def test_stream_true_answers_with_the_task_event_stream(api_client, session):
    response = create(api_client, session, stream=True, on_disconnect="cancel")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/event-stream")
    assert response.streaming
    task = session.tasks.get()
    assert task.on_disconnect == "cancel"
    assert task.status == "queued"


def _waiting(session: Any, pending: dict[str, Any]) -> Task:
    """A task parked in ``waiting`` the way a runner parks it: claimed, then suspended."""
    from sessions.services.tasks import task_claim_next
    from sessions.services.waiting import task_suspend

    create_task = factories.make_task(session)
    claimed = task_claim_next(worker="w1", limit=1, session_id=session.pk)
    assert claimed and claimed[0].pk == create_task.pk
    return task_suspend(task=claimed[0], worker="w1", pending=pending, usage={})


def test_resume_answers_a_waiting_task(api_client, other_client, session):
    pending = {"kind": "approval", "call_id": "c1", "name": "shell", "arguments": {"command": "ls"}}
    task = _waiting(session, pending)
    url = f"{API}/tasks/{task.uuid}/resume"

    body = api_client.get(f"{API}/tasks/{task.uuid}").json()
    assert (body["status"], body["pending_action"]) == ("waiting", pending)
    error_of(other_client.post(url, {"decision": "approve"}, format="json"), 404)
    error_of(api_client.post(url, {"reply": "yes"}, format="json"), 400, "invalid_input")
    error_of(api_client.post(url, {"decision": "edit"}, format="json"), 400, "invalid_input")
    error_of(api_client.post(url, {"decision": "maybe"}, format="json"), 400, "invalid_input")

    response = api_client.post(url, {"decision": "deny", "reason": "no"}, format="json")
    assert response.status_code == 202, response.json()
    assert (response.json()["status"], response.json()["pending_action"]) == ("queued", None)
    task.refresh_from_db()
    assert task.resume == {"call_id": "c1", "kind": "approval", "decision": "deny", "reason": "no"}
    error_of(api_client.post(url, {"decision": "approve"}, format="json"), 409, "not_waiting")


def test_a_waiting_task_that_nobody_answers_expires(session, settings):
    from sessions.services.tasks import task_recover_expired

    settings.TASK_WAIT_TIMEOUT_S = 0.0
    task = _waiting(session, {"kind": "ask_user", "call_id": "c", "name": "ask_user",
                              "arguments": {"question": "?"}, "question": "?"})  # fmt: skip
    assert [t.pk for t in task_recover_expired()] == [task.pk]
    task.refresh_from_db()
    assert (task.status, task.error["code"]) == ("failed", "wait_expired")
