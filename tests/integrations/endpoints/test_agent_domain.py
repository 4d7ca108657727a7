"""Agent host names (``<slug>.<AGENT_DOMAIN>``): the agent's endpoints and docs at the root."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.conf import settings
from django.test import override_settings

from integrations.endpoints.domains import agent_slug_for_host
from tests.api.helpers import error_of
from tests.integrations.endpoints.conftest import valid_openapi

pytestmark = pytest.mark.django_db

HOST = "greeter.agents.test"


@pytest.fixture(autouse=True)
def agent_domain() -> Iterator[None]:
    """The settings the lead wires in: the middleware before CommonMiddleware, and the agent
    hosts allowed."""
    middleware = list(settings.MIDDLEWARE)
    middleware.insert(
        middleware.index("django.middleware.common.CommonMiddleware"),
        "integrations.endpoints.domains.AgentDomainMiddleware",
    )
    with override_settings(
        AGENT_DOMAIN="agents.test",
        ALLOWED_HOSTS=[*settings.ALLOWED_HOSTS, ".agents.test"],
        MIDDLEWARE=middleware,
    ):
        yield


def test_the_host_names_the_agent():
    assert agent_slug_for_host("greeter.agents.test:8000", "agents.test") == "greeter"
    assert agent_slug_for_host("GREETER.Agents.Test.", "agents.test") == "greeter"
    assert agent_slug_for_host("agents.test", "agents.test") is None
    assert agent_slug_for_host("a.b.agents.test", "agents.test") is None
    assert agent_slug_for_host("greeter.example.com", "agents.test") is None
    assert agent_slug_for_host("greeter.agents.test", "") is None


def test_endpoints_answer_at_the_root_of_the_agent_host(api_client, greeter):
    response = api_client.post("/nap", {"args": ["1"]}, format="json", HTTP_HOST=HOST)

    assert response.status_code == 202, response.content
    assert response.json()["task"]["config"]["endpoint"] == "nap"
    # The Location (a normal API URL) works on the agent host too.
    task = api_client.get(response["Location"], HTTP_HOST=HOST)
    assert task.status_code == 200 and task.json()["agent"]["slug"] == "greeter"
    listing = api_client.get("/endpoints", HTTP_HOST=HOST).json()
    assert listing["openapi_url"] == f"http://{HOST}/openapi.json"
    assert {e["url"] for e in listing["endpoints"]} >= {f"http://{HOST}/greet"}


def test_the_document_and_swagger_ui_of_the_agent_host(api_client, greeter):
    doc = valid_openapi(api_client.get("/openapi.json", HTTP_HOST=HOST).json())

    assert doc["servers"] == [{"url": f"http://{HOST}"}]
    assert sorted(doc["paths"]) == ["/greet", "/nap", "/run", "/slow"]
    page = api_client.get("/docs/", HTTP_HOST=HOST)
    assert page.status_code == 200 and '"/openapi.json"' in page.content.decode()


def test_an_unknown_agent_host_is_404_and_other_hosts_are_untouched(api_client, greeter):
    error_of(api_client.post("/greet", {"args": ["x"]}, format="json", HTTP_HOST="nobody.agents.test"), 404)  # fmt: skip
    error_of(api_client.post("/greet", {"args": ["x"]}, format="json"), 404, "not_found")
    ok = api_client.post("/api/agents/greeter/nap", {"args": ["1"]}, format="json")
    assert ok.status_code == 202
