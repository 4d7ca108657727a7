"""The OpenAPI 3.1 document of one agent: its declared endpoints plus the built-in ``run``.

:func:`agent_openapi` is the single builder; ``GET /api/agents/{slug}/openapi.json`` serves it,
the Swagger UI at ``/api/agents/{slug}/docs/`` reads it, the ChatGPT actions document
(``integrations/chatgpt``) and the Postman collection (``integrations/postman``) are derived
from it.

Shape (``paths_prefix`` with ``{slug}`` replaced by the agent's slug; ``""`` on an agent host):

- ``POST {prefix}/run`` (operationId ``run``) — body: ``agent.input_schema``; always present
  unless the agent declares an endpoint named ``run`` (its declaration wins).
- ``POST {prefix}/{name}`` per declared endpoint (operationId = name, summary/description from
  the declaration, body: its ``input_schema``).
- Responses: 200 ``{session, task}`` (finished), 202 the same while still running (with a
  ``Location`` header: the task's REST URL), 400/401/404 the error envelope
  ``{"error": {"code", "message", "details"}}``.
- ``components.securitySchemes.tokenAuth`` (the REST API's name): ``Authorization: Bearer
  <API key or OAuth2 token>``; every operation requires it.

Input schemas are JSON Schema 2020-12 (as OpenAPI 3.1 schemas are); local ``$defs`` are hoisted
to ``components/schemas`` so that ``$ref``s resolve against the document root.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from sessions.endpoints import endpoint_get

OPENAPI_VERSION = "3.1.0"
RUN_OPERATION = "run"

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "description": "snake_case machine-readable code"},
                "message": {"type": "string"},
                "details": {
                    "type": "object",
                    "description": "Validation errors list the fields under `fields`.",
                },
            },
        }
    },
}

TASK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "The task (as `GET /api/v1/tasks/{id}` returns it; abridged here).",
    "required": ["id", "session_id", "status"],
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "session_id": {"type": "string", "format": "uuid"},
        "task_type": {"type": "string"},
        "input": {"type": "object"},
        "config": {"type": "object"},
        "status": {
            "type": "string",
            "enum": [
                "queued",
                "running",
                "waiting",
                "succeeded",
                "failed",
                "cancelled",
                "timed_out",
            ],
        },
        "result": {"description": "The agent's result (kind-specific JSON), null until done."},
        "error": {
            "type": ["object", "null"],
            "description": '`{"code", "message", "details"}` when the task failed.',
        },
        "usage": {"type": "object"},
        "created_at": {"type": "string", "format": "date-time"},
        "finished_at": {"type": ["string", "null"], "format": "date-time"},
    },
}

SESSION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "The session the task ran in (abridged).",
    "required": ["id", "status"],
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "name": {"type": "string"},
        "status": {"type": "string"},
        "metadata": {"type": "object"},
        "created_at": {"type": "string", "format": "date-time"},
    },
}

RESULT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["session", "task"],
    "properties": {
        "session": {"$ref": "#/components/schemas/Session"},
        "task": {"$ref": "#/components/schemas/Task"},
    },
}


def _component_name(text: str) -> str:
    """``summarize-text`` → ``SummarizeText`` (component names: ``^[a-zA-Z0-9._-]+$``)."""
    parts = re.split(r"[^A-Za-z0-9]+", text)
    return "".join(p[:1].upper() + p[1:] for p in parts if p) or "Agent"


def _hoist_defs(schema: dict[str, Any], prefix: str, components: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``schema`` whose ``$defs``/``definitions`` moved to ``components`` (named
    ``{prefix}.{name}``) with the matching local ``$ref``s rewritten; ``$schema``/``$id``
    dropped (they would re-root references, and some clients reject them)."""
    schema = copy.deepcopy(schema)
    renames: dict[str, str] = {}
    for key in ("$defs", "definitions"):
        defs = schema.pop(key, None)
        if isinstance(defs, dict):
            for name in defs:
                renames[f"#/{key}/{name}"] = f"#/components/schemas/{prefix}.{name}"
            for name, sub in defs.items():
                components[f"{prefix}.{name}"] = sub
    schema.pop("$schema", None)
    schema.pop("$id", None)

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                for old, new in renames.items():
                    if ref == old or ref.startswith(old + "/"):
                        node["$ref"] = new + ref[len(old) :]
                        break
            for value in node.values():
                rewrite(value)
        elif isinstance(node, list):
            for value in node:
                rewrite(value)
        return node

    for name in [n for n in components if n.startswith(prefix + ".")]:
        components[name] = rewrite(components[name])
    return rewrite(schema) if renames else schema


