"""The whole life of a connection over real HTTP, with this very server as the OAuth2 provider
(django-oauth-toolkit at /o/authorize/ and /o/token/, PKCE required) on one live daphne:

register the provider over REST → /oauth/connect redirects with state and an S256 challenge →
the user consents on the provider's real consent page → the callback stores encrypted tokens →
a workflow ``http_request`` with ``"connection"`` reaches the provider's own API with the bearer
(masked everywhere) → past expiry the token is refreshed (and the refresh token rotated) →
another user cannot use it → revocation deletes it here and at the provider.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import httpx
import pytest
from django.db import connection as db
from django.utils import timezone
from oauth2_provider.models import get_refresh_token_model

from integrations.connections.models import OAuthConnection
from providers import crypto
from tests.factories import add_member, make_token, make_user, team_of
from tests.integrations.connections.support import (
    browser,
    connect,
    consent,
    echo_server,
    query,
    register_app,
    register_provider,
    run_task,
)

pytestmark = [pytest.mark.transport]


def _raw_columns(pk: int) -> str:
    """The connection row's token columns exactly as stored (raw SQL, no ORM conversion)."""
    table = OAuthConnection._meta.db_table
    with db.cursor() as cursor:
        cursor.execute(f"SELECT access_token, refresh_token FROM {table} WHERE id = %s", [pk])
        return " ".join(cursor.fetchone())


def _workflow(base: str, echo: str) -> dict[str, Any]:
    return {
        "components": [
            {"id": "agents", "type": "http_request", "url": f"{base}/api/v1/agents",
             "connection": "self"},
            {"id": "echo", "type": "http_request", "url": f"{echo}/echo", "connection": "self"},
            {"id": "out", "type": "output"},
        ],
        "edges": [
            {"from": "agents.json", "to": "out.agents"},
            {"from": "echo.json", "to": "out.echo"},
        ],
    }  # fmt: skip


def test_connect_use_refresh_and_revoke(server: Any) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    add_member(team_of(alice), bob, "member")
    app = register_app(server.url)
    api = httpx.Client(base_url=server.url, timeout=60,
                       headers={"Authorization": f"Bearer {make_token(alice)}"})  # fmt: skip
    bob_api = httpx.Client(base_url=server.url, timeout=60,
                           headers={"Authorization": f"Bearer {make_token(bob)}"})  # fmt: skip
    with echo_server() as echo, api, bob_api, browser(server.url, alice) as page:
        provider = register_provider(
            api, server.url, app,
            revoke_url=f"{server.url}/o/revoke_token/", userinfo_url=f"{echo}/userinfo",
        )  # fmt: skip
        assert provider["redirect_uri"] == f"{server.url}/oauth/callback/self"
        assert provider["has_client_secret"] is True
        assert app["client_secret"] not in json.dumps(provider)

        # Connect: state + PKCE, real consent, tokens stored encrypted.
        connected = connect(server.url, page)["connection"]
        assert connected["status"] == "active" and connected["scopes"] == ["agents:read"]
        assert connected["account"] == "alice-at-provider"  # from the userinfo endpoint
        row = OAuthConnection.objects.get(uuid=connected["id"])
        access, refresh = crypto.decrypt(row.access_token), crypto.decrypt(row.refresh_token)
        stored = _raw_columns(row.pk)
        assert access not in stored and refresh not in stored
        assert access not in json.dumps(connected)
        listed = api.get("/api/v1/connections").json()["results"]
        assert [c["id"] for c in listed] == [connected["id"]]
        assert access not in json.dumps(listed)

        # Use: a workflow reaches the provider's own API with the bearer, masked everywhere.
        agent = api.post("/api/v1/agents", json={
            "slug": "github-ish", "name": "Uses a connection", "kind": "workflow",
            "spec": _workflow(server.url, echo),
        })  # fmt: skip
        assert agent.status_code == 201, agent.text
        session = api.post("/api/v1/sessions", json={"agent": "github-ish"}).json()
        task, seen = run_task(api, session["id"])
        assert task["status"] == "succeeded", task
        assert "github-ish" in [a["slug"] for a in task["result"]["agents"]["results"]]
        assert task["result"]["echo"]["authorization"] == "Bearer [secret:connection:self]"
        assert access not in seen and refresh not in seen
        assert "[secret:connection:self]" in seen  # the echoed header, in step.finished too
        assert access not in server.read_log()

        # Expired: refreshed before use, the refresh token rotated (the provider rotates).
        OAuthConnection.objects.filter(pk=row.pk).update(
            expires_at=timezone.now() - dt.timedelta(minutes=5)
        )
        task, seen = run_task(api, session["id"])
        assert task["status"] == "succeeded", task
        row.refresh_from_db()
        new_access, new_refresh = (
            crypto.decrypt(row.access_token),
            crypto.decrypt(row.refresh_token),
        )
        assert new_access != access and new_refresh != refresh
        assert row.refreshed_at is not None and row.expires_at > timezone.now()
        assert new_access not in seen and access not in seen
        assert httpx.get(f"{server.url}/api/v1/agents",
                         headers={"Authorization": f"Bearer {new_access}"}).status_code == 200  # fmt: skip

        # Another user of the team (bob) cannot use alice's connection, see or revoke it.
        task, _ = run_task(bob_api, session["id"])
        assert task["status"] == "failed"
        assert task["error"]["details"]["code"] == "connection_not_found", task["error"]
        assert bob_api.get("/api/v1/connections").json()["results"] == []
        gone = bob_api.delete(f"/api/v1/connections/{connected['id']}")
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "connection_not_found"

        # A grant revoked at the provider: the next refresh fails, the connection is marked.
        get_refresh_token_model().objects.filter(revoked__isnull=True).update(
            revoked=timezone.now()
        )
        OAuthConnection.objects.filter(pk=row.pk).update(
            expires_at=timezone.now() - dt.timedelta(minutes=5)
        )
        task, seen = run_task(api, session["id"])
        assert task["status"] == "failed"
        assert task["error"]["details"]["code"] == "connection_expired", task["error"]
        assert "/oauth/connect/self" in task["error"]["message"]
        assert new_refresh not in seen
        row.refresh_from_db()
        assert row.status == "error" and "invalid_grant" in row.last_error

        # Connect again, then revoke: tokens deleted here and revoked at the provider.
        connect(server.url, page)
        row.refresh_from_db()
        assert row.status == "active"
        latest = crypto.decrypt(row.access_token)
        revoked = api.delete(f"/api/v1/connections/{connected['id']}")
        assert revoked.status_code == 204, revoked.text
        row.refresh_from_db()
        assert (row.status, row.access_token, row.refresh_token, row.last_error) == (
            "revoked", "", "", "")  # fmt: skip
        assert httpx.get(f"{server.url}/api/v1/agents",
                         headers={"Authorization": f"Bearer {latest}"}).status_code == 401  # fmt: skip
        task, _ = run_task(api, session["id"])
        assert task["error"]["details"]["code"] == "connection_not_found", task["error"]
        assert api.get("/api/v1/connections").json()["results"][0]["status"] == "revoked"


