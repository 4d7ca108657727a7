"""Shared fixtures: personas (``user`` owns things, ``other_user`` is a stranger), API clients
authenticated with a Bearer token, and a ``command`` agent with a session on it."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from sessions.models import Agent, Session
from tests import factories


@pytest.fixture
def user(db: Any) -> Any:
    return factories.make_user("alice")


@pytest.fixture
def other_user(db: Any) -> Any:
    return factories.make_user("mallory")


@pytest.fixture
def token(user: Any) -> str:
    return factories.make_token(user)


def _client(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.fixture
def api_client(token: str) -> APIClient:
    """Authenticated as ``user``."""
    return _client(token)


@pytest.fixture
def other_client(other_user: Any) -> APIClient:
    """Authenticated as ``other_user`` (a stranger to ``user``'s objects)."""
    return _client(factories.make_token(other_user))


@pytest.fixture
def anon_client() -> APIClient:
    return APIClient()


@pytest.fixture
def agent(user: Any) -> Agent:
    return factories.make_agent(
        user, slug="shell", name="Shell", spec={"allow_input_command": True}
    )


@pytest.fixture
def session(user: Any, agent: Agent) -> Session:
    return factories.make_session(user, agent, name="first")
