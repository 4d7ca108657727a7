"""OAuth2 end to end (django-oauth-toolkit at /o/, no mocks): authorization code + PKCE
(RFC 7636), client credentials, refresh rotation, revocation, expiry and introspection, with
the tokens used on the real API.

Metadata (RFC 8414 / RFC 9728): test_oauth2_metadata.py. SSE and WebSocket with OAuth2 tokens:
tests/transport/test_oauth2_streams.py.
"""

from __future__ import annotations

import hashlib
import io
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.utils import timezone
from oauth2_provider.models import AccessToken, Application, Grant, RefreshToken

from accounts.models import Scope
from tests.api.oauth2_support import (
    REDIRECT,
    authorize_params,
    basic,
    bearer,
    create_app,
    error_code,
    exchange,
    get_code,
    pkce_pair,
)
from tests.factories import make_agent, make_session, make_user


@pytest.fixture
def alice(db: Any) -> Any:
    user = make_user("alice")
    make_agent(user, slug="shell")
    make_session(user)
    return user


@pytest.fixture
def browser(alice: Any) -> Client:
    client = Client()
    client.force_login(alice)
    return client


@pytest.fixture
def developer(db: Any) -> Any:
    return make_user("developer")


@pytest.fixture
def public_app(developer: Any) -> dict[str, Any]:
    return create_app(
        "--name", "Notebook", "--grant", "authorization-code", "--public",
        "--redirect-uri", REDIRECT, "--user", developer.username,
    )  # fmt: skip


@pytest.fixture
def confidential_app(developer: Any) -> dict[str, Any]:
    return create_app(
        "--name", "Dashboard", "--grant", "authorization-code",
        "--redirect-uri", REDIRECT, "--user", developer.username,
    )  # fmt: skip


# settings --------------------------------------------------------------------------------------


def test_oauth2_scopes_are_the_api_key_scopes() -> None:
    assert settings.OAUTH2_PROVIDER["SCOPES"] == {s.value: s.label for s in Scope}
    assert settings.OAUTH2_PROVIDER["PKCE_REQUIRED"] is True
    assert settings.OAUTH2_PROVIDER["COMPLIANT_BCP_RFC9700_TOKEN_STORAGE"] is True


# (a) authorization code + PKCE -----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["public", "confidential"])
def test_authorization_code_with_pkce_end_to_end(
    kind: str, browser: Client, alice: Any, request: Any
) -> None:
    app = request.getfixturevalue(f"{kind}_app")
    verifier, challenge = pkce_pair()

    page = browser.get("/o/authorize/", authorize_params(app["client_id"], challenge))
    assert page.status_code == 200
    html = page.content.decode()
    assert "Notebook" in html or "Dashboard" in html
    for scope in (Scope.SESSIONS_READ, Scope.TASKS_WRITE):
        assert f"<code>{scope.value}</code>" in html
        assert scope.label in html
    assert "agents:write" not in html
    assert page["X-Frame-Options"] == "DENY"

    code = get_code(browser, app["client_id"], challenge)
    response = exchange(app["client_id"], code, verifier, app["client_secret"])
    assert response.status_code == 200, response.content
    tokens = response.json()
    assert tokens["token_type"] == "Bearer"
    assert tokens["scope"] == "sessions:read tasks:write"
    assert tokens["expires_in"] == settings.OAUTH2_PROVIDER["ACCESS_TOKEN_EXPIRE_SECONDS"]
    assert tokens["refresh_token"]

    # Only checksums are stored (RFC 9700 token storage).
    row = AccessToken.objects.get()
    assert row.token == ""
    assert row.token_checksum == hashlib.sha256(tokens["access_token"].encode()).hexdigest()
    assert row.user == alice

    api = bearer(tokens["access_token"])
    listed = api.get("/api/v1/sessions")
    assert listed.status_code == 200, listed.content
    assert len(listed.json()["results"]) == 1  # alice's session
    denied = api.post(
        "/api/v1/agents", {"slug": "x", "name": "x", "kind": "command"}, "application/json"
    )
    assert denied.status_code == 403
    assert error_code(denied) == "insufficient_scope"
    assert api.get("/api/v1/agents").status_code == 403  # agents:read was not granted either

    # The code is single-use.
    again = exchange(app["client_id"], code, verifier, app["client_secret"])
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"


