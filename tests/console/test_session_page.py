"""The session page and the share view, server side: who may open them, what the page tells its
module (``page-config``), the headers they carry, and the input box per agent kind."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.test import Client

from sessions.models import Session
from sessions.services.sharing import share_link_create, share_link_revoke
from tests import factories

pytestmark = pytest.mark.django_db


def _url(session: Session) -> str:
    return f"/console/sessions/{session.uuid}/"


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _config(html: str) -> dict[str, Any]:
    found = re.search(r'<script id="page-config" type="application/json">(.*?)</script>', html)
    assert found is not None, "no page-config"
    return dict(json.loads(found.group(1)))


def _assert_strict_csp(response: Any) -> None:
    csp = response["Content-Security-Policy"]
    assert "script-src 'self';" in csp and "style-src 'self';" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    html = response.content.decode()
    # No inline script (only JSON data and module files) and no style attributes or tags.
    for tag in re.findall(r"<script\b[^>]*>", html):
        assert 'type="application/json"' in tag or "src=" in tag, tag
    assert "<style" not in html and " style=" not in html


def test_signed_out_visitors_go_to_sign_in(session: Session) -> None:
    response = Client().get(_url(session))
    assert response.status_code == 302
    assert response["Location"] == f"/console/login/?next={_url(session)}"


def test_a_stranger_gets_404(session: Session, other_user: Any) -> None:
    assert _client(other_user).get(_url(session)).status_code == 404
    missing = "/console/sessions/00000000-0000-4000-8000-000000000000/"
    assert _client(other_user).get(missing).status_code == 404


def test_the_owner_gets_the_page_with_its_config_and_input_box(user: Any, session: Session) -> None:
    response = _client(user).get(_url(session))
    assert response.status_code == 200
    _assert_strict_csp(response)
    html = response.content.decode()
    config = _config(html)
    sid = str(session.uuid)
    assert config["session_id"] == sid
    assert config["read_only"] is False and config["can_write"] is True
    assert config["ws_path"] == f"/ws/sessions/{sid}/"
    assert config["events_api"] == f"/api/v1/sessions/{sid}/events"
    assert config["tasks_api"] == f"/api/v1/sessions/{sid}/tasks"
    assert config["files_api"] == f"/api/v1/sessions/{sid}/workspace/files"
    assert config["artifact_url"] == "/api/v1/artifacts/{id}/content"
    assert config["agent"]["kind"] == "command"
    # A command agent that accepts a command: one textarea for it, the JSON editor folded.
    assert config["input"] == {"mode": "task", "fields": [config["input"]["fields"][0]],
                               "others": [], "json_open": False}  # fmt: skip
    assert config["input"]["fields"][0]["name"] == "command"
    assert 'id="task-form"' in html and 'data-input-field="command"' in html
    assert "Debug run (pause before each step)" in html
    # The side panels and the three modules are on the page.
    assert 'id="files-panel"' in html and 'id="debugger-panel"' in html
    for module in ("session.js", "files.js", "debugger.js"):
        assert f'src="/static/console/{module}"' in html


def test_a_viewer_gets_the_page_read_only(session: Session) -> None:
    viewer = factories.make_user("vic")
    factories.add_member(session.team, viewer, "viewer")
    response = _client(viewer).get(_url(session))
    assert response.status_code == 200
    html = response.content.decode()
    config = _config(html)
    assert config["read_only"] is True and config["can_write"] is False
    assert 'id="task-form"' not in html
    assert "data-input-field" not in html and "data-input-json" not in html
    assert "Debug run (pause before each step)" not in html
    assert "read-only" in html


@pytest.mark.parametrize(
    ("kind", "spec", "schema", "expected"),
    [
        ("llm", {"model": {"name": "m"}}, {}, {"mode": "message"}),
        ("python", {}, {}, ["code"]),
        (
            "command",
            {"allow_input_command": False},
            {
                "type": "object",
                "properties": {"cwd": {"type": "string"}, "args": {"type": "array"}},
                "required": ["cwd"],
            },
            ["cwd"],
        ),
        ("workflow", {}, {}, []),
        (
            "command",
            {"architecture": "opencode", "model": {"base_url": "https://m.test/v1", "name": "m"}},
            {},
            ["instructions"],
        ),
    ],
)
def test_the_input_box_follows_the_agent(
    user: Any, kind: str, spec: dict[str, Any], schema: dict[str, Any], expected: Any
) -> None:
    from sessions.models import Agent

    agent = Agent.objects.create(
        slug=f"a-{kind}", name=kind, kind=kind, spec=spec, input_schema=schema,
        owner=user, team=factories.team_of(user),
    )  # fmt: skip
    session = factories.make_session(user, agent)
    html = _client(user).get(_url(session)).content.decode()
    form = _config(html)["input"]
    if isinstance(expected, dict):
        assert form == expected
        assert 'data-input="message"' in html and "data-input-field" not in html
        return
    assert [f["name"] for f in form["fields"]] == expected
    assert form["json_open"] is (not expected)  # no field: the JSON editor is the input
    if kind == "command" and expected == ["cwd"]:
        assert form["others"] == ["args"] and form["fields"][0]["required"] is True
    if expected == ["instructions"]:  # a coding-agent CLI: a task type and what to do
        assert form["fields"][0]["required"] is True and "data-task-type" in html
    assert "data-input-json" in html


def test_share_view_404_for_bad_and_revoked_tokens(user: Any, session: Session) -> None:
    response = Client().get("/console/shared/not-a-real-token/")
    assert response.status_code == 404
    _assert_strict_csp(response)
    assert "Share link not found" in response.content.decode()
    link, token = share_link_create(session=session, user=user)
    share_link_revoke(link=link)
    assert Client().get(f"/console/shared/{token}/").status_code == 404


def test_share_view_without_sign_in(user: Any, session: Session) -> None:
    _, token = share_link_create(session=session, user=user)
    response = Client().get(f"/console/shared/{token}/")
    assert response.status_code == 200
    _assert_strict_csp(response)
    assert response["Referrer-Policy"] == "no-referrer"
    assert "noindex" in response["X-Robots-Tag"]
    html = response.content.decode()
    config = _config(html)
    base = f"/api/v1/shared/{token}"
    assert config["token"] == token and config["read_only"] is True
    assert config["events_api"] == f"{base}/events"
    assert config["stream"] == f"{base}/events/stream"
    assert config["files_api"] == f"{base}/files"
    assert config["artifact_url"] == f"{base}/artifacts/{{id}}/content"
    # Read-only: no input, no debugger; the files panel (read-only) and the timeline.
    assert 'id="task-form"' not in html and 'id="debugger-panel"' not in html
    assert 'id="files-panel"' in html and 'id="timeline"' in html
    assert 'src="/static/console/shared.js"' in html and "debugger.js" not in html
    # The share view's own API answers with the token (what shared.js reads).
    events = Client().get(config["events_api"])
    assert events.status_code == 200 and "events" in events.json()
