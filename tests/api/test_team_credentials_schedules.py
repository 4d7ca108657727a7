"""Provider credentials and schedules belong to teams: every member reads them, credentials are
changed by team admins only and schedules by members (a viewer gets 403), a stranger gets 404;
an agent of the team uses the team's credential, a schedule runs in its team as its owner."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from accounts import access
from accounts.services import team_create
from providers.models import ProviderCredential
from providers.selectors import model_list
from providers.services import credential_create
from runtime_project.exceptions import NotFound
from schedules.models import Schedule
from schedules.services import schedule_create, schedule_fire
from sessions.runners.llm.runner import api_key_for
from tests import factories
from tests.api.helpers import API, error_of

pytestmark = pytest.mark.django_db

SECRET = "sk-team-0123456789abcdefWXYZ"
INPUT = {"command": "echo hi"}
WRITE_SCOPES = ["agents:write", "sessions:write", "tasks:write"]


@pytest.fixture
def team(user: Any) -> Any:
    """A shared team: ``user`` (alice) owns it; bob is a member, vic a viewer."""
    team = team_create(user=user, name="Acme", slug="acme")
    factories.add_member(team, factories.make_user("bob"), "member")
    factories.add_member(team, factories.make_user("vic"), "viewer")
    access.forget_roles(user)
    return team


def person(team: Any, username: str) -> Any:
    return team.members.get(username=username)


def key_client(user: Any, team: Any, scopes: list[str] | None = None) -> APIClient:
    """An API key of ``user`` acting in ``team``."""
    client = APIClient()
    token = factories.make_token(user, scopes=scopes, team=team)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def login_client(user: Any) -> APIClient:
    """A browser session of ``user``: every scope, so only team roles decide."""
    client = APIClient()
    client.force_login(user)
    return client


def llm_agent(owner: Any, team: Any, slug: str, **model: Any) -> Any:
    spec = {"model": {"base_url": "https://llm.example.com/v1", "name": "m", **model}}
    return factories.make_agent(owner, team=team, slug=slug, kind="llm", spec=spec)


def run_of(agent: Any) -> Any:
    from types import SimpleNamespace

    return SimpleNamespace(task=SimpleNamespace(agent_id=agent.pk), session=None)


# Credentials -----------------------------------------------------------------------------------


def test_members_read_the_teams_credentials_and_only_admins_change_them(user, other_user, team):
    owner = key_client(user, team)
    created = owner.post(
        f"{API}/credentials", {"name": "main", "secret": SECRET, "team": "acme"}, format="json"
    )
    assert created.status_code == 201, created.content
    assert created.json()["team"] == {"id": str(team.uuid), "slug": "acme"}
    url = f"{API}/credentials/{created.json()['id']}"
    bob, vic = person(team, "bob"), person(team, "vic")

    for reader in (login_client(bob), login_client(vic), key_client(bob, team, WRITE_SCOPES)):
        listed = reader.get(f"{API}/credentials").json()["results"]
        assert [c["name"] for c in listed] == ["main"]
        got = reader.get(url)
        assert got.status_code == 200 and got.json()["hint"] == "…WXYZ"
        assert SECRET.encode() not in got.content

    for writer in (login_client(bob), login_client(vic)):  # below admin: 403
        error_of(writer.patch(url, {"secret": "sk-member-000000000000"}, format="json"), 403)
        error_of(writer.delete(url), 403, "forbidden")
        new = {"name": "other", "secret": SECRET, "team": "acme"}
        error_of(writer.post(f"{API}/credentials", new, format="json"), 403, "forbidden")
    # A member's key cannot even hold the admin scope credential changes need.
    member_key = key_client(bob, team, WRITE_SCOPES)
    error_of(member_key.delete(url), 403, "insufficient_scope")

    stranger = login_client(other_user)
    assert stranger.get(f"{API}/credentials").json()["results"] == []
    for response in (
        stranger.get(url),
        stranger.patch(url, {"secret": "sk-stolen-000000000000"}, format="json"),
        stranger.delete(url),
    ):
        error_of(response, 404, "credential_not_found")
    error_of(
        stranger.post(
            f"{API}/credentials", {"name": "x", "secret": SECRET, "team": "acme"}, format="json"
        ),
        404,
    )
    assert ProviderCredential.objects.get().hint == "…WXYZ"  # nothing changed

    factories.add_member(team, bob, "admin")
    assert (
        login_client(bob)
        .patch(url, {"secret": "sk-admin-bob-00001234"}, format="json")
        .json()["hint"]
        == "…1234"
    )
    assert login_client(bob).delete(url).status_code == 204


def test_names_are_unique_per_team_and_the_agent_must_be_of_the_credentials_team(user, team):
    mine = factories.make_agent(user, slug="mine")  # in alice's personal team
    shared = factories.make_agent(user, team=team, slug="shared")
    owner = key_client(user, team)

    def create(**extra: Any) -> Any:
        data = {"name": "main", "secret": SECRET, "team": "acme", **extra}
        return owner.post(f"{API}/credentials", data, format="json")

    error_of(create(agent=str(mine.uuid)), 404, "not_found")
    error_of(create(agent="mine"), 404, "not_found")
    restricted = create(agent="shared")
    assert restricted.status_code == 201 and restricted.json()["agent"] == str(shared.uuid)
    error_of(create(), 409, "credential_name_taken")
    error_of(
        owner.patch(
            f"{API}/credentials/{restricted.json()['id']}", {"agent": "mine"}, format="json"
        ),
        404,
    )
    # The same name in the personal team is another credential.
    personal = factories.make_token(user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {personal}")
    assert (
        client.post(
            f"{API}/credentials", {"name": "main", "secret": SECRET}, format="json"
        ).status_code
        == 201
    )
    assert ProviderCredential.objects.filter(name="main").count() == 2


def test_an_llm_agent_of_a_shared_team_uses_the_teams_credential(user, other_user, team):
    bob = person(team, "bob")
    credential_create(owner=user, team=team, name="main", provider="openai", secret=SECRET)
    credential_create(owner=bob, name="main", provider="openai", secret="sk-bob-personal-000")
    credential_create(owner=other_user, name="main", provider="openai", secret="sk-caller-0000")
    written_by_bob = llm_agent(bob, team, "writer", credential="main")
    personal = llm_agent(bob, None, "mine", credential="main")
    model = written_by_bob.spec["model"]

    assert async_to_sync(api_key_for)(run_of(written_by_bob), model) == SECRET
    assert async_to_sync(api_key_for)(run_of(personal), model) == "sk-bob-personal-000"

    # Public: whoever runs it, the key is the team's.
    written_by_bob.is_public = True
    written_by_bob.save()
    session = factories.make_session(other_user, written_by_bob)
    assert session.team_id != team.pk
    assert async_to_sync(api_key_for)(run_of(written_by_bob), model) == SECRET

    # A key restricted to one agent of the team is not usable by another agent of the team.
    critic = llm_agent(user, team, "critic", credential="only-writer")
    credential_create(owner=user, team=team, name="only-writer", provider="openai",
                      secret=SECRET, agent=written_by_bob)  # fmt: skip
    with pytest.raises(NotFound):
        async_to_sync(api_key_for)(run_of(critic), critic.spec["model"])


def test_models_list_the_teams_agents_and_prefer_them_over_a_public_one(user, other_user, team):
    public = llm_agent(other_user, None, "dup", name="public-model")  # the older one
    public.is_public = True
    public.save()
    llm_agent(user, team, "dup", name="team-model")
    llm_agent(user, None, "alice-only")
    bob = person(team, "bob")

    data = key_client(bob, team, WRITE_SCOPES).get(f"{API}/models").json()["data"]

    agents = {e["id"]: e for e in data if e["object"] == "agent"}
    assert set(agents) == {"dup"}  # not alice's personal agents
    assert agents["dup"]["model"]["name"] == "team-model"
    assert {e["id"] for e in model_list(user=other_user) if e["object"] == "agent"} == {"dup"}
    theirs = next(e for e in model_list(user=other_user) if e["id"] == "dup")
    assert theirs["model"]["name"] == "public-model"


# Schedules -------------------------------------------------------------------------------------


def test_members_see_change_and_run_the_teams_schedules_and_viewers_only_read(
    user, other_user, team
):
    bob, vic = person(team, "bob"), person(team, "vic")
    agent = factories.make_agent(bob, team=team, slug="shell")
    owner = key_client(user, team, WRITE_SCOPES)
    created = owner.post(
        f"{API}/schedules",
        {"name": "nightly", "agent": "shell", "cron": "@daily", "input": INPUT, "team": "acme"},
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert (body["team"]["slug"], body["owner"], body["agent"]["id"]) == (
        "acme", "alice", str(agent.uuid),
    )  # fmt: skip
    url = f"{API}/schedules/{body['id']}"

    member = key_client(bob, team, WRITE_SCOPES)
    viewer = key_client(vic, team, WRITE_SCOPES)
    for reader in (member, viewer):
        assert [s["id"] for s in reader.get(f"{API}/schedules").json()["results"]] == [body["id"]]
        assert reader.get(url).status_code == 200
        assert reader.get(f"{url}/runs").status_code == 200

    new = {"name": "v", "agent": "shell", "cron": "@daily", "input": INPUT, "team": "acme"}
    for response in (
        viewer.patch(url, {"name": "viewer's"}, format="json"),
        viewer.post(f"{url}/run"),
        viewer.delete(url),
        viewer.post(f"{API}/schedules", new, format="json"),
    ):
        error_of(response, 403, "forbidden")

    stranger = key_client(other_user, factories.team_of(other_user))
    assert stranger.get(f"{API}/schedules").json()["count"] == 0
    for response in (
        stranger.get(url),
        stranger.patch(url, {"name": "mine"}, format="json"),
        stranger.post(f"{url}/run"),
        stranger.delete(url),
        stranger.get(f"{url}/runs"),
    ):
        error_of(response, 404, "not_found")
    error_of(login_client(other_user).post(f"{API}/schedules", new, format="json"), 404)

    renamed = member.patch(url, {"name": "bob's"}, format="json")
    assert renamed.status_code == 200 and renamed.json()["name"] == "bob's"
    run = member.post(f"{url}/run")
    assert run.status_code == 201 and run.json()["task_id"], run.content
    # The task runs as the schedule's owner, in a session of the team bob can read.
    session = member.get(f"{API}/sessions/{run.json()['session_id']}")
    assert session.status_code == 200, session.content
    schedule = Schedule.objects.select_related("last_task__session").get()
    assert schedule.last_task is not None
    assert (schedule.last_task.session.team_id, schedule.last_task.created_by) == (team.pk, user)
    assert member.delete(url).status_code == 204


def test_a_schedule_runs_an_agent_of_its_team_or_a_public_one(user, other_user, team):
    mine = factories.make_agent(user, slug="shell")  # alice's personal team
    shared = factories.make_agent(user, team=team, slug="shell")
    theirs = factories.make_agent(other_user, slug="theirs", is_public=True)
    private = factories.make_agent(other_user, slug="private")

    with pytest.raises(NotFound):
        schedule_create(owner=user, team=team, agent=mine, name="x", cron="@daily", input=INPUT)
    with pytest.raises(NotFound):
        schedule_create(owner=user, team=team, agent=private, name="x", cron="@daily", input=INPUT)
    public = schedule_create(
        owner=user, team=team, agent=theirs, name="p", cron="@daily", input=INPUT
    )
    assert (public.team, public.agent) == (team, theirs)
    assert schedule_create(owner=user, agent=mine, name="m", cron="@daily", input=INPUT).team == (
        factories.team_of(user)
    )

    # A slug resolves in the schedule's team first.
    client = key_client(user, team, WRITE_SCOPES)
    data = {"name": "s", "agent": "shell", "cron": "@daily", "input": INPUT, "team": "acme"}
    assert client.post(f"{API}/schedules", data, format="json").json()["agent"]["id"] == str(
        shared.uuid
    )
    error_of(client.post(f"{API}/schedules", {**data, "agent": str(mine.uuid)}, format="json"), 404)


def test_a_run_whose_owner_left_the_team_records_why_it_queued_nothing(user, team):
    bob = person(team, "bob")
    agent = factories.make_agent(user, team=team, slug="shell")
    schedule = schedule_create(
        owner=bob, team=team, agent=agent, name="bob's", cron="@daily", input=INPUT
    )
    assert schedule_fire(schedule=schedule).task is not None

    factories.add_member(team, bob, "viewer")
    run = schedule_fire(schedule=schedule)

    assert run.task is None and run.error is not None
    assert run.error["code"] == "schedule_owner_not_member"


# Admin -----------------------------------------------------------------------------------------


@pytest.fixture
def admin_client(db: Any) -> Client:
    client = Client()
    client.force_login(factories.make_user("root", is_staff=True, is_superuser=True))
    return client


def test_the_admin_forms_check_the_agent_and_owner_belong_to_the_team(
    admin_client, user, other_user, team
):
    personal = factories.make_agent(user, slug="personal")
    shared = factories.make_agent(user, team=team, slug="shared")
    credential_form = {"owner": user.pk, "team": team.pk, "name": "main", "provider": "openai",
                       "agent": personal.pk, "new_secret": SECRET}  # fmt: skip
    add = reverse("admin:providers_providercredential_add")

    refused = admin_client.post(add, credential_form)
    assert refused.status_code == 200
    assert "agent" in refused.context["adminform"].form.errors
    refused = admin_client.post(add, {**credential_form, "agent": "", "owner": other_user.pk})
    assert "owner" in refused.context["adminform"].form.errors
    assert admin_client.post(add, {**credential_form, "agent": shared.pk}).status_code == 302
    assert ProviderCredential.objects.get().team == team
    listed = admin_client.get(reverse("admin:providers_providercredential_changelist"))
    assert b"acme" in listed.content

    schedule_form = {"owner": user.pk, "team": team.pk, "agent": personal.pk, "name": "s",
                     "cron": "@daily", "timezone": "UTC", "input": '{"command": "echo hi"}',
                     "config": "{}", "session_mode": "new", "enabled": "on",
                     "runs-TOTAL_FORMS": "0", "runs-INITIAL_FORMS": "0"}  # fmt: skip
    add = reverse("admin:schedules_schedule_add")
    refused = admin_client.post(add, schedule_form)
    assert refused.status_code == 200
    assert "agent" in refused.context["adminform"].form.errors
    viewer = admin_client.post(add, {**schedule_form, "agent": shared.pk,
                                     "owner": person(team, "vic").pk})  # fmt: skip
    assert "owner" in viewer.context["adminform"].form.errors
    assert admin_client.post(add, {**schedule_form, "agent": shared.pk}).status_code == 302
    assert Schedule.objects.get().team == team
    listed = admin_client.get(reverse("admin:schedules_schedule_changelist"))
    assert b"acme" in listed.content
