"""REST of providers and connections (in process): team access on every object, the client
secret write-only and encrypted, field checks; and the browser endpoints' answers that need no
provider round trip (login, PKCE parameters, ambiguity, unknown provider)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from integrations.connections.models import OAuthConnection, OAuthProvider
from integrations.connections.oauth import TokenSet
from integrations.connections.services import connection_store
from providers import crypto
from tests.factories import add_member, make_token, make_user, team_of
from tests.integrations.connections.support import query

SECRET = "s3cr3t-client-secret-value"
BODY = {
    "name": "github",
    "client_id": "Iv1.abc",
    "client_secret": SECRET,
    "authorize_url": "https://github.com/login/oauth/authorize",
    "token_url": "https://github.com/login/oauth/access_token",
    "scopes": ["repo", "read:user"],
    "api_hosts": ["api.github.com"],
    "authorize_params": {"allow_signup": "false"},
}


def _client(user: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_token(user)}")
    return client


@pytest.fixture
def provider(api_client: APIClient) -> dict[str, Any]:
    response = api_client.post("/api/v1/oauth-providers", BODY, format="json")
    assert response.status_code == 201, response.content
    return dict(response.json())


def test_create_keeps_the_secret_write_only_and_encrypted(
    api_client: APIClient, provider: dict[str, Any]
) -> None:
    assert SECRET not in str(provider)
    assert provider["has_client_secret"] is True
    assert provider["redirect_uri"] == "http://testserver/oauth/callback/github"
    assert provider["connect_url"].startswith("http://testserver/oauth/connect/github?team=")
    row = OAuthProvider.objects.get(uuid=provider["id"])
    assert SECRET not in row.client_secret and crypto.decrypt(row.client_secret) == SECRET
    detail = api_client.get(f"/api/v1/oauth-providers/{provider['id']}")
    assert detail.status_code == 200 and SECRET not in detail.content.decode()
    listed = api_client.get("/api/v1/oauth-providers").json()
    assert [p["name"] for p in listed["results"]] == ["github"]

    taken = api_client.post("/api/v1/oauth-providers", BODY, format="json")
    assert taken.status_code == 409
    assert taken.json()["error"]["code"] == "oauth_provider_name_taken"


def test_update_rotates_or_clears_the_secret(
    api_client: APIClient, provider: dict[str, Any]
) -> None:
    url = f"/api/v1/oauth-providers/{provider['id']}"
    changed = api_client.patch(url, {"client_secret": "new-one", "use_pkce": False}, format="json")
    assert changed.status_code == 200, changed.content
    assert changed.json()["use_pkce"] is False
    row = OAuthProvider.objects.get(uuid=provider["id"])
    assert crypto.decrypt(row.client_secret) == "new-one"
    cleared = api_client.patch(url, {"client_secret": ""}, format="json")
    assert cleared.json()["has_client_secret"] is False
    renamed = api_client.patch(url, {"name": "other"}, format="json")
    assert renamed.status_code == 400
    assert "name" in renamed.json()["error"]["details"]["fields"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"token_url": "ftp://example.com/token"}, "token_url"),
        ({"authorize_url": "https://user:pw@example.com/a"}, "authorize_url"),
        ({"authorize_params": {"state": "fixed"}}, "authorize_params"),
        ({"scopes": ["has space"]}, "scopes"),
        ({"api_hosts": ["not a host"]}, "api_hosts"),
        ({"name": "bad name"}, "name"),
    ],
)
def test_bad_fields_are_named(api_client: APIClient, change: dict[str, Any], field: str) -> None:
    response = api_client.post("/api/v1/oauth-providers", {**BODY, **change}, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["details"]["fields"]
    assert SECRET not in response.content.decode()


def test_team_access(user: Any, other_client: APIClient, provider: dict[str, Any]) -> None:
    url = f"/api/v1/oauth-providers/{provider['id']}"
    viewer, member = make_user("viewer"), make_user("member")
    add_member(team_of(user), viewer, "viewer")
    add_member(team_of(user), member, "member")
    for client in (_client(viewer), _client(member)):
        assert client.get(url).status_code == 200
        assert client.patch(url, {"use_pkce": False}, format="json").status_code == 403
        assert client.delete(url).status_code == 403
    team = str(team_of(user).uuid)
    forbidden = _client(member).post("/api/v1/oauth-providers", {**BODY, "team": team},
                                     format="json")  # fmt: skip
    assert forbidden.status_code == 403
    for response in (other_client.get(url), other_client.delete(url)):
        assert response.status_code == 404
    assert other_client.get("/api/v1/oauth-providers").json()["results"] == []
    key = make_token(user, scopes=["agents:read"])
    limited = APIClient()
    limited.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert limited.get(url).status_code == 200
    assert limited.delete(url).status_code == 403


def test_connections_are_their_users_own(
    user: Any, api_client: APIClient, provider: dict[str, Any]
) -> None:
    row = OAuthProvider.objects.get(uuid=provider["id"])
    teammate = make_user("teammate")
    add_member(team_of(user), teammate, "admin")
    mine = connection_store(provider=row, user=user, tokens=TokenSet(access_token="tok-alice"))
    connection_store(provider=row, user=teammate, tokens=TokenSet(access_token="tok-mate"))
    listed = api_client.get("/api/v1/connections").json()["results"]
    assert [c["id"] for c in listed] == [str(mine.uuid)]
    assert listed[0]["provider"]["name"] == "github" and "tok-alice" not in str(listed)
    assert listed[0]["scopes"] == ["repo", "read:user"]  # not reported: the ones asked for
    theirs = OAuthConnection.objects.get(user=teammate)
    assert api_client.delete(f"/api/v1/connections/{theirs.uuid}").status_code == 404
    assert api_client.delete("/api/v1/connections/not-a-uuid").status_code == 404
    # No revoke_url: the tokens are deleted here only.
    assert api_client.delete(f"/api/v1/connections/{mine.uuid}").status_code == 204
    mine.refresh_from_db()
    assert (mine.status, mine.access_token) == ("revoked", "")
    # Deleting the provider deletes every connection of it.
    assert api_client.delete(f"/api/v1/oauth-providers/{provider['id']}").status_code == 204
    assert not OAuthConnection.objects.exists()


def test_connect_needs_a_browser_session_and_sends_pkce(
    user: Any, provider: dict[str, Any]
) -> None:
    anonymous = Client().get("/oauth/connect/github")
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/admin/login/")
    browser = Client()
    browser.force_login(user)
    start = browser.get("/oauth/connect/github", {"next": "https://evil.example/"})
    assert start.status_code == 302
    params = query(start["Location"])
    assert start["Location"].startswith("https://github.com/login/oauth/authorize?")
    assert params["client_id"] == "Iv1.abc" and params["scope"] == "repo read:user"
    assert params["allow_signup"] == "false" and params["code_challenge_method"] == "S256"
    assert params["redirect_uri"] == "http://testserver/oauth/callback/github"
    flow = browser.session["oauth_connections"][params["state"]]
    assert flow["user"] == user.pk and flow["next"] == ""  # another origin is never a target
    assert SECRET not in start["Location"]

    unknown = browser.get("/oauth/connect/gitlab", HTTP_ACCEPT="application/json")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "oauth_provider_not_found"


def test_connect_asks_which_team_when_a_name_is_shared(
    user: Any, api_client: APIClient, provider: dict[str, Any]
) -> None:
    shared = api_client.post("/api/v1/teams", {"name": "Lab", "slug": "lab"}, format="json")
    assert shared.status_code == 201, shared.content
    again = api_client.post("/api/v1/oauth-providers", {**BODY, "team": "lab"}, format="json")
    assert again.status_code == 201, again.content
    browser = Client()
    browser.force_login(user)
    ambiguous = browser.get("/oauth/connect/github", HTTP_ACCEPT="application/json")
    assert ambiguous.status_code == 400
    assert ambiguous.json()["error"]["code"] == "ambiguous_provider"
    assert browser.get("/oauth/connect/github", {"team": "lab"}).status_code == 302
    page = browser.get("/oauth/callback/github", {"state": "nope", "code": "x"})
    assert page.status_code == 400 and b"Connection failed" in page.content


def test_admin_never_shows_secrets(user: Any, provider: dict[str, Any]) -> None:
    row = OAuthProvider.objects.get(uuid=provider["id"])
    tokens = TokenSet(access_token="plain-access-token", refresh_token="plain-refresh-token")
    connection = connection_store(provider=row, user=user, tokens=tokens)
    staff = make_user("operator", is_staff=True, is_superuser=True)
    admin = Client()
    admin.force_login(staff)
    pages = [
        admin.get("/admin/connections/oauthprovider/"),
        admin.get(f"/admin/connections/oauthprovider/{row.pk}/change/"),
        admin.get("/admin/connections/oauthconnection/"),
        admin.get(f"/admin/connections/oauthconnection/{connection.pk}/change/"),
    ]
    for page in pages:
        assert page.status_code == 200
        text = page.content.decode()
        for secret in (SECRET, row.client_secret, "plain-access-token", connection.access_token,
                       "plain-refresh-token", connection.refresh_token):  # fmt: skip
            assert secret not in text
    # The revoke action deletes the tokens.
    done = admin.post("/admin/connections/oauthconnection/",
                      {"action": "revoke", "_selected_action": [connection.pk]})  # fmt: skip
    assert done.status_code == 302
    connection.refresh_from_db()
    assert (connection.status, connection.access_token) == ("revoked", "")