def test_pkce_is_required(browser: Client, public_app: dict[str, Any]) -> None:
    client_id = public_app["client_id"]
    # No code_challenge: the authorization request is refused (redirected back with the error).
    response = browser.get("/o/authorize/", authorize_params(client_id, None))
    assert response.status_code == 302
    query = parse_qs(urlsplit(response["Location"]).query)
    assert query["error"] == ["invalid_request"]
    assert query["state"] == ["xyz"]

    # "plain" is not accepted (RFC 9700 §2.1.1): S256 only. DOT refuses it when the grant is
    # created, so the approval is answered with the error instead of a code.
    verifier, _ = pkce_pair()
    plain = authorize_params(
        client_id, None, code_challenge=verifier, code_challenge_method="plain"
    )
    response = browser.post("/o/authorize/", plain | {"allow": "Authorize"})
    assert response.status_code == 302
    query = parse_qs(urlsplit(response["Location"]).query)
    assert query["error"] == ["invalid_request"]
    assert "code" not in query
    assert not Grant.objects.exists()

    # A code issued with a challenge cannot be redeemed without the verifier, nor a wrong one.
    verifier, challenge = pkce_pair()
    code = get_code(browser, client_id, challenge)
    missing = exchange(client_id, code, None)
    assert missing.status_code == 400
    assert missing.json()["error"] in {"invalid_request", "invalid_grant"}
    wrong = exchange(client_id, code, pkce_pair()[0])
    assert wrong.status_code == 400
    assert wrong.json()["error"] == "invalid_grant"
    assert not AccessToken.objects.exists()


def test_consent_needs_a_login_and_cancel_denies(
    browser: Client, public_app: dict[str, Any]
) -> None:
    _, challenge = pkce_pair()
    params = authorize_params(public_app["client_id"], challenge)
    anonymous = Client().get("/o/authorize/", params)
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith("/o/login/?next=/o/authorize/%3F")

    cancelled = browser.post("/o/authorize/", params)  # the Cancel button: no "allow"
    assert cancelled.status_code == 302
    query = parse_qs(urlsplit(cancelled["Location"]).query)
    assert query["error"] == ["access_denied"]
    assert query["state"] == ["xyz"]
    assert not Grant.objects.exists()


def test_a_user_who_is_not_staff_signs_in_and_consents(
    alice: Any, public_app: dict[str, Any]
) -> None:
    assert not alice.is_staff  # the admin login would refuse alice
    verifier, challenge = pkce_pair()
    params = authorize_params(public_app["client_id"], challenge)
    browser = Client(enforce_csrf_checks=True)
    to_login = browser.get("/o/authorize/", params)["Location"]
    page = browser.get(to_login)
    assert page.status_code == 200
    assert b"Sign in" in page.content
    csrf = page.cookies["csrftoken"].value
    next_url = parse_qs(urlsplit(to_login).query)["next"][0]

    wrong = browser.post(
        "/o/login/", {"username": "alice", "password": "nope", "next": next_url,
                      "csrfmiddlewaretoken": csrf},
    )  # fmt: skip
    assert wrong.status_code == 200  # the form again, with an error
    signed_in = browser.post(
        "/o/login/", {"username": "alice", "password": "pw-for-tests", "next": next_url,
                      "csrfmiddlewaretoken": csrf},
    )  # fmt: skip
    assert signed_in.status_code == 302
    assert signed_in["Location"] == next_url
    consent = browser.get(next_url)
    assert consent.status_code == 200
    assert b"Authorize" in consent.content
    csrf = browser.cookies["csrftoken"].value  # rotated at login
    without_csrf = browser.post("/o/authorize/", params | {"allow": "Authorize"})
    assert without_csrf.status_code == 403  # the consent form is CSRF-protected
    approved = browser.post(
        "/o/authorize/", params | {"allow": "Authorize", "csrfmiddlewaretoken": csrf}
    )
    code = parse_qs(urlsplit(approved["Location"]).query)["code"][0]
    tokens = exchange(public_app["client_id"], code, verifier).json()
    assert bearer(tokens["access_token"]).get("/api/v1/sessions").status_code == 200


