"""The console's sign-in, agents, sessions and API keys pages over Django's test client on the
real database: who may see them, what they list (only the user's teams' rows), their filters,
pagination and empty states, and the headers every console page carries."""

from __future__ import annotations

import random
import re
from typing import Any
from urllib.parse import quote

import pytest
from django.test import Client

from accounts.models import ApiKey
from sessions.models import Session
from tests import factories

pytestmark = pytest.mark.django_db

INLINE_SCRIPT = re.compile(r"<script(?![^>]*\ssrc=)(?![^>]*type=\"application/json\")[^>]*>")


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def assert_console_headers(response: Any) -> None:
    """The strict CSP (no inline script or style allowed) and no inline script/style used."""
    csp = response["Content-Security-Policy"]
    assert "script-src 'self';" in csp and "style-src 'self';" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "no-store" in response["Cache-Control"]
    html = response.content.decode()
    assert INLINE_SCRIPT.search(html) is None, "an inline <script> would be blocked by the CSP"
    assert "<style" not in html and " style=" not in html


def rows(response: Any, table_id: str) -> list[str]:
    """The <tr> of the table's body, as HTML snippets."""
    html = response.content.decode()
    found = re.search(rf'id="{table_id}".*?<tbody>(.*?)</tbody>', html, re.S)
    return re.findall(r"<tr.*?</tr>", found.group(1), re.S) if found else []


@pytest.fixture
def pages(user: Any, agent: Any, session: Any) -> list[str]:
    return [
        "/console/sessions/",
        "/console/agents/",
        "/console/agents/new/",
        f"/console/agents/{agent.uuid}/",
        f"/console/agents/{agent.uuid}/edit/",
        "/console/api-keys/",
    ]


# Sign-in ----------------------------------------------------------------------------------------


def test_anonymous_users_are_sent_to_sign_in_and_back(pages: list[str]) -> None:
    client = Client()
    home = client.get("/console/")
    assert home.status_code == 302 and home["Location"] == "/console/sessions/"
    for path in pages:
        response = client.get(path)
        assert response.status_code == 302, path
        assert response["Location"] == f"/console/login/?next={quote(path)}", path


def test_signed_in_pages_carry_the_strict_csp(user: Any, pages: list[str]) -> None:
    client = signed_in(user)
    for path in pages:
        response = client.get(path)
        assert response.status_code == 200, path
        assert_console_headers(response)
        assert 'id="page-config" type="application/json"' in response.content.decode()


def test_sign_in_with_a_wrong_password_shows_the_error_in_place(user: Any) -> None:
    client = Client()
    page = client.get("/console/login/?next=/console/agents/")
    assert page.status_code == 200
    assert_console_headers(page)
    html = page.content.decode()
    assert 'name="next" value="/console/agents/"' in html
    assert re.search(r'<label for="id_username">', html) and "autofocus" in html

    wrong = client.post(
        "/console/login/", {"username": "alice", "password": "nope", "next": "/console/agents/"}
    )
    assert wrong.status_code == 200
    assert_console_headers(wrong)
    html = wrong.content.decode()
    assert 'role="alert"' in html and "Please enter a correct username and password" in html
    assert 'aria-invalid="true"' in html
    assert 'value="alice"' in html  # the username is kept
    assert client.get("/console/agents/").status_code == 302  # still signed out


def test_sign_in_lands_on_next_and_signed_in_users_skip_the_form(user: Any) -> None:
    client = Client()
    response = client.post(
        "/console/login/",
        {"username": "alice", "password": "pw-for-tests", "next": "/console/agents/"},
    )
    assert response.status_code == 302 and response["Location"] == "/console/agents/"
    assert client.get("/console/agents/").status_code == 200
    again = client.get("/console/login/?next=/console/api-keys/")
    assert again.status_code == 302 and again["Location"] == "/console/api-keys/"


def test_sign_in_never_sends_to_another_host(user: Any) -> None:
    response = Client().post(
        "/console/login/",
        {"username": "alice", "password": "pw-for-tests", "next": "https://evil.example/"},
    )
    assert response.status_code == 302 and response["Location"] == "/console/"


def test_inactive_users_cannot_sign_in(user: Any) -> None:
    user.is_active = False
    user.save()
    response = Client().post("/console/login/", {"username": "alice", "password": "pw-for-tests"})
    assert response.status_code == 200 and 'role="alert"' in response.content.decode()


def test_sign_in_attempts_are_rate_limited_per_client_ip(user: Any, settings: Any) -> None:
    settings.THROTTLE_OAUTH = "3/m"
    ip = f"10.{random.randint(0, 255)}.{random.randint(0, 255)}.{random.randint(1, 254)}"
    client = Client(REMOTE_ADDR=ip)
    for _ in range(3):
        response = client.post("/console/login/", {"username": "alice", "password": "guess"})
        assert response.status_code == 200
    refused = client.post("/console/login/", {"username": "alice", "password": "pw-for-tests"})
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "throttled"
    assert int(refused["Retry-After"]) >= 1
    assert client.get("/console/login/").status_code == 200  # reading the form is not counted


