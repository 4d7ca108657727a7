from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from sessions.executors import Executor
from sessions.models import Agent, Session, Task
from sessions.services.agents import agent_create
from sessions.services.sessions import session_create
from sessions.services.tasks import task_create


@pytest.fixture
def owner(db: Any) -> Any:
    return get_user_model().objects.create_user("runner-owner", password="x")


@pytest.fixture
def shell_agent(owner: Any) -> Agent:
    return agent_create(owner=owner, slug="sh", name="sh", kind="command", spec={})


@pytest.fixture
def session(owner: Any, shell_agent: Agent) -> Session:
    return session_create(owner=owner, agent=shell_agent)


@pytest.fixture
def make_task(owner: Any, session: Session) -> Callable[..., Task]:
    def make(command: str | None = None, **kwargs: Any) -> Task:
        data = kwargs.pop("input", {})
        if command is not None:
            data["command"] = command
        target = kwargs.pop("session", session)
        task, _ = task_create(session=target, user=owner, input=data, **kwargs)
        return task

    return make


@pytest.fixture
async def executor(transactional_db: Any) -> AsyncIterator[Executor]:
    """A real executor on the test's event loop (as in the server process). It makes the
    loop's default pool close its threads' database connections when the loop ends
    (``sessions.executors.threads``), so connections do not pile up from test to test."""
    ex = Executor(concurrency=4)
    await ex.start()
    yield ex
    await ex.stop()
