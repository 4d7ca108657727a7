"""MCP servers as tools of the ``llm`` agent, through the official ``mcp`` SDK.

An agent spec lists remote MCP servers (``mcp_servers``, each entry :data:`MCP_SERVER_SCHEMA`).
:class:`McpToolbox` connects to each one over the Streamable HTTP transport
(https://modelcontextprotocol.io/specification/2025-11-25/basic/transports#streamable-http),
runs the ``initialize`` handshake, lists its tools (``tools/list``,
https://modelcontextprotocol.io/specification/2025-11-25/server/tools#listing-tools) and offers
them to the model as ``{server}__{tool}``; a call of one is a ``tools/call``
(https://modelcontextprotocol.io/specification/2025-11-25/server/tools#calling-tools) whose
result becomes text for the model. Nothing here raises at the model: a tool's own failure
(``isError``), a protocol error, a timeout or a lost connection all come back as an error
result, and a server that cannot be reached at start-up only loses its tools (see
:attr:`McpToolbox.errors`). Header values (credentials) never appear in tools, results or errors.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx2
import jsonschema
from mcp import ClientSession, MCPError
from mcp import types as mcp_types
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 60.0  # one tools/call, and the start-up handshake, per server
CLOSE_TIMEOUT_S = 5.0  # closing a session (the DELETE that ends it) may take this long
MAX_LIST_PAGES = 50  # tools/list pages read from one server
CLIENT_INFO = mcp_types.Implementation(name="agent-runtime", version="0.1.0")

MCP_SERVER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,31}$"},
        "url": {"type": "string", "pattern": "^https?://"},
        "command": {
            "type": "array",
            "items": {"type": "string", "minLength": 1},
            "minItems": 1,
        },
        "env": {"type": "object", "additionalProperties": {"type": "string"}},
        "cwd": {"type": "string"},
        "headers": {"type": "object", "additionalProperties": {"type": "string"}},
        "tools": {
            "type": "array",
            "items": {"type": "string", "minLength": 1},
            "uniqueItems": True,
        },
        "timeout_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 3600},
    },
    "required": ["name"],
    # A remote server (url, headers) or a stdio one started in the sandbox (command, env, cwd).
    "oneOf": [
        {
            "required": ["url"],
            "not": {"anyOf": [{"required": [k]} for k in ("command", "env", "cwd")]},
        },
        {
            "required": ["command"],
            "not": {"anyOf": [{"required": [k]} for k in ("url", "headers")]},
        },
    ],
    "additionalProperties": False,
}
"""One entry of the agent spec's ``mcp_servers``: ``name`` (a slug, the prefix of its tools),
``url`` (the Streamable HTTP endpoint, e.g. ``https://host/mcp``), ``headers`` (sent with every
request, e.g. ``Authorization``; never echoed), or ``command`` (argv of a stdio server,
started by the ``stdio`` factory given to :class:`McpToolbox`, in the sandbox) with ``env``
and ``cwd``, ``tools`` (the tool names to expose; all when
absent), ``timeout_s`` (seconds per ``tools/call`` and for the start-up handshake; default 60)."""

_VALIDATOR = jsonschema.Draft202012Validator(MCP_SERVER_SCHEMA)
_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]")


@dataclass
class _Server:
    name: str
    url: str
    headers: dict[str, str]
    command: list[str] | None
    allow: list[str] | None
    timeout_s: float
    session: ClientSession | None = None
    listed: list[mcp_types.Tool] = field(default_factory=list)  # its tools/list answer
    ready: anyio.Event = field(init=False)  # connected, or given up (made in the event loop)
    closing: anyio.Event = field(init=False)  # the box is closing


class McpToolbox:
    """The tools of some MCP servers, for one run of the agent loop.

    ``async with McpToolbox(servers, url_check=guard) as box:`` connects to every server at
    once (``servers``: entries of :data:`MCP_SERVER_SCHEMA`; ``url_check(url)`` is called before
    connecting, counts against ``timeout_s`` and refuses the server by raising; a plain function
    runs in a worker thread, as a DNS lookup would block the loop; a coroutine function is
    awaited, e.g. ``runtime_project.outbound.check_url``). Inside the block:

    * :attr:`tools`: ``[{"name", "description", "parameters"}]``, ``name`` being
      ``{server}__{tool}`` made to match ``^[a-zA-Z0-9_-]{1,64}$`` (OpenAI's rule) and
      ``parameters`` the tool's ``inputSchema``;
    * :attr:`errors`: ``[{"server", "message"}]``, one per server that could not be used (refused
      by ``url_check``, unreachable, no MCP answer within ``timeout_s``) or tool of its ``tools``
      list it does not offer; the other servers work;
    * :meth:`call`: run one tool.

    Each session lives in a task of its own (the SDK's transport and session hold anyio task
    groups, which must be left by the task that entered them), so a server that fails takes
    down only its own tools. Leaving the block ends every session (``DELETE`` of the
    Streamable HTTP session), waiting at most :data:`CLOSE_TIMEOUT_S` seconds for each.

    Raises ``ValueError`` (at construction) for an entry that does not match the schema or a
    server name used twice; the message names the entry, never a header value.
    """

    def __init__(
        self,
        servers: list[dict[str, Any]],
        *,
        url_check: Callable[[str], object] | None = None,
        stdio: Callable[[dict[str, Any]], contextlib.AbstractAsyncContextManager[Any]]
        | None = None,
    ) -> None:
        self._servers: list[_Server] = []
        for index, spec in enumerate(servers):
            error = jsonschema.exceptions.best_match(_VALIDATOR.iter_errors(spec))
            if error is not None:
                where = "/".join(str(part) for part in error.absolute_path) or "entry"
                raise ValueError(f"mcp_servers[{index}]: {where} is invalid ({error.validator})")
            if any(s.name == spec["name"] for s in self._servers):
                raise ValueError(f"mcp_servers[{index}]: name {spec['name']!r} is used twice")
            self._servers.append(
                _Server(
                    name=spec["name"],
                    url=spec.get("url", ""),
                    headers=dict(spec.get("headers") or {}),
                    command=spec.get("command"),
                    allow=spec.get("tools"),
                    timeout_s=float(spec.get("timeout_s", DEFAULT_TIMEOUT_S)),
                )
            )
        self._url_check = url_check
        self._stdio = stdio
        self._entries = {spec["name"]: spec for spec in servers}
        self._routes: dict[str, tuple[_Server, str]] = {}
        self._stack: contextlib.AsyncExitStack | None = None
        self.tools: list[dict[str, Any]] = []
        self.errors: list[dict[str, str]] = []

    async def __aenter__(self) -> McpToolbox:
        async with contextlib.AsyncExitStack() as stack:
            group = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(self._close_all)  # runs first on exit: lets every server task finish
            for server in self._servers:
                server.ready, server.closing = anyio.Event(), anyio.Event()
                group.start_soon(self._serve, server, name=f"mcp:{server.name}")
            for server in self._servers:  # each task sets ready within its timeout_s
                await server.ready.wait()
            for server in self._servers:  # in the spec's order, whoever answered first
                if server.session is not None:
                    self._publish(server)
            order = {server.name: i for i, server in enumerate(self._servers)}
            self.errors.sort(key=lambda error: order[error["server"]])
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        stack, self._stack = self._stack, None
        self._routes.clear()
        if stack is not None:  # a clean close even when the block raised (not when cancelled)
            await stack.aclose()

    def _close_all(self) -> None:
        for server in self._servers:
            server.closing.set()

    async def _serve(self, server: _Server) -> None:
        """Own one server's session: connect, list its tools, wait for the box to close.

        All of it runs in one cancel scope whose deadline is ``timeout_s`` while connecting,
        none while in use and :data:`CLOSE_TIMEOUT_S` while closing."""
        scope = anyio.CancelScope(deadline=anyio.current_time() + server.timeout_s)
        try:
            with scope:
                if server.command is None and (refusal := await self._check_url(server)):
                    self._fail(server, refusal)
                    return
                if server.command is not None and self._stdio is None:
                    self._fail(server, "stdio servers are not available here")
                    return
                async with contextlib.AsyncExitStack() as stack:
                    if server.command is not None and self._stdio is not None:
                        read, write = await stack.enter_async_context(
                            self._stdio(self._entries[server.name])
                        )
                    else:
                        http_timeout = httpx2.Timeout(min(server.timeout_s, 30.0), read=300.0)
                        http = await stack.enter_async_context(
                            create_mcp_http_client(headers=server.headers, timeout=http_timeout)
                        )
                        read, write = await stack.enter_async_context(
                            streamable_http_client(server.url, http_client=http)
                        )
                    session = await stack.enter_async_context(
                        ClientSession(read, write, client_info=CLIENT_INFO)
                    )
                    await session.initialize()
                    server.listed = await _list_tools(session)
                    server.session = session
                    scope.deadline = math.inf
                    server.ready.set()
                    await server.closing.wait()
                    scope.deadline = anyio.current_time() + CLOSE_TIMEOUT_S
            if scope.cancelled_caught and not server.ready.is_set():
                self._fail(server, f"no answer within {server.timeout_s:g}s")
        except BaseException as exc:
            if not _is_failure(exc):  # cancellation, KeyboardInterrupt: not ours to swallow
                raise
            if server.ready.is_set():  # lost while in use: its calls now fail
                logger.warning("MCP server %s: connection lost: %s", server.name, _describe(exc))
            else:
                self._fail(server, _describe(exc))
        finally:
            server.session = None
            server.ready.set()

    async def _check_url(self, server: _Server) -> str | None:
        """Why ``url_check`` refuses the server's URL, or None. A sync check may resolve DNS: it
        runs in a worker thread, abandoned when ``timeout_s`` runs out."""
        check = self._url_check
        try:
            if check is None:
                return None
            if inspect.iscoroutinefunction(check):
                await check(server.url)
            else:
                outcome = await anyio.to_thread.run_sync(check, server.url, abandon_on_cancel=True)
                if inspect.isawaitable(outcome):
                    await outcome
        except Exception as exc:
            return f"url refused: {exc}"
        return None

    def _fail(self, server: _Server, message: str) -> None:
        self.errors.append({"server": server.name, "message": message})

    def _publish(self, server: _Server) -> None:
        by_name = {tool.name: tool for tool in server.listed}
        wanted = server.allow if server.allow is not None else list(by_name)
        missing = [name for name in wanted if name not in by_name]
        if missing:
            self._fail(server, f"tools not offered by the server: {', '.join(missing)}")
        for tool_name in wanted:
            tool = by_name.get(tool_name)
            if tool is None:
                continue
            name = self._unique(_UNSAFE.sub("_", f"{server.name}__{tool_name}")[:64])
            self._routes[name] = (server, tool_name)
            parameters = dict(tool.input_schema) or {"type": "object", "properties": {}}
            parameters.setdefault("type", "object")
            description = (
                tool.description or tool.title or f"{tool_name} (MCP server {server.name})"
            )
            self.tools.append({"name": name, "description": description, "parameters": parameters})

    def _unique(self, name: str) -> str:
        candidate, n = name, 1
        while candidate in self._routes:
            n += 1
            candidate = f"{name[: 64 - len(str(n)) - 1]}_{n}"
        return candidate

    async def call(self, name: str, arguments: dict[str, Any]) -> tuple[str, bool]:
        """Call the tool offered as ``name`` (one of :attr:`tools`) with ``arguments``.

        Returns ``(text, is_error)``: the result's text blocks joined by newlines, other blocks
        summarised (``[image image/png, 1234 bytes]``, ``[resource_link uri]``, ...), the
        ``structuredContent`` as JSON when no block is text; ``is_error`` is the result's
        ``isError``. An unknown name, a lost server, an MCP error response, no answer within the
        server's ``timeout_s`` seconds or any other failure gives ``("error: ...", True)``;
        this never raises (cancellation of the caller excepted)."""
        route = self._routes.get(name)
        if route is None:
            return f"error: unknown MCP tool {name!r}", True
        server, tool = route
        session = server.session
        if session is None:
            return f"error: MCP server {server.name!r} is not connected", True
        try:
            with anyio.fail_after(server.timeout_s + 1):  # the SDK's own timeout comes first
                result = await session.call_tool(
                    tool, arguments, read_timeout_seconds=server.timeout_s
                )
        except (TimeoutError, MCPError) as exc:
            if isinstance(exc, MCPError) and exc.code != mcp_types.REQUEST_TIMEOUT:
                return f"error: {name}: {exc.message}", True
            return f"error: {name} timed out after {server.timeout_s:g}s", True
        except Exception as exc:
            return f"error: {name}: {_describe(exc)}", True
        return render_result(result), bool(result.is_error)


async def _list_tools(session: ClientSession) -> list[mcp_types.Tool]:
    """Every page of ``tools/list`` (at most :data:`MAX_LIST_PAGES`)."""
    result = await session.list_tools()
    tools = list(result.tools)
    for _ in range(MAX_LIST_PAGES - 1):
        if not result.next_cursor:
            break
        params = mcp_types.PaginatedRequestParams(cursor=result.next_cursor)
        result = await session.list_tools(params=params)
        tools += result.tools
    return tools


def _b64_size(data: str) -> int:
    """Bytes encoded by base64 ``data`` (without decoding it)."""
    return len(data.rstrip("=")) * 3 // 4


def render_result(result: mcp_types.CallToolResult) -> str:
    """The text the model reads for a ``tools/call`` result (see :meth:`McpToolbox.call`)."""
    parts: list[str] = []
    has_text = False
    for block in result.content:
        if isinstance(block, mcp_types.TextContent):
            parts.append(block.text)
            has_text = True
        elif isinstance(block, mcp_types.ImageContent | mcp_types.AudioContent):
            parts.append(f"[{block.type} {block.mime_type}, {_b64_size(block.data)} bytes]")
        elif isinstance(block, mcp_types.ResourceLink):
            parts.append(f"[resource_link {block.uri}]")
        elif isinstance(block, mcp_types.EmbeddedResource):
            resource = block.resource
            if isinstance(resource, mcp_types.TextResourceContents):
                parts.append(resource.text)
                has_text = True
            else:
                mime = resource.mime_type or "application/octet-stream"
                parts.append(f"[resource {resource.uri} {mime}, {_b64_size(resource.blob)} bytes]")
        else:  # a content kind newer than this code
            parts.append(f"[{getattr(block, 'type', 'content')}]")
    if not has_text and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False, default=str))
    return "\n".join(parts)


def _is_failure(exc: BaseException) -> bool:
    """An error (maybe inside exception groups), as opposed to a cancellation or an exit."""
    if isinstance(exc, BaseExceptionGroup):
        return (
            exc.subgroup(Exception) is not None
            and exc.subgroup((KeyboardInterrupt, SystemExit)) is None
        )
    return isinstance(exc, Exception)


def _describe(exc: BaseException) -> str:
    """A one-line account of a failure: the first real error inside exception groups."""
    while isinstance(exc, BaseExceptionGroup):
        inner = [e for e in exc.exceptions if not isinstance(e, anyio.get_cancelled_exc_class())]
        exc = (inner or list(exc.exceptions))[0]
    if isinstance(exc, MCPError):
        return f"{exc.message} (MCP error {exc.code})"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
