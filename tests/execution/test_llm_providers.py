"""Model providers of the ``llm`` kind against the scripted server over real HTTP: the real
``openai`` and ``anthropic`` SDKs, no database, no sandbox. Each behaviour is checked for both
wire formats; the conversion to Anthropic's format is checked on what the server received."""

from __future__ import annotations

import asyncio
import http.client
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anthropic
import pytest

from sessions.runners.llm.anthropic_provider import AnthropicProvider
from sessions.runners.llm.providers import (
    ModelReply,
    ModelSettings,
    OpenAIProvider,
    Provider,
    ProviderError,
    provider_for,
)
from sessions.runners.scripted_llm import ScriptedLLM, Turn

SHELL = {
    "name": "shell",
    "description": "Run a shell command.",
    "parameters": {"type": "object", "properties": {"command": {"type": "string"}},
                   "required": ["command"]},
}  # fmt: skip


@pytest.fixture
def llm() -> Iterator[ScriptedLLM]:
    with ScriptedLLM() as server:
        yield server


@pytest.fixture(params=["openai", "anthropic"])
async def provider(request: Any, llm: ScriptedLLM) -> AsyncIterator[Provider]:
    """Built the way the runner builds it (``provider_for``), with one retry."""
    base_url = llm.anthropic_base_url if request.param == "anthropic" else llm.base_url
    model = {"provider": request.param, "base_url": base_url}
    async with provider_for(model, api_key="", max_retries=1) as built:
        yield built


async def complete(
    provider: Provider,
    messages: list[dict[str, Any]] | None = None,
    settings: ModelSettings | None = None,
    *,
    cancel_after: int | None = None,
) -> tuple[ModelReply, list[str]]:
    """One call; returns the reply and the chunks ``on_text`` saw. ``cancel_after``: set the
    cancel event once that many chunks arrived."""
    chunks: list[str] = []
    cancelled = asyncio.Event()

    def on_text(chunk: str) -> None:
        chunks.append(chunk)
        if cancel_after is not None and len(chunks) >= cancel_after:
            cancelled.set()

    reply = await provider.complete(
        messages or [{"role": "user", "content": "hi"}],
        settings or ModelSettings(name="scripted-1"),
        on_text=on_text,
        cancelled=cancelled,
    )
    return reply, chunks


async def test_the_registry_builds_each_provider(llm: ScriptedLLM) -> None:
    openai_ = provider_for({"base_url": llm.base_url}, api_key="", max_retries=0)
    claude = provider_for(
        {"provider": "anthropic", "base_url": llm.anthropic_base_url}, api_key="k", max_retries=0
    )
    assert isinstance(openai_, OpenAIProvider) and isinstance(claude, AnthropicProvider)
    # Tasks on the same endpoint and key share one SDK client (and its warm connections).
    again = provider_for({"base_url": llm.base_url}, api_key="", max_retries=0)
    other_key = provider_for({"base_url": llm.base_url}, api_key="k2", max_retries=0)
    assert isinstance(again, OpenAIProvider) and isinstance(other_key, OpenAIProvider)
    assert again.client is openai_.client and other_key.client is not openai_.client


async def test_text_streams_chunk_by_chunk(provider: Provider, llm: ScriptedLLM) -> None:
    llm.add(Turn(chunks=["Hel", "lo, ", "world."], delay_s=0.05))
    arrivals: list[float] = []
    cancelled = asyncio.Event()

    def on_text(chunk: str) -> None:
        arrivals.append(time.monotonic())

    reply, chunks = await complete(provider)
    assert chunks == ["Hel", "lo, ", "world."]
    assert reply.text == "Hello, world." and reply.tool_calls == []
    llm.add(Turn(chunks=["a", "b", "c"], delay_s=0.1))
    await provider.complete(
        [{"role": "user", "content": "hi"}], ModelSettings(name="m"),
        on_text=on_text, cancelled=cancelled,
    )  # fmt: skip
    assert arrivals[-1] - arrivals[0] >= 0.15  # delivered as they came, not at the end
    assert llm.requests[0]["stream"] is True


