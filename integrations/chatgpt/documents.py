"""The documents ChatGPT reads: a GPT's Actions schema per agent, a server-wide schema of the
public agents, and the legacy plugin manifest (docs/integrations/chatgpt.md).

All derive from :func:`integrations.endpoints.openapi.agent_openapi` and follow OpenAI's
limits for Actions: an operation's ``summary``/``description`` at most 300 characters, a
parameter's description at most 700, payloads under 100,000 characters, answers within 45 s
(hence one synchronous JSON answer per call, see :func:`action_result`).
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from django.conf import settings

from integrations.endpoints.openapi import agent_openapi, operations
from integrations.runs import answer_text as runs_answer_text
from sessions.choices import TERMINAL_STATUSES
from sessions.models import Agent, Task

MAX_OPERATION_TEXT = 300  # OpenAI: summary/description of an operation
MAX_PARAMETER_TEXT = 700  # OpenAI: description of a parameter
MAX_PAYLOAD_CHARS = 95_000  # OpenAI: request/response payloads under 100,000 characters
MAX_SERVER_AGENTS = 30  # operations of the server-wide document (one per public agent)
PATH_PREFIX = "/chatgpt/{slug}"
TASK_RESULT_PATH = "/chatgpt/tasks/{task_id}/result"
SHARED_COMPONENTS = ("Error", "ActionResult")

ACTION_RESULT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["status", "task_id", "text"],
    "properties": {
        "status": {
            "type": "string",
            "description": "succeeded, failed, cancelled, timed_out; queued/running/waiting: "
            "not finished yet, call getTaskResult with task_id.",
        },
        "task_id": {"type": "string", "format": "uuid"},
        "session_id": {"type": "string", "format": "uuid"},
        "text": {"type": "string", "description": "The answer as text (or the error message)."},
        "result": {"description": "The agent's full result (JSON), null until finished."},
        "error": {"type": ["object", "null"], "description": "`{code, message}` on failure."},
        "truncated": {"type": "boolean", "description": "The result was too large to include."},
    },
}


def clip(text: str, limit: int) -> str:
    """``text`` on one line-ish, cut to ``limit`` characters (with an ellipsis)."""
    text = re.sub(r"\s+", " ", text or "").strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _json_response(ref: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}},
    }


def _action_responses() -> dict[str, Any]:
    return {
        "200": _json_response("ActionResult", "The run's status and answer."),
        "400": _json_response("Error", "The input does not match the schema."),
        "401": _json_response("Error", "Missing or invalid API key."),
        "404": _json_response("Error", "Unknown agent or operation."),
    }


def task_result_operation() -> dict[str, Any]:
    """``GET /chatgpt/tasks/{task_id}/result`` (``getTaskResult``): a read, not consequential."""
    return {
        "get": {
            "operationId": "getTaskResult",
            "summary": "Get the result of a run that was still running",
            "description": clip(
                "Returns the status and answer of an earlier run by its task_id. Waits up to "
                f"{settings.CHATGPT_MAX_WAIT_S:g} s for it to finish.",
                MAX_OPERATION_TEXT,
            ),
            "parameters": [
                {
                    "name": "task_id",
                    "in": "path",
                    "required": True,
                    "description": "The task_id an earlier call returned.",
                    "schema": {"type": "string"},
                }
            ],
            "responses": _action_responses(),
            "x-openai-isConsequential": False,
        }
    }


def chatgpt_openapi(agent: Agent, *, base_url: str) -> dict[str, Any]:
    """The GPT Actions schema of ``agent``: its operations at ``/chatgpt/{slug}/{name}``
    (``run`` and the declared endpoints) answering :data:`ACTION_RESULT_SCHEMA`, plus
    ``getTaskResult``. Running an agent may change things, so runs are marked
    ``x-openai-isConsequential: true`` (ChatGPT asks before each call); the result read is not.
    """
    doc = agent_openapi(agent, base_url=base_url, paths_prefix=PATH_PREFIX)
    declared = {op["name"]: op for op in operations(agent)}
    for item in doc["paths"].values():
        op = item["post"]
        op.pop("parameters", None)  # ?wait= and Prefer: actions always wait, up to the cap
        op.pop("x-mode", None)
        task_type = op.pop("x-task-type", "run")
        description = declared[op["operationId"]]["description"]
        op["summary"] = clip(op["summary"], MAX_OPERATION_TEXT)
        op["description"] = clip(
            description or f"Runs the agent {agent.name} ({task_type}).", MAX_OPERATION_TEXT
        )
        op["responses"] = _action_responses()
        op["x-openai-isConsequential"] = True
    doc["paths"][TASK_RESULT_PATH] = task_result_operation()
    schemas = doc["components"]["schemas"]
    for name in ("Task", "Session", "EndpointResult"):
        schemas.pop(name, None)
    schemas["ActionResult"] = ACTION_RESULT_SCHEMA
    doc["info"]["description"] = clip(doc["info"]["description"], MAX_OPERATION_TEXT)
    doc["components"]["securitySchemes"]["tokenAuth"]["description"] = (
        "An API key of the Agent Runtime Server (GPT builder: Authentication → API Key → Bearer)."
    )
    return doc


def _rename_components(doc: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Prefix the agent-specific component names of ``doc`` (and their ``$ref``s) so that
    several agents' documents can be merged."""
    schemas = doc["components"]["schemas"]
    renames = {n: f"{prefix}{n}" for n in schemas if n not in SHARED_COMPONENTS}

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
                name = ref.removeprefix("#/components/schemas/")
                if name in renames:
                    node["$ref"] = "#/components/schemas/" + renames[name]
            for value in node.values():
                rewrite(value)
        elif isinstance(node, list):
            for value in node:
                rewrite(value)
        return node

    doc = rewrite(copy.deepcopy(doc))
    rewritten = doc["components"]["schemas"]
    doc["components"]["schemas"] = {renames.get(n, n): s for n, s in rewritten.items()}
    return doc


