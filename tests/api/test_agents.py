from __future__ import annotations

from typing import Any

import pytest

from sessions.models import Agent, AgentVersion
from tests import factories
from tests.api.helpers import API, error_of

pytestmark = pytest.mark.django_db


def create(client: Any, **fields: Any) -> Any:
    body = {"slug": "echo", "name": "Echo", "kind": "command", "spec": {"command": "echo hi"}}
    body.update(fields)
    return client.post(f"{API}/agents", body, format="json")


def test_it_creates_an_agent_at_version_1(api_client, user):
    response = create(api_client, description="says hi", input_schema={"type": "object"})

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["slug"] == "echo"
    assert body["version"] == 1
    assert body["owner"] == user.username
    assert body["spec"] == {"command": "echo hi"}
    assert body["input_schema"] == {"type": "object"}
    assert body["is_public"] is False
    agent = Agent.objects.get(uuid=body["id"])
    assert "pk" not in body and body["id"] != str(agent.pk)
    assert list(agent.versions.values_list("version", flat=True)) == [1]


def test_it_rejects_an_invalid_spec_listing_the_field(api_client):
    response = create(api_client, spec={"command": 42, "bogus": True})

    error = error_of(response, 400, "invalid_input")
    assert "spec" in error["details"]["fields"]
    assert not Agent.objects.exists()


def test_it_rejects_an_input_schema_that_is_not_a_schema(api_client):
    response = create(api_client, input_schema={"type": "no-such-type"})

    error = error_of(response, 400, "invalid_input")
    assert "input_schema" in error["details"]["fields"]


def test_it_rejects_wrong_types_and_missing_fields(api_client):
    response = api_client.post(f"{API}/agents", {"spec": "x", "kind": "nope"}, format="json")

    fields = error_of(response, 400, "invalid_input")["details"]["fields"]
    assert {"slug", "name", "spec", "kind"} <= set(fields)


def test_it_refuses_a_slug_already_used_by_the_owner(api_client):
    assert create(api_client).status_code == 201

    error_of(create(api_client), 409, "slug_taken")


def test_list_shows_own_and_public_agents_but_not_private_ones_of_others(
    api_client, user, other_user
):
    mine = factories.make_agent(user, slug="mine")
    public = factories.make_agent(other_user, slug="shared", is_public=True)
    factories.make_agent(other_user, slug="secret")

    response = api_client.get(f"{API}/agents")

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2
    assert {a["id"] for a in body["results"]} == {str(mine.uuid), str(public.uuid)}


def test_list_is_paginated(api_client, user):
    for n in range(3):
        factories.make_agent(user, slug=f"a{n}")

    body = api_client.get(f"{API}/agents", {"limit": 2}).json()

    assert body["count"] == 3
    assert len(body["results"]) == 2
    assert body["next"]


def test_get_by_id_or_slug(api_client, agent):
    by_id = api_client.get(f"{API}/agents/{agent.uuid}")
    by_slug = api_client.get(f"{API}/agents/{agent.slug}")

    assert by_id.status_code == by_slug.status_code == 200
    assert by_id.json() == by_slug.json()


def test_spec_change_bumps_the_version_and_records_it(api_client, agent):
    response = api_client.patch(
        f"{API}/agents/{agent.uuid}", {"spec": {"command": "date"}}, format="json"
    )

    assert response.status_code == 200, response.json()
    assert response.json()["version"] == 2
    versions = api_client.get(f"{API}/agents/{agent.uuid}/versions").json()
    assert [v["version"] for v in versions["results"]] == [2, 1]
    assert versions["results"][0]["spec"] == {"command": "date"}
    assert versions["results"][0]["created_by"] == agent.owner.username


def test_renaming_does_not_bump_the_version(api_client, agent):
    response = api_client.patch(f"{API}/agents/{agent.slug}", {"name": "New"}, format="json")

    assert response.status_code == 200
    assert response.json()["name"] == "New"
    assert response.json()["version"] == 1
    assert AgentVersion.objects.filter(agent=agent).count() == 1


def test_invalid_spec_on_update_is_400_and_changes_nothing(api_client, agent):
    response = api_client.patch(
        f"{API}/agents/{agent.uuid}", {"spec": {"network": "internet"}}, format="json"
    )

    assert "spec" in error_of(response, 400, "invalid_input")["details"]["fields"]
    agent.refresh_from_db()
    assert agent.version == 1
    assert agent.spec == {"allow_input_command": True}


def test_delete_is_soft_and_hides_the_agent(api_client, agent):
    response = api_client.delete(f"{API}/agents/{agent.uuid}")

    assert response.status_code == 204
    error_of(api_client.get(f"{API}/agents/{agent.uuid}"), 404, "not_found")
    assert api_client.get(f"{API}/agents").json()["count"] == 0
    agent.refresh_from_db()
    assert agent.deleted_at is not None


def test_strangers_cannot_see_change_or_delete_a_private_agent(other_client, agent):
    url = f"{API}/agents/{agent.uuid}"

    error_of(other_client.get(url), 404, "not_found")
    error_of(other_client.patch(url, {"name": "x"}, format="json"), 404)
    error_of(other_client.delete(url), 404)
    error_of(other_client.get(f"{url}/versions"), 404)
    agent.refresh_from_db()
    assert agent.name == "Shell" and agent.deleted_at is None


def test_a_public_agent_is_readable_but_not_writable_by_others(other_client, agent):
    agent.is_public = True
    agent.save()

    assert other_client.get(f"{API}/agents/{agent.uuid}").status_code == 200
    error_of(other_client.patch(f"{API}/agents/{agent.uuid}", {"name": "x"}, format="json"), 403)
    error_of(other_client.delete(f"{API}/agents/{agent.uuid}"), 403)


def test_unknown_method_is_405_in_the_error_shape(api_client):
    response = api_client.put(f"{API}/agents", {}, format="json")

    error_of(response, 405, "method_not_allowed")
    assert set(response["Allow"].split(", ")) == {"GET", "POST", "HEAD", "OPTIONS"}


def test_models_lists_the_agents_the_caller_can_use(api_client, agent, other_user):
    public = factories.make_agent(other_user, slug="pub", is_public=True)
    factories.make_agent(other_user, slug="private")

    body = api_client.get(f"{API}/models").json()

    agents = [m for m in body["data"] if m["object"] == "agent"]
    assert {m["id"] for m in agents} == {agent.slug, public.slug}  # every kind, not the private
    assert set(agents[0]) == {
        "id", "object", "owned_by", "kind", "name", "description", "version",
    }  # fmt: skip


def test_head_is_served_by_the_list_view(api_client, agent):
    response = api_client.head(f"{API}/agents")

    assert response.status_code == 200
    assert response.content == b""