def test_login_does_not_redirect_off_site(alice: Any) -> None:
    response = Client().post(
        "/o/login/",
        {"username": "alice", "password": "pw-for-tests", "next": "https://evil.test/"},
    )
    assert response.status_code == 302
    assert "evil.test" not in response["Location"]


def test_unregistered_redirect_uri_is_refused_on_the_page(
    browser: Client, public_app: dict[str, Any]
) -> None:
    _, challenge = pkce_pair()
    params = authorize_params(
        public_app["client_id"], challenge, redirect_uri="https://evil.test/cb"
    )
    response = browser.get("/o/authorize/", params)
    assert response.status_code == 400  # shown to the user, never redirected to the attacker
    assert "evil.test" not in response.get("Location", "")
    assert b"Authorization error" in response.content


def test_refresh_token_rotates_and_replay_revokes_the_family(
    browser: Client, public_app: dict[str, Any]
) -> None:
    client_id = public_app["client_id"]
    verifier, challenge = pkce_pair()
    first = exchange(client_id, get_code(browser, client_id, challenge), verifier).json()

    def refresh(token: str) -> Any:
        data = {"grant_type": "refresh_token", "refresh_token": token, "client_id": client_id}
        return Client().post("/o/token/", urlencode(data), "application/x-www-form-urlencoded")

    second = refresh(first["refresh_token"])
    assert second.status_code == 200, second.content
    second_tokens = second.json()
    assert second_tokens["refresh_token"] != first["refresh_token"]
    assert second_tokens["scope"] == "sessions:read tasks:write"
    assert bearer(second_tokens["access_token"]).get("/api/v1/sessions").status_code == 200
    assert bearer(first["access_token"]).get("/api/v1/sessions").status_code == 401

    replay = refresh(first["refresh_token"])  # a stolen, already used refresh token
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    # RFC 9700 §4.14.2: the whole family is revoked, the legitimate client's tokens too.
    assert bearer(second_tokens["access_token"]).get("/api/v1/sessions").status_code == 401
    assert refresh(second_tokens["refresh_token"]).status_code == 400
    assert not RefreshToken.objects.filter(revoked__isnull=True).exists()


# (b) client credentials ------------------------------------------------------------------------


@pytest.fixture
def service(alice: Any) -> dict[str, Any]:
    return create_app(
        "--name", "Nightly reports", "--grant", "client-credentials", "--user", alice.username
    )


def client_credentials(app: dict[str, Any], scope: str, secret: str | None = None) -> Any:
    data = urlencode({"grant_type": "client_credentials", "scope": scope})
    auth = basic(app["client_id"], secret or app["client_secret"])
    return Client().post(
        "/o/token/", data, "application/x-www-form-urlencoded", HTTP_AUTHORIZATION=auth
    )


def test_client_credentials_acts_as_the_application_owner(
    service: dict[str, Any], alice: Any
) -> None:
    response = client_credentials(service, "agents:read")
    assert response.status_code == 200, response.content
    tokens = response.json()
    assert tokens["scope"] == "agents:read"
    assert "refresh_token" not in tokens  # RFC 6749 §4.4.3
    assert AccessToken.objects.get().user is None  # DOT: no resource owner, the app's user acts

    api = bearer(tokens["access_token"])
    agents = api.get("/api/v1/agents")
    assert agents.status_code == 200, agents.content
    assert "shell" in [a["slug"] for a in agents.json()["results"]]
    write = api.post(
        "/api/v1/agents", {"slug": "y", "name": "y", "kind": "command"}, "application/json"
    )
    assert write.status_code == 403
    assert error_code(write) == "insufficient_scope"
    assert error_code(api.get("/api/v1/sessions")) == "insufficient_scope"


def test_client_credentials_refuses_a_wrong_secret_and_unknown_scopes(
    service: dict[str, Any],
) -> None:
    assert (
        Application.objects.get(client_id=service["client_id"]).client_secret
        != (service["client_secret"])
    )  # hashed at rest
    wrong = client_credentials(service, "agents:read", secret="nope")
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "invalid_client"
    unknown = client_credentials(service, "agents:read superpowers")
    assert unknown.status_code == 400
    assert unknown.json()["error"] == "invalid_scope"


