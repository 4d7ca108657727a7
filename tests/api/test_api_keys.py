"""API keys: shown once, hashed at rest, scoped, expiring, revocable, tracked."""

from __future__ import annotations

import datetime as dt
import io
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiKey, Team
from tests import factories
from tests.api.helpers import API, error_of

pytestmark = pytest.mark.django_db


def bearer(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def create_key(client: APIClient, **body: Any) -> dict[str, Any]:
    response = client.post(f"{API}/api-keys", {"name": "ci", **body}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def test_a_key_is_shown_once_and_only_its_hash_is_stored(api_client, session):
    created = create_key(api_client, scopes=["sessions:read"])
    key = created["key"]
    assert key.startswith(created["prefix"] + ".") and len(key) > 30

    row = ApiKey.objects.get(uuid=created["id"])
    assert key not in row.hashed_key and row.hashed_key.startswith("sha512$$")
    listed = api_client.get(f"{API}/api-keys").json()["results"]
    assert any(k["prefix"] == created["prefix"] for k in listed)
    assert "key" not in listed[0] and key not in str(listed)

    assert bearer(key).get(f"{API}/sessions/{session.uuid}").status_code == 200
    row.refresh_from_db()
    assert row.last_used_at is not None


def test_scopes_limit_what_a_key_may_call(api_client, session):
    reader = bearer(create_key(api_client, scopes=["sessions:read"])["key"])
    assert reader.get(f"{API}/sessions").status_code == 200
    error = error_of(
        reader.post(f"{API}/sessions/{session.uuid}/tasks", {"input": {}}, format="json"),
        403,
        "insufficient_scope",
    )
    assert error["details"] == {"required_scope": "tasks:write"}
    error_of(reader.get(f"{API}/agents"), 403, "insufficient_scope")
    error_of(reader.get(f"{API}/api-keys"), 403, "insufficient_scope")

    writer = bearer(create_key(api_client, scopes=["tasks:write"])["key"])
    created = writer.post(
        f"{API}/sessions/{session.uuid}/tasks", {"input": {"command": "true"}}, format="json"
    )
    assert created.status_code == 201, created.content
    error_of(writer.delete(f"{API}/sessions/{session.uuid}"), 403, "insufficient_scope")
    # sessions:write implies sessions:read.
    editor = bearer(create_key(api_client, scopes=["sessions:write"])["key"])
    assert editor.get(f"{API}/sessions/{session.uuid}").status_code == 200


def test_a_key_cannot_mint_a_stronger_key(api_client):
    reader = bearer(create_key(api_client, scopes=["admin"])["key"])
    narrow = bearer(create_key(reader, scopes=["sessions:read"])["key"])
    error_of(narrow.post(f"{API}/api-keys", {"name": "x", "scopes": ["admin"]}, format="json"), 403)
    error_of(
        api_client.post(f"{API}/api-keys", {"name": "x", "scopes": ["root"]}, format="json"), 400
    )


def test_revoked_and_expired_keys_are_refused_with_the_reason(api_client, session):
    created = create_key(api_client, scopes=["sessions:read"])
    client = bearer(created["key"])
    revoked = api_client.delete(f"{API}/api-keys/{created['id']}")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    error_of(client.get(f"{API}/sessions"), 401, "api_key_revoked")

    soon = timezone.now() + dt.timedelta(seconds=60)
    expiring = create_key(api_client, scopes=["sessions:read"], expires_at=soon.isoformat())
    ApiKey.objects.filter(uuid=expiring["id"]).update(
        expires_at=timezone.now() - dt.timedelta(seconds=1)
    )
    error_of(bearer(expiring["key"]).get(f"{API}/sessions"), 401, "api_key_expired")
    past = (timezone.now() - dt.timedelta(days=1)).isoformat()
    error_of(
        api_client.post(
            f"{API}/api-keys", {"name": "x", "scopes": ["admin"], "expires_at": past}, format="json"
        ),
        400,
    )
    # A right prefix with a wrong secret is just invalid.
    error_of(bearer(created["prefix"] + ".wrong").get(f"{API}/sessions"), 401, "invalid_credential")


def test_team_admins_see_and_revoke_their_teams_keys_but_not_others(user, other_user, api_client):
    team = api_client.post(f"{API}/teams", {"name": "Ops"}, format="json").json()
    factories.add_member(Team.objects.get(uuid=team["id"]), other_user)
    mallory = bearer(factories.make_token(other_user))
    theirs = create_key(mallory, scopes=["sessions:read"], team=team["slug"])
    mine = create_key(api_client, scopes=["sessions:read"])  # a user key, not a team key

    assert theirs["team"]["slug"] == team["slug"]
    listed = {k["prefix"] for k in api_client.get(f"{API}/api-keys").json()["results"]}
    assert theirs["prefix"] in listed  # alice owns the team
    error_of(mallory.delete(f"{API}/api-keys/{mine['id']}"), 404)
    assert api_client.delete(f"{API}/api-keys/{theirs['id']}").status_code == 200
    # A member cannot mint an admin key for the team.
    error_of(
        mallory.post(
            f"{API}/api-keys", {"name": "x", "scopes": ["admin"], "team": team["slug"]},
            format="json",
        ),
        403,
    )  # fmt: skip


def test_the_cli_command_prints_a_working_key(db, session):
    out = io.StringIO()
    call_command("create_user_token", "alice", "--scope", "sessions:read", stdout=out)
    key = out.getvalue().strip()
    assert bearer(key).get(f"{API}/sessions/{session.uuid}").status_code == 200
    error_of(bearer(key).get(f"{API}/agents"), 403, "insufficient_scope")
