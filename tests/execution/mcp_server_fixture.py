"""A small MCP server for the MCP client tests, served over Streamable HTTP on 127.0.0.1.

Run: ``python tests/execution/mcp_server_fixture.py PORT``; the endpoint is
``http://127.0.0.1:PORT/mcp``. Built with the official SDK's ``MCPServer`` (``FastMCP`` in
mcp 1.x), served by uvicorn behind a small ASGI wrapper that counts ``DELETE`` requests (a
client ending its Streamable HTTP session).

Tools: ``add(a, b)``, ``echo(text)``, ``fail()`` (raises: a result with ``isError``),
``slow(seconds)`` (sleeps, then answers), ``whoami()`` (the request's ``Authorization``
header), ``picture()`` (one 100-byte PNG block), ``stats()`` (``structuredContent``, no
text), ``dotted.name()`` (a name OpenAI would refuse), ``closed_sessions()`` (``DELETE``s seen).
"""

from __future__ import annotations

import base64
import sys
from typing import Any

import anyio
import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, ImageContent

server = MCPServer("fixture")

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 92).decode()  # 100 bytes once decoded
DELETES = 0


@server.tool(description="Add two integers.")
def add(a: int, b: int) -> int:
    return a + b


@server.tool(description="Return the text unchanged.")
def echo(text: str) -> str:
    return text


@server.tool(description="Always fails.")
def fail() -> str:
    raise ToolError("this tool always fails")


@server.tool(description="Sleep for some seconds, then answer.")
async def slow(seconds: float) -> str:
    await anyio.sleep(seconds)
    return f"slept {seconds:g}s"


@server.tool(description="The Authorization header the request came with.")
def whoami(ctx: Context) -> str:
    headers = ctx.headers or {}
    return headers.get("authorization", "anonymous")


@server.tool(description="A tiny PNG image.")
def picture() -> CallToolResult:
    return CallToolResult(content=[ImageContent(data=PNG, mime_type="image/png")])


@server.tool(description="Structured content only.")
def stats() -> CallToolResult:
    return CallToolResult(content=[], structured_content={"count": 3, "ok": True})


@server.tool(name="dotted.name", description="A tool whose name has a dot.")
def dotted() -> str:
    return "dotted"


@server.tool(description="How many DELETE requests (ended sessions) the server has seen.")
def closed_sessions() -> int:
    return DELETES


def count_deletes(app: Any) -> Any:
    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        global DELETES
        if scope["type"] == "http" and scope["method"] == "DELETE":
            DELETES += 1
        await app(scope, receive, send)

    return wrapped


if __name__ == "__main__":
    app = count_deletes(server.streamable_http_app())
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
