"""The browser runtime page's HTTP side: who may open it and the headers it is served with."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.test import Client

from tests import factories


def _url(session: Any) -> str:
    return f"/console/sessions/{session.uuid}/runtime/"


@pytest.fixture
def remote_session(user: Any) -> Any:
    agent = factories.make_agent(
        user, slug="in-browser", kind="remote", spec={"runtime_kind": "python"}
    )
    return factories.make_session(user, agent, name="browser")


def _signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_sign_in_first(remote_session: Any) -> None:
    response = Client().get(_url(remote_session))
    assert response.status_code == 302
    assert response["Location"] == f"/o/login/?next={_url(remote_session)}"


def test_the_page(user: Any, remote_session: Any) -> None:
    response = _signed_in(user).get(_url(remote_session))
    assert response.status_code == 200
    csp = response["Content-Security-Policy"]
    assert "script-src 'self';" in csp and "unsafe-inline" not in csp
    assert response["Cross-Origin-Embedder-Policy"] == "require-corp"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    html = response.content.decode()
    found = re.search(r'<script id="runtime-config" type="application/json">(.*?)</script>', html)
    assert found is not None
    config = json.loads(found.group(1))
    assert config["session_id"] == str(remote_session.uuid)
    assert config["protocol"] == "agent-runtime.runtime.v1"
    assert config["pyodide_index_url"] == "/static/vendor/pyodide/"
    assert config["worker_url"] == "/static/runtimes/pyodide-worker.js"
    assert 'src="/static/runtimes/browser-runtime.js"' in html


def test_strangers_and_viewers_get_404(user: Any, other_user: Any, remote_session: Any) -> None:
    assert _signed_in(other_user).get(_url(remote_session)).status_code == 404
    viewer = factories.make_user("vic")
    factories.add_member(remote_session.team, viewer, "viewer")
    assert _signed_in(viewer).get(_url(remote_session)).status_code == 404
    member = factories.make_user("bob")
    factories.add_member(remote_session.team, member, "member")
    assert _signed_in(member).get(_url(remote_session)).status_code == 200


def test_unknown_and_deleted_sessions_and_methods(user: Any, remote_session: Any) -> None:
    client = _signed_in(user)
    assert client.get("/console/sessions/not-a-uuid/runtime/").status_code == 404
    assert (
        client.get("/console/sessions/00000000-0000-0000-0000-000000000000/runtime/").status_code
        == 404
    )
    assert client.post(_url(remote_session)).status_code == 405
    from sessions.services.sessions import session_delete

    session_delete(session=remote_session)
    assert client.get(_url(remote_session)).status_code == 404
