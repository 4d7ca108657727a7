"""The executor fixtures of tests/execution, for the end-to-end trace tests."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from tests import factories
from tests.execution.conftest import executor, owner  # noqa: F401


@pytest.fixture
def api_client_of() -> Any:
    """``api_client_of(user)``: an API client with a new key of ``user``."""

    def make(user: Any) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {factories.make_token(user)}")
        return client

    return make
