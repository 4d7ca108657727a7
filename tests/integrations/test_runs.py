"""integrations.runs: where an integration's new session goes, and the answer it shows."""

from __future__ import annotations

from typing import Any

import pytest

from accounts.services import team_create
from integrations.runs import answer_text, run_start
from sessions.services.events import event_append
from tests import factories

pytestmark = pytest.mark.django_db


def test_a_new_session_goes_to_the_agents_team_when_the_caller_may_write_there(user: Any) -> None:
    lab = team_create(user=user, name="Lab", slug="lab")
    agent = factories.make_agent(user, team=lab, slug="lab-echo")

    run = run_start(user=user, agent=agent, integration="mcp", input={"command": "true"})

    assert run.session.team == lab
    assert run.session.metadata["integration"] == "mcp"
    assert run.task.config["integration"] == "mcp"


def test_a_public_agent_of_another_team_runs_in_the_callers_own_team(
    user: Any, other_user: Any
) -> None:
    public = factories.make_agent(other_user, slug="public-echo", is_public=True)

    run = run_start(user=user, agent=public, integration="openai", input={"command": "true"})

    assert run.session.team == factories.team_of(user)
    assert run.session.team != public.team


def test_a_command_answers_with_what_it_printed(user: Any, agent: Any) -> None:
    run = run_start(user=user, agent=agent, integration="chatgpt", input={"command": "true"})
    for text in ("hello ", "world\n"):
        event_append(session=run.session, task=run.task, type="process.stdout", data={"text": text})
    task = factories.finish_task(run.task, result={"exit_code": 0, "duration_ms": 3})

    assert answer_text(task) == "hello world\n"
    assert answer_text(task, max_chars=6) == "world\n"


def test_a_failed_task_answers_with_its_error(user: Any, agent: Any) -> None:
    run = run_start(user=user, agent=agent, integration="chatgpt", input={"command": "true"})
    task = factories.finish_task(
        run.task, status="failed", error={"code": "exit", "message": "exit 3"}
    )

    assert answer_text(task) == "exit 3"
