"""OAuth2 access tokens on the streaming transports of a real daphne: SSE and WebSocket
(``Authorization`` header and ``token.<access token>`` subprotocol), with the scopes enforced.

Tokens come from the real endpoints of that daphne (/o/token/): client credentials, and an
authorization code + PKCE (RFC 7636) whose consent is given by a logged-in browser
(Django's test client on the same database).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from django.test import Client
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.api.oauth2_support import REDIRECT, create_app, pkce_pair
from tests.factories import make_agent, make_session, make_user
from tests.transport.sse import iter_sse

pytestmark = [pytest.mark.transport]

TERMINAL = {"succeeded", "failed", "cancelled", "timed_out"}


@pytest.fixture
def owner(transactional_db: Any) -> Any:
    return make_user("alice")


@pytest.fixture
def session_id(owner: Any) -> str:
    agent = make_agent(owner, slug="shell", spec={"allow_input_command": True})
    return str(make_session(owner, agent).uuid)


@pytest.fixture
def service(owner: Any) -> dict[str, Any]:
    return create_app("--name", "svc", "--grant", "client-credentials", "--user", owner.username)


def client_credentials_token(server: Any, app: dict[str, Any], scope: str) -> str:
    response = httpx.post(
        f"{server.url}/o/token/",
        data={"grant_type": "client_credentials", "scope": scope},
        auth=(app["client_id"], app["client_secret"]),
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def authorization_code_token(server: Any, owner: Any, scope: str) -> str:
    """Consent in a browser session, code exchange at daphne's token endpoint with PKCE."""
    developer = make_user("developer")
    app = create_app(
        "--name", "Notebook", "--grant", "authorization-code", "--public",
        "--redirect-uri", REDIRECT, "--user", developer.username,
    )  # fmt: skip
    verifier, challenge = pkce_pair()
    browser = Client()
    browser.force_login(owner)
    params = {
        "response_type": "code",
        "client_id": app["client_id"],
        "redirect_uri": REDIRECT,
        "scope": scope,
        "state": "s",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    assert browser.get("/o/authorize/", params).status_code == 200
    redirect = browser.post("/o/authorize/", params | {"allow": "Authorize"})
    code = parse_qs(urlsplit(redirect["Location"]).query)["code"][0]
    response = httpx.post(
        f"{server.url}/o/token/",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "client_id": app["client_id"],
            "code_verifier": verifier,
        },
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == scope
    return str(response.json()["access_token"])


def _recv(ws: Any) -> dict[str, Any]:
    """Next frame that is not a heartbeat."""
    while True:
        frame = json.loads(ws.recv(timeout=30))
        if frame.get("type") != "stream.heartbeat":
            return frame


def _closed_with(ws: Any, code: int, error: str) -> None:
    frame = _recv(ws)
    assert frame["type"] == "error"
    assert frame["error"]["code"] == error
    with pytest.raises(ConnectionClosed):
        ws.recv(timeout=5)
    assert ws.close_code == code


def test_sse_with_oauth2_tokens(
    daphne_server: Any, owner: Any, session_id: str, service: dict[str, Any]
) -> None:
    url = f"{daphne_server.url}/api/v1/sessions/{session_id}/events/stream"
    token = authorization_code_token(daphne_server, owner, "sessions:read")
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.stream("GET", url, headers=headers, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        first = next(m for m in iter_sse(response) if "id" in m)
    assert first["event"] == "session.created"
    assert first["data"]["session_id"] == session_id

    narrow = client_credentials_token(daphne_server, service, "agents:read")
    refused = httpx.get(url, headers={"Authorization": f"Bearer {narrow}"}, timeout=30)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "insufficient_scope"

    bad = httpx.get(url, headers={"Authorization": "Bearer not-a-token"}, timeout=30)
    assert bad.status_code == 401
    assert bad.json()["error"]["code"] == "invalid_credential"


@pytest.mark.sandbox
def test_websocket_subprotocol_token_creates_and_watches_a_task(
    daphne_server: Any, session_id: str, service: dict[str, Any]
) -> None:
    token = client_credentials_token(daphne_server, service, "sessions:read tasks:write")
    url = f"{daphne_server.ws_url}/ws/sessions/{session_id}/"
    with connect(url, subprotocols=["agent-runtime.v1", f"token.{token}"]) as ws:
        assert ws.subprotocol == "agent-runtime.v1"
        assert _recv(ws)["type"] == "session.created"
        ws.send(json.dumps({"type": "task.create", "request_id": "r1",
                            "input": {"command": "echo via-oauth"}}))  # fmt: skip
        frames, task_id = [], None
        while True:
            frame = _recv(ws)
            if frame["type"] == "task.created":
                task_id = frame["task"]["id"]
            elif "seq" in frame:
                frames.append(frame)
                if (
                    frame["task_id"] == task_id
                    and frame["type"] == "task.status"
                    and frame["data"]["status"] in TERMINAL
                ):
                    break
    assert frames[-1]["data"]["status"] == "succeeded"
    out = "".join(f["data"]["text"] for f in frames if f["type"] == "process.stdout")
    assert out == "via-oauth\n"


@pytest.mark.sandbox
def test_websocket_authorization_header_sees_the_sessions_events(
    daphne_server: Any, owner: Any, session_id: str
) -> None:
    token = authorization_code_token(daphne_server, owner, "sessions:read tasks:write")
    headers = {"Authorization": f"Bearer {token}"}
    url = f"{daphne_server.ws_url}/ws/sessions/{session_id}/"
    with connect(url, additional_headers=headers) as ws:
        assert _recv(ws)["type"] == "session.created"
        created = httpx.post(
            f"{daphne_server.url}/api/v1/sessions/{session_id}/tasks",
            json={"input": {"command": "echo over-rest"}},
            headers=headers,
            timeout=30,
        )
        assert created.status_code == 201, created.text
        task_id = created.json()["id"]
        seen = []
        while True:
            frame = _recv(ws)
            seen.append(frame["type"])
            if (
                frame.get("task_id") == task_id
                and frame["type"] == "task.status"
                and frame["data"]["status"] in TERMINAL
            ):
                break
    assert "process.stdout" in seen
    assert frame["data"]["status"] == "succeeded"


def test_websocket_refuses_a_token_without_sessions_read_and_a_revoked_one(
    daphne_server: Any, session_id: str, service: dict[str, Any]
) -> None:
    url = f"{daphne_server.ws_url}/ws/sessions/{session_id}/"
    narrow = client_credentials_token(daphne_server, service, "agents:read")
    with connect(url, subprotocols=[f"token.{narrow}"]) as ws:
        _closed_with(ws, 4403, "insufficient_scope")
    with connect(url, additional_headers={"Authorization": f"Bearer {narrow}"}) as ws:
        _closed_with(ws, 4403, "insufficient_scope")

    token = client_credentials_token(daphne_server, service, "sessions:read")
    revoked = httpx.post(
        f"{daphne_server.url}/o/revoke_token/",
        data={"token": token},
        auth=(service["client_id"], service["client_secret"]),
        timeout=30,
    )
    assert revoked.status_code == 200
    with connect(url, subprotocols=[f"token.{token}"]) as ws:
        _closed_with(ws, 4401, "not_authenticated")
