"""Built-in tools of the ``llm`` kind, each enabled per agent (``spec.tools``).

Every tool is a JSON Schema (what the model sees) and a coroutine. They run in the session's
sandbox or through the sandbox backend's workspace operations, so paths never leave the
workspace and commands never reach the host; ``http_fetch`` goes through the server's
outbound guard (private and loopback addresses refused unless allowed). Failures are raised as
``ApplicationError`` and become error results for the model, never a crash of the task.

``ask_user`` and ``call_agent`` are declared here but run by the loop (``runner.py``): the
first parks the task in ``waiting``, the second starts a child task.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from runtime_project import outbound
from runtime_project.db import db_call
from runtime_project.exceptions import InvalidInput
from sandboxes import services as sandboxes
from sandboxes.registry import get_backend
from sessions.runners.base import TaskContext

TOOL_OUTPUT_BYTES = 32 * 1024  # what one tool result may hand back to the model

_OBJECT = {"type": "object", "additionalProperties": False}

TOOLS: dict[str, dict[str, Any]] = {
    "shell": {
        "description": "Run a bash command in the session's sandbox (workspace at /workspace).",
        "parameters": {**_OBJECT, "required": ["command"], "properties": {
            "command": {"type": "string", "minLength": 1},
            "timeout_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 600},
        }},
    },
    "python": {
        "description": "Run a Python 3 program in the session's sandbox (cwd /workspace); "
        "returns its exit code and output.",
        "parameters": {**_OBJECT, "required": ["code"], "properties": {
            "code": {"type": "string", "minLength": 1},
            "timeout_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 600},
        }},
    },
    "read_file": {
        "description": "Read a text file of the workspace (path relative to /workspace).",
        "parameters": {**_OBJECT, "required": ["path"], "properties": {
            "path": {"type": "string", "minLength": 1},
        }},
    },
    "write_file": {
        "description": "Create or replace a file of the workspace with the given text.",
        "parameters": {**_OBJECT, "required": ["path", "content"], "properties": {
            "path": {"type": "string", "minLength": 1}, "content": {"type": "string"},
        }},
    },
    "list_files": {
        "description": "List a directory of the workspace ('' for its root).",
        "parameters": {**_OBJECT, "properties": {"path": {"type": "string"}}},
    },
    "apply_patch": {
        "description": "Apply a unified diff (as produced by `diff -u` or `git diff`, paths "
        "relative to the workspace, a/ b/ prefixes allowed) to the workspace files.",
        "parameters": {**_OBJECT, "required": ["patch"], "properties": {
            "patch": {"type": "string", "minLength": 1},
        }},
    },
    "http_fetch": {
        "description": "Fetch a public http(s) URL; returns the status, content type and the "
        "body (text, cut at a size limit).",
        "parameters": {**_OBJECT, "required": ["url"], "properties": {
            "url": {"type": "string", "pattern": "^https?://"},
            "method": {"enum": ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]},
            "headers": {"type": "object", "additionalProperties": {"type": "string"}},
            "body": {"type": "string"},
        }},
    },
    "ask_user": {
        "description": "Ask the user a question and wait for the answer (the task pauses).",
        "parameters": {**_OBJECT, "required": ["question"], "properties": {
            "question": {"type": "string", "minLength": 1},
            "choices": {"type": "array", "items": {"type": "string"}},
        }},
    },
}  # fmt: skip

# Per-tool settings an agent spec may give (``spec.tool_options.<tool>``).
TOOL_OPTIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "shell": {**_OBJECT, "properties": {"timeout_s": {"type": "number", "minimum": 1}}},
        "python": {**_OBJECT, "properties": {"timeout_s": {"type": "number", "minimum": 1}}},
        "http_fetch": {**_OBJECT, "properties": {
            # A restriction (only these hostnames, "*.example.com" for subdomains), never an
            # exception to the outbound guard: that is the operator's OUTBOUND_ALLOWED_HOSTS.
            "only_hosts": {"type": "array", "items": {"type": "string", "minLength": 1}},
            "max_bytes": {"type": "integer", "minimum": 1, "maximum": 10_000_000},
            "timeout_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 300},
            # OAuth connections (integrations/connections) the model may name in `connection`.
            "connections": {"type": "array", "maxItems": 20, "items": {
                "type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"}},
        }},
    },
    "additionalProperties": False,
}  # fmt: skip


def call_agent_tool(agents: list[str]) -> dict[str, Any]:
    """The ``call_agent`` definition for the agents a spec allows (``spec.agents``)."""
    return {
        "description": "Run another agent on this session's workspace and return its result. "
        f"Agents: {', '.join(agents)}.",
        "parameters": {**_OBJECT, "required": ["agent", "input"], "properties": {
            "agent": {"enum": agents},
            "input": {"type": "object", "description": "The agent's task input."},
        }},
    }  # fmt: skip


def tool_schema(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """The definition of built-in tool ``name`` for an agent with ``spec``: ``http_fetch``
    takes a ``connection`` (one of ``tool_options.http_fetch.connections``) when it lists any,
    so the model can only name the connections the agent's author allowed."""
    schema = TOOLS[name]
    options = (spec.get("tool_options") or {}).get(name) or {}
    if name != "http_fetch" or not options.get("connections"):
        return schema
    names = list(options["connections"])
    parameters = schema["parameters"]
    connection = {"enum": names, "description": "Send the request with the user's OAuth token "
                  "for this service (only to that service's API hosts)."}  # fmt: skip
    return {
        "description": schema["description"] + f" Connections: {', '.join(names)}.",
        "parameters": {**parameters,
                       "properties": {**parameters["properties"], "connection": connection}},
    }  # fmt: skip


