"""RFC 8414 authorization-server and RFC 9728 protected-resource metadata: the documents, the
issuer setting, and a client that discovers the endpoints and runs a flow through them."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.test import Client

from accounts.models import Scope
from tests.api.oauth2_support import (
    REDIRECT,
    authorize_params,
    bearer,
    create_app,
    error_code,
    pkce_pair,
)
from tests.factories import make_session, make_user


@pytest.fixture
def alice(db: Any) -> Any:
    user = make_user("alice")
    make_session(user)
    return user


@pytest.fixture
def browser(alice: Any) -> Client:
    client = Client()
    client.force_login(alice)
    return client


@pytest.fixture
def public_app(db: Any) -> dict[str, Any]:
    developer = make_user("developer")
    return create_app(
        "--name", "Notebook", "--grant", "authorization-code", "--public",
        "--redirect-uri", REDIRECT, "--user", developer.username,
    )  # fmt: skip


def test_authorization_server_metadata(db: Any) -> None:
    response = Client().get("/.well-known/oauth-authorization-server")
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == "*"
    meta = response.json()
    base = "http://testserver"
    assert meta["issuer"] == base
    assert meta["authorization_endpoint"] == f"{base}/o/authorize/"
    assert meta["token_endpoint"] == f"{base}/o/token/"
    assert meta["revocation_endpoint"] == f"{base}/o/revoke_token/"
    assert meta["introspection_endpoint"] == f"{base}/o/introspect/"
    assert meta["scopes_supported"] == sorted(s.value for s in Scope)
    assert meta["response_types_supported"] == ["code"]
    assert meta["grant_types_supported"] == [
        "authorization_code",
        "client_credentials",
        "refresh_token",
    ]
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert set(meta["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "client_secret_post",
        "none",
    }
    assert "none" not in meta["introspection_endpoint_auth_methods_supported"]
    assert meta["authorization_response_iss_parameter_supported"] is True
    assert meta["service_documentation"] == f"{base}/api/docs/"
    assert "registration_endpoint" not in meta


def test_protected_resource_metadata(db: Any) -> None:
    meta = Client().get("/.well-known/oauth-protected-resource").json()
    assert meta["resource"] == "http://testserver"
    assert meta["authorization_servers"] == ["http://testserver"]
    assert meta["scopes_supported"] == sorted(s.value for s in Scope)
    assert meta["bearer_methods_supported"] == ["header"]
    # RFC 9728 §3.1 path form, e.g. for the MCP endpoint.
    mcp = Client().get("/.well-known/oauth-protected-resource/mcp").json()
    assert mcp["resource"] == "http://testserver/mcp"
    assert mcp["authorization_servers"] == ["http://testserver"]


def test_metadata_follows_oauth2_issuer(settings: Any) -> None:
    settings.OAUTH2_PROVIDER = settings.OAUTH2_PROVIDER | {
        "OIDC_ISS_ENDPOINT": "https://runtime.example.com"
    }
    meta = Client().get("/.well-known/oauth-authorization-server").json()
    assert meta["issuer"] == "https://runtime.example.com"
    assert meta["token_endpoint"] == "https://runtime.example.com/o/token/"
    resource = Client().get("/.well-known/oauth-protected-resource/mcp").json()
    assert resource["resource"] == "https://runtime.example.com/mcp"
    assert resource["authorization_servers"] == ["https://runtime.example.com"]


def test_the_advertised_endpoints_work(alice: Any, browser: Client, public_app: Any) -> None:
    """A client that only knows the server's origin: discover, authorize, exchange, call."""
    meta = Client().get("/.well-known/oauth-authorization-server").json()
    path = lambda url: urlsplit(url).path  # noqa: E731
    client_id = public_app["client_id"]
    verifier, challenge = pkce_pair()
    params = authorize_params(client_id, challenge)
    assert browser.get(path(meta["authorization_endpoint"]), params).status_code == 200
    redirect = browser.post(path(meta["authorization_endpoint"]), params | {"allow": "Authorize"})
    query = parse_qs(urlsplit(redirect["Location"]).query)
    assert query["iss"] == [meta["issuer"]]
    data = {
        "grant_type": "authorization_code",
        "code": query["code"][0],
        "redirect_uri": REDIRECT,
        "client_id": client_id,
        "code_verifier": verifier,
    }
    form = "application/x-www-form-urlencoded"
    token = Client().post(path(meta["token_endpoint"]), urlencode(data), form).json()
    assert bearer(token["access_token"]).get("/api/v1/sessions").status_code == 200
    revoke = {"token": token["access_token"], "client_id": client_id}
    assert (
        Client().post(path(meta["revocation_endpoint"]), urlencode(revoke), form).status_code == 200
    )
    assert bearer(token["access_token"]).get("/api/v1/sessions").status_code == 401
    # No CSRF token needed at the token endpoint (a client, not a browser form).
    strict = Client(enforce_csrf_checks=True)
    response = strict.post(path(meta["token_endpoint"]), urlencode(data), form)
    assert response.status_code == 400  # the code was used: an OAuth2 error, not a CSRF 403
    assert response.json()["error"] == "invalid_grant"


def test_application_management_views_are_not_served(browser: Client) -> None:
    for url in ("/o/applications/", "/o/authorized_tokens/", "/o/register/", "/o/device/"):
        response = browser.get(url)
        assert response.status_code == 404
        assert error_code(response) == "not_found"


def test_resource_metadata_url_for_www_authenticate(rf: Any) -> None:
    """The RFC 9728 §5.1 ``resource_metadata`` challenge parameter's value."""
    from accounts.oauth import resource_metadata_url

    request = rf.get("/api/v1/sessions")
    assert (
        resource_metadata_url(request) == "http://testserver/.well-known/oauth-protected-resource"
    )
    assert Client().get(urlsplit(resource_metadata_url(request)).path).status_code == 200
