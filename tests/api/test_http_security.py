"""CORS allow-list, CSRF on cookie-authenticated writes, and the security headers."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from tests.api.helpers import API

pytestmark = pytest.mark.django_db

ALLOWED = "https://console.example.com"


@pytest.fixture
def cors(settings: Any) -> None:
    settings.CORS_ALLOWED_ORIGINS = [ALLOWED]


def preflight(origin: str, path: str = f"{API}/sessions") -> Any:
    return Client().options(
        path,
        HTTP_ORIGIN=origin,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type, idempotency-key",
    )


def test_an_allowed_origin_may_call_the_api_with_a_bearer_credential(cors, token):
    response = preflight(ALLOWED)
    assert response["Access-Control-Allow-Origin"] == ALLOWED
    allowed_headers = response["Access-Control-Allow-Headers"].lower()
    assert "authorization" in allowed_headers and "idempotency-key" in allowed_headers
    assert "Access-Control-Allow-Credentials" not in response  # no cookies cross-origin

    real = Client().get(
        f"{API}/sessions", HTTP_ORIGIN=ALLOWED, HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    assert real.status_code == 200
    assert real["Access-Control-Allow-Origin"] == ALLOWED
    assert "retry-after" in real["Access-Control-Expose-Headers"].lower()


def test_other_origins_and_non_api_paths_get_no_cors_headers(cors):
    assert "Access-Control-Allow-Origin" not in preflight("https://evil.example")
    assert "Access-Control-Allow-Origin" not in preflight(ALLOWED, "/admin/login/")


def test_cookie_authenticated_writes_need_the_csrf_token(user, agent):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    assert browser.get(f"{API}/sessions").status_code == 200  # reads need no token

    refused = browser.post(
        f"{API}/sessions", {"agent": agent.slug}, content_type="application/json"
    )
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "forbidden"
    assert "CSRF" in refused.json()["error"]["message"]

    browser.get("/admin/login/")  # sets the csrftoken cookie
    csrf = browser.cookies["csrftoken"].value
    accepted = browser.post(
        f"{API}/sessions",
        {"agent": agent.slug},
        content_type="application/json",
        HTTP_X_CSRFTOKEN=csrf,
    )
    assert accepted.status_code == 201, accepted.content


def test_bearer_writes_need_no_csrf_token(token, agent):
    client = Client(enforce_csrf_checks=True)
    response = client.post(
        f"{API}/sessions",
        {"agent": agent.slug},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    assert response.status_code == 201, response.content


def test_security_headers_on_api_and_pages(token):
    api = Client().get(f"{API}/sessions", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert api["Content-Security-Policy"].startswith("default-src 'none'")
    assert api["X-Content-Type-Options"] == "nosniff"
    assert api["X-Frame-Options"] == "DENY"
    assert api["Referrer-Policy"] == "same-origin"
    assert "camera=()" in api["Permissions-Policy"]

    page = Client().get("/admin/login/")
    assert page["X-Frame-Options"] == "DENY"
    assert "Content-Security-Policy" not in page  # HTML pages keep their own policies


def test_a_401_points_oauth_clients_at_the_resource_metadata():
    response = Client().get(f"{API}/sessions")
    assert response.status_code == 401
    challenge = response["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    assert 'resource_metadata="http://testserver/.well-known/oauth-protected-resource"' in challenge