def test_callback_refuses_a_bad_state_and_reports_a_denial(server: Any) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    app = register_app(server.url)
    api = httpx.Client(base_url=server.url, timeout=60,
                       headers={"Authorization": f"Bearer {make_token(alice)}"})  # fmt: skip
    with api, browser(server.url, alice) as page, browser(server.url, bob) as other:
        register_provider(api, server.url, app)

        bogus = page.get("/oauth/callback/self", params={"code": "x", "state": "made-up"})
        assert bogus.status_code == 400
        assert bogus.json()["error"]["code"] == "invalid_state"

        # A real state, but presented by another browser (another user's session).
        state = query(page.get("/oauth/connect/self").headers["location"])["state"]
        stolen = other.get("/oauth/callback/self", params={"code": "x", "state": state})
        assert stolen.status_code == 400 and stolen.json()["error"]["code"] == "invalid_state"

        # The user pressed Cancel: the provider sends error=access_denied back with the state.
        authorize = page.get("/oauth/connect/self").headers["location"]
        denied = consent(page, authorize, allow=False)
        assert query(denied)["error"] == "access_denied"
        back = page.get(denied)
        assert back.status_code == 400
        assert back.json()["error"]["code"] == "access_denied"
        assert back.json()["error"]["details"]["error"] == "access_denied"

        # The same state cannot be replayed; a code from nowhere is refused by the provider.
        replay = page.get(denied)
        assert replay.json()["error"]["code"] == "invalid_state"
        state = query(page.get("/oauth/connect/self").headers["location"])["state"]
        forged = page.get("/oauth/callback/self", params={"code": "forged", "state": state})
        assert forged.status_code == 502
        error = forged.json()["error"]
        assert (
            error["code"] == "oauth_provider_error" and error["details"]["error"] == "invalid_grant"
        )
        assert app["client_secret"] not in forged.text
        assert not OAuthConnection.objects.exists()