async def test_parallel_tool_calls(provider: Provider, llm: ScriptedLLM) -> None:
    first = json.dumps({"command": "ls -la"})
    second = json.dumps({"path": "notes/a.txt", "content": "hi\n"})
    llm.add(Turn(chunks=["Working."], tool_calls=[
        {"name": "shell", "arguments": first}, {"name": "write_file", "arguments": second},
    ]))  # fmt: skip
    reply, chunks = await complete(provider, settings=ModelSettings(name="m", tools=[SHELL]))
    assert reply.text == "Working." and chunks == ["Working."]
    assert [(c["name"], c["arguments"]) for c in reply.tool_calls] == [
        ("shell", first), ("write_file", second),
    ]  # fmt: skip
    ids = [c["id"] for c in reply.tool_calls]
    assert all(ids) and len(set(ids)) == 2


async def test_malformed_arguments_come_back_as_sent(provider: Provider, llm: ScriptedLLM) -> None:
    llm.add(Turn(tool_calls=[{"name": "shell", "arguments": '{"cmd": 1'}]))
    reply, _ = await complete(provider)
    assert reply.tool_calls[0]["arguments"] == '{"cmd": 1'  # the loop reports it, not us


async def test_usage_is_mapped(provider: Provider, llm: ScriptedLLM) -> None:
    llm.add(Turn(chunks=["x"], usage={"prompt_tokens": 11, "completion_tokens": 3}))
    reply, _ = await complete(provider)
    assert reply.usage == {"prompt_tokens": 11, "completion_tokens": 3}


async def test_429_is_retried(provider: Provider, llm: ScriptedLLM) -> None:
    llm.add(Turn(status=429, retry_after_s=0.1), Turn(chunks=["ok"]))
    reply, _ = await complete(provider)
    assert reply.text == "ok" and len(llm.requests) == 2


async def test_400_fails_at_once(provider: Provider, llm: ScriptedLLM) -> None:
    llm.add(Turn(status=400), Turn(chunks=["never"]))
    with pytest.raises(ProviderError) as caught:
        await complete(provider)
    assert caught.value.status == 400 and "scripted HTTP 400" in caught.value.message
    assert len(llm.requests) == 1


async def test_mid_stream_error(provider: Provider, llm: ScriptedLLM) -> None:
    llm.add(Turn(chunks=["partial "], stream_error="the model fell over"), Turn(chunks=["no"]))
    seen: list[str] = []
    with pytest.raises(ProviderError) as caught:
        await provider.complete(
            [{"role": "user", "content": "hi"}], ModelSettings(name="m"),
            on_text=seen.append, cancelled=asyncio.Event(),
        )  # fmt: skip
    assert caught.value.status is None and "the model fell over" in caught.value.message
    assert seen == ["partial "] and len(llm.requests) == 1  # a started stream is not retried


async def test_cancel_returns_early_with_partial_text(provider: Provider, llm: ScriptedLLM) -> None:
    llm.add(Turn(chunks=[f"token{i} " for i in range(40)], delay_s=0.1))
    started = time.monotonic()
    reply, chunks = await complete(provider, cancel_after=1)
    assert time.monotonic() - started < 2  # the whole script takes over 4 s
    assert chunks == ["token0 "] and reply.text == "token0 " and reply.tool_calls == []


