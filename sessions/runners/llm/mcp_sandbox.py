"""MCP servers over stdio, started inside the session's sandbox.

The ``mcp`` SDK's ``stdio_client`` spawns the server on the host, which would give an agent
spec a way to run any command outside the sandbox. This transport starts it as a background
process of the session sandbox instead (``sandboxes.services.sandbox_start_process``: no
network unless the agent's sandbox allows it, the workspace as its only writable tree) and
speaks the MCP stdio framing over the sandbox's stdin and output stream: one JSON-RPC message
per line (https://modelcontextprotocol.io/specification/2025-11-25/basic/transports#stdio).
It yields the ``(read_stream, write_stream)`` pair ``mcp.ClientSession`` takes, like the SDK's
own transports, and kills the server's process tree when it exits.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import anyio
from mcp import types as mcp_types
from mcp.shared.message import SessionMessage

from sandboxes import services as sandboxes

logger = logging.getLogger(__name__)

MAX_LINE_BYTES = 16 * 1024 * 1024  # one JSON-RPC message; a server sending more is broken


def _parse(line: bytes) -> SessionMessage | Exception:
    try:
        message = mcp_types.jsonrpc_message_adapter.validate_json(line, by_name=False)
    except ValueError as exc:
        return exc  # the session reports it, as the SDK's stdio client does
    return SessionMessage(message)


@contextlib.asynccontextmanager
async def sandbox_stdio(
    session: Any, argv: list[str], *, env: Mapping[str, str] | None = None, cwd: str = ""
) -> AsyncIterator[tuple[Any, Any]]:
    """Start ``argv`` in ``session``'s sandbox and yield ``(read_stream, write_stream)``.

    Raises:
        SandboxError / SandboxUnavailable: the process could not start.
    """
    info = await sandboxes.sandbox_start_process(session=session, argv=argv, cwd=cwd, env=env)
    execution = await sandboxes.sandbox_attach(session=session, process_id=info.process_id)
    read_writer, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_stream, write_reader = anyio.create_memory_object_stream[SessionMessage](0)

    async def reader() -> None:
        buffer = b""
        async with read_writer:
            async for event in execution:
                if event.stream == "stderr":
                    continue  # a server's log, not protocol
                if event.stream == "exit":
                    return  # the session sees the stream end
                *lines, buffer = (buffer + event.data).split(b"\n")
                if len(buffer) > MAX_LINE_BYTES:
                    await read_writer.send(ValueError("an MCP message over the size limit"))
                    return
                for line in lines:
                    if line.strip():
                        await read_writer.send(_parse(line))

    async def writer() -> None:
        async with write_reader:
            async for message in write_reader:
                data = message.message.model_dump_json(by_alias=True, exclude_unset=True)
                await sandboxes.sandbox_write_stdin(
                    session=session, process_id=info.process_id, data=(data + "\n").encode()
                )

    async with anyio.create_task_group() as group:
        group.start_soon(reader)
        group.start_soon(writer)
        try:
            yield read_stream, write_stream
        finally:
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await execution.terminate(grace_s=2.0)
            group.cancel_scope.cancel()
