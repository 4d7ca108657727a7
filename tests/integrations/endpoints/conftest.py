"""An agent with declared endpoints (a ``command`` agent whose templates echo their ``args``),
and the pieces the live tests share (a real daphne with the inline executor)."""

from __future__ import annotations

from typing import Any

import pytest
from openapi_spec_validator import validate

from sessions.models import Agent
from tests import factories
from tests.transport.conftest import api_token, api_user, daphne_server  # noqa: F401

ARGS = {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 2}
ARGS_BODY = {"type": "object", "required": ["args"], "properties": {"args": ARGS}}
GREETER: dict[str, Any] = {
    "slug": "greeter",
    "name": "Greeter",
    "description": "Greets and naps.",
    "kind": "command",
    "spec": {
        "allow_input_command": False,
        "templates": {"run": 'echo "hello $1"', "generate": 'sleep "$1"; echo "slept $1"'},
    },
    "endpoints": [
        {"name": "greet", "description": "Say hello to someone.", "input_schema": ARGS_BODY},
        {"name": "nap", "task_type": "generate", "mode": "async", "input_schema": ARGS_BODY},
        {"name": "slow", "task_type": "generate", "timeout_s": 0.5, "input_schema": ARGS_BODY},
    ],
}


def make_greeter(owner: Any, **overrides: Any) -> Agent:
    return factories.make_agent(owner, **{**GREETER, **overrides})


@pytest.fixture
def greeter(user: Any) -> Agent:
    return make_greeter(user)


def valid_openapi(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` after openapi-spec-validator accepted it (raises otherwise)."""
    validate(document)
    assert document["openapi"].startswith("3.1")
    return document
