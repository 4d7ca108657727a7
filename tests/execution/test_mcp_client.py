"""The ``llm`` agent's MCP client (:mod:`sessions.runners.llm.mcp`): the official SDK's client
over real Streamable HTTP against a real MCP server (``mcp_server_fixture.py``, the SDK's
``MCPServer`` under uvicorn) in a subprocess. No mocks."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sessions.runners.llm.mcp import MCP_SERVER_SCHEMA, McpToolbox
from tests.procs import free_port, stop, wait_for_port

FIXTURE = Path(__file__).with_name("mcp_server_fixture.py")
SECRET = "Bearer s3cret-token"
ALL_TOOLS = {
    "add", "echo", "fail", "slow", "whoami", "picture", "stats", "dotted_name", "closed_sessions",
}  # fmt: skip


def _start_server() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(FIXTURE), str(port)], stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, proc, timeout=30)
    except BaseException:
        stop(proc)
        raise
    return proc, f"http://127.0.0.1:{port}/mcp"


@pytest.fixture(scope="module")
def mcp_url() -> Iterator[str]:
    """The endpoint of an MCP server shared by this module's tests."""
    proc, url = _start_server()
    yield url
    stop(proc)


@pytest.fixture
def own_server() -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """An MCP server of the test's own (it may kill it)."""
    proc, url = _start_server()
    yield proc, url
    stop(proc)


@pytest.fixture
def closed_url() -> str:
    """A URL where nothing listens (connection refused)."""
    return f"http://127.0.0.1:{free_port()}/mcp"


