"""ChatGPT documents through Django's test client: a GPT's Actions schema per agent, the
server-wide schema of public agents, the legacy plugin manifest, and the switches."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from sessions.demo import seed_demo_agents
from sessions.models import Agent
from sessions.services.agents import agent_update
from tests.api.helpers import error_of
from tests.integrations.endpoints.conftest import make_greeter, valid_openapi

pytestmark = pytest.mark.django_db


def operations(doc: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    return {
        op["operationId"]: (path, op) for path, item in doc["paths"].items() for op in item.values()
    }


def test_the_actions_schema_of_an_agent_follows_openai_limits(api_client, user):
    make_greeter(user, endpoints=[
        {"name": "greet", "description": "Say hello. " * 60, "input_schema": {
            "type": "object", "required": ["args"],
            "properties": {"args": {"type": "array", "items": {"type": "string"}}}}},
    ])  # fmt: skip

    response = api_client.get("/chatgpt/greeter/openapi.json")

    assert response.status_code == 200, response.content
    doc = valid_openapi(response.json())
    assert doc["servers"] == [{"url": "http://testserver"}]
    ops = operations(doc)
    assert set(ops) == {"run", "greet", "getTaskResult"}
    assert ops["greet"][0] == "/chatgpt/greeter/greet"
    assert ops["getTaskResult"][0] == "/chatgpt/tasks/{task_id}/result"
    for _, op in ops.values():
        assert len(op["summary"]) <= 300 and len(op.get("description", "")) <= 300
        assert set(op["responses"]["200"]["content"]) == {"application/json"}
    assert ops["greet"][1]["description"].endswith("…")
    assert ops["greet"][1]["x-openai-isConsequential"] is True
    assert ops["getTaskResult"][1]["x-openai-isConsequential"] is False
    result = doc["components"]["schemas"]["ActionResult"]
    assert {"status", "task_id", "text", "result"} <= set(result["properties"])
    assert doc["components"]["securitySchemes"]["tokenAuth"]["scheme"] == "bearer"


def test_who_may_read_an_agents_actions_schema(user, other_client):
    make_greeter(user)
    seed_demo_agents(owner=user)

    assert APIClient().get("/chatgpt/shell/openapi.json").status_code == 200  # public
    error_of(APIClient().get("/chatgpt/greeter/openapi.json"), 401)  # private
    error_of(other_client.get("/chatgpt/greeter/openapi.json"), 404)  # another team's


def test_an_agent_hidden_from_chatgpt_is_404_everywhere(api_client, user):
    seed_demo_agents(owner=user)
    agent_update(agent=Agent.objects.get(slug="shell"), user=user, integrations={"chatgpt": False})

    error_of(api_client.get("/chatgpt/shell/openapi.json"), 404)
    error_of(api_client.post("/chatgpt/shell/run", {"command": "true"}, format="json"), 404)
    server = APIClient().get("/chatgpt/openapi.json").json()
    assert "/chatgpt/shell/run" not in server["paths"]
    assert "/chatgpt/pytest/run" in server["paths"]


def test_the_server_schema_lists_public_agents_only(user):
    seed_demo_agents(owner=user)
    make_greeter(user)  # private

    doc = valid_openapi(APIClient().get("/chatgpt/openapi.json").json())

    ops = operations(doc)
    assert set(ops) == {"run_demo_llm", "run_pytest", "run_shell", "getTaskResult"}
    assert ops["run_pytest"][0] == "/chatgpt/pytest/run"


def test_the_plugin_manifest_has_the_required_fields(user):
    response = APIClient().get("/.well-known/ai-plugin.json")

    assert response.status_code == 200
    manifest = response.json()
    required = {"schema_version", "name_for_human", "name_for_model", "description_for_human",
                "description_for_model", "auth", "api", "logo_url", "contact_email",
                "legal_info_url"}  # fmt: skip
    assert required <= set(manifest)
    assert manifest["schema_version"] == "v1"
    assert len(manifest["name_for_human"]) <= 20 and len(manifest["name_for_model"]) <= 50
    assert manifest["name_for_model"].replace("_", "").isalnum()
    assert len(manifest["description_for_human"]) <= 100
    assert manifest["auth"] == {"type": "service_http", "authorization_type": "bearer"}
    assert manifest["api"] == {"type": "openapi", "url": "http://testserver/chatgpt/openapi.json"}
    assert manifest["contact_email"] == "admin@testserver"
    logo = APIClient().get("/chatgpt/logo.svg")
    assert manifest["logo_url"] == "http://testserver/chatgpt/logo.svg"
    assert logo.status_code == 200 and logo["Content-Type"] == "image/svg+xml"


@override_settings(
    CHATGPT_PLUGIN_AGENT="shell",
    CHATGPT_PLUGIN_AUTH="oauth",
    CHATGPT_VERIFICATION_TOKEN="abc",
    CHATGPT_CONTACT_EMAIL="ops@example.com",
)
def test_the_plugin_manifest_for_one_agent_with_oauth(user):
    manifest = APIClient().get("/.well-known/ai-plugin.json").json()

    assert manifest["api"]["url"] == "http://testserver/chatgpt/shell/openapi.json"
    assert manifest["auth"] == {
        "type": "oauth",
        "client_url": "http://testserver/o/authorize/",
        "scope": "agents:read tasks:write sessions:read",
        "authorization_url": "http://testserver/o/token/",
        "authorization_content_type": "application/x-www-form-urlencoded",
        "verification_tokens": {"openai": "abc"},
    }
    assert manifest["contact_email"] == "ops@example.com"


def test_chatgpt_switched_off_is_404(api_client, user):
    seed_demo_agents(owner=user)
    with override_settings(CHATGPT_ENABLED=False):
        for url in ("/.well-known/ai-plugin.json", "/chatgpt/openapi.json",
                    "/chatgpt/shell/openapi.json", "/chatgpt/logo.svg"):  # fmt: skip
            error_of(api_client.get(url), 404)
        error_of(api_client.post("/chatgpt/shell/run", {}, format="json"), 404)


def test_action_errors(api_client, user, other_user):
    make_greeter(other_user)
    seed_demo_agents(owner=user)

    error_of(api_client.post("/chatgpt/greeter/run", {}, format="json"), 404)
    error_of(api_client.post("/chatgpt/shell/shout", {}, format="json"), 404, "endpoint_not_found")
    error_of(APIClient().post("/chatgpt/shell/run", {}, format="json"), 401)
    error_of(api_client.get("/chatgpt/tasks/00000000-0000-0000-0000-000000000000/result"), 404)
