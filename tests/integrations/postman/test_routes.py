"""``GET /api/v1/postman.json`` and ``GET /api/v1/agents/{id}/postman.json``: what a user
downloads, imports into Postman and sends. Collections are checked against the official
v2.1.0 JSON schema and loaded with Postman's own SDK (postman-collection, via node)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from rest_framework.test import APIClient

from sessions.models import Agent
from tests import factories
from tests.integrations.postman.conftest import assert_valid, resolve_with_sdk

METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
TEMPLATE = re.compile(r"^:(.+)$")


def _download(client: APIClient, url: str) -> dict[str, Any]:
    response = client.get(url)
    assert response.status_code == 200, response.content[:500]
    assert response["Content-Type"].startswith("application/json")
    assert response["Content-Disposition"].startswith("attachment; filename=")
    assert response["Content-Disposition"].endswith('.postman_collection.json"')
    return json.loads(response.content)  # type: ignore[no-any-return]


def _items(collection: dict[str, Any]) -> list[tuple[str | None, dict[str, Any]]]:
    out: list[tuple[str | None, dict[str, Any]]] = []
    for entry in collection["item"]:
        if "request" in entry:
            out.append((None, entry))
        out.extend((entry["name"], item) for item in entry.get("item", []))
    return out


def _operation_key(item: dict[str, Any]) -> tuple[str, str]:
    """(METHOD, OpenAPI path) of a Postman item: ``:id`` segments back to ``{id}``."""
    segments = [TEMPLATE.sub(r"{\1}", s) for s in item["request"]["url"]["path"]]
    return item["request"]["method"], "/" + "/".join(segments)


@pytest.mark.django_db
def test_api_collection_is_public_valid_and_lists_every_operation(
    anon_client: APIClient, collection_validator: jsonschema.Draft7Validator
) -> None:
    collection = _download(anon_client, "/api/v1/postman.json")
    assert_valid(collection_validator, collection)
    # The reference is what /api/schema/ serves to the same anonymous caller.
    schema = anon_client.get("/api/schema/?format=json")
    openapi = json.loads(schema.content)
    expected = sorted(
        (method.upper(), path)
        for path, ops in openapi["paths"].items()
        for method in ops
        if method in METHODS
    )
    items = _items(collection)
    assert sorted(_operation_key(item) for _, item in items) == expected  # each exactly once
    assert len(expected) > 50

    info = collection["info"]
    assert info["name"] == "Agent Runtime Server API"
    assert info["schema"] == "https://schema.getpostman.com/json/collection/v2.1.0/collection.json"
    assert info["_postman_id"]
    assert {v["key"]: v["value"] for v in collection["variable"]} == {
        "baseUrl": "http://testserver",
        "apiKey": "",
    }
    assert collection["auth"]["type"] == "bearer"
    assert collection["auth"]["bearer"][0]["value"] == "{{apiKey}}"

    # One folder per tag, holding exactly the operations whose first tag it is.
    first_tags = {
        (method.upper(), path): op["tags"][0]
        for path, ops in openapi["paths"].items()
        for method, op in ops.items()
        if method in METHODS
    }
    assert {folder for folder, _ in items} == set(first_tags.values())
    for folder, item in items:
        assert first_tags[_operation_key(item)] == folder

    by_key = {_operation_key(item): item for _, item in items}
    create = by_key[("POST", "/api/v1/agents")]
    assert create["name"] == "Register an agent"
    body = json.loads(create["request"]["body"]["raw"])
    assert body["slug"] and body["name"] and body["kind"] == "command"
    assert {"key": "Content-Type", "value": "application/json"} in create["request"]["header"]
    assert any(r["code"] == 201 for r in create["response"])

    detail = by_key[("GET", "/api/v1/agents/{agent_id}")]["request"]["url"]
    assert detail["path"] == ["api", "v1", "agents", ":agent_id"]
    assert detail["variable"][0]["key"] == "agent_id"
    assert "slug" in detail["variable"][0]["description"]
    # Every templated path has its variables, with descriptions.
    for key, item in by_key.items():
        names = re.findall(r"{([^}]+)}", key[1])
        assert [v["key"] for v in item["request"]["url"].get("variable", [])] == names, key

    # Share-link reads need no credential: no bearer there.
    shared = by_key[("GET", "/api/v1/shared/{token}")]["request"]
    assert shared["auth"] == {"type": "noauth"}
    # A credential is optional there: the bearer is kept (Postman sends none while empty).
    assert "auth" not in by_key[("GET", "/api/v1/postman.json")]["request"]
    listing = by_key[("GET", "/api/v1/agents")]["request"]
    assert "auth" not in listing  # inherits the collection's bearer
    assert {q["key"]: q["disabled"] for q in listing["url"]["query"]} == {
        "limit": True,
        "offset": True,
    }


@pytest.mark.django_db
def test_api_collection_follows_the_schema_endpoints_auth(
    anon_client: APIClient, api_client: APIClient
) -> None:
    # Same audience as /api/schema/: any caller; a bad credential is a 401 on both.
    assert api_client.get("/api/v1/postman.json").status_code == 200
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Bearer nope.nope")
    assert bad.get("/api/schema/").status_code == 401
    response = bad.get("/api/v1/postman.json")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_credential"


@pytest.fixture
def endpoint_agent(user: Any) -> Agent:
    return factories.make_agent(
        user,
        slug="summarizer",
        name="Summarizer",
        description="Summarises text.",
        input_schema={"type": "object", "properties": {"command": {"type": "string"}}},
        endpoints=[
            {
                "name": "summarize",
                "description": "Summarise a text.\nLonger explanation.",
                "input_schema": {
                    "type": "object",
                    "required": ["text"],
                    "properties": {
                        "text": {"type": "string", "description": "What to summarise."},
                        "words": {"type": "integer", "minimum": 10, "default": 50},
                        "style": {"enum": ["plain", "bullets"]},
                    },
                },
                "mode": "async",
            }
        ],
    )


@pytest.mark.django_db
def test_agent_collection(
    api_client: APIClient,
    endpoint_agent: Agent,
    collection_validator: jsonschema.Draft7Validator,
) -> None:
    response = api_client.get(f"/api/v1/agents/{endpoint_agent.uuid}/postman.json")
    assert response["Content-Disposition"] == (
        'attachment; filename="Summarizer.postman_collection.json"'
    )
    collection = _download(api_client, "/api/v1/agents/summarizer/postman.json")
    assert_valid(collection_validator, collection)
    assert collection["info"]["name"] == "Summarizer"
    items = {item["name"]: item for _, item in _items(collection)}
    assert set(items) == {"Run Summarizer", "Summarise a text."}
    call = items["Summarise a text."]["request"]
    assert call["method"] == "POST"
    assert call["url"]["raw"] == "{{baseUrl}}/api/agents/summarizer/summarize"
    assert json.loads(call["body"]["raw"]) == {"text": "string", "words": 50}
    assert "- `style` (one of `plain`, `bullets`, optional)" in call["description"]
    assert "auth" not in call and collection["auth"]["type"] == "bearer"
    assert {v["key"]: v["value"] for v in collection["variable"]}["baseUrl"] == "http://testserver"
    assert [r["code"] for r in items["Summarise a text."]["response"]] == [200, 202, 400, 401, 404]


@pytest.mark.django_db
def test_agent_collection_needs_read_access(
    anon_client: APIClient, other_client: APIClient, user: Any, endpoint_agent: Agent
) -> None:
    url = "/api/v1/agents/summarizer/postman.json"
    assert anon_client.get(url).status_code == 401
    # A stranger does not learn that the agent exists.
    missing = other_client.get(url)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert other_client.get(f"/api/v1/agents/{endpoint_agent.uuid}/postman.json").status_code == 404
    # The scope is agents:read.
    narrow = APIClient()
    narrow.credentials(HTTP_AUTHORIZATION=f"Bearer {factories.make_token(user, ['sessions:read'])}")
    denied = narrow.get(url)
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "insufficient_scope"
    reader = APIClient()
    reader.credentials(HTTP_AUTHORIZATION=f"Bearer {factories.make_token(user, ['agents:read'])}")
    assert reader.get(url).status_code == 200
    # A public agent is readable by everyone signed in.
    endpoint_agent.is_public = True
    endpoint_agent.save(update_fields=["is_public"])
    assert other_client.get(url).status_code == 200


@pytest.mark.django_db
def test_disabled_integration_is_404(
    settings: Any, anon_client: APIClient, api_client: APIClient, endpoint_agent: Agent
) -> None:
    settings.POSTMAN_ENABLED = False
    for client, url in [
        (anon_client, "/api/v1/postman.json"),
        (api_client, "/api/v1/agents/summarizer/postman.json"),
    ]:
        response = client.get(url)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    # The rest of the API is still there.
    assert api_client.get("/api/v1/agents/summarizer").status_code == 200


@pytest.mark.django_db
def test_postman_sdk_sends_working_requests(
    postman_sdk: Path, tmp_path: Path, anon_client: APIClient, user: Any, token: str,
    endpoint_agent: Agent,
) -> None:  # fmt: skip
    """Load the collections with Postman's SDK, resolve requests as Postman would (variables,
    path variables, bearer auth) and send some of them: they work as downloaded."""
    collection = _download(anon_client, "/api/v1/postman.json")
    resolved = resolve_with_sdk(
        postman_sdk, collection, tmp_path,
        variables={"apiKey": token}, path={"agent_id": "summarizer"},
    )  # fmt: skip
    assert resolved["name"] == "Agent Runtime Server API"
    requests = {r["name"]: r for r in resolved["requests"]}
    assert len(requests) == len(_items(collection))

    def send(name: str) -> Any:
        request = requests[name]
        headers = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in request["headers"]}
        content_type = headers.pop("HTTP_CONTENT_TYPE", None)
        extra = {"data": request["body"], "content_type": content_type} if request["body"] else {}
        return APIClient().generic(request["method"], request["url"], **extra, **headers)

    assert requests["Get an agent"]["url"] == "http://testserver/api/v1/agents/summarizer"
    assert ["Authorization", f"Bearer {token}"] in requests["Get an agent"]["headers"]
    assert send("Get an agent").json()["slug"] == "summarizer"
    assert "summarizer" in [a["slug"] for a in send("List agents").json()["results"]]
    created = send("Register an agent")
    assert created.status_code == 201, created.content
    assert created.json()["slug"] == json.loads(requests["Register an agent"]["body"])["slug"]
    assert requests["Read a shared session"]["auth"] == "noauth"

    agent_collection = _download(
        APIClient(HTTP_AUTHORIZATION=f"Bearer {token}"), "/api/v1/agents/summarizer/postman.json"
    )
    calls = resolve_with_sdk(postman_sdk, agent_collection, tmp_path, variables={"apiKey": token})
    summarize = next(r for r in calls["requests"] if r["name"] == "Summarise a text.")
    assert summarize["url"] == "http://testserver/api/agents/summarizer/summarize"
    assert summarize["method"] == "POST" and summarize["body_mode"] == "raw"
    assert ["Authorization", f"Bearer {token}"] in summarize["headers"]
    assert summarize["responses"] == 5
