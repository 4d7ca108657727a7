"""Team model access (issue 10, item 6): the policy REST (members read, admins write,
strangers 404), the filtered listings (``/api/v1/models`` and the OpenAI ``/v1/models``), and
the refusals: agent create/update, session metadata, task config, and at run time (an llm
agent and a workflow ``llm_prompt`` created before the policy)."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from rest_framework.test import APIClient

from accounts.models import Team
from providers.access import (
    agent_model_check,
    model_check,
    spec_model_names,
    team_model_policy,
    team_models_set,
)
from providers.models import TeamModelAccess
from runtime_project.exceptions import Forbidden
from sessions.models import Agent
from sessions.runners.scripted_llm import ScriptedLLM, Turn
from sessions.services.agents import agent_create
from sessions.services.sessions import session_create
from sessions.services.tasks import task_create
from tests import factories
from tests.api.helpers import API, error_of
from tests.factories import add_member, make_token, make_user, team_of
from tests.helpers import wait_terminal

BASE = "https://llm.example.com/v1"
CATALOGUE = [
    {"id": "gpt-4o", "provider": "openai"},
    {"id": "gpt-4o-mini", "provider": "openai"},
    {"id": "claude-3-5-sonnet-latest", "provider": "anthropic"},
]


def llm_spec(name: str, base_url: str = BASE) -> dict[str, Any]:
    return {"model": {"base_url": base_url, "name": name}}


def client_of(user: Any, **kw: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_token(user, **kw)}")
    return client


def restrict(team: Team, *patterns: str) -> None:
    team_models_set(team=team, user=None, mode="listed", allowed_models=list(patterns))


@pytest.fixture
def catalogue(settings: Any) -> None:
    settings.LLM_MODELS = CATALOGUE


# Policy REST ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_policy_crud_and_authz(user: Any, api_client: APIClient, catalogue: None) -> None:
    team = team_of(user)
    url = f"{API}/teams/{team.slug}/models"
    body = api_client.get(url).json()
    assert body["mode"] == "all" and body["origin"] == "default" and body["allowed_models"] == []
    assert body["team"]["slug"] == team.slug and body["updated_at"] is None
    assert all(entry["allowed"] for entry in body["catalogue"])

    response = api_client.put(
        url, {"mode": "listed", "allowed_models": ["gpt-4o*", " gpt-4o ", "gpt-4o*"]}, format="json"
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["mode"], body["origin"]) == ("listed", "team")
    assert body["allowed_models"] == ["gpt-4o*", "gpt-4o"]  # stripped, de-duplicated
    assert {e["id"]: e["allowed"] for e in body["catalogue"]} == {
        "gpt-4o": True, "gpt-4o-mini": True, "claude-3-5-sonnet-latest": False,
    }  # fmt: skip
    assert api_client.get(f"{API}/teams/{team.uuid}/models").json() == body  # uuid works too
    row = TeamModelAccess.objects.get(team=team)
    assert row.updated_by == user

    # Validation: a bad mode, whitespace inside a name, not a list.
    for bad in (
        {"mode": "some"},
        {"mode": "listed", "allowed_models": ["gpt 4"]},
        {"mode": "listed", "allowed_models": "gpt-4o"},
    ):
        error_of(api_client.put(url, bad, format="json"), 400)

    # Roles: a viewer and a member read, only admins and owners write; strangers get 404.
    viewer, member, admin, stranger = (make_user(n) for n in ("vic", "meg", "ada", "sam"))
    add_member(team, viewer, "viewer")
    add_member(team, member, "member")
    add_member(team, admin, "admin")
    for reader in (viewer, member):
        assert client_of(reader).get(url).json()["allowed_models"] == ["gpt-4o*", "gpt-4o"]
        error_of(client_of(reader).put(url, {"mode": "all"}, format="json"), 403, "forbidden")
        error_of(client_of(reader).delete(url), 403, "forbidden")
    error_of(client_of(stranger).get(url), 404)
    error_of(client_of(stranger).put(url, {"mode": "all"}, format="json"), 404)
    error_of(client_of(stranger).delete(url), 404)
    # A key without the admin scope reads but may not write, whatever the role.
    reader_key = client_of(admin, scopes=["agents:read"])
    assert reader_key.get(url).status_code == 200
    error_of(reader_key.put(url, {"mode": "all"}, format="json"), 403, "insufficient_scope")

    response = client_of(admin).put(url, {"mode": "all"}, format="json")
    assert response.status_code == 200 and response.json()["mode"] == "all"
    assert response.json()["allowed_models"] == []  # PUT replaces the whole policy
    assert client_of(admin).delete(url).status_code == 204
    assert not TeamModelAccess.objects.filter(team=team).exists()
    assert api_client.get(url).json()["origin"] == "default"
    actions = set(team.audit_entries.values_list("action", flat=True))
    assert {"team.models_set", "team.models_reset"} <= actions


@pytest.mark.django_db
def test_admin_edits_a_policy(user: Any) -> None:
    from django.test import Client
    from django.urls import reverse

    team = team_of(user)
    client = Client()
    root = make_user("root", is_staff=True, is_superuser=True)
    client.force_login(root)
    add = reverse("admin:providers_teammodelaccess_add")
    assert client.get(add).status_code == 200
    form = {"team": team.pk, "mode": "listed", "allowed_models": '["gpt 4"]'}
    assert client.post(add, form).status_code == 200  # redisplayed with the error
    form["allowed_models"] = '["gpt-4o*", "gpt-4o*"]'
    assert client.post(add, form).status_code == 302
    row = TeamModelAccess.objects.get(team=team)
    assert (row.allowed_models, row.updated_by) == (["gpt-4o*"], root)
    changelist = client.get(reverse("admin:providers_teammodelaccess_changelist"))
    assert changelist.status_code == 200 and team.slug in changelist.content.decode()


@pytest.mark.django_db
def test_server_default_and_globs(user: Any, settings: Any) -> None:
    team = team_of(user)
    assert team_model_policy(team=team).allows("anything")
    settings.TEAM_MODELS_DEFAULT = "gpt-4o*, claude-3-?-sonnet-*"
    policy = team_model_policy(team=team)
    assert (policy.mode, policy.source) == ("listed", "default")
    assert policy.allows("gpt-4o-mini") and policy.allows("claude-3-5-sonnet-latest")
    assert not policy.allows("GPT-4O") and not policy.allows("o1")  # case-sensitive
    restrict(team, "o1", "[a-c]*")  # a team's own policy wins over the default
    policy = team_model_policy(team=team)
    assert policy.allows("o1") and policy.allows("claude-x") and not policy.allows("gpt-4o")
    settings.TEAM_MODELS_DEFAULT = ["*"]
    assert team_model_policy(team=None).allows("whatever")
    assert spec_model_names(
        {"model": {"name": "a"}, "components": [
            {"type": "llm_prompt", "model": {"name": "b"}},
            {"type": "loop", "body": {"components": [{"type": "llm_prompt", "model": {"name": "a"}}]}},
        ]}
    ) == ["a", "b"]  # fmt: skip


# Listings ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_listings_are_filtered(user: Any, api_client: APIClient, catalogue: None) -> None:
    team = team_of(user)
    for slug, model in (("fast", "gpt-4o-mini"), ("smart", "claude-3-5-sonnet-latest")):
        factories.make_agent(user, slug=slug, kind="llm", spec=llm_spec(model))
    factories.make_agent(user, slug="shell")  # no model: always listed
    bob = make_user("bob")
    factories.make_agent(
        bob, slug="bobs", kind="llm", spec=llm_spec("claude-3-haiku"), is_public=True
    )

    def listed(client: APIClient) -> tuple[set[str], set[str]]:
        data = client.get(f"{API}/models").json()["data"]
        return (
            {e["id"] for e in data if e["object"] == "agent"},
            {e["id"] for e in data if e["object"] == "model"},
        )

    def openai_listed(client: APIClient) -> set[str]:
        response = client.get("/v1/models")
        assert response.status_code == 200, response.content
        return {e["id"] for e in response.json()["data"]}

    agents, models = listed(api_client)
    assert agents == {"fast", "smart", "shell", "bobs"}
    assert models == {e["id"] for e in CATALOGUE} | {"claude-3-haiku"}
    assert openai_listed(api_client) == {"fast", "smart", "shell", "bobs"}

    restrict(team, "gpt-4o*")
    agents, models = listed(api_client)
    assert agents == {"fast", "shell"}  # bob's public agent runs under alice's team policy
    assert models == {"gpt-4o", "gpt-4o-mini"}
    assert openai_listed(api_client) == {"fast", "shell"}

    # Running it anyway through the OpenAI API is refused in OpenAI's error shape.
    response = api_client.post(
        "/v1/chat/completions",
        {"model": "bobs", "messages": [{"role": "user", "content": "hi"}]},
        format="json",
    )
    assert response.status_code == 403, response.content
    assert response.json()["error"]["code"] == "model_not_allowed"

    # Bob's own team has no policy: he still sees his agent; alice's policy is not his.
    bobs_agents, bobs_models = listed(client_of(bob))
    assert "bobs" in bobs_agents and "claude-3-haiku" in bobs_models

    # In two teams: own agents follow their own team's policy; the catalogue is the union.
    shared = Team.objects.create(name="Shared", slug="shared")
    add_member(shared, user, "member")
    factories.make_agent(user, team=shared, slug="team-smart", kind="llm",
                         spec=llm_spec("claude-3-5-sonnet-latest"))  # fmt: skip
    agents, models = listed(api_client)
    assert agents == {"fast", "shell", "team-smart"}
    assert models == {e["id"] for e in CATALOGUE}
    # A key bound to alice's personal team sees that team's view only.
    agents, models = listed(client_of(user, team=team))
    assert agents == {"fast", "shell"} and models == {"gpt-4o", "gpt-4o-mini"}


# Refusals at request time --------------------------------------------------------------------


@pytest.mark.django_db
def test_agent_create_and_update_are_refused(user: Any, api_client: APIClient) -> None:
    team = team_of(user)
    restrict(team, "gpt-4o*")
    payload = {"slug": "smart", "name": "Smart", "kind": "llm",
               "spec": llm_spec("claude-3-5-sonnet-latest")}  # fmt: skip
    error = error_of(api_client.post(f"{API}/agents", payload, format="json"), 403)
    assert error["code"] == "model_not_allowed"
    assert error["details"] == {"model": "claude-3-5-sonnet-latest", "team": team.slug}
    assert f"/api/v1/teams/{team.slug}/models" in error["message"]

    payload["spec"] = llm_spec("gpt-4o-2024-08-06")  # the glob matches
    response = api_client.post(f"{API}/agents", payload, format="json")
    assert response.status_code == 201, response.content
    agent_id = response.json()["id"]
    error = error_of(
        api_client.patch(f"{API}/agents/{agent_id}", {"spec": llm_spec("o1")}, format="json"),
        403, "model_not_allowed",
    )  # fmt: skip
    assert error["details"]["model"] == "o1"
    # A change that leaves the spec alone is not a model use.
    response = api_client.patch(f"{API}/agents/{agent_id}", {"name": "S"}, format="json")
    assert response.status_code == 200
    with pytest.raises(Forbidden):
        agent_model_check(
            team=team, spec={"components": [{"type": "llm_prompt", "model": {"name": "o1"}}]}
        )


@pytest.mark.django_db
def test_sessions_and_tasks_are_refused(user: Any, api_client: APIClient) -> None:
    team = team_of(user)
    agent = factories.make_agent(user, slug="fast", kind="llm", spec=llm_spec("gpt-4o-mini"))
    session = session_create(owner=user, agent=agent)
    restrict(team, "gpt-4o*")

    # Session metadata: on create and on PATCH.
    error = error_of(
        api_client.post(f"{API}/sessions", {"agent": "fast",
                        "metadata": {"model_config": {"name": "o1"}}}, format="json"),
        403, "model_not_allowed",
    )  # fmt: skip
    assert error["details"] == {"model": "o1", "team": team.slug}
    url = f"{API}/sessions/{session.uuid}"
    error_of(
        api_client.patch(url, {"metadata": {"model_config": {"name": "o1"}}}, format="json"),
        403, "model_not_allowed",
    )  # fmt: skip
    ok = {"metadata": {"model_config": {"name": "gpt-4o"}, "note": "x"}}
    assert api_client.patch(url, ok, format="json").status_code == 200

    # Task config.model.name.
    tasks = f"{API}/sessions/{session.uuid}/tasks"
    payload = {"input": {"message": "hi"}, "config": {"model": {"name": "o1"}}}
    error_of(api_client.post(tasks, payload, format="json"), 403, "model_not_allowed")
    payload["config"] = {"model": {"name": "gpt-4o"}}
    assert api_client.post(tasks, payload, format="json").status_code == 201

    # The policy tightened after the session was set up: its model_config is refused now,
    # and so is the agent's own model when nothing overrides it.
    restrict(team, "gpt-4o-mini")
    session.refresh_from_db()
    with pytest.raises(Forbidden) as caught:
        task_create(session=session, user=user, input={"message": "hi"})
    assert caught.value.details["model"] == "gpt-4o"
    bare = session_create(owner=user, agent=agent)
    restrict(team, "claude-*")
    with pytest.raises(Forbidden) as caught:
        task_create(session=bare, user=user, input={"message": "hi"})
    assert caught.value.details["model"] == "gpt-4o-mini"
    model_check(team=team, name="claude-3-opus")  # allowed: no error


@pytest.mark.django_db
def test_public_agent_of_another_team_uses_the_callers_policy(user: Any) -> None:
    bob = make_user("bob")
    agent = factories.make_agent(
        bob, slug="bobs", kind="llm", spec=llm_spec("claude-3-haiku"), is_public=True
    )
    restrict(team_of(user), "gpt-4o*")
    session = session_create(owner=user, agent=agent)  # in alice's team
    with pytest.raises(Forbidden) as caught:
        task_create(session=session, user=user, input={"message": "hi"})
    assert caught.value.details == {"model": "claude-3-haiku", "team": team_of(user).slug}
    # Bob's own sessions on it follow his team (no policy).
    task_create(session=session_create(owner=bob, agent=agent), user=bob, input={"message": "x"})


# Refusal at run time -------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_runtime_refusal_of_an_agent_created_before_the_policy(
    executor: Any, llm: ScriptedLLM
) -> None:
    owner = await sync_to_async(make_user)("runtime-owner")
    llm.add(Turn(chunks=["never sent"]))

    def setup() -> tuple[Any, Any]:
        agent = agent_create(owner=owner, slug="old", name="old", kind="llm",
                             spec=llm_spec("scripted-1", llm.base_url))  # fmt: skip
        workflow = agent_create(owner=owner, slug="flow", name="flow", kind="workflow", spec={
            "components": [
                {"id": "in", "type": "input"},
                {"id": "p", "type": "llm_prompt", "prompt": "hi",
                 "model": {"base_url": llm.base_url, "name": "scripted-1"}},
                {"id": "out", "type": "output"},
            ],
            "edges": [{"from": "p", "to": "out.v"}],
        })  # fmt: skip
        first, _ = task_create(session=session_create(owner=owner, agent=agent), user=owner,
                               input={"message": "hi"})  # fmt: skip
        second, _ = task_create(session=session_create(owner=owner, agent=workflow), user=owner)
        restrict(team_of(owner), "gpt-4o*")  # the policy changes while they wait in the queue
        return first, second

    first, second = await sync_to_async(setup)()
    executor.kick()
    first, second = await wait_terminal(first), await wait_terminal(second)
    team = await sync_to_async(team_of)(owner)
    assert first.status == "failed", first.error
    assert first.error["code"] == "model_not_allowed"
    assert first.error["details"] == {"model": "scripted-1", "team": team.slug}
    assert second.status == "failed", second.error
    assert second.error["code"] == "component_failed"
    assert second.error["details"]["code"] == "model_not_allowed"
    assert llm.requests == []  # refused before any model call

    # Allowed again (a glob): the same agent runs.
    def rerun() -> Any:
        restrict(team, "scripted-*")
        agent = Agent.objects.get(slug="old", team=team)
        task, _ = task_create(session=session_create(owner=owner, agent=agent), user=owner,
                              input={"message": "hi"})  # fmt: skip
        return task

    task = await sync_to_async(rerun)()
    executor.kick()
    task = await wait_terminal(task)
    assert task.status == "succeeded", task.error
    assert task.result["text"] == "never sent" and len(llm.requests) == 1
