"""The MCP server: a low-level ``mcp.server.lowlevel.Server`` whose tools are the caller's
agents (``tools/list``) and whose ``tools/call`` runs one as a task (``integrations.runs``).

The caller is the user :mod:`integrations.mcp.asgi` authenticated for the HTTP request that
carried the message (ASGI scope key :data:`USER_KEY`); every list and call is computed for
that user, so nothing here is shared between callers.

``tools/call``:
- starts a task on a new session (``metadata.integration = "mcp"``, ``metadata.mcp_tool``),
- while it runs, sends ``notifications/progress`` when the client gave a ``progressToken``
  (``progress`` = events seen so far; ``message`` = the new text: model tokens, process
  output, tool calls, phases), at most one per ``MCP_PROGRESS_INTERVAL_S``,
- answers the result text (``integrations.runs.answer_text``: for a result without text, e.g.
  a command's ``{"exit_code", ...}``, what the task printed), ``isError`` when the task
  failed, was cancelled or timed out, or stopped to wait for input, with the task's result as
  ``structuredContent`` when it is an object,
- cancels the task when the request is cancelled (``notifications/cancelled``, the response
  stream closed) or when no result came within ``MCP_MAX_WAIT_S``. A server shutdown does not:
  calls stay open while the executor drains (``TASK_DRAIN_S``), and answer the task's end.

An unknown tool is a JSON-RPC error (``-32602``); input that does not fit the agent's schema,
a refused task (quota, concurrency) are tool errors (``isError``) the model can read.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
import mcp_types as types
from channels.db import database_sync_to_async
from django.conf import settings
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError
from mcp.shared.jsonrpc_dispatcher import progress_token_from_params
from mcp_types import INVALID_PARAMS, INVALID_REQUEST

from integrations.mcp import tools
from integrations.runs import Run, answer_text, run_cancel, run_events, run_start
from runtime_project.exceptions import ApplicationError
from sessions.choices import TaskStatus
from sessions.models import Task
from sessions.subscriptions import EventSubscription

logger = logging.getLogger(__name__)

USER_KEY = "runtime.user"
"""ASGI scope key: the authenticated Django user (credential restrictions bound)."""
REQUEST_KEY = "runtime.request"
"""ASGI scope key: a Django ``HttpRequest`` for the same HTTP request (client IP for audit)."""
CLOSED_KEY = "runtime.closed"
"""ASGI scope key: an ``asyncio.Event`` set when the HTTP exchange ended (response sent, or
the client went away)."""

_PROGRESS_TEXT_MAX = 1000  # characters of new text per notification


_server_stopping = False


def server_stopping() -> None:
    """Mark the server as shutting down: calls cut short from now on leave their task to the
    executor's shutdown (by then it already finished, was requeued when retry-safe, or failed
    with ``worker_shutdown``) instead of cancelling it."""
    global _server_stopping
    _server_stopping = True


@dataclass(frozen=True)
class _Caller:
    user: Any
    request: Any
    closed: Any  # asyncio.Event | None


def _caller(ctx: ServerRequestContext[Any, Any]) -> _Caller:
    scope = getattr(ctx.request, "scope", None) or {}
    user = scope.get(USER_KEY)
    if user is None:  # the ASGI gate answers 401 first; this is a transport without it
        raise MCPError(code=INVALID_REQUEST, message="Not authenticated.")
    return _Caller(user=user, request=scope.get(REQUEST_KEY), closed=scope.get(CLOSED_KEY))


def _definitions(user: Any) -> list[types.Tool]:
    return [tools.tool_definition(tool) for tool in tools.tool_catalog(user=user)]


async def list_tools(
    ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
) -> types.ListToolsResult:
    """``tools/list``: the caller's exposed agents, in one page."""
    user = _caller(ctx).user
    return types.ListToolsResult(tools=await database_sync_to_async(_definitions)(user))


async def call_tool(
    ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
) -> types.CallToolResult:
    """``tools/call``: run the agent named by the tool and answer its result."""
    caller = _caller(ctx)
    tool = await database_sync_to_async(tools.tool_find)(user=caller.user, name=params.name)
    if tool is None:
        raise MCPError(code=INVALID_PARAMS, message=f"Unknown tool: {params.name}")
    try:
        run = await database_sync_to_async(run_start)(
            user=caller.user,
            agent=tool.agent,
            integration="mcp",
            input=dict(params.arguments or {}),
            session_name=f"MCP: {tool.name}",
            session_metadata={"mcp_tool": tool.name},
            request=caller.request,
        )
    except ApplicationError as error:
        return tools.text_result(_error_text(error), is_error=True)
    return await _follow(ctx, run, caller.closed)


def _error_text(error: ApplicationError) -> str:
    fields = error.details.get("fields") if isinstance(error.details, dict) else None
    if not fields:
        return f"{error.code}: {error.message}"
    lines = [f"{error.code}: {error.message}"]
    for name, problems in fields.items():
        for problem in problems if isinstance(problems, list) else [problems]:
            if isinstance(problem, dict):
                where = problem.get("path") or "(root)"
                lines.append(f"- {name}/{where}: {problem.get('message', '')}")
            else:
                lines.append(f"- {name}: {problem}")
    return "\n".join(lines)