@pytest.fixture
def mute_url() -> Iterator[str]:
    """A URL that accepts TCP connections (the kernel's backlog) but never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"


def server(url: str, name: str = "fx", **extra: Any) -> dict[str, Any]:
    return {"name": name, "url": url, **extra}


async def test_tools_listed_with_prefixed_names_and_schemas(mcp_url: str) -> None:
    async with McpToolbox([server(mcp_url)]) as box:
        assert box.errors == []
        tools = {tool["name"]: tool for tool in box.tools}
        assert set(tools) == {f"fx__{name}" for name in ALL_TOOLS}
        add = tools["fx__add"]
        assert add["description"] == "Add two integers."
        assert add["parameters"]["type"] == "object"
        assert set(add["parameters"]["properties"]) == {"a", "b"}
        assert add["parameters"]["properties"]["a"]["type"] == "integer"
        assert sorted(add["parameters"]["required"]) == ["a", "b"]


async def test_calls_return_text_and_error_flag(mcp_url: str) -> None:
    async with McpToolbox([server(mcp_url)]) as box:
        assert await box.call("fx__add", {"a": 2, "b": 3}) == ("5", False)
        assert await box.call("fx__echo", {"text": "héllo\nworld"}) == ("héllo\nworld", False)
        text, is_error = await box.call("fx__fail", {})
        assert is_error is True
        assert "this tool always fails" in text
        # a sanitised name routes back to the server's own name
        assert await box.call("fx__dotted_name", {}) == ("dotted", False)


async def test_invalid_arguments_and_unknown_tools_are_errors(mcp_url: str) -> None:
    async with McpToolbox([server(mcp_url)]) as box:
        text, is_error = await box.call("fx__add", {"a": "two"})
        assert is_error is True
        assert "add" in text
        text, is_error = await box.call("fx__nope", {})
        assert (is_error, text.startswith("error: ")) == (True, True)


async def test_non_text_content_is_summarised(mcp_url: str) -> None:
    async with McpToolbox([server(mcp_url)]) as box:
        assert await box.call("fx__picture", {}) == ("[image image/png, 100 bytes]", False)
        text, is_error = await box.call("fx__stats", {})
        assert is_error is False
        assert json.loads(text) == {"count": 3, "ok": True}


async def test_allow_list_hides_other_tools(mcp_url: str) -> None:
    async with McpToolbox([server(mcp_url, tools=["add", "echo"])]) as box:
        assert box.errors == []
        assert sorted(tool["name"] for tool in box.tools) == ["fx__add", "fx__echo"]
        assert await box.call("fx__add", {"a": 1, "b": 1}) == ("2", False)
        text, is_error = await box.call("fx__whoami", {})
        assert is_error is True
        assert "unknown" in text


async def test_allow_list_naming_a_missing_tool_is_reported(mcp_url: str) -> None:
    async with McpToolbox([server(mcp_url, tools=["add", "missing"])]) as box:
        assert [tool["name"] for tool in box.tools] == ["fx__add"]
        assert box.errors == [
            {"server": "fx", "message": "tools not offered by the server: missing"}
        ]


async def test_unreachable_server_is_an_error_and_others_still_work(
    mcp_url: str, closed_url: str
) -> None:
    started = time.monotonic()
    servers = [server(mcp_url), server(closed_url, "down", headers={"Authorization": SECRET})]
    async with McpToolbox(servers) as box:
        assert time.monotonic() - started < 10
        assert [e["server"] for e in box.errors] == ["down"]
        assert "connect" in box.errors[0]["message"].lower()
        assert SECRET not in json.dumps(box.errors)
        assert not any(tool["name"].startswith("down__") for tool in box.tools)
        assert await box.call("fx__add", {"a": 20, "b": 22}) == ("42", False)


async def test_server_that_never_answers_times_out_at_startup(mcp_url: str, mute_url: str) -> None:
    started = time.monotonic()
    async with McpToolbox([server(mute_url, "mute", timeout_s=1), server(mcp_url)]) as box:
        assert time.monotonic() - started < 8
        assert box.errors == [{"server": "mute", "message": "no answer within 1s"}]
        assert await box.call("fx__echo", {"text": "still here"}) == ("still here", False)
    assert time.monotonic() - started < 15


async def test_servers_connect_concurrently_and_keep_the_spec_order(
    mcp_url: str, mute_url: str, closed_url: str
) -> None:
    servers = [
        server(mute_url, "mute1", timeout_s=1.5),
        server(mute_url, "mute2", timeout_s=1.5),
        server(closed_url, "down"),
        server(mcp_url, "up", tools=["echo"]),
        server(mute_url, "mute3", timeout_s=1.5),
    ]
    started = time.monotonic()
    async with McpToolbox(servers) as box:
        assert time.monotonic() - started < 3  # not 3 x 1.5s
        assert [e["server"] for e in box.errors] == ["mute1", "mute2", "down", "mute3"]
        assert [tool["name"] for tool in box.tools] == ["up__echo"]


async def test_slow_tool_times_out_and_the_session_survives(mcp_url: str) -> None:
    async with McpToolbox([server(mcp_url, timeout_s=1)]) as box:
        started = time.monotonic()
        text, is_error = await box.call("fx__slow", {"seconds": 30})
        assert time.monotonic() - started < 5
        assert is_error is True
        assert text == "error: fx__slow timed out after 1s"
        assert await box.call("fx__slow", {"seconds": 0.05}) == ("slept 0.05s", False)
        assert await box.call("fx__add", {"a": 1, "b": 2}) == ("3", False)


async def test_url_check_refusal_stops_the_connection(mcp_url: str) -> None:
    seen: list[str] = []

    def guard(url: str) -> None:
        seen.append(url)
        if "127.0.0.1" in url:
            raise PermissionError("loopback addresses are not allowed")

    async with McpToolbox([server(mcp_url)], url_check=guard) as box:
        assert seen == [mcp_url]
        assert box.tools == []
        assert len(box.errors) == 1
        assert box.errors[0]["server"] == "fx"
        assert "loopback addresses are not allowed" in box.errors[0]["message"]
        assert (await box.call("fx__add", {"a": 1, "b": 2}))[1] is True


async def test_url_check_that_hangs_counts_against_the_timeout(mcp_url: str) -> None:
    def guard(url: str) -> None:
        time.sleep(3)  # a DNS lookup that never ends

    started = time.monotonic()
    async with McpToolbox([server(mcp_url, timeout_s=0.5)], url_check=guard) as box:
        assert time.monotonic() - started < 2
        assert box.errors == [{"server": "fx", "message": "no answer within 0.5s"}]


async def test_async_url_check_that_passes(mcp_url: str) -> None:
    seen: list[str] = []

    async def guard(url: str) -> None:
        seen.append(url)

    async with McpToolbox([server(mcp_url)], url_check=guard) as box:
        assert seen == [mcp_url]
        assert box.errors == []
        assert await box.call("fx__add", {"a": 1, "b": 2}) == ("3", False)


async def test_headers_reach_the_server(mcp_url: str) -> None:
    async with McpToolbox([server(mcp_url, headers={"Authorization": SECRET})]) as box:
        assert await box.call("fx__whoami", {}) == (SECRET, False)
        assert SECRET not in json.dumps(box.tools)
    async with McpToolbox([server(mcp_url)]) as box:
        assert await box.call("fx__whoami", {}) == ("anonymous", False)


async def test_two_servers_are_separate_namespaces(mcp_url: str) -> None:
    servers = [server(mcp_url, "one", tools=["add"]), server(mcp_url, "two", tools=["add"])]
    async with McpToolbox(servers) as box:
        assert sorted(tool["name"] for tool in box.tools) == ["one__add", "two__add"]
        assert await box.call("two__add", {"a": 5, "b": 5}) == ("10", False)


async def test_exit_ends_every_session(mcp_url: str) -> None:
    async with McpToolbox([server(mcp_url, tools=["closed_sessions"])]) as box:
        before = int((await box.call("fx__closed_sessions", {}))[0])
    assert await box.call("fx__closed_sessions", {}) == (
        "error: unknown MCP tool 'fx__closed_sessions'",
        True,
    )
    async with McpToolbox([server(mcp_url, tools=["closed_sessions"])]) as box:
        after = int((await box.call("fx__closed_sessions", {}))[0])
    assert after >= before + 1


async def test_exit_is_clean_when_the_block_raises(mcp_url: str) -> None:
    async def use_and_fail() -> None:
        async with McpToolbox([server(mcp_url)]) as box:
            assert box.tools
            raise KeyError("boom")

    started = time.monotonic()
    with pytest.raises(KeyError):
        await use_and_fail()
    assert time.monotonic() - started < 8


async def test_server_lost_mid_session_gives_error_results(
    own_server: tuple[subprocess.Popen[bytes], str],
) -> None:
    proc, url = own_server
    async with McpToolbox([server(url, timeout_s=5)]) as box:
        assert await box.call("fx__add", {"a": 1, "b": 1}) == ("2", False)
        stop(proc)
        started = time.monotonic()
        text, is_error = await box.call("fx__add", {"a": 1, "b": 1})
        assert is_error is True
        assert text.startswith("error: ")
        assert time.monotonic() - started < 8
        text, is_error = await box.call("fx__add", {"a": 1, "b": 1})
        assert is_error is True


@pytest.mark.parametrize(
    ("entry", "where"),
    [
        ({"name": "Bad-Name", "url": "http://x"}, "name"),
        ({"name": "ok", "url": "ftp://x"}, "url"),
        ({"name": "ok", "url": "http://x", "headers": {"Authorization": 7}}, "headers"),
        ({"name": "ok", "url": "http://x", "extra": 1}, "entry"),
        ({"name": "ok", "url": "http://x", "timeout_s": 0}, "timeout_s"),
    ],
)
def test_invalid_entries_are_refused(entry: dict[str, Any], where: str) -> None:
    with pytest.raises(ValueError, match=where) as caught:
        McpToolbox([entry])
    assert "7" not in str(caught.value)


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        McpToolbox([{"name": "a", "url": "http://x"}, {"name": "a", "url": "http://y"}])


def test_schema_is_strict() -> None:
    import jsonschema

    def valid(entry: dict[str, Any]) -> bool:
        return jsonschema.Draft202012Validator(MCP_SERVER_SCHEMA).is_valid(entry)

    assert valid({"name": "a", "url": "https://h/mcp", "headers": {"Authorization": "x"}})
    assert valid({"name": "a", "command": ["python3", "server.py"], "env": {"K": "v"}})
    assert not valid({"name": "a"})  # neither a URL nor a command
    assert not valid({"name": "a", "url": "https://h/mcp", "command": ["x"]})  # both
    assert not valid({"name": "a", "command": ["x"], "headers": {"A": "b"}})  # HTTP-only key
    assert not valid({"name": "a", "url": "https://h/mcp", "cwd": "x"})  # stdio-only key
    assert not valid({"name": "a", "url": "file:///etc/passwd"})
    assert not valid({"name": "a", "url": "https://h/mcp", "extra": 1})