async def test_anthropic_receives_its_own_format(llm: ScriptedLLM) -> None:
    conversation: list[dict[str, Any]] = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "List, then read."},
        {"role": "assistant", "content": "Looking.", "tool_calls": [
            {"id": "call_a", "type": "function",
             "function": {"name": "shell", "arguments": '{"command": "ls"}'}},
            {"id": "call_b", "type": "function",
             "function": {"name": "shell", "arguments": '{"command": "cat a.txt"}'}},
        ]},
        {"role": "tool", "tool_call_id": "call_a", "content": "a.txt\n"},
        {"role": "tool", "tool_call_id": "call_b", "content": "hello\n"},
        {"role": "user", "content": "Summarise."},
    ]  # fmt: skip
    settings = ModelSettings(name="claude-x", tools=[SHELL], parallel_tool_calls=False,
                             temperature=0.3)  # fmt: skip
    llm.add(Turn(chunks=["Done."]), Turn(chunks=["Again."]))
    async with AnthropicProvider(base_url=llm.anthropic_base_url, api_key="") as provider:
        reply, _ = await complete(provider, conversation, settings)
        await complete(provider, conversation[1:2], ModelSettings(name="m", max_tokens=50))
    assert reply.text == "Done."
    sent, second = llm.requests
    assert (sent["model"], sent["max_tokens"], sent["stream"]) == ("claude-x", 4096, True)
    assert sent["system"] == "You are terse."
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
    assert sent["messages"][0]["content"] == [{"type": "text", "text": "List, then read."}]
    assert sent["messages"][1]["content"] == [
        {"type": "text", "text": "Looking."},
        {"type": "tool_use", "id": "call_a", "name": "shell", "input": {"command": "ls"}},
        {"type": "tool_use", "id": "call_b", "name": "shell", "input": {"command": "cat a.txt"}},
    ]
    assert sent["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "call_a", "content": "a.txt\n"},
        {"type": "tool_result", "tool_use_id": "call_b", "content": "hello\n"},
        {"type": "text", "text": "Summarise."},
    ]
    assert sent["tools"] == [{"name": "shell", "description": "Run a shell command.",
                              "input_schema": SHELL["parameters"]}]  # fmt: skip
    assert sent["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    assert "temperature" not in sent  # API version 2026-10-21 rejects sampling parameters
    assert second["max_tokens"] == 50
    assert not {"system", "tools", "tool_choice"} & set(second)


async def test_anthropic_repairs_what_it_cannot_send(llm: ScriptedLLM) -> None:
    conversation: list[dict[str, Any]] = [
        {"role": "user", "content": "one"},
        {"role": "user", "content": "two"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_x", "type": "function",
             "function": {"name": "shell", "arguments": '{"cmd": 1'}},
        ]},
        {"role": "tool", "tool_call_id": "call_x", "content": ""},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": "three"},
    ]  # fmt: skip
    llm.add(Turn(tool_calls=[{"name": "list_files", "arguments": ""}]))
    async with AnthropicProvider(base_url=llm.anthropic_base_url, api_key="") as provider:
        reply, _ = await complete(provider, conversation)
    assert reply.tool_calls[0]["arguments"] == "{}"  # a tool_use with no input pieces
    assert llm.requests[0]["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "one"},
                                     {"type": "text", "text": "two"}]},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "call_x", "name": "shell", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_x"},
                                     {"type": "text", "text": "three"}]},
    ]  # fmt: skip


async def test_scripted_anthropic_non_streaming_and_routes(llm: ScriptedLLM) -> None:
    llm.add(Turn(chunks=["Hi ", "there."], tool_calls=[{"name": "shell", "arguments": '{"a": 1}'}]))
    async with anthropic.AsyncAnthropic(base_url=llm.anthropic_base_url, api_key="k") as client:
        message = await client.messages.create(
            model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
    assert [block.type for block in message.content] == ["text", "tool_use"]
    assert message.stop_reason == "tool_use" and message.usage.input_tokens == 7
    connection = http.client.HTTPConnection(llm.anthropic_base_url.removeprefix("http://"))
    connection.request("POST", "/v2/elsewhere", body="{}")
    assert connection.getresponse().status == 404
    connection.close()
    assert len(llm.requests) == 1  # an unknown path consumes no turn
