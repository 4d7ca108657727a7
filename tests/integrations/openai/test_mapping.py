"""How an OpenAI request becomes a task, without a server: the new turn and the history of a
conversation, the input a non-llm agent gets, and the checks that name the bad field."""

from __future__ import annotations

from typing import Any

import pytest

from integrations.openai.http import OpenAIError
from integrations.openai.mapping import parse_chat, parse_responses, task_input
from sessions.models import Agent


def chat(*messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": list(messages), **extra}


def test_the_new_turn_is_the_trailing_user_block_and_the_rest_is_history() -> None:
    turn = parse_chat(chat(
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "out"},
        {"role": "user", "content": "b"},
        {"role": "user", "content": [{"type": "text", "text": "c"}]},
        temperature=0.5, max_completion_tokens=20, user="u1",
    ), {"X-Session-Id": "1B4E28BA-2FA1-11D2-883F-0016D3CCA427"})  # fmt: skip
    assert turn.text == "b\n\nc"
    assert [m["role"] for m in turn.history] == ["user", "assistant", "tool"]
    assert turn.history[1]["tool_calls"] == [{"id": "c1", "name": "f", "arguments": "{}"}]
    assert turn.model_config == {"temperature": 0.5, "max_tokens": 20}
    assert turn.user_key == "u1"
    assert turn.session_id == "1b4e28ba-2fa1-11d2-883f-0016d3cca427"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        (chat(), "messages"),
        (chat({"role": "robot", "content": "x"}), "messages[0].role"),
        (chat({"role": "user", "content": 3}), "messages[0].content"),
        (chat({"role": "user", "content": "  "}), "messages"),
        (chat({"role": "user", "content": "x"}, temperature=3), "temperature"),
        (chat({"role": "user", "content": "x"}, max_tokens=0), "max_tokens"),
        (chat({"role": "user", "content": "x"}, stream_options={"include_usage": True}),
         "stream_options"),
        (chat({"role": "user", "content": "x"}, stream="yes"), "stream"),
        (chat({"role": "user", "content": "x"}, user=["u"]), "user"),
    ],
)  # fmt: skip
def test_bad_chat_bodies_name_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(OpenAIError) as caught:
        parse_chat(body, {})
    assert (caught.value.status, caught.value.param) == (400, param)


def test_responses_input_and_previous_response_id() -> None:
    turn = parse_responses({"model": "m", "input": [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
    ], "previous_response_id": "resp_1b4e28ba2fa111d2883f0016d3cca427",
        "max_output_tokens": 5}, {})  # fmt: skip
    assert turn.text == "hi" and turn.history == []
    assert turn.previous_task_id == "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
    assert turn.model_config == {"max_tokens": 5}
    for bad, param in (({"input": ""}, "input"), ({"input": [{"type": "function_call"}]},
                       "input[0]"), ({"input": "x", "previous_response_id": "r"},
                       "previous_response_id")):  # fmt: skip
        with pytest.raises(OpenAIError) as caught:
            parse_responses({"model": "m", **bad}, {})
        assert caught.value.param == param


def test_task_input_per_agent_kind() -> None:
    llm = Agent(kind="llm", spec={})
    assert task_input(llm, '{"a": 1}') == ("chat", {"message": '{"a": 1}'})
    shell = Agent(kind="command", spec={"allow_input_command": True})
    assert task_input(shell, "ls -l") == ("run", {"command": "ls -l"})
    assert task_input(shell, '{"argv": ["ls"]}') == ("run", {"argv": ["ls"]})
    templated = Agent(kind="command", spec={"templates": {"run": "make"}})
    assert task_input(templated, "fix it") == ("run", {"instructions": "fix it"})
    assert task_input(Agent(kind="python", spec={}), "1+1") == ("run", {"code": "1+1"})
    custom = Agent(kind="workflow", spec={}, input_schema={
        "type": "object", "properties": {"query": {"type": "string"}}})  # fmt: skip
    assert task_input(custom, "weather?") == ("run", {"query": "weather?"})
    assert task_input(Agent(kind="remote", spec={}), "{not json") == (
        "run", {"message": "{not json"},
    )  # fmt: skip
