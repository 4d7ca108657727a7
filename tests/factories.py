"""Builders for test data, going through the services like real clients do (plain functions:
the project does not depend on factory_boy)."""

from __future__ import annotations

import itertools
from typing import Any

from django.contrib.auth import get_user_model

from sessions.models import Agent, Session, Task
from sessions.services.agents import agent_create
from sessions.services.sessions import session_create
from sessions.services.tasks import task_create

_seq = itertools.count(1)


def make_user(username: str | None = None, **extra: Any) -> Any:
    return get_user_model().objects.create_user(
        username or f"user{next(_seq)}", password="pw-for-tests", **extra
    )


def make_token(user: Any, scopes: list[str] | None = None, team: Any = None, **extra: Any) -> str:
    """A new API key of ``user`` (all scopes, acting in all the user's teams unless told)."""
    from accounts.services import api_key_create

    _, key = api_key_create(
        user=user,
        team=team,
        name="tests",
        scopes=scopes or ["admin"],
        **extra,
    )
    return key


def make_agent(owner: Any, **overrides: Any) -> Agent:
    n = next(_seq)
    fields: dict[str, Any] = {
        "slug": f"agent-{n}",
        "name": f"Agent {n}",
        "kind": "command",
        "spec": {"allow_input_command": True},
    }
    fields.update(overrides)
    return agent_create(owner=owner, **fields)


def make_session(owner: Any, agent: Agent | None = None, **overrides: Any) -> Session:
    return session_create(owner=owner, agent=agent or make_agent(owner), **overrides)


def make_task(session: Session, user: Any | None = None, **overrides: Any) -> Task:
    overrides.setdefault("input", {"command": "true"})
    task, _ = task_create(session=session, user=user or session.owner, **overrides)
    return task


def finish_task(task: Task, status: str = "succeeded", **outcome: Any) -> Task:
    """Play the executor: claim ``task`` (the oldest queued one of its session) and finish it
    with ``status`` and ``result``/``error``/``usage``."""
    from sessions.services.tasks import task_claim_next, task_finish

    claimed = task_claim_next(worker="tests", limit=1, session_id=task.session_id)
    assert [t.pk for t in claimed] == [task.pk], "the task is not next in its session's queue"
    return task_finish(task=claimed[0], status=status, **outcome)


def team_of(user: Any) -> Any:
    """``user``'s personal team."""
    from accounts.selectors import default_team

    return default_team(user=user)


def add_member(team: Any, user: Any, role: str = "member") -> Any:
    """Make ``user`` a member of ``team`` with ``role`` (viewer, member, admin, owner)."""
    from accounts.models import Membership

    membership, _ = Membership.objects.update_or_create(
        team=team, user=user, defaults={"role": role}
    )
    return membership
