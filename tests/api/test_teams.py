"""Teams, roles and the audit log, through the REST API and the admin."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import AuditEntry, Membership, Team
from tests import factories
from tests.api.helpers import API, error_of

pytestmark = pytest.mark.django_db


def client_for(user: Any, **key: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {factories.make_token(user, **key)}")
    return client


@pytest.fixture
def shared(user: Any, api_client: APIClient) -> dict[str, Any]:
    """A shared team ``lab`` owned by ``user`` with a session in it."""
    body = api_client.post(f"{API}/teams", {"name": "Lab", "slug": "lab"}, format="json")
    assert body.status_code == 201, body.content
    agent = api_client.post(
        f"{API}/agents",
        {"slug": "echo", "name": "Echo", "spec": {"allow_input_command": True}, "team": "lab"},
        format="json",
    ).json()
    session = api_client.post(
        f"{API}/sessions", {"agent": agent["id"], "team": "lab"}, format="json"
    ).json()
    return {"team": Team.objects.get(slug="lab"), "agent": agent, "session": session}


def test_every_new_user_gets_a_personal_team_as_owner(user):
    membership = Membership.objects.get(user=user)
    assert membership.role == "owner" and membership.team.is_personal
    assert membership.team.slug == "alice"


def test_objects_go_to_the_personal_team_unless_another_is_named(api_client, shared, agent):
    assert agent.team.slug == "alice"
    assert shared["session"]["team"]["slug"] == "lab"
    teams = api_client.get(f"{API}/teams").json()["results"]
    assert {(t["slug"], t["role"]) for t in teams} == {("alice", "owner"), ("lab", "owner")}


def test_without_a_team_named_a_create_goes_to_the_keys_team_else_personal_else_oldest(
    user, other_user, shared
):
    """``accounts.selectors.default_team``: alice joined ``lab`` after her personal team was
    made, yet a user-wide key creates in the personal one; a key of ``lab`` creates there.
    Bob has no personal team (it was deleted): his oldest membership wins."""
    public = {"slug": "pub", "name": "Pub", "spec": {"allow_input_command": True}}
    agent = client_for(user).post(f"{API}/agents", {**public, "is_public": True}, format="json")
    assert agent.status_code == 201, agent.content

    def created_in(client: APIClient) -> str:
        body = client.post(f"{API}/sessions", {"agent": agent.json()["id"]}, format="json")
        assert body.status_code == 201, body.content
        return str(body.json()["team"]["slug"])

    assert created_in(client_for(user)) == "alice"
    assert created_in(client_for(user, team=shared["team"])) == "lab"

    Team.objects.filter(memberships__user=other_user, is_personal=True).delete()
    newer = Team.objects.create(name="Newer", slug="newer")
    factories.add_member(shared["team"], other_user, "member")
    factories.add_member(newer, other_user, "member")
    assert created_in(client_for(other_user)) == "lab"


def test_team_members_share_sessions_by_role(user, other_user, shared):
    sid = shared["session"]["id"]
    mallory = client_for(other_user)
    error_of(mallory.get(f"{API}/sessions/{sid}"), 404)  # a stranger learns nothing

    factories.add_member(shared["team"], other_user, "viewer")
    viewer = client_for(other_user)
    assert viewer.get(f"{API}/sessions/{sid}").status_code == 200
    assert [s["id"] for s in viewer.get(f"{API}/sessions").json()["results"]] == [sid]
    error_of(viewer.patch(f"{API}/sessions/{sid}", {"name": "x"}, format="json"), 403, "forbidden")
    error_of(viewer.post(f"{API}/sessions/{sid}/tasks", {"input": {}}, format="json"), 403)
    error_of(viewer.post(f"{API}/sessions", {"agent": "echo", "team": "lab"}, format="json"), 403)

    factories.add_member(shared["team"], other_user, "member")
    member = client_for(other_user)
    created = member.post(
        f"{API}/sessions/{sid}/tasks", {"input": {"command": "true"}}, format="json"
    )
    assert created.status_code == 201, created.content
    assert member.patch(f"{API}/sessions/{sid}", {"name": "n"}, format="json").status_code == 200


def test_an_api_key_only_sees_its_own_team(user, shared, session):
    lab_key = client_for(user, team=shared["team"])
    ids = [s["id"] for s in lab_key.get(f"{API}/sessions").json()["results"]]
    assert ids == [shared["session"]["id"]]
    error_of(lab_key.get(f"{API}/sessions/{session.uuid}"), 404)  # personal team's session
    teams = lab_key.get(f"{API}/teams").json()["results"]
    assert [t["slug"] for t in teams] == ["lab"]


def test_members_are_managed_by_admins_and_owners_stay(user, other_user, api_client, shared):
    third = factories.make_user("carol")
    factories.add_member(shared["team"], other_user, "admin")
    admin = client_for(other_user)

    added = admin.post(f"{API}/teams/lab/members", {"username": "carol"}, format="json")
    assert added.status_code == 200 and added.json()["role"] == "member"
    promoted = admin.patch(f"{API}/teams/lab/members/carol", {"role": "viewer"}, format="json")
    assert promoted.json()["role"] == "viewer"
    # An admin may not make owners or touch the owner.
    error_of(admin.patch(f"{API}/teams/lab/members/carol", {"role": "owner"}, format="json"), 403)
    error_of(admin.delete(f"{API}/teams/lab/members/alice"), 403)
    # The last owner cannot step down; a viewer cannot manage members.
    error_of(
        api_client.patch(f"{API}/teams/lab/members/alice", {"role": "member"}, format="json"),
        409,
        "last_owner",
    )
    viewer = client_for(third)
    error_of(viewer.post(f"{API}/teams/lab/members", {"username": "bob"}, format="json"), 403)
    # Anyone may leave.
    assert viewer.delete(f"{API}/teams/lab/members/carol").status_code == 204
    error_of(viewer.get(f"{API}/teams/lab"), 404)
    error_of(
        api_client.post(f"{API}/teams/lab/members", {"username": "nobody"}, format="json"), 404
    )


def test_personal_teams_stay_and_shared_teams_are_deleted_by_owners(api_client, other_user, shared):
    error_of(api_client.delete(f"{API}/teams/alice"), 409, "personal_team")
    factories.add_member(shared["team"], other_user, "admin")
    error_of(client_for(other_user).delete(f"{API}/teams/lab"), 403)
    assert api_client.delete(f"{API}/teams/lab").status_code == 204
    assert not Team.objects.filter(slug="lab").exists()
    error_of(api_client.post(f"{API}/teams", {"name": "x", "slug": "alice"}, format="json"), 409)


def test_the_audit_log_records_who_did_what_and_only_admins_read_it(
    user, other_user, api_client, shared
):
    sid = shared["session"]["id"]
    task = api_client.post(
        f"{API}/sessions/{sid}/tasks", {"input": {"command": "sleep 5"}}, format="json"
    ).json()
    api_client.post(f"{API}/tasks/{task['id']}/cancel")
    api_client.delete(f"{API}/sessions/{sid}")

    log = api_client.get(f"{API}/teams/lab/audit").json()["results"]
    actions = [e["action"] for e in log]
    for expected in ("team.create", "agent.create", "session.create", "task.create",
                     "task.cancel", "session.delete"):  # fmt: skip
        assert expected in actions, actions
    deleted = next(e for e in log if e["action"] == "session.delete")
    assert deleted["actor"] == "alice" and deleted["target_id"] == sid
    assert deleted["credential"].startswith("api_key:") and deleted["ip"] == "127.0.0.1"
    only = api_client.get(f"{API}/teams/lab/audit?action=task.cancel").json()["results"]
    assert [e["action"] for e in only] == ["task.cancel"]

    factories.add_member(shared["team"], other_user, "member")
    error_of(client_for(other_user).get(f"{API}/teams/lab/audit"), 403)
    error_of(client_for(factories.make_user()).get(f"{API}/teams/lab/audit"), 404)


def test_admin_changes_and_actions_are_audited(user, shared):
    user.is_staff = user.is_superuser = True
    user.save()
    browser = Client()
    browser.force_login(user)
    team = shared["team"]
    response = browser.post(
        f"/admin/accounts/team/{team.pk}/change/",
        {
            "name": "Lab 2",
            "slug": "lab",
            "max_running_tasks": "3",
            "max_sandboxes": "",
            "rate_limit": "",
            "memberships-TOTAL_FORMS": "0",
            "memberships-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    entry = AuditEntry.objects.filter(action="admin.change").get()
    assert entry.team_id == team.pk and entry.actor == user
    assert set(entry.details["fields"]) >= {"Name", "Max running tasks"}  # the admin's labels
