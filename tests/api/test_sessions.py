from __future__ import annotations

from typing import Any

import pytest

from sessions.models import Session
from tests import factories
from tests.api.helpers import API, error_of

pytestmark = pytest.mark.django_db


def test_it_creates_a_session_on_an_agent_by_slug(api_client, agent):
    response = api_client.post(
        f"{API}/sessions",
        {"agent": agent.slug, "name": "demo", "tags": ["a", "b"], "metadata": {"k": 1}},
        format="json",
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["agent"] == {"id": str(agent.uuid), "slug": agent.slug, "version": 1}
    assert body["name"] == "demo"
    assert body["tags"] == ["a", "b"]
    assert body["metadata"] == {"k": 1}
    assert body["status"] == "idle"
    assert body["active_task_count"] == 0
    assert body["deleted_at"] is None
    assert body["links"]["tasks"] == f"{API}/sessions/{body['id']}/tasks"
    session = Session.objects.get(uuid=body["id"])
    assert session.workspace_path.is_dir()
    assert body["last_seq"] == session.last_seq


def test_it_can_use_a_public_agent_of_someone_else(other_client, agent):
    agent.is_public = True
    agent.save()

    response = other_client.post(f"{API}/sessions", {"agent": str(agent.uuid)}, format="json")

    assert response.status_code == 201


def test_a_private_agent_of_someone_else_is_404(other_client, agent):
    response = other_client.post(f"{API}/sessions", {"agent": str(agent.uuid)}, format="json")

    error_of(response, 404, "not_found")
    assert not Session.objects.filter(owner__username="mallory").exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "agent"),
        ({"agent": "shell", "tags": "x"}, "tags"),
        ({"agent": "shell", "tags": [1, {"a": 1}]}, "tags"),
        ({"agent": "shell", "metadata": "x"}, "metadata"),
        ({"agent": "shell", "name": "n" * 201}, "name"),
    ],
)
def test_invalid_input_is_400_naming_the_field(api_client, agent, body, field):
    response = api_client.post(f"{API}/sessions", body, format="json")

    assert field in error_of(response, 400, "invalid_input")["details"]["fields"]


def test_list_filters_by_status_and_tag(api_client, user, agent):
    tagged = factories.make_session(user, agent, tags=["red", "blue"])
    factories.make_session(user, agent, tags=["green"])
    busy = factories.make_session(user, agent, tags=["blue"])
    factories.make_task(busy)

    by_tag = api_client.get(f"{API}/sessions", {"tag": "blue"}).json()
    by_status = api_client.get(f"{API}/sessions", {"status": "active"}).json()
    both = api_client.get(f"{API}/sessions", {"status": "idle,closed", "tag": "blue"}).json()

    assert {s["id"] for s in by_tag["results"]} == {str(tagged.uuid), str(busy.uuid)}
    assert [s["id"] for s in by_status["results"]] == [str(busy.uuid)]
    assert by_status["results"][0]["active_task_count"] == 1
    assert [s["id"] for s in both["results"]] == [str(tagged.uuid)]


def test_list_rejects_an_unknown_status(api_client):
    response = api_client.get(f"{API}/sessions", {"status": "sleeping"})

    assert "status" in error_of(response, 400, "invalid_input")["details"]["fields"]


def test_list_shows_only_my_sessions(api_client, session, other_user):
    factories.make_session(other_user)

    body = api_client.get(f"{API}/sessions").json()

    assert [s["id"] for s in body["results"]] == [str(session.uuid)]


def test_update_changes_only_the_given_fields(api_client, session):
    url = f"{API}/sessions/{session.uuid}"

    response = api_client.patch(url, {"tags": ["x"]}, format="json")

    assert response.status_code == 200, response.json()
    assert response.json()["tags"] == ["x"]
    assert response.json()["name"] == "first"
    assert api_client.get(url).json()["tags"] == ["x"]


def test_delete_is_soft_and_restore_brings_it_back(api_client, session):
    url = f"{API}/sessions/{session.uuid}"
    task = factories.make_task(session)

    assert api_client.delete(url).status_code == 204

    error_of(api_client.get(url), 404, "not_found")
    assert api_client.get(f"{API}/sessions").json()["count"] == 0
    deleted = api_client.get(f"{API}/sessions", {"deleted": "true"}).json()
    assert [s["id"] for s in deleted["results"]] == [str(session.uuid)]
    assert deleted["results"][0]["deleted_at"] is not None
    task.refresh_from_db()
    assert task.status == "cancelled"

    restored = api_client.post(f"{url}/restore")

    assert restored.status_code == 200, restored.json()
    assert restored.json()["deleted_at"] is None
    assert api_client.get(url).status_code == 200


def test_restore_of_a_live_session_returns_it_unchanged(api_client, session):
    response = api_client.post(f"{API}/sessions/{session.uuid}/restore")

    assert response.status_code == 200
    assert response.json()["status"] == "idle"


def test_cancel_cancels_every_active_task(api_client, session):
    first = factories.make_task(session)
    second = factories.make_task(session)

    response = api_client.post(f"{API}/sessions/{session.uuid}/cancel")

    assert response.status_code == 202
    tasks = response.json()["tasks"]
    assert {t["id"] for t in tasks} == {str(first.uuid), str(second.uuid)}
    assert {t["status"] for t in tasks} == {"cancelled"}
    detail = api_client.get(f"{API}/sessions/{session.uuid}").json()
    assert detail["active_task_count"] == 0
    assert detail["status"] == "idle"


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("get", "", None),
        ("patch", "", {"name": "mine now"}),
        ("delete", "", None),
        ("post", "/restore", None),
        ("post", "/cancel", None),
        ("get", "/tasks", None),
        ("post", "/tasks", {"input": {"command": "id"}}),
        ("get", "/events", None),
        ("get", "/workspace/files", None),
        ("get", "/workspace/files/notes.txt", None),
        ("put", "/workspace/files/notes.txt", b"owned"),
        ("delete", "/workspace/files/notes.txt", None),
    ],
)
def test_a_stranger_gets_404_everywhere(other_client, session, method, suffix, body):
    (session.workspace_path / "notes.txt").write_text("private")
    url = f"{API}/sessions/{session.uuid}{suffix}"
    kwargs: dict[str, Any] = {}
    if isinstance(body, bytes):
        kwargs = {"data": body, "content_type": "application/octet-stream"}
    elif body is not None:
        kwargs = {"data": body, "format": "json"}

    response = getattr(other_client, method)(url, **kwargs)

    error_of(response, 404)
    session.refresh_from_db()
    assert session.name == "first" and session.deleted_at is None
    assert not session.tasks.exists()
    assert (session.workspace_path / "notes.txt").read_text() == "private"


@pytest.mark.parametrize("bad_id", ["42", "not-a-uuid", "00000000-0000-0000-0000-000000000000"])
def test_unknown_or_malformed_ids_are_404_in_the_error_shape(api_client, bad_id):
    error_of(api_client.get(f"{API}/sessions/{bad_id}"), 404, "not_found")
    error_of(api_client.get(f"{API}/tasks/{bad_id}"), 404, "not_found")
