"""The live-server fixtures of tests/transport (a user with the demo agents, their API key)."""

from __future__ import annotations

from tests.transport.conftest import api_token, api_user  # noqa: F401