async def _follow(
    ctx: ServerRequestContext[Any, Any], run: Run, closed: Any
) -> types.CallToolResult:
    """Stream the task's progress until it ends; cancel it if the caller goes away."""
    ref = f"task {run.task.uuid}, session {run.session.uuid}"
    follower = _Follower(ctx)
    try:
        outcome = await _unless_closed(closed, _stream(follower, run))
    except anyio.get_cancelled_exc_class():
        if not _server_stopping:  # else the executor's shutdown settles the task
            with anyio.CancelScope(shield=True):
                await run_cancel(run, reason="The MCP request was cancelled.")
        raise
    except Exception:
        with anyio.CancelScope(shield=True):
            await run_cancel(run, reason="The MCP request failed.")
        raise
    if outcome is None and not _server_stopping:  # nobody is left to read the answer
        with anyio.CancelScope(shield=True):
            await run_cancel(run, reason="The MCP client went away.")
        message = f"The client went away; the task was cancelled ({ref})."
        return tools.text_result(message, is_error=True)
    if outcome is False:
        limit = settings.MCP_MAX_WAIT_S
        await run_cancel(run, reason=f"No result within MCP_MAX_WAIT_S={limit:g} s.")
        return tools.text_result(
            f"No result within {limit:g} s; the task was cancelled ({ref}).", is_error=True
        )
    task = await database_sync_to_async(_reload)(run.task.pk)
    return tools.task_result(task, text=await database_sync_to_async(answer_text)(task))


def _reload(pk: int) -> Task:
    return Task.objects.select_related("session", "agent").get(pk=pk)


async def _unless_closed(closed: Any, work: Any) -> bool | None:
    """Await ``work``; ``None`` if ``closed`` (an ``asyncio.Event``) is set first.

    Handshake-era Streamable HTTP keeps serving a request whose response stream was closed
    (the client may resume it); with no event store nothing could resume it here, so the
    closing of the stream ends the call.
    """
    if closed is None:
        return bool(await work)
    result: list[bool] = []
    async with anyio.create_task_group() as group:

        async def run_work() -> None:
            result.append(await work)
            group.cancel_scope.cancel()

        async def watch() -> None:
            await closed.wait()
            group.cancel_scope.cancel()

        group.start_soon(run_work)
        group.start_soon(watch)
    return result[0] if result else None


@contextlib.asynccontextmanager
async def _subscribed(run: Run) -> AsyncIterator[EventSubscription]:
    """``run_events(run)`` whose unsubscription also runs when the call is cancelled."""
    heartbeat = max(float(settings.MCP_PROGRESS_INTERVAL_S), 2.0)  # also a DB re-check
    subscription = run_events(run, heartbeat_s=heartbeat)
    await subscription.__aenter__()
    try:
        yield subscription
    finally:
        with anyio.CancelScope(shield=True):
            await subscription.__aexit__(None, None, None)


async def _stream(progress: _Follower, run: Run) -> bool:
    """Follow the task's events, reporting progress. True once it ended (or waits for input),
    False when ``MCP_MAX_WAIT_S`` ran out first."""
    with anyio.move_on_after(float(settings.MCP_MAX_WAIT_S)):
        async with _subscribed(run) as subscription:
            async for envelope in subscription:
                if envelope is None:  # heartbeat: a quiet moment to send what is pending
                    await progress.flush()
                    continue
                await progress.add(envelope)
                data = envelope.get("data") or {}
                if envelope["type"] == "task.status" and data.get("status") == TaskStatus.WAITING:
                    return True
        return True
    return False


class _Follower:
    """The ``notifications/progress`` of one call (none without a ``progressToken``)."""

    def __init__(self, ctx: ServerRequestContext[Any, Any]) -> None:
        self.ctx = ctx
        self.seen = 0
        self.reported = 0
        self.pending: list[str] = []
        self.last_sent = 0.0
        self.interval = float(settings.MCP_PROGRESS_INTERVAL_S)
        self.enabled = progress_token_from_params(ctx.params) is not None

    async def add(self, envelope: dict[str, Any]) -> None:
        self.seen += 1
        text = _event_text(envelope)
        if text:
            self.pending.append(text)
        if time.monotonic() - self.last_sent >= self.interval:
            await self.flush()

    async def flush(self) -> None:
        if not self.enabled or self.seen == self.reported:
            return
        message = "".join(self.pending)[-_PROGRESS_TEXT_MAX:] or None
        self.pending.clear()
        self.reported = self.seen
        self.last_sent = time.monotonic()
        try:
            await self.ctx.session.report_progress(self.seen, None, message)
        except Exception:  # the response stream is gone: the call ends another way
            logger.debug("MCP progress notification not delivered", exc_info=True)
            self.enabled = False


def _event_text(envelope: dict[str, Any]) -> str:
    """What a progress message shows of one event (empty: only counted)."""
    kind = envelope.get("type")
    data = envelope.get("data") or {}
    if kind in ("message.delta", "process.stdout", "process.stderr"):
        text = data.get("text")
        return text if isinstance(text, str) else ""
    if kind == "tool.call":
        return f"\n[tool {data.get('name', '?')}]\n"
    if kind == "task.status":
        label = data.get("phase") or data.get("status")
        return f"[{label}]\n" if label else ""
    return ""


def build_server() -> Server[Any]:
    """A new low-level server with the ``tools/list`` and ``tools/call`` handlers."""
    return Server(
        "agent-runtime",
        version="1",
        title="Agent Runtime",
        instructions=(
            "Each tool runs an agent of the agent runtime server as a task and answers its "
            "result; long runs report progress."
        ),
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )
