"""Rate limits outside DRF: the OAuth2 credential endpoints per client IP, and WebSocket
handshakes per credential."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.core.cache import cache
from django.test import Client

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_counters() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


def test_the_token_endpoint_is_limited_per_client_ip(settings):
    settings.THROTTLE_OAUTH = "3/m"
    client = Client()
    body = {"grant_type": "client_credentials", "client_id": "nope", "client_secret": "x"}
    for _ in range(3):
        assert client.post("/o/token/", body).status_code == 401  # invalid_client, counted
    refused = client.post("/o/token/", body)
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) >= 1
    assert refused.json()["error"]["code"] == "throttled"
    # Another address has its own budget; reading the login page is not counted.
    assert client.post("/o/token/", body, REMOTE_ADDR="10.1.2.3").status_code == 401
    assert client.get("/o/login/").status_code == 200


async def _handshake(path: str, key: str) -> tuple[int | None, dict[str, Any]]:
    from runtime_project.asgi import application

    communicator = WebsocketCommunicator(
        application, path, headers=[(b"authorization", f"Bearer {key}".encode())]
    )
    await communicator.connect(timeout=5)
    first = await communicator.receive_output(timeout=5)
    frame = json.loads(first["text"]) if first["type"] == "websocket.send" else {}
    if first["type"] == "websocket.close":
        return first.get("code"), frame
    if frame.get("type") == "error":
        closed = await communicator.receive_output(timeout=5)
        return closed.get("code"), frame
    await communicator.disconnect()
    return None, frame


@pytest.mark.django_db(transaction=True)
def test_websocket_handshakes_are_limited_per_credential(settings, session, token, user):
    settings.THROTTLE_WS_CONNECT = "2/m"
    path = f"/ws/sessions/{session.uuid}/"
    for _ in range(2):
        code, _ = async_to_sync(_handshake)(path, token)
        assert code is None  # streaming
    code, frame = async_to_sync(_handshake)(path, token)
    assert code == 4429
    assert frame["error"]["code"] == "throttled" and frame["error"]["details"]["retry_after_s"] >= 1
    from tests.factories import make_token

    code, _ = async_to_sync(_handshake)(path, make_token(user))  # another key: its own budget
    assert code is None
