"""``/v1/models`` and the OpenAI-shaped errors, through the official ``openai`` SDK."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from django.test import Client

from sessions.runners.scripted_llm import ScriptedLLM
from sessions.services.tasks import task_claim_next
from tests.factories import make_agent, make_session, make_task, make_token, make_user, team_of
from tests.integrations.openai.conftest import Env, llm_spec

pytestmark = [pytest.mark.transport]


def test_models_and_errors(oai: Env) -> None:
    _errors_are_openai_shaped(oai)
    _models_list_the_usable_exposed_agents(oai)


def _models_list_the_usable_exposed_agents(oai: Env) -> None:
    client = oai.client()
    models = {m.id: m for m in client.models.list()}
    # Alice's own chatty, and bob's public helper; not the hidden one, not bob's private one.
    assert set(models) == {"chatty", "helper"}
    assert models["chatty"].object == "model"
    assert models["chatty"].owned_by == "alice"
    assert models["helper"].owned_by == "bob"
    assert client.models.retrieve("chatty").id == "chatty"
    for hidden in ("quiet", "secret", "nope"):
        with pytest.raises(openai.NotFoundError) as caught:
            client.models.retrieve(hidden)
        assert caught.value.code == "model_not_found"

    # A slug two usable agents share is listed qualified with the team's slug.
    make_agent(oai.user, slug="helper", kind="llm", spec=llm_spec(oai.llm))
    ids = {m.id for m in client.models.list()}
    assert ids == {"chatty", "alice/helper", "bob/helper"}
    assert client.models.retrieve("bob/helper").owned_by == "bob"
    # Alice's hidden ``quiet`` does not shadow a public ``quiet`` of bob's.
    bob_quiet = make_agent(get_user_model().objects.get(username="bob"), slug="quiet",
                           kind="llm", spec=llm_spec(oai.llm), is_public=True)  # fmt: skip
    assert "quiet" in {m.id for m in client.models.list()}
    assert client.models.retrieve("quiet").owned_by == "bob"
    assert client.models.retrieve(str(bob_quiet.uuid)).owned_by == "bob"

    # Scopes: listing needs agents:read; chatting needs tasks:write.
    chat_only = make_token(oai.user, scopes=["tasks:write"])
    with pytest.raises(openai.PermissionDeniedError):
        oai.client(chat_only).models.list()
    read_only = make_token(oai.user, scopes=["agents:read"])
    with pytest.raises(openai.PermissionDeniedError) as denied:
        oai.client(read_only).chat.completions.create(
            model="chatty", messages=[{"role": "user", "content": "hi"}]
        )
    assert denied.value.code == "insufficient_scope"


def _errors_are_openai_shaped(oai: Env) -> None:
    with pytest.raises(openai.AuthenticationError) as bad_key:
        oai.client("sk-not-a-key").models.list()
    assert bad_key.value.code == "invalid_api_key"
    client = oai.client()
    with pytest.raises(openai.NotFoundError) as unknown:
        client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    assert unknown.value.code == "model_not_found" and unknown.value.param == "model"
    with pytest.raises(openai.NotFoundError):  # hidden from this API
        client.chat.completions.create(model="quiet", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError) as malformed:
        client.chat.completions.create(model="chatty", messages=[])
    assert malformed.value.param == "messages"
    with pytest.raises(openai.BadRequestError) as ends_wrong:
        client.chat.completions.create(
            model="chatty", messages=[{"role": "user", "content": "a"},
                                      {"role": "assistant", "content": "b"}],
        )  # fmt: skip
    assert "user message" in ends_wrong.value.message
    with pytest.raises(openai.BadRequestError) as image:
        client.chat.completions.create(
            model="chatty",
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
                    ],
                }
            ],
        )
    assert image.value.param == "messages[0].content[0]"
    with pytest.raises(openai.NotFoundError):  # a session that is not the caller's
        client.chat.completions.create(
            model="chatty", messages=[{"role": "user", "content": "x"}],
            extra_headers={"X-Session-Id": "00000000-0000-0000-0000-000000000000"},
        )  # fmt: skip
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model="chatty", input="x", previous_response_id="resp_zzz")

    def raw(method: str, path: str, **kw: Any) -> httpx.Response:
        auth = {"Authorization": f"Bearer {oai.token}"}
        return httpx.request(method, f"{oai.server.url}{path}", headers=auth, timeout=30, **kw)

    for response in (
        raw("POST", "/v1/chat/completions", content=b"{not json"),
        raw("POST", "/v1/chat/completions", json=["a list"]),
        raw("POST", "/v1/chat/completions", json={"model": "chatty", "messages": "hi"}),
        raw("POST", "/v1/chat/completions", json={"model": "chatty", "n": 2,
                                                   "messages": [{"role": "user", "content": "x"}]}),
    ):  # fmt: skip
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["type"] == "invalid_request_error"
    wrong_method = raw("GET", "/v1/chat/completions")
    assert wrong_method.status_code == 405 and "error" in wrong_method.json()
    unknown_url = raw("GET", "/v1/embeddings")
    assert unknown_url.status_code == 404
    assert unknown_url.json()["error"]["code"] == "unknown_url"


def test_quota_and_rate_limits_are_rate_limit_errors(
    transactional_db: Any, settings: Any, llm: ScriptedLLM
) -> None:
    """In-process (no daemon): a team at its active-task limit, and a credential over its
    request rate, get 429 with ``Retry-After`` (the SDK's ``RateLimitError``)."""
    user = make_user("carol")
    agent = make_agent(user, slug="chatty", kind="llm", spec=llm_spec(llm))
    team = team_of(user)
    team.max_running_tasks = 1
    team.save()
    with transaction.atomic():  # running under a worker of ours: no executor may take it
        task = make_task(make_session(user, agent), task_type="chat", input={"message": "busy"})
        task_claim_next(worker="tests", limit=1, session_id=task.session_id)
    auth = {"Authorization": f"Bearer {make_token(user)}"}
    body = {"model": "chatty", "messages": [{"role": "user", "content": "x"}]}
    response = Client().post(
        "/v1/chat/completions", data=body, content_type="application/json", headers=auth
    )
    assert response.status_code == 429, response.content
    assert response.json()["error"]["code"] == "team_task_limit"
    assert int(response.headers["Retry-After"]) >= 1

    settings.THROTTLE_USER = "2/min"
    codes = [Client().get("/v1/models", headers=auth).status_code for _ in range(3)]
    assert codes[-1] == 429
    limited = Client().get("/v1/models", headers=auth)
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"


def test_the_api_can_be_switched_off(transactional_db: Any, settings: Any) -> None:
    user = make_user("dave")
    token = make_token(user)
    auth = {"Authorization": f"Bearer {token}"}
    assert Client().get("/v1/models", headers=auth).status_code == 200
    settings.OPENAI_API_ENABLED = False
    assert Client().get("/v1/models", headers=auth).status_code == 404
    assert Client().post("/v1/chat/completions", headers=auth).status_code == 404
