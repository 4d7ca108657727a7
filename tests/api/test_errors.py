"""Cross-cutting behaviour: authentication, request parsing, and the one error shape."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests.api.helpers import API, error_of

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/agents"),
        ("post", "/agents"),
        ("get", "/models"),
        ("get", "/sessions"),
        ("get", "/sessions/{session}"),
        ("get", "/sessions/{session}/tasks"),
        ("get", "/sessions/{session}/events"),
        ("get", "/sessions/{session}/workspace/files"),
        ("put", "/sessions/{session}/workspace/files/a.txt"),
        ("get", "/tasks/{session}"),
        ("post", "/oneshot"),
    ],
)
def test_unauthenticated_requests_are_401_in_the_error_shape(anon_client, session, method, path):
    response = getattr(anon_client, method)(API + path.format(session=session.uuid))

    error_of(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_wrong_token_is_401(session):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer not-a-real-token")

    error_of(client.get(f"{API}/sessions"), 401, "invalid_credential")


def test_the_token_keyword_works_too(token, session):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")

    assert client.get(f"{API}/sessions/{session.uuid}").status_code == 200


def test_a_session_cookie_works_and_writes_need_the_csrf_token(user, agent):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)

    assert client.get(f"{API}/sessions").status_code == 200
    response = client.post(f"{API}/sessions", {"agent": agent.slug}, format="json")
    assert "CSRF" in error_of(response, 403, "forbidden")["message"]


@pytest.mark.parametrize("path", ["/agents", "/sessions", "/sessions/{session}/tasks", "/oneshot"])
def test_malformed_json_is_400_parse_error(api_client, session, path):
    response = api_client.post(
        API + path.format(session=session.uuid),
        data=b'{"agent": "shell",',
        content_type="application/json",
    )

    error_of(response, 400, "parse_error")


def test_a_json_body_that_is_not_an_object_is_400(api_client, session):
    response = api_client.post(f"{API}/sessions/{session.uuid}/tasks", [1, 2], format="json")

    error_of(response, 400, "invalid_input")


def test_form_encoded_bodies_are_refused_by_json_endpoints(api_client):
    response = api_client.post(f"{API}/sessions", {"agent": "shell"}, format="multipart")

    error_of(response, 415, "unsupported_media_type")


def test_unknown_api_urls_are_404_in_the_error_shape(api_client):
    error_of(api_client.get(f"{API}/no-such-thing"), 404, "not_found")


@pytest.mark.django_db(transaction=True)
def test_an_unreachable_database_is_a_503_in_the_error_shape(api_client, session):
    from django.db import connection

    saved = dict(connection.settings_dict)
    connection.close()
    if connection.vendor == "sqlite":
        connection.settings_dict["NAME"] = "/nonexistent-dir/db.sqlite3"
    else:
        connection.settings_dict["PORT"] = str(_closed_port())
    try:
        response = api_client.get(f"/api/v1/sessions/{session.uuid}")
    finally:
        connection.close()
        connection.settings_dict.update(saved)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "database_unavailable"
    assert response["Retry-After"] == "5"
    assert api_client.get(f"/api/v1/sessions/{session.uuid}").status_code == 200  # back


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
