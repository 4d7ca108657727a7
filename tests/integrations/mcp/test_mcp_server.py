"""``/mcp`` over a real daphne with the official MCP SDK client: agents as tools (scoped to the
caller), a command agent's output, an llm agent's progress notifications, cancellation
reaching the task, and the bearer authentication (API keys, OAuth2 tokens, 401/403)."""

from __future__ import annotations

import contextlib
import http.client
import json
import time
from typing import Any

import anyio
import httpx
import pytest
from mcp import MCPError

from sessions.models import Task
from sessions.runners.scripted_llm import ScriptedLLM, Turn
from tests import procs
from tests.factories import make_agent, make_token, make_user
from tests.integrations.mcp.conftest import mcp_client
from tests.transport.test_oauth2_streams import client_credentials_token

pytestmark = [pytest.mark.transport]

TERMINAL = {"succeeded", "failed", "cancelled", "timed_out"}


def _rest(server: Any, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


def test_tools_are_the_callers_exposed_agents_and_a_command_agent_answers(
    mcp_daphne: Any, api_user: Any, api_token: str
) -> None:
    _check_bearer_authentication_and_scopes(mcp_daphne, api_user, api_token)
    make_agent(api_user, slug="hidden", integrations={"mcp": False})
    make_agent(api_user, slug="typed", description="Greets.", input_schema={
        "type": "object", "properties": {"who": {"type": "string"}}, "required": ["who"],
    })  # fmt: skip
    bob = make_user("bob")
    make_agent(bob, slug="bobs-private")
    make_agent(bob, slug="bobs-public", is_public=True)
    bob_token = make_token(bob)

    async def scenario() -> None:
        for mode in ("auto", "legacy"):  # 2026-07-28 per request, and handshake + session
            async with mcp_client(mcp_daphne.url, api_token, mode=mode) as client:
                tools = {tool.name: tool for tool in (await client.list_tools()).tools}
                assert {"shell", "pytest", "demo-llm", "typed", "bobs-public"} <= set(tools)
                assert "hidden" not in tools and "bobs-private" not in tools
                assert tools["typed"].description == "Greets."
                assert tools["typed"].input_schema["required"] == ["who"]
                # No schema of its own: the kind's (command: a script or argv; llm: a message).
                assert "command" in tools["shell"].input_schema["properties"]
                assert tools["demo-llm"].input_schema["required"] == ["message"]
                assert tools["shell"].title == "Shell"

                result = await client.call_tool("shell", {"command": "echo hi"})
                assert not result.is_error, result
                assert result.content[0].text.strip() == "hi"
                assert isinstance(result.structured_content, dict)

                failed = await client.call_tool("shell", {"command": "echo oops >&2; exit 3"})
                assert failed.is_error and "failed" in failed.content[0].text

                bad = await client.call_tool("typed", {"who": 42})
                assert bad.is_error and "who" in bad.content[0].text

                for name in ("hidden", "bobs-private", "nope"):
                    with pytest.raises(MCPError) as refused:
                        await client.call_tool(name, {})
                    assert "Unknown tool" in refused.value.error.message

        # A handshake-era session belongs to its creator: another user's credential gets 404.
        session_ids: list[str] = []
        async with mcp_client(
            mcp_daphne.url, api_token, mode="legacy", session_ids=session_ids
        ) as client:
            await client.list_tools()
            session_id = session_ids[0]
            body = {"jsonrpc": "2.0", "id": 9, "method": "tools/list"}
            async with httpx.AsyncClient(timeout=30) as http:
                stolen = await http.post(f"{mcp_daphne.url}/mcp", json=body, headers={
                    "Authorization": f"Bearer {bob_token}", "Mcp-Session-Id": session_id,
                    "Accept": "application/json, text/event-stream",
                    "MCP-Protocol-Version": "2025-11-25",
                })  # fmt: skip
            assert stolen.status_code == 404, stolen.text

    anyio.run(scenario)

    with _rest(mcp_daphne, api_token) as rest:
        sessions = rest.get("/api/v1/sessions").json()["results"]
    mcp_sessions = [s for s in sessions if s["metadata"].get("integration") == "mcp"]
    assert {s["metadata"]["mcp_tool"] for s in mcp_sessions} == {"shell"}


def test_an_llm_call_reports_progress_while_the_model_streams(
    mcp_daphne: Any, api_token: str, llm: ScriptedLLM
) -> None:
    with _rest(mcp_daphne, api_token) as rest:
        created = rest.post("/api/v1/agents", json={
            "slug": "chatty", "name": "Chatty", "kind": "llm",
            "spec": {"model": {"base_url": llm.base_url, "name": "scripted-1"}},
        })  # fmt: skip
        assert created.status_code == 201, created.text
    chunks = ["Hel", "lo ", "wor", "ld", "!"]
    llm.add(Turn(chunks=chunks, delay_s=0.3))
    updates: list[tuple[float, float, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        updates.append((time.monotonic(), progress, message))

    async def scenario() -> Any:
        async with mcp_client(mcp_daphne.url, api_token) as client:
            result = await client.call_tool(
                "chatty", {"message": "Say hello."}, progress_callback=on_progress
            )
            return result, time.monotonic()

    result, answered_at = anyio.run(scenario)
    assert not result.is_error, result
    assert result.content[0].text == "Hello world!"
    assert result.structured_content["text"] == "Hello world!"
    # Progress arrived while the model was still streaming, carrying its tokens.
    assert len(updates) >= 2, updates
    assert updates[0][0] < answered_at - 0.5
    assert [p for _, p, _ in updates] == sorted({p for _, p, _ in updates})
    assert "Hello world!" in "".join(m or "" for _, _, m in updates)

    # A question to the user pauses the task: the call says so (isError) and where to answer.
    with _rest(mcp_daphne, api_token) as rest:
        created = rest.post("/api/v1/agents", json={
            "slug": "asker", "name": "Asker", "kind": "llm",
            "spec": {"model": {"base_url": llm.base_url, "name": "scripted-1"},
                     "tools": ["ask_user"]},
        })  # fmt: skip
        assert created.status_code == 201, created.text
    question = json.dumps({"question": "Which colour?"})
    llm.add(Turn(tool_calls=[{"name": "ask_user", "arguments": question}]))

    async def ask() -> Any:
        async with mcp_client(mcp_daphne.url, api_token, mode="legacy") as client:
            return await client.call_tool("asker", {"message": "Paint it."})

    paused = anyio.run(ask)
    assert paused.is_error and "Which colour?" in paused.content[0].text
    assert "/resume" in paused.content[0].text


def test_cancelling_a_call_cancels_its_task(mcp_daphne: Any, api_token: str) -> None:
    rest = _rest(mcp_daphne, api_token)
    seen: set[str] = set()

    def new_mcp_task() -> dict[str, Any] | None:
        for session in rest.get("/api/v1/sessions").json()["results"]:
            if session["metadata"].get("integration") == "mcp" and session["id"] not in seen:
                tasks = rest.get(f"/api/v1/sessions/{session['id']}/tasks").json()["results"]
                if tasks and tasks[0]["status"] == "running":
                    seen.add(session["id"])
                    return dict(tasks[0])
        return None

    async def call_and_give_up(mode: str) -> dict[str, Any]:
        async with (
            mcp_client(mcp_daphne.url, api_token, mode=mode) as client,
            anyio.create_task_group() as group,
        ):
            group.start_soon(client.call_tool, "shell", {"command": "sleep 30"})
            with anyio.fail_after(30):
                while (task := await anyio.to_thread.run_sync(new_mcp_task)) is None:
                    await anyio.sleep(0.2)
            group.cancel_scope.cancel()  # the client gives up on the call
        return task

    # 2026-07-28: the client closes the response stream; handshake era: notifications/cancelled.
    for mode in ("auto", "legacy"):
        started = time.monotonic()
        task = anyio.run(call_and_give_up, mode)
        deadline = time.monotonic() + 20
        while (status := rest.get(f"/api/v1/tasks/{task['id']}").json()["status"]) not in TERMINAL:
            assert time.monotonic() < deadline, status
            time.sleep(0.2)
        assert status == "cancelled", mode
        assert time.monotonic() - started < 25, mode  # not the 30 s of the command

    # Handshake era, the response stream closes without notifications/cancelled.
    headers = {
        "Authorization": f"Bearer {api_token}",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2025-11-25",
    }
    with httpx.Client(base_url=mcp_daphne.url, headers=headers, timeout=30) as raw:
        hello = raw.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                       "clientInfo": {"name": "raw", "version": "1"}}})  # fmt: skip
        assert hello.status_code == 200, hello.text
        raw.headers["Mcp-Session-Id"] = hello.headers["mcp-session-id"]
        assert raw.post("/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"})
        call = json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "shell", "arguments": {"command": "sleep 30"}}})  # fmt: skip
        session_headers = {**raw.headers, "Content-Type": "application/json"}
    # A plain connection: send the call, wait until its task runs, hang up.
    connection = http.client.HTTPConnection(mcp_daphne.url.removeprefix("http://"), timeout=30)
    connection.request("POST", "/mcp", body=call, headers=session_headers)
    deadline = time.monotonic() + 30
    while (task := new_mcp_task()) is None:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    connection.close()
    deadline = time.monotonic() + 20
    while (status := rest.get(f"/api/v1/tasks/{task['id']}").json()["status"]) not in TERMINAL:
        assert time.monotonic() < deadline, status
        time.sleep(0.2)
    assert status == "cancelled"

    # SIGTERM with a call in flight: the executor drains (TASK_DRAIN_S), fails the command
    # (not retry-safe) and the call answers that; daphne stops by itself (exit code 0).
    answers: list[Any] = []

    async def call_during_shutdown() -> None:
        async def call() -> None:
            with contextlib.suppress(Exception):
                answers.append(await client.call_tool("shell", {"command": "sleep 30"}))

        async with (
            mcp_client(mcp_daphne.url, api_token, mode="legacy") as client,
            anyio.create_task_group() as group,
        ):
            group.start_soon(call)
            with anyio.fail_after(30):
                while (task := await anyio.to_thread.run_sync(new_mcp_task)) is None:
                    await anyio.sleep(0.2)
            answers.append(task)
            await anyio.to_thread.run_sync(procs.stop, mcp_daphne.proc)
            group.cancel_scope.cancel()

    with contextlib.suppress(BaseExceptionGroup):  # the client's session ends abruptly
        anyio.run(call_during_shutdown)
    rest.close()
    assert mcp_daphne.proc.returncode == 0
    stopped = Task.objects.get(uuid=answers[0]["id"])
    assert stopped.status == "failed" and stopped.error["code"] == "worker_shutdown"
    if len(answers) > 1:
        assert answers[1].is_error and "shut down" in answers[1].content[0].text


