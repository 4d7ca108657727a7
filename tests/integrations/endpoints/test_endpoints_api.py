"""Agent endpoints through Django's test client: documents, listing, validation, errors, 202s.
(No task runs here: the waits that see a task finish are in test_live.py, on a real daphne.)"""

from __future__ import annotations

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from sessions.demo import seed_demo_agents
from sessions.models import Session, Task
from tests import factories
from tests.api.helpers import error_of
from tests.integrations.endpoints.conftest import make_greeter, valid_openapi

pytestmark = pytest.mark.django_db


def test_the_document_has_run_and_every_endpoint_with_its_input_schema(api_client, greeter):
    response = api_client.get("/api/agents/greeter/openapi.json")

    assert response.status_code == 200, response.content
    doc = valid_openapi(response.json())
    assert doc["servers"] == [{"url": "http://testserver"}]
    assert doc["info"]["title"] == "Greeter"
    ops = {path: item["post"] for path, item in doc["paths"].items()}
    assert sorted(ops) == [f"/api/agents/greeter/{n}" for n in ("greet", "nap", "run", "slow")]
    greet = ops["/api/agents/greeter/greet"]
    assert greet["operationId"] == "greet"
    assert greet["summary"] == "Say hello to someone."
    body = greet["requestBody"]["content"]["application/json"]["schema"]
    assert body == greeter.endpoints[0]["input_schema"]
    assert set(greet["responses"]) == {"200", "202", "400", "401", "404"}
    assert "Location" in greet["responses"]["202"]["headers"]
    assert doc["security"] == [{"tokenAuth": []}]


def test_local_defs_of_an_input_schema_are_hoisted_so_refs_resolve(api_client, user):
    schema = {
        "type": "object",
        "$defs": {"lang": {"enum": ["en", "fr"]}},
        "properties": {"lang": {"$ref": "#/$defs/lang"}},
    }
    factories.make_agent(user, slug="polyglot", input_schema=schema)

    doc = valid_openapi(api_client.get("/api/agents/polyglot/openapi.json").json())

    run = doc["paths"]["/api/agents/polyglot/run"]["post"]
    ref = run["requestBody"]["content"]["application/json"]["schema"]["properties"]["lang"]
    assert ref == {"$ref": "#/components/schemas/RunInput.lang"}
    assert doc["components"]["schemas"]["RunInput.lang"] == {"enum": ["en", "fr"]}


def test_a_private_agent_document_needs_a_credential_that_sees_it(greeter, other_client):
    anonymous = APIClient().get("/api/agents/greeter/openapi.json")
    assert error_of(anonymous, 401, "not_authenticated")
    assert anonymous["WWW-Authenticate"].startswith("Bearer")
    # Unknown agents answer the same to anonymous callers: nothing to learn from the 401.
    error_of(APIClient().get("/api/agents/nope/openapi.json"), 401)
    error_of(other_client.get("/api/agents/greeter/openapi.json"), 404, "not_found")


def test_a_public_agent_document_is_public_unless_switched_off(user):
    seed_demo_agents(owner=user)

    assert APIClient().get("/api/agents/shell/openapi.json").status_code == 200
    with override_settings(AGENT_ENDPOINTS_PUBLIC_DOCS=False):
        error_of(APIClient().get("/api/agents/shell/openapi.json"), 401)


def test_swagger_ui_points_at_the_agent_document(greeter, api_client):
    response = APIClient().get("/api/agents/greeter/docs/")

    assert response.status_code == 200
    page = response.content.decode()
    assert "swagger-ui" in page
    assert "/api/agents/greeter/openapi.json" in page
    assert "persistAuthorization" in page


def test_the_endpoint_list(api_client, greeter):
    body = api_client.get("/api/agents/greeter/endpoints").json()

    assert body["agent"]["slug"] == "greeter"
    by_name = {e["name"]: e for e in body["endpoints"]}
    assert set(by_name) == {"run", "greet", "nap", "slow"}
    assert by_name["run"]["builtin"] is True
    assert by_name["nap"] == {**by_name["nap"], "mode": "async", "task_type": "generate"}
    assert by_name["greet"]["url"] == "http://testserver/api/agents/greeter/greet"
    assert body["openapi_url"] == "http://testserver/api/agents/greeter/openapi.json"