def _request_body(schema: dict[str, Any] | None, name: str, components: dict[str, Any]) -> dict:
    body_schema = _hoist_defs(schema or {}, _component_name(name) + "Input", components)
    if not body_schema:
        body_schema = {"type": "object", "description": "Any JSON object (no input schema)."}
    return {"required": True, "content": {"application/json": {"schema": body_schema}}}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _responses() -> dict[str, Any]:
    result = {"application/json": {"schema": {"$ref": "#/components/schemas/EndpointResult"}}}
    return {
        "200": {"description": "The task finished (see task.status, result, error).",
                "content": result},
        "202": {
            "description": (
                "Accepted, still running (async endpoint, `Prefer: respond-async`, or the wait "
                "ended first); poll the `Location` URL."
            ),
            "headers": {
                "Location": {
                    "description": "The task's URL (`GET` it with the same credential).",
                    "schema": {"type": "string"},
                }
            },
            "content": result,
        },
        "400": _error("The body does not match the input schema (`details.fields`)."),
        "401": _error("Missing, invalid, revoked or expired credential."),
        "404": _error("Unknown agent or endpoint (or not visible to you)."),
    }  # fmt: skip


WAIT_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": "wait",
        "in": "query",
        "required": False,
        "description": "Seconds to wait for the result before answering 202 (capped).",
        "schema": {"type": "number", "minimum": 0},
    },
    {
        "name": "Prefer",
        "in": "header",
        "required": False,
        "description": "`respond-async` answers 202 at once; `wait=<seconds>` as `?wait=`.",
        "schema": {"type": "string"},
    },
]


def operations(agent: Any) -> list[dict[str, Any]]:
    """The agent's operations in document order: each a declaration with defaults filled in
    (``name``, ``description``, ``input_schema``, ``task_type``, ``mode``, ``timeout_s``) and
    ``builtin`` (true for ``run`` when the agent does not declare it)."""
    declared = [endpoint_get(agent, e["name"]) for e in (agent.endpoints or [])]
    result: list[dict[str, Any]] = [{**e, "builtin": False} for e in declared if e is not None]
    if not any(e["name"] == RUN_OPERATION for e in result):
        result.insert(
            0,
            {
                "name": RUN_OPERATION,
                "description": agent.description or f"Run the agent {agent.name}.",
                "input_schema": agent.input_schema or {},
                "task_type": "run",
                "mode": "sync",
                "timeout_s": 30.0,
                "builtin": True,
            },
        )
    return result


def _summary(op: dict[str, Any], agent: Any) -> str:
    if op["builtin"]:
        return f"Run {agent.name}"
    first_line = (op["description"] or "").strip().split("\n", 1)[0]
    return (first_line[:120] if first_line else f"Call endpoint {op['name']}").rstrip()


def _description(op: dict[str, Any]) -> str:
    if op["mode"] == "sync":
        mode = f"Mode: `sync` (waits up to {op['timeout_s']:g} s for the result, then 202)."
    else:
        mode = "Mode: `async` (answers 202 at once)."
    return "\n\n".join(filter(None, [(op["description"] or "").strip(), mode]))


def agent_openapi(agent: Any, *, base_url: str, paths_prefix: str = "/api/agents/{slug}") -> dict:
    """The OpenAPI 3.1 document (a JSON-ready dict) of ``agent``'s operations.

    ``base_url``: the absolute server URL (``https://host``, no trailing slash), the only
    ``servers`` entry. ``paths_prefix``: prepended to ``/{operation}``; ``{slug}`` in it is
    replaced by ``agent.slug`` (``""`` for the agent's own host, ``/chatgpt/{slug}`` for
    ChatGPT actions). Reads only the agent's fields (no database access).
    """
    prefix = paths_prefix.replace("{slug}", agent.slug).rstrip("/")
    components: dict[str, Any] = {
        "Error": ERROR_SCHEMA,
        "Task": TASK_SCHEMA,
        "Session": SESSION_SCHEMA,
        "EndpointResult": RESULT_SCHEMA,
    }
    paths: dict[str, Any] = {}
    for op in operations(agent):
        operation: dict[str, Any] = {
            "operationId": op["name"],
            "summary": _summary(op, agent),
            "description": _description(op),
            "parameters": copy.deepcopy(WAIT_PARAMETERS),
            "requestBody": _request_body(op["input_schema"], op["name"], components),
            "responses": _responses(),
            "x-task-type": op["task_type"],
            "x-mode": op["mode"],
        }
        paths[f"{prefix}/{op['name']}"] = {"post": operation}
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": agent.name or agent.slug,
            "version": str(agent.version),
            "description": (agent.description or "").strip()
            or f"Endpoints of the agent `{agent.slug}`.",
        },
        "servers": [{"url": base_url.rstrip("/") or "/"}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "tokenAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key or an OAuth2 access token (scope tasks:write).",
                }
            },
        },
        "security": [{"tokenAuth": []}],
    }
