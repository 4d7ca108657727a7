"""The agents a credential may run, as MCP tools, and a finished task as an MCP tool result.

Sync (ORM) helpers for :mod:`integrations.mcp.server`; call them through
``database_sync_to_async``.

Shapes:
- a tool is ``{"name": <agent slug, sanitised>, "title": <agent name>, "description",
  "inputSchema": <the agent's input_schema, else its kind's task input schema>}``;
- a result is ``{"content": [{"type": "text", "text": ...}], "structuredContent": <the task's
  result when it is an object>, "isError": <the task did not succeed>}``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import mcp_types as types

from accounts import access
from sessions import selectors
from sessions.choices import TaskStatus
from sessions.endpoints import is_exposed
from sessions.models import Agent, Task
from sessions.runners import get_runner_class

_NAME_INVALID = re.compile(r"[^A-Za-z0-9_.-]")
_NAME_MAX = 128  # MCP 2025-11-25 "Tool names": 1-128 of [A-Za-z0-9_.-]

_STATUS_WORDS: dict[str, str] = {
    TaskStatus.FAILED: "failed",
    TaskStatus.CANCELLED: "was cancelled",
    TaskStatus.TIMED_OUT: "timed out",
}


@dataclass(frozen=True)
class AgentTool:
    """One agent offered as the MCP tool ``name``."""

    name: str
    agent: Agent


def tool_name(slug: str) -> str:
    """``slug`` as an MCP tool name: characters outside ``[A-Za-z0-9_.-]`` become ``_``, at most
    128 characters."""
    return _NAME_INVALID.sub("_", slug)[:_NAME_MAX] or "agent"


def tool_catalog(*, user: Any) -> list[AgentTool]:
    """The agents ``user`` (with its credential's restrictions) may run through MCP, one per
    tool name, sorted by name.

    The agent behind a name is the one ``sessions.selectors.agent_get`` picks for that slug (the
    user's teams' agent before a public one of another team, then the oldest); it is offered
    only if its ``integrations.mcp`` flag allows (a hidden agent does not let a public namesake
    take its place).
    """
    own = set(access.team_ids(user))
    agents = sorted(
        selectors.agent_list(user=user),
        key=lambda a: (tool_name(a.slug), a.team_id not in own, a.created_at),
    )
    catalog: dict[str, AgentTool] = {}
    for agent in agents:
        name = tool_name(agent.slug)
        if name not in catalog:
            catalog[name] = AgentTool(name=name, agent=agent)
    return [tool for tool in catalog.values() if is_exposed(tool.agent, "mcp")]


def tool_find(*, user: Any, name: str) -> AgentTool | None:
    """The tool ``name`` of ``user``'s catalog, or None (unknown, hidden or not visible)."""
    return next((tool for tool in tool_catalog(user=user) if tool.name == name), None)


def input_schema(agent: Agent) -> dict[str, Any]:
    """The JSON Schema of a task input of ``agent``: its own ``input_schema``, else its kind's
    (``{"message": string}`` for llm, ``command``/``argv``/... for command), with
    ``"type": "object"`` at the root as MCP requires."""
    schema = dict(agent.input_schema or {})
    if not schema:
        try:
            schema = dict(get_runner_class(agent.kind).input_schema)
        except Exception:  # an unknown kind cannot run anyway; still list it
            schema = {}
    if schema.get("type") not in (None, "object"):
        return {"type": "object"}
    return {"type": "object", **schema}


def tool_definition(tool: AgentTool) -> types.Tool:
    agent = tool.agent
    description = agent.description.strip() or f"Runs the agent {agent.name!r} ({agent.kind})."
    return types.Tool(
        name=tool.name,
        title=agent.name,
        description=description,
        input_schema=input_schema(agent),
        annotations=types.ToolAnnotations(title=agent.name, read_only_hint=False),
    )


def text_result(text: str, *, is_error: bool) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=text)], is_error=is_error)


def task_result(task: Task, *, text: str) -> types.CallToolResult:
    """The MCP result of a task that ended, or stopped to wait for input.

    ``text`` is :func:`integrations.runs.answer_text` of the task. A task that did not succeed
    gives ``isError`` with its error message (and its output, when it has some); a waiting task
    names what it waits for and where to answer.
    """
    structured = task.result if isinstance(task.result, dict) and task.result else None
    if task.status == TaskStatus.SUCCEEDED:
        result = text_result(text, is_error=False)
        result.structured_content = structured
        return result
    ref = f"task {task.uuid}, session {task.session.uuid}"
    if task.status == TaskStatus.WAITING:
        pending = task.pending_action or {}
        question = pending.get("question") or pending.get("name") or "input"
        message = (
            f"The agent is waiting for {pending.get('kind', 'input')}: {question}\n"
            f"Answer it with POST /api/v1/tasks/{task.uuid}/resume ({ref})."
        )
        return text_result(message, is_error=True)
    error = task.error if isinstance(task.error, dict) else {}
    word = _STATUS_WORDS.get(task.status, task.status)
    message = f"The task {word}: {error.get('message') or task.status} ({ref})"
    if text and text != error.get("message"):
        message = f"{message}\n\n{text}"
    result = text_result(message, is_error=True)
    result.structured_content = structured
    return result