def _options(ctx: TaskContext, name: str) -> dict[str, Any]:
    options: dict[str, Any] = (ctx.spec.get("tool_options") or {}).get(name) or {}
    return options


async def _exec(ctx: TaskContext, argv: list[str], timeout_s: float, stdin: bytes | None) -> str:
    execution = await sandboxes.sandbox_exec(
        session=ctx.session, argv=argv, timeout_s=timeout_s, stdin=stdin,
        env=ctx.secret_env or None,  # spec.secrets (sessions.runners.secrets)
    )  # fmt: skip

    async def stop_on_request() -> None:
        # Cancelling the task stops the running tool too (its whole process tree).
        await ctx.cancel_requested.wait()
        await execution.terminate(grace_s=ctx.cancel_grace_s)

    watcher = asyncio.ensure_future(stop_on_request())
    out = bytearray()
    code: int | None = None
    try:
        async for event in execution:
            if event.stream == "exit":
                code = event.exit_code
            elif len(out) < TOOL_OUTPUT_BYTES:
                out += event.data
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    if ctx.cancel_requested.is_set():
        return f"error: cancelled (exit_code: {code})\n{out.decode(errors='replace')}"
    return f"exit_code: {code}\n{out.decode(errors='replace')}"


def _timeout(ctx: TaskContext, name: str, args: dict[str, Any]) -> float:
    return float(args.get("timeout_s", _options(ctx, name).get("timeout_s", 120)))


async def run_builtin(ctx: TaskContext, name: str, args: dict[str, Any]) -> str:
    """Run built-in tool ``name`` with checked ``args``; returns the text for the model.

    Raises:
        ApplicationError: the tool could not do it (a path outside the workspace, a refused
            URL, an unavailable sandbox…); its message goes back to the model.
    """
    if name == "shell":
        return await _exec(ctx, ["bash", "-c", args["command"]], _timeout(ctx, name, args), None)
    if name == "python":
        code = args["code"].encode()
        return await _exec(ctx, ["python3", "-"], _timeout(ctx, name, args), code)
    if name == "apply_patch":
        # git apply refuses paths that leave the directory; patch(1) is the fallback where an
        # image has no git. Both run inside the sandbox, on its view of the workspace.
        script = (
            "if command -v git >/dev/null 2>&1; then exec git apply --verbose --recount -; "
            "else exec patch -p1 --forward --batch; fi"
        )
        return await _exec(ctx, ["sh", "-c", script], 60.0, args["patch"].encode())
    if name == "http_fetch":
        return await _http_fetch(ctx, args)
    spec = await db_call(sandboxes.sandbox_spec)(session=ctx.session)
    backend = get_backend()
    if name == "read_file":
        data = await backend.read_file(spec, args["path"], max_bytes=TOOL_OUTPUT_BYTES)
        return data.decode(errors="replace")
    if name == "write_file":
        await backend.write_file(spec, args["path"], args["content"].encode())
        return f"wrote {len(args['content'].encode())} bytes to {args['path']}"
    if name == "list_files":
        entries = await backend.list_files(spec, args.get("path", ""))
        return "\n".join(f"{e.type}\t{e.size}\t{e.path}" for e in entries) or "(empty)"
    raise InvalidInput(f"{name} is not a built-in tool.")


async def _http_fetch(ctx: TaskContext, args: dict[str, Any]) -> str:
    options = _options(ctx, "http_fetch")
    body = args.get("body")
    headers = dict(args.get("headers") or {})
    if args.get("connection") is not None:
        if args["connection"] not in (options.get("connections") or []):
            raise InvalidInput(f"The connection {args['connection']!r} is not allowed here.")
        from integrations.connections.runtime import authorize

        headers = await authorize(ctx, name=args["connection"], url=args["url"], headers=headers)
    result = await outbound.fetch(
        args["url"],
        method=args.get("method", "GET"),
        headers=headers,
        body=body.encode() if body is not None else None,
        max_bytes=int(options.get("max_bytes", 200_000)),
        timeout_s=float(options.get("timeout_s", 20.0)),
        only_hosts=list(options.get("only_hosts", [])),
    )
    text = result.body[:TOOL_OUTPUT_BYTES].decode(errors="replace")
    cut = result.truncated or len(result.body) > TOOL_OUTPUT_BYTES
    head = {"status": result.status, "url": result.url, "content_type": result.content_type}
    return json.dumps(head) + "\n\n" + text + ("\n[truncated]" if cut else "")