def server_openapi(agents: list[Agent], *, base_url: str) -> dict[str, Any]:
    """One Actions schema for several agents (the plugin manifest's default ``api.url``): the
    ``run`` operation of each (``operationId`` ``run_<slug>``) plus ``getTaskResult``."""
    paths: dict[str, Any] = {TASK_RESULT_PATH: task_result_operation()}
    schemas: dict[str, Any] = {}
    for agent in agents[:MAX_SERVER_AGENTS]:
        prefix = re.sub(r"[^A-Za-z0-9]", "_", agent.slug)
        doc = _rename_components(chatgpt_openapi(agent, base_url=base_url), prefix + ".")
        run_path = f"/chatgpt/{agent.slug}/run"
        if run_path not in doc["paths"]:
            continue
        operation = doc["paths"][run_path]["post"]
        operation["operationId"] = f"run_{prefix}"
        paths[run_path] = {"post": operation}
        schemas.update(doc["components"]["schemas"])
    return {
        "openapi": "3.1.0",
        "info": {
            "title": settings.CHATGPT_PLUGIN_NAME,
            "version": "1",
            "description": clip(settings.CHATGPT_PLUGIN_DESCRIPTION, MAX_OPERATION_TEXT),
        },
        "servers": [{"url": base_url}],
        "paths": paths,
        "components": {
            "schemas": schemas or {"ActionResult": ACTION_RESULT_SCHEMA},
            "securitySchemes": {"tokenAuth": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"tokenAuth": []}],
    }


def plugin_manifest(*, base_url: str) -> dict[str, Any]:
    """``/.well-known/ai-plugin.json`` (schema_version ``v1``): the server's public agents, or
    the one agent ``CHATGPT_PLUGIN_AGENT``; auth per ``CHATGPT_PLUGIN_AUTH`` (``bearer``:
    ``service_http``; ``oauth``: this server's ``/o/authorize/`` and ``/o/token/``)."""
    name = settings.CHATGPT_PLUGIN_NAME
    slug = settings.CHATGPT_PLUGIN_AGENT
    api_url = f"{base_url}/chatgpt/{slug + '/' if slug else ''}openapi.json"
    tokens = (
        {"verification_tokens": {"openai": settings.CHATGPT_VERIFICATION_TOKEN}}
        if settings.CHATGPT_VERIFICATION_TOKEN
        else {}
    )
    auth: dict[str, Any]
    if settings.CHATGPT_PLUGIN_AUTH == "oauth":
        auth = {
            "type": "oauth",
            "client_url": f"{base_url}/o/authorize/",
            "scope": "agents:read tasks:write sessions:read",
            "authorization_url": f"{base_url}/o/token/",
            "authorization_content_type": "application/x-www-form-urlencoded",
            **tokens,
        }
    else:
        auth = {"type": "service_http", "authorization_type": "bearer", **tokens}
    host = base_url.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
    description = settings.CHATGPT_PLUGIN_DESCRIPTION
    return {
        "schema_version": "v1",
        "name_for_human": name[:20],
        "name_for_model": (re.sub(r"[^A-Za-z0-9_]", "_", name).strip("_").lower() or "agents")[:50],
        "description_for_human": clip(description, 100),
        "description_for_model": clip(
            description + " Each operation runs an agent and answers {status, text, result, "
            "task_id}. Show the user `text`. When status is queued, running or waiting, call "
            "getTaskResult with the task_id until it is finished.",
            8000,
        ),
        "auth": auth,
        "api": {"type": "openapi", "url": api_url},
        "logo_url": settings.CHATGPT_LOGO_URL or f"{base_url}/chatgpt/logo.svg",
        "contact_email": settings.CHATGPT_CONTACT_EMAIL or f"admin@{host}",
        "legal_info_url": settings.CHATGPT_LEGAL_INFO_URL or f"{base_url}/api/docs/",
    }


def answer_text(task: Task) -> str:
    """The text to show for a finished task (:func:`integrations.runs.answer_text`)."""
    return runs_answer_text(task, max_chars=MAX_PAYLOAD_CHARS)


def action_result(task: Task) -> dict[str, Any]:
    """What an action call answers: ``{status, task_id, session_id, text, result, error}``
    (``result`` dropped and ``text`` cut, with ``truncated: true``, past ~95,000 characters)."""
    finished = task.status in TERMINAL_STATUSES
    text = (
        answer_text(task)
        if finished
        else f"The task is {task.status}; call getTaskResult with task_id {task.uuid}."
    )
    body: dict[str, Any] = {
        "status": task.status,
        "task_id": str(task.uuid),
        "session_id": str(task.session.uuid),
        "text": text,
        "result": task.result if finished else None,
        "error": task.error or None,
    }
    if len(json.dumps(body, ensure_ascii=False, default=str)) > MAX_PAYLOAD_CHARS:
        body["result"] = None
        body["text"] = text[: MAX_PAYLOAD_CHARS // 2] + "…"
        body["truncated"] = True
    return body
