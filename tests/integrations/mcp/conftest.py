"""A real daphne serving ``/mcp``, users with agents of their own, and an MCP SDK client
(``mcp.Client`` over ``streamable_http_client`` with the ``Authorization`` header)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests import procs
from tests.transport.conftest import DaphneServer, api_token, api_user  # noqa: F401


@pytest.fixture
def mcp_daphne(transactional_db: Any, tmp_path: Path) -> Iterator[DaphneServer]:
    """A daphne whose llm agents may reach the scripted model on loopback; checks that it stops
    on SIGTERM by itself (no kill) after serving MCP."""
    port = procs.free_port()
    log = tmp_path / "daphne.log"
    proc = procs.start_daphne(
        port,
        log,
        STREAM_HEARTBEAT_S=1,
        LLM_ENDPOINT_ALLOWED_HOSTS="127.0.0.1",
        MCP_PROGRESS_INTERVAL_S="0.2",
        TASK_DRAIN_S="1",
        CORS_ALLOWED_ORIGINS="https://inspector.example",
    )
    server = DaphneServer(url=f"http://127.0.0.1:{port}", ws_url=f"ws://127.0.0.1:{port}", log=log)
    server.proc = proc  # type: ignore[attr-defined]  # for tests that stop it themselves
    try:
        yield server
    finally:
        procs.stop(proc, timeout=15)
    assert proc.returncode == 0, f"daphne did not stop on SIGTERM:\n{server.read_log()[-3000:]}"


@contextlib.asynccontextmanager
async def mcp_client(
    url: str, token: str | None, *, mode: str = "auto", session_ids: list[str] | None = None
) -> AsyncIterator[Client]:
    """An MCP client of ``<url>/mcp`` sending ``Authorization: Bearer <token>``; ``mode``
    ``auto`` speaks the 2026-07-28 per-request protocol, ``legacy`` the initialize handshake
    with a Streamable HTTP session (whose ``Mcp-Session-Id`` is appended to ``session_ids``)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    timeout = httpx2.Timeout(30, read=120)

    async def record(response: httpx2.Response) -> None:
        session_id = response.headers.get("mcp-session-id")
        if session_ids is not None and session_id and session_id not in session_ids:
            session_ids.append(session_id)

    hooks = {"response": [record]}
    async with httpx2.AsyncClient(headers=headers, timeout=timeout, event_hooks=hooks) as http:
        transport = streamable_http_client(f"{url}/mcp", http_client=http)
        async with Client(transport, mode=mode) as client:
            yield client