def _check_bearer_authentication_and_scopes(mcp_daphne: Any, api_user: Any, api_token: str) -> None:
    """401 with the RFC 9728 link, 403 for a credential without tasks:write or a foreign
    Origin, and OAuth2 access tokens work like API keys."""
    from tests.api.oauth2_support import create_app

    url = f"{mcp_daphne.url}/mcp"
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    accept = {"Accept": "application/json, text/event-stream"}

    anonymous = httpx.post(url, json=body, headers=accept, timeout=30)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "not_authenticated"
    challenge = anonymous.headers["www-authenticate"]
    metadata_url = challenge.split('resource_metadata="')[1].split('"')[0]
    assert metadata_url == f"{mcp_daphne.url}/.well-known/oauth-protected-resource/mcp"
    metadata = httpx.get(metadata_url, timeout=30).json()
    assert metadata["resource"] == url and metadata["authorization_servers"] == [mcp_daphne.url]

    bad = httpx.post(url, json=body, headers={**accept, "Authorization": "Bearer nope"})
    assert bad.status_code == 401 and 'error="invalid_token"' in bad.headers["www-authenticate"]

    reader = make_token(api_user, scopes=["sessions:read"])
    weak = httpx.post(url, json=body, headers={**accept, "Authorization": f"Bearer {reader}"})
    assert weak.status_code == 403 and weak.json()["error"]["code"] == "insufficient_scope"
    assert 'scope="tasks:write"' in weak.headers["www-authenticate"]

    foreign = httpx.post(url, json=body, headers={
        **accept, "Authorization": f"Bearer {api_token}", "Origin": "https://evil.example",
    })  # fmt: skip
    assert foreign.status_code == 403

    # A browser client on an allowed origin (CORS_ALLOWED_ORIGINS) can discover the OAuth2 flow.
    inspector = {"Origin": "https://inspector.example"}
    preflight = httpx.options(url, headers={**inspector,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type, mcp-protocol-version"})  # fmt: skip
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "https://inspector.example"
    assert "mcp-protocol-version" in preflight.headers["access-control-allow-headers"]
    browser = httpx.post(url, json=body, headers={**accept, **inspector})
    assert browser.status_code == 401
    assert "www-authenticate" in browser.headers["access-control-expose-headers"]

    async def no_token() -> None:
        async with mcp_client(mcp_daphne.url, None) as client:
            await client.list_tools()

    with pytest.raises(BaseExceptionGroup) as refused:  # the SDK client gets the 401
        anyio.run(no_token)
    assert refused.group_contains(MCPError)

    app = create_app("--name", "svc", "--grant", "client-credentials", "--user", "alice")
    oauth_token = client_credentials_token(mcp_daphne, app, "tasks:write")

    async def with_oauth() -> Any:
        async with mcp_client(mcp_daphne.url, oauth_token) as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
            return names, await client.call_tool("shell", {"command": "echo oauth"})

    names, result = anyio.run(with_oauth)
    assert "shell" in names
    assert result.content[0].text.strip() == "oauth"
