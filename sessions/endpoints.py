"""Declarations an agent makes about how it is reached: named HTTP endpoints and per-integration
exposure flags (DESIGN §2, "per-agent exposure flags").

An endpoint is ``POST /api/agents/{slug}/{name}`` (and ``POST /{name}`` on the agent's own host
name when ``AGENT_DOMAIN`` is set). Its body, checked against ``input_schema``, becomes the task
input; ``config.endpoint`` tells the agent which endpoint was called. ``mode: sync`` waits up to
``timeout_s`` seconds for the result (then answers 202 like ``async``); ``async`` answers 202
with the task's URL at once. The shape mirrors a workflow's ``input`` component and an OpenAPI
operation (name → operationId, description → summary, input_schema → requestBody schema).
"""

from __future__ import annotations

from typing import Any

import jsonschema

from runtime_project.exceptions import InvalidInput
from sessions.choices import TaskType

INTEGRATIONS = ("openai", "mcp", "chatgpt")
"""Integrations an agent can be hidden from; each defaults to exposed (they authenticate with
the same credentials as the REST API, so exposure adds no access). Alexa needs a skill binding
of its own (``integrations.alexa``) and is not a flag."""

ENDPOINTS_SCHEMA: dict[str, Any] = {
    "type": "array",
    "maxItems": 50,
    "items": {
        "type": "object",
        "required": ["name"],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,62}$"},
            "description": {"type": "string", "maxLength": 2000},
            "input_schema": {"type": "object"},
            "task_type": {"enum": [choice.value for choice in TaskType]},
            "mode": {"enum": ["sync", "async"]},
            "timeout_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 3600},
        },
    },
}

INTEGRATIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {name: {"type": "boolean"} for name in INTEGRATIONS},
}


def _check(value: Any, schema: dict[str, Any], field: str) -> None:
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(value), key=str)
    if errors:
        messages = [
            f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
            for e in errors[:10]
        ]
        raise InvalidInput(f"Invalid {field}.", details={"fields": {field: messages}})


def validate_endpoints(endpoints: list[dict[str, Any]]) -> None:
    """Check an agent's ``endpoints`` list: shape, unique names, valid input schemas.

    Raises:
        InvalidInput: with ``details.fields.endpoints`` listing what is wrong.
    """
    from sessions.runners.base import validate_json_schema

    _check(endpoints, ENDPOINTS_SCHEMA, "endpoints")
    names = [e["name"] for e in endpoints]
    if len(names) != len(set(names)):
        raise InvalidInput(
            "Endpoint names must be unique.",
            details={"fields": {"endpoints": ["duplicate endpoint name"]}},
        )
    for endpoint in endpoints:
        if endpoint.get("input_schema"):
            validate_json_schema(endpoint["input_schema"], field_name="endpoints")


def validate_integrations(flags: dict[str, Any]) -> None:
    """Check an agent's ``integrations`` flags (known names, booleans).

    Raises:
        InvalidInput: with ``details.fields.integrations``.
    """
    _check(flags, INTEGRATIONS_SCHEMA, "integrations")


def is_exposed(agent: Any, integration: str) -> bool:
    """Whether ``agent`` may be served through ``integration`` (``openai``, ``mcp``,
    ``chatgpt``): its flag, default true."""
    return bool((getattr(agent, "integrations", None) or {}).get(integration, True))


def endpoint_get(agent: Any, name: str) -> dict[str, Any] | None:
    """The declaration of ``agent``'s endpoint ``name`` with defaults filled in, or None."""
    for endpoint in getattr(agent, "endpoints", None) or []:
        if endpoint.get("name") == name:
            return {
                "description": "",
                "input_schema": {},
                "task_type": "run",
                "mode": "sync",
                "timeout_s": 30.0,
                **endpoint,
            }
    return None