def test_an_authorization_code_app_cannot_use_client_credentials(
    confidential_app: dict[str, Any],
) -> None:
    response = client_credentials(confidential_app, "agents:read")
    assert response.status_code in {400, 401}
    assert response.json()["error"] == "unauthorized_client"


def test_create_oauth_app_checks_its_arguments(developer: Any) -> None:
    with pytest.raises(CommandError, match="redirect-uri"):
        create_app("--name", "a", "--grant", "authorization-code", "--user", developer.username)
    with pytest.raises(CommandError, match="confidential"):
        create_app(
            "--name", "a", "--grant", "client-credentials", "--public", "--user", "developer"
        )
    with pytest.raises(CommandError, match="no user"):
        create_app("--name", "a", "--grant", "client-credentials", "--user", "nobody")
    with pytest.raises(CommandError):
        create_app(
            "--name", "a", "--grant", "authorization-code", "--user", "developer",
            "--redirect-uri", "ftp://x/cb",
        )  # fmt: skip
    assert not Application.objects.exists()
    out = io.StringIO()
    call_command(
        "create_oauth_app", "--name", "b", "--grant", "client-credentials", "--user", "developer",
        stdout=out,
    )  # fmt: skip
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("client_id: ")
    assert lines[1].startswith("client_secret: ")


# (c) expired and revoked tokens ----------------------------------------------------------------


def test_expired_token_is_401_token_expired(service: dict[str, Any]) -> None:
    token = client_credentials(service, "agents:read").json()["access_token"]
    AccessToken.objects.update(expires=timezone.now() - timedelta(seconds=1))
    response = bearer(token).get("/api/v1/agents")
    assert response.status_code == 401
    assert error_code(response) == "token_expired"
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_revoked_token_is_401_and_introspection_follows(service: dict[str, Any]) -> None:
    token = client_credentials(service, "agents:read").json()["access_token"]
    auth = basic(service["client_id"], service["client_secret"])
    form = "application/x-www-form-urlencoded"

    active = Client().post(
        "/o/introspect/", urlencode({"token": token}), form, HTTP_AUTHORIZATION=auth
    )
    assert active.status_code == 200
    assert active.json()["active"] is True
    assert active.json()["scope"] == "agents:read"
    assert active.json()["client_id"] == service["client_id"]
    assert Client().post("/o/introspect/", urlencode({"token": token}), form).status_code in {
        401,
        403,
    }  # introspection needs an authenticated client

    revoked = Client().post(
        "/o/revoke_token/", urlencode({"token": token}), form, HTTP_AUTHORIZATION=auth
    )
    assert revoked.status_code == 200
    response = bearer(token).get("/api/v1/agents")
    assert response.status_code == 401
    assert error_code(response) == "invalid_credential"
    inactive = Client().post(
        "/o/introspect/", urlencode({"token": token}), form, HTTP_AUTHORIZATION=auth
    )
    assert inactive.json() == {"active": False}


def test_public_client_revokes_its_own_token(browser: Client, public_app: dict[str, Any]) -> None:
    client_id = public_app["client_id"]
    verifier, challenge = pkce_pair()
    tokens = exchange(client_id, get_code(browser, client_id, challenge), verifier).json()
    data = urlencode({"token": tokens["access_token"], "client_id": client_id})
    revoked = Client().post("/o/revoke_token/", data, "application/x-www-form-urlencoded")
    assert revoked.status_code == 200
    assert bearer(tokens["access_token"]).get("/api/v1/sessions").status_code == 401


def test_a_token_of_an_inactive_user_is_refused(
    browser: Client, alice: Any, public_app: Any
) -> None:
    client_id = public_app["client_id"]
    verifier, challenge = pkce_pair()
    tokens = exchange(client_id, get_code(browser, client_id, challenge), verifier).json()
    alice.is_active = False
    alice.save()
    response = bearer(tokens["access_token"]).get("/api/v1/sessions")
    assert response.status_code == 401


def test_access_token_in_the_query_string_is_not_accepted(service: dict[str, Any]) -> None:
    token = client_credentials(service, "agents:read").json()["access_token"]
    response = Client().get("/api/v1/agents", {"access_token": token})
    assert response.status_code == 401
