"""``/api/v1/alexa-skills``: CRUD of skill bindings, with team access like schedules."""

from __future__ import annotations

from typing import Any

from rest_framework.test import APIClient

from accounts.services import team_create
from integrations.alexa.models import AlexaSkill
from tests import factories
from tests.integrations.alexa.conftest import APP_ID

URL = "/api/v1/alexa-skills"


def _create(client: APIClient, **body: Any) -> Any:
    body.setdefault("name", "Weather")
    body.setdefault("application_id", APP_ID)
    body.setdefault("agent", "shell")
    return client.post(URL, body, format="json")


def test_create_list_get_change_delete(api_client: APIClient, agent: Any, user: Any) -> None:
    mapping = {"intents": {"GetWeather": {"slots": {"town": "city"}}}}
    response = _create(api_client, slot_mapping=mapping, launch_speech="Hello there.")
    assert response.status_code == 201, response.json()
    skill = response.json()
    assert skill["agent"] == {"id": str(agent.uuid), "slug": "shell"}
    assert skill["owner"] == user.username
    assert skill["slot_mapping"] == mapping
    assert skill["launch_speech"] == "Hello there."
    assert skill["help_speech"] and skill["enabled"] is True
    assert skill["endpoint_url"] == f"http://testserver/alexa/{agent.uuid}"

    listed = api_client.get(URL).json()
    assert [s["id"] for s in listed["results"]] == [skill["id"]]
    assert api_client.get(f"{URL}/{skill['id']}").json() == skill

    changed = api_client.patch(
        f"{URL}/{skill['id']}", {"enabled": False, "stop_speech": "Bye!"}, format="json"
    )
    assert changed.status_code == 200, changed.json()
    assert changed.json()["enabled"] is False and changed.json()["stop_speech"] == "Bye!"
    assert api_client.patch(f"{URL}/{skill['id']}", {}, format="json").status_code == 400

    assert api_client.delete(f"{URL}/{skill['id']}").status_code == 204
    assert api_client.get(f"{URL}/{skill['id']}").status_code == 404
    assert not AlexaSkill.objects.exists()


def test_invalid_fields_are_listed(api_client: APIClient, agent: Any) -> None:
    response = _create(
        api_client,
        application_id="not-a-skill-id",
        slot_mapping={"intents": {"A": {"slots": {"x": 5}}}},
        help_speech="x" * 8001,
    )
    assert response.status_code == 400
    fields = response.json()["error"]["details"]["fields"]
    assert {"application_id", "slot_mapping", "help_speech"} <= set(fields)
    blank = _create(api_client, stop_speech="   ")
    assert "stop_speech" in blank.json()["error"]["details"]["fields"]


def test_one_skill_per_agent(api_client: APIClient, agent: Any) -> None:
    assert _create(api_client).status_code == 201
    again = _create(api_client)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "alexa_skill_exists"


def test_strangers_see_nothing_and_viewers_cannot_write(
    api_client: APIClient, other_client: APIClient, other_user: Any, user: Any, agent: Any
) -> None:
    skill = _create(api_client).json()
    assert other_client.get(URL).json()["results"] == []
    assert other_client.get(f"{URL}/{skill['id']}").status_code == 404
    assert other_client.delete(f"{URL}/{skill['id']}").status_code == 404
    # Nor can they bind a skill to an agent they cannot see.
    assert _create(other_client, agent=str(agent.uuid)).status_code == 404

    factories.add_member(agent.team, other_user, "viewer")
    assert other_client.get(f"{URL}/{skill['id']}").status_code == 200
    patch = other_client.patch(f"{URL}/{skill['id']}", {"enabled": False}, format="json")
    assert patch.status_code == 403
    assert other_client.delete(f"{URL}/{skill['id']}").status_code == 403


def test_the_agent_must_belong_to_the_skills_team_or_be_public(
    api_client: APIClient, user: Any
) -> None:
    lab = team_create(user=user, name="Lab", slug="lab")
    factories.make_agent(user, slug="personal")  # in the personal team, private
    refused = _create(api_client, agent="personal", team="lab")
    assert refused.status_code == 404
    factories.make_agent(user, slug="lab-agent", team=lab)
    created = _create(api_client, agent="lab-agent", team="lab")
    assert created.status_code == 201, created.json()
    assert created.json()["team"]["slug"] == "lab"


def test_scopes(user: Any, agent: Any) -> None:
    reader = APIClient()
    reader.credentials(
        HTTP_AUTHORIZATION=f"Bearer {factories.make_token(user, scopes=['sessions:read'])}"
    )
    assert reader.get(URL).status_code == 200
    assert _create(reader).status_code == 403
