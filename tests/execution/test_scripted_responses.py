"""The scripted model server's OpenAI Responses dialect (``POST /v1/responses``), through the
official ``openai`` SDK over real HTTP on loopback."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterable, Iterator
from typing import Any

import openai
import pytest

from sessions.runners.scripted_llm import ScriptedLLM, Turn

APPLY_PATCH: Any = {"type": "custom", "name": "apply_patch", "description": "Edit files."}
SHELL: Any = {
    "type": "function", "name": "exec_command", "description": "Run a command.",
    "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}},
}  # fmt: skip


@pytest.fixture
def llm() -> Iterator[ScriptedLLM]:
    with ScriptedLLM() as server:
        yield server


def _client(llm: ScriptedLLM) -> openai.OpenAI:
    return openai.OpenAI(base_url=llm.base_url, api_key="sk-test", max_retries=0, timeout=10)


def _events(stream: Iterable[Any]) -> list[Any]:
    """The streamed events, untyped (the SDK's event union has no common ``delta``/``item``)."""
    return list(stream)


def test_streamed_text_deltas_and_completed_usage(llm: ScriptedLLM) -> None:
    llm.add(Turn(chunks=["Hel", "lo ", "world"], delay_s=0.01,
                 usage={"prompt_tokens": 11, "completion_tokens": 3}))  # fmt: skip
    events = _events(_client(llm).responses.create(model="scripted-1", input="hi", stream=True))

    types = [event.type for event in events]
    assert types == [
        "response.created", "response.in_progress", "response.output_item.added",
        "response.content_part.added", "response.output_text.delta",
        "response.output_text.delta", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done",
        "response.output_item.done", "response.completed",
    ]  # fmt: skip
    assert [event.sequence_number for event in events] == list(range(len(events)))
    created = events[0]
    assert created.type == "response.created"
    assert created.response.status == "in_progress" and created.response.output == []
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert deltas == ["Hel", "lo ", "world"]
    done = events[-1]
    assert done.type == "response.completed"
    assert done.response.status == "completed" and done.response.id == created.response.id
    assert done.response.output_text == "Hello world"
    usage = done.response.usage
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (11, 3, 14)
    assert usage.input_tokens_details.cached_tokens == 0
    assert usage.output_tokens_details.reasoning_tokens == 0


def test_stream_helper_accumulates_final_response(llm: ScriptedLLM) -> None:
    # The SDK's ``responses.stream`` checks the event order as it builds the response.
    llm.add(
        Turn(chunks=["a", "b"], tool_calls=[{"name": "exec_command", "arguments": '{"cmd":"ls"}'}])
    )
    with _client(llm).responses.stream(model="m", input="hi", tools=[SHELL]) as stream:
        final = stream.get_final_response()
    assert final.output_text == "ab"
    assert [item.type for item in final.output] == ["message", "function_call"]


def test_non_streaming_response(llm: ScriptedLLM) -> None:
    llm.add(Turn(chunks=["Hello", " there"]))
    response = _client(llm).responses.create(model="scripted-1", input="hi")
    assert response.object == "response" and response.status == "completed"
    assert response.output_text == "Hello there"
    assert response.model == "scripted-1"
    assert response.usage is not None and response.usage.total_tokens == 12


def test_tool_call_gives_function_call_item(llm: ScriptedLLM) -> None:
    llm.add(Turn(tool_calls=[{"name": "exec_command", "arguments": '{"cmd": "ls -la"}'}]))
    events = _events(_client(llm).responses.create(
        model="m", input="list", tools=[SHELL], stream=True
    ))  # fmt: skip
    pieces = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    assert "".join(pieces) == '{"cmd": "ls -la"}' and len(pieces) == 2
    done = [e for e in events if e.type == "response.output_item.done"]
    assert len(done) == 1
    item = done[0].item
    assert item.type == "function_call"
    assert (item.name, item.arguments, item.status) == (
        "exec_command",
        '{"cmd": "ls -la"}',
        "completed",
    )
    assert item.call_id
    completed = events[-1]
    assert completed.type == "response.completed"
    assert [i.type for i in completed.response.output] == ["function_call"]

    llm.add(Turn(tool_calls=[{"name": "exec_command", "arguments": "{}"}]))
    response = _client(llm).responses.create(model="m", input="again")
    assert response.output[0].type == "function_call"
    assert response.output[0].name == "exec_command"


def test_apply_patch_custom_tool_gives_custom_tool_call(llm: ScriptedLLM) -> None:
    patch = "*** Begin Patch\n*** Add File: a.txt\n+hi\n*** End Patch\n"
    llm.add(Turn(chunks=["Patching."], tool_calls=[{"name": "apply_patch", "arguments": patch}]))
    events = _events(_client(llm).responses.create(
        model="m", input="edit", tools=[APPLY_PATCH, SHELL], stream=True
    ))  # fmt: skip
    items = [e.item for e in events if e.type == "response.output_item.done"]
    assert [item.type for item in items] == ["message", "custom_tool_call"]
    call = items[1]
    assert call.type == "custom_tool_call"
    assert (call.name, call.input) == ("apply_patch", patch) and call.call_id
    pieces = [e.delta for e in events if e.type == "response.custom_tool_call_input.delta"]
    assert "".join(pieces) == patch


def test_rate_limit_raises(llm: ScriptedLLM) -> None:
    llm.add(Turn(status=429, retry_after_s=2))
    with pytest.raises(openai.RateLimitError) as caught:
        _client(llm).responses.create(model="m", input="hi", stream=True)
    assert caught.value.response.headers["retry-after"] == "2"
    assert caught.value.code == "rate_limit_exceeded"
    assert not llm.turns  # consumed


def test_server_error_status(llm: ScriptedLLM) -> None:
    llm.add(Turn(status=500))
    with pytest.raises(openai.InternalServerError):
        _client(llm).responses.create(model="m", input="hi")


def test_stream_error_ends_with_response_failed(llm: ScriptedLLM) -> None:
    llm.add(Turn(chunks=["partial"], stream_error="upstream overloaded"))
    events = _events(_client(llm).responses.create(model="m", input="hi", stream=True))
    assert "response.completed" not in [e.type for e in events]
    assert [e.delta for e in events if e.type == "response.output_text.delta"] == ["partial"]
    failed = events[-1]
    assert failed.type == "response.failed"
    assert failed.response.status == "failed"
    assert failed.response.error is not None
    assert failed.response.error.message == "upstream overloaded"
    assert failed.response.error.code == "server_error"


def test_requests_recorded_and_models_unchanged(llm: ScriptedLLM) -> None:
    llm.add(Turn(chunks=["one"]), Turn(chunks=["two"]))
    client = _client(llm)
    client.responses.create(model="m", input="first", instructions="be brief", stream=True).close()
    client.chat.completions.create(model="m", messages=[{"role": "user", "content": "second"}])
    assert llm.requests[0]["input"] == "first"
    assert llm.requests[0]["instructions"] == "be brief" and llm.requests[0]["stream"] is True
    assert llm.requests[1]["messages"][0]["content"] == "second"
    with urllib.request.urlopen(f"{llm.base_url}/models", timeout=5) as reply:
        models = json.loads(reply.read())
    assert models == {"object": "list", "data": [{"id": "scripted-1", "object": "model"}]}