def test_sign_out_is_post_only(user: Any) -> None:
    client = signed_in(user)
    assert client.get("/console/logout/").status_code == 405
    assert client.get("/console/agents/").status_code == 200
    response = client.post("/console/logout/")
    assert response.status_code == 302 and response["Location"] == "/console/login/"
    assert client.get("/console/agents/").status_code == 302


# Agents -----------------------------------------------------------------------------------------


def test_agents_list_shows_the_users_and_public_agents_only(
    user: Any, other_user: Any, agent: Any
) -> None:
    factories.make_agent(other_user, slug="strangers-secret", name="Secret")
    factories.make_agent(other_user, slug="strangers-public", name="Shared", is_public=True)
    response = signed_in(user).get("/console/agents/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'aria-current="page">Agents' in html
    body = "".join(rows(response, "agents-table"))
    assert f'href="/console/agents/{agent.uuid}/"' in body
    assert "strangers-public" in body and "strangers-secret" not in body
    assert len(rows(response, "agents-table")) == 2


def test_agents_search_filter_and_pagination(user: Any) -> None:
    for n in range(27):
        factories.make_agent(user, slug=f"tool-{n:02d}", name=f"Tool {n}")
    factories.make_agent(user, slug="chat", name="Chatty helper", kind="llm",
                         spec={"model": {"provider": "scripted", "name": "echo"}})  # fmt: skip
    client = signed_in(user)

    first = client.get("/console/agents/?q=tool")
    assert len(rows(first, "agents-table")) == 25
    assert "27 agents match" in first.content.decode()
    assert 'href="?q=tool&amp;page=2"' in first.content.decode()  # the filter is kept
    second = client.get("/console/agents/?q=tool&page=2")
    slugs = [re.findall(r"<code>(.*?)</code>", r)[0] for r in rows(second, "agents-table")]
    assert slugs == ["tool-25", "tool-26"]
    by_name = client.get("/console/agents/?q=CHATTY")
    assert len(rows(by_name, "agents-table")) == 1
    llm = client.get("/console/agents/?kind=llm")
    assert [r for r in rows(llm, "agents-table") if "chat" in r] and len(
        rows(llm, "agents-table")
    ) == 1
    assert len(rows(client.get("/console/agents/?kind=bogus"), "agents-table")) == 25  # ignored


def test_agents_empty_states(user: Any) -> None:
    client = signed_in(user)
    empty = client.get("/console/agents/").content.decode()
    assert 'id="agents-empty"' in empty and "No agents yet." in empty
    assert 'href="/console/agents/new/"' in empty
    factories.make_agent(user, slug="one")
    none_match = client.get("/console/agents/?q=zzz").content.decode()
    assert "No agent matches these filters." in none_match and "agents-table" not in none_match


def test_agent_detail_shows_spec_versions_and_actions(user: Any, agent: Any) -> None:
    from sessions.services.agents import agent_update

    agent_update(agent=agent, user=user, spec={"allow_input_command": True, "network": "none"})
    response = signed_in(user).get(f"/console/agents/{agent.uuid}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "&quot;network&quot;: &quot;none&quot;" in html  # pretty-printed, escaped
    assert len(rows(response, "versions-table")) == 2
    assert f'href="/console/agents/{agent.uuid}/edit/"' in html
    assert f'href="/console/sessions/?agent={agent.uuid}"' in html
    assert 'id="delete-agent"' in html and "console/agent-page.js" in html


def test_a_strangers_agent_is_404_and_a_public_one_read_only(user: Any, other_user: Any) -> None:
    secret = factories.make_agent(other_user, slug="secret")
    public = factories.make_agent(other_user, slug="public", is_public=True)
    client = signed_in(user)
    assert client.get(f"/console/agents/{secret.uuid}/").status_code == 404
    assert client.get(f"/console/agents/{secret.uuid}/edit/").status_code == 404
    assert client.get("/console/agents/00000000-0000-0000-0000-000000000000/").status_code == 404

    page = client.get(f"/console/agents/{public.uuid}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="read-only-note"' in html and 'id="delete-agent"' not in html
    assert "/edit/" not in html
    forbidden = client.get(f"/console/agents/{public.uuid}/edit/")
    assert forbidden.status_code == 403
    assert_console_headers(forbidden)
    assert 'id="form-forbidden"' in forbidden.content.decode()
    assert 'id="agent-form"' not in forbidden.content.decode()


def test_a_team_viewer_cannot_edit(user: Any, agent: Any) -> None:
    viewer = factories.make_user("vic")
    factories.add_member(agent.team, viewer, "viewer")
    client = signed_in(viewer)
    assert client.get(f"/console/agents/{agent.uuid}/").status_code == 200
    assert client.get(f"/console/agents/{agent.uuid}/edit/").status_code == 403


def test_agent_form_offers_the_kinds_the_api_accepts(user: Any, agent: Any) -> None:
    from sessions.choices import AgentKind

    client = signed_in(user)
    new = client.get("/console/agents/new/").content.decode()
    assert re.findall(r'<option value="(\w+)"', new) == list(AgentKind.values)
    assert 'id="f-slug"' in new and "readonly" not in new
    assert "console/agent-form.js" in new
    edit = client.get(f"/console/agents/{agent.uuid}/edit/").content.decode()
    assert re.search(r'id="f-slug" name="slug" value="shell" readonly', edit)
    assert "&quot;allow_input_command&quot;: true" in edit


# Sessions ---------------------------------------------------------------------------------------


def test_sessions_list_shows_the_users_teams_sessions_only(
    user: Any, other_user: Any, session: Any
) -> None:
    factories.make_session(other_user, name="strangers-session")
    response = signed_in(user).get("/console/sessions/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'aria-current="page">Sessions' in html
    listed = rows(response, "sessions-table")
    assert len(listed) == 1
    assert f'href="/console/sessions/{session.uuid}/"' in listed[0]
    assert 'data-status="idle"' in listed[0] and "<code>shell</code>" in listed[0]
    assert "strangers-session" not in html


def test_sessions_filters_search_and_pagination(user: Any, agent: Any) -> None:
    other_agent = factories.make_agent(user, slug="other")
    for n in range(26):
        factories.make_session(user, agent, name=f"batch {n:02d}")
    active = factories.make_session(user, other_agent, name="the active one")
    Session.objects.filter(pk=active.pk).update(status="active")
    client = signed_in(user)

    first = client.get("/console/sessions/")
    assert len(rows(first, "sessions-table")) == 25
    assert "the active one" in first.content.decode()  # newest first
    assert len(rows(client.get("/console/sessions/?page=2"), "sessions-table")) == 2
    assert len(rows(client.get("/console/sessions/?q=BATCH"), "sessions-table")) == 25
    assert len(rows(client.get("/console/sessions/?q=batch&page=2"), "sessions-table")) == 1
    only_active = rows(client.get("/console/sessions/?status=active"), "sessions-table")
    assert len(only_active) == 1 and "the active one" in only_active[0]
    by_agent = client.get(f"/console/sessions/?agent={other_agent.uuid}")
    assert len(rows(by_agent, "sessions-table")) == 1
    # The agent is also preselected in the "New session" form (and the filter).
    assert f'<option value="{other_agent.uuid}" selected>other' in by_agent.content.decode()
    assert len(rows(client.get("/console/sessions/?agent=nope&status=x"), "sessions-table")) == 25


def test_sessions_empty_states(user: Any, agent: Any) -> None:
    client = signed_in(user)
    html = client.get("/console/sessions/").content.decode()
    assert 'id="sessions-empty"' in html and "No sessions yet." in html
    assert 'id="new-session-form"' in html and "console/sessions.js" in html
    factories.make_session(user, agent, name="x")
    html = client.get("/console/sessions/?q=nothing-like-it").content.decode()
    assert "No session matches these filters." in html


def test_without_agents_the_new_session_form_points_to_creating_one(user: Any) -> None:
    html = signed_in(user).get("/console/sessions/").content.decode()
    assert 'id="new-session-form"' not in html
    assert 'id="no-agents"' in html and 'href="/console/agents/new/"' in html


# API keys ---------------------------------------------------------------------------------------


def test_api_keys_page_lists_own_keys_without_secrets(user: Any, other_user: Any) -> None:
    from accounts.services import api_key_create, api_key_revoke

    mine, secret = api_key_create(user=user, team=None, name="ci", scopes=["sessions:read"])
    old, _ = api_key_create(user=user, team=None, name="old", scopes=["admin"])
    api_key_revoke(api_key=old)
    api_key_create(user=other_user, team=None, name="strangers-key", scopes=["admin"])
    response = signed_in(user).get("/console/api-keys/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'aria-current="page">API keys' in html
    listed = rows(response, "keys-table")
    assert len(listed) == 2
    assert f"<code>{mine.prefix}</code>" in html and secret not in html
    assert secret.split(".")[-1] not in html
    revoked = next(r for r in listed if "old" in r)
    assert 'data-status="revoked"' in revoked and "data-revoke" not in revoked
    active = next(r for r in listed if "ci" in r)
    assert 'data-status="active"' in active and f'data-revoke="{mine.uuid}"' in active
    assert "strangers-key" not in html
    assert ApiKey.objects.count() == 3
    # Every scope the API accepts is offered.
    from accounts.models import Scope

    assert re.findall(r'name="scopes" value="([^"]+)"', html) == list(Scope.values)


def test_api_keys_empty_state(user: Any) -> None:
    html = signed_in(user).get("/console/api-keys/").content.decode()
    empty = re.search(r'<div class="empty" id="keys-empty"([^>]*)>', html)
    assert empty is not None and "hidden" not in empty.group(1)
    assert re.search(r'id="keys-wrap" hidden|hidden id="keys-wrap"', html)