def test_an_async_endpoint_answers_202_with_the_task_location(api_client, greeter):
    response = api_client.post("/api/agents/greeter/nap", {"args": ["1"]}, format="json")

    assert response.status_code == 202, response.content
    body = response.json()
    task = Task.objects.get(uuid=body["task"]["id"])
    assert (task.task_type, task.input) == ("generate", {"args": ["1"]})
    assert task.config["endpoint"] == "nap" and task.config["integration"] == "endpoint"
    assert task.session.metadata["endpoint"] == "nap"
    assert response["Location"] == f"/api/v1/tasks/{task.uuid}"
    assert api_client.get(response["Location"]).json()["status"] == "queued"


def test_a_retry_with_the_same_idempotency_key_returns_the_first_run(api_client, greeter):
    def call(key: str) -> dict:
        response = api_client.post(
            "/api/agents/greeter/nap", {"args": ["1"]}, format="json", HTTP_IDEMPOTENCY_KEY=key
        )
        assert response.status_code == 202, response.content
        return response.json()

    first, retry, other = call("k-1"), call("k-1"), call("k-2")

    assert retry["task"]["id"] == first["task"]["id"]
    assert retry["session"]["id"] == first["session"]["id"]
    assert other["task"]["id"] != first["task"]["id"]
    assert Task.objects.filter(agent=greeter).count() == 2
    too_long = api_client.post(
        "/api/agents/greeter/nap", {"args": ["1"]}, format="json", HTTP_IDEMPOTENCY_KEY="k" * 256
    )
    assert too_long.status_code == 400


def test_prefer_respond_async_and_wait_zero_do_not_wait(api_client, greeter):
    prefer = api_client.post(
        "/api/agents/greeter/greet", {"args": ["x"]}, format="json", HTTP_PREFER="respond-async"
    )
    assert prefer.status_code == 202
    assert prefer["Preference-Applied"] == "respond-async"
    assert api_client.post("/api/agents/greeter/greet?wait=0", {"args": ["x"]}, format="json")\
        .status_code == 202  # fmt: skip


def test_the_uuid_works_like_the_slug(api_client, greeter):
    url = f"/api/agents/{greeter.uuid}/greet?wait=0"
    assert api_client.post(url, {"args": ["x"]}, format="json").status_code == 202


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, {"args": ["This field is required."]}),
        ({"args": "x"}, {"args": ["'x' is not of type 'array'"]}),
        ({"args": [1]}, {"args.0": ["1 is not of type 'string'"]}),
        ([1], {"body": ["expected an object"]}),
    ],
)
def test_a_body_that_breaks_the_schema_is_400_with_field_errors(api_client, greeter, body, fields):
    response = api_client.post("/api/agents/greeter/greet", body, format="json")

    assert error_of(response, 400, "invalid_input")["details"]["fields"] == fields
    assert not Session.objects.exists()


def test_malformed_json_and_a_bad_wait_are_400(api_client, greeter):
    raw = api_client.post("/api/agents/greeter/greet", "{", content_type="application/json")
    error_of(raw, 400)
    wait = api_client.post("/api/agents/greeter/greet?wait=soon", {"args": ["x"]}, format="json")
    assert "wait" in error_of(wait, 400, "invalid_input")["details"]["fields"]


def test_an_unknown_endpoint_is_404_naming_the_endpoints(api_client, greeter):
    error = error_of(api_client.post("/api/agents/greeter/shout", {}, format="json"), 404)

    assert error["code"] == "endpoint_not_found"
    assert error["details"]["endpoints"] == ["run", "greet", "nap", "slow"]


def test_another_teams_private_agent_is_404(api_client, other_user):
    make_greeter(other_user)

    error_of(api_client.post("/api/agents/greeter/greet", {"args": ["x"]}, format="json"), 404)
    error_of(api_client.get("/api/agents/greeter/endpoints"), 404)
    assert not Task.objects.exists()


def test_credentials_and_scopes(greeter, user):
    anonymous = APIClient().post("/api/agents/greeter/greet", {"args": ["x"]}, format="json")
    error_of(anonymous, 401)
    reader = APIClient()
    reader.credentials(HTTP_AUTHORIZATION=f"Bearer {factories.make_token(user, ['agents:read'])}")
    denied = reader.post("/api/agents/greeter/greet", {"args": ["x"]}, format="json")
    error_of(denied, 403, "insufficient_scope")
    assert reader.get("/api/agents/greeter/endpoints").status_code == 200
    assert reader.get("/api/agents/greeter/openapi.json").status_code == 200


def test_switched_off_everything_is_404(api_client, greeter):
    with override_settings(AGENT_ENDPOINTS_ENABLED=False):
        error_of(api_client.post("/api/agents/greeter/greet", {"args": ["x"]}, format="json"), 404)
        error_of(api_client.get("/api/agents/greeter/openapi.json"), 404)
        assert api_client.get("/api/agents/greeter/docs/").status_code == 404
