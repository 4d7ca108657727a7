"""Routing headers (issue 10, 4b): ``X-FORCE-DEBUGGER`` / ``X-FORCE-AGENT-RUNNER`` pick the module
that serves a run-starting request (``runtime_project.modes``); a process that does not serve it
answers 421 ``module_not_served``; both at once is 400."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from sessions.models import Task
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice() -> Any:
    return factories.make_user("alice")


@pytest.fixture
def auth(alice: Any) -> dict[str, Any]:
    return {"HTTP_AUTHORIZATION": f"Bearer {factories.make_token(alice)}"}


def post_task(session: Any, auth: dict[str, Any], **headers: Any) -> Any:
    return Client().post(
        f"/api/v1/sessions/{session.uuid}/tasks", {"input": {"command": "true"}},
        content_type="application/json", **auth, **headers,
    )  # fmt: skip


def test_a_debugger_process_runs_forced_run_starting_requests_as_debug_runs(
    settings: Any, alice: Any, auth: dict[str, Any]
) -> None:
    session = factories.make_session(alice)
    settings.SERVER_MODE = "debugger"
    assert post_task(session, auth).status_code == 404  # not its module
    forced = post_task(session, auth, HTTP_X_FORCE_DEBUGGER="true")
    assert forced.status_code == 201, forced.content
    assert forced.json()["config"]["debug"] is True
    # Only the run-starting routes: reading sessions is still the agent module's.
    listed = Client().get("/api/v1/sessions", **auth, HTTP_X_FORCE_DEBUGGER="true")
    assert listed.status_code == 404
    # The integrations' run-starting routes too (the view answers, in its own shape).
    chat = Client().post(
        "/v1/chat/completions", {"model": "nope", "messages": []},
        content_type="application/json", **auth, HTTP_X_FORCE_DEBUGGER="true",
    )  # fmt: skip
    assert chat.status_code in (400, 404) and "type" in chat.json()["error"], chat.content
    # Their own switches still apply.
    settings.OPENAI_API_ENABLED = False
    chat = Client().post(
        "/v1/chat/completions", {}, content_type="application/json", **auth,
        HTTP_X_FORCE_DEBUGGER="true",
    )  # fmt: skip
    assert chat.status_code == 404 and chat.json()["error"]["code"] == "not_found"


def test_processes_without_the_forced_module_answer_421(
    settings: Any, alice: Any, auth: dict[str, Any]
) -> None:
    session = factories.make_session(alice)
    for mode, header, module in (
        ("agent", "HTTP_X_FORCE_DEBUGGER", "debugger"),
        ("embodiment", "HTTP_X_FORCE_DEBUGGER", "debugger"),
        ("debugger", "HTTP_X_FORCE_AGENT_RUNNER", "agent"),
        ("embodiment", "HTTP_X_FORCE_AGENT_RUNNER", "agent"),
    ):
        settings.SERVER_MODE = mode
        refused = post_task(session, auth, **{header: "true"})
        assert refused.status_code == 421, (mode, header, refused.content)
        assert refused.json()["error"]["code"] == "module_not_served"
        assert refused.json()["error"]["details"] == {"module": module, "mode": mode}
    assert not Task.objects.exists()
    # Core routes ignore the headers.
    assert Client().get("/api/v1/teams", **auth, HTTP_X_FORCE_DEBUGGER="true").status_code == 200


def test_the_agent_runner_header_makes_a_plain_run(
    settings: Any, alice: Any, auth: dict[str, Any]
) -> None:
    session = factories.make_session(alice)
    settings.SERVER_MODE = "agent"
    plain = post_task(session, auth, HTTP_X_FORCE_AGENT_RUNNER="true", HTTP_X_DEBUG_RUN="true")
    assert plain.status_code == 201, plain.content
    assert plain.json()["config"]["debug"] is False
    # An agent process serves the embodiments' run-starting routes when forced.
    chat = Client().post(
        "/v1/chat/completions", {"model": "nope", "messages": []},
        content_type="application/json", **auth, HTTP_X_FORCE_AGENT_RUNNER="true",
    )  # fmt: skip
    assert "type" in chat.json()["error"], chat.content  # the OpenAI API's error shape
    settings.SERVER_MODE = "all"
    assert post_task(session, auth, HTTP_X_FORCE_DEBUGGER="1").json()["config"]["debug"] is True


def test_both_force_headers_are_400(settings: Any, alice: Any, auth: dict[str, Any]) -> None:
    session = factories.make_session(alice)
    for mode in ("all", "debugger", "agent"):
        settings.SERVER_MODE = mode
        both = post_task(
            session, auth, HTTP_X_FORCE_DEBUGGER="true", HTTP_X_FORCE_AGENT_RUNNER="true"
        )
        assert both.status_code == 400, (mode, both.content)
        assert both.json()["error"]["code"] == "conflicting_headers"
    bad = post_task(session, auth, HTTP_X_FORCE_DEBUGGER="perhaps")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_input"
    assert not Task.objects.exists()
