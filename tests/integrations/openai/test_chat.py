"""``/v1/chat/completions`` with the official ``openai`` SDK against a live daphne: an llm agent
backed by the scripted model answers, streams token by token, reports the tool calls it runs,
keeps a conversation per session, and every call is an ordinary task of the REST API."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import openai
import pytest

from sessions.demo import seed_demo_agents
from sessions.runners.scripted_llm import Turn
from tests.integrations.openai.conftest import Env
from tests.transport.sse import iter_sse

pytestmark = [pytest.mark.transport]

GAP_S = 0.3


def test_chat_completion_answers_with_usage_and_is_an_ordinary_task(oai: Env) -> None:
    oai.llm.add(
        Turn(chunks=["Hello", " Ann."], usage={"prompt_tokens": 11, "completion_tokens": 3})
    )
    client = oai.client()
    raw = client.chat.completions.with_raw_response.create(
        model="chatty",
        messages=[
            {"role": "system", "content": "Ignored: the agent has its own prompt."},
            {"role": "user", "content": "My name is Ann."},
            {"role": "assistant", "content": "Noted."},
            {"role": "user", "content": [{"type": "text", "text": "Greet me."}]},
        ],
    )
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.model == "chatty"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == "Hello Ann."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (11, 3)
    assert completion.usage.total_tokens == 14
    # The earlier turns of a new conversation reach the model as history, after the agent's
    # own system prompt (the client's system message is not used).
    assert oai.llm.requests[-1]["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "My name is Ann."},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": "Greet me."},
    ]
    session_id, task_id = raw.headers["X-Session-Id"], raw.headers["X-Task-Id"]
    assert completion.id == "chatcmpl-" + task_id.replace("-", "")

    with oai.rest() as rest:
        task = rest.get(f"/api/v1/tasks/{task_id}").json()
        assert task["status"] == "succeeded"
        assert task["config"]["integration"] == "openai"
        assert task["session_id"] == session_id
        assert task["task_type"] == "chat"
        assert task["input"] == {"message": "Greet me."}

    # Continuing the session: the server keeps the history, only the new turn is sent.
    oai.llm.add(Turn(chunks=["Ann."]))
    again = client.chat.completions.with_raw_response.create(
        model="chatty",
        messages=[
            {"role": "user", "content": "My name is Ann."},
            {"role": "assistant", "content": "Noted."},
            {"role": "user", "content": "Greet me."},
            {"role": "assistant", "content": "Hello Ann."},
            {"role": "user", "content": "What is my name?"},
        ],
        extra_headers={"X-Session-Id": session_id},
    )
    assert again.parse().choices[0].message.content == "Ann."
    assert again.headers["X-Session-Id"] == session_id
    assert again.headers["X-Task-Id"] != task_id
    assert oai.llm.requests[-1]["messages"][1:] == [
        {"role": "user", "content": "My name is Ann."},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": "Greet me."},
        {"role": "assistant", "content": "Hello Ann."},
        {"role": "user", "content": "What is my name?"},
    ]
    with oai.rest() as rest:
        listed = rest.get(f"/api/v1/sessions/{session_id}/messages").json()["messages"]
    assert [m["content"] for m in listed] == [
        "My name is Ann.", "Noted.", "Greet me.", "Hello Ann.", "What is my name?", "Ann.",
    ]  # fmt: skip

    # The ``user`` field: one stable session per (credential, agent, user string).
    oai.llm.add(Turn(chunks=["one"]), Turn(chunks=["two"]))
    first = client.chat.completions.with_raw_response.create(
        model="chatty", user="end-user-7", messages=[{"role": "user", "content": "1"}]
    )
    second = client.chat.completions.with_raw_response.create(
        model="chatty", user="end-user-7", messages=[{"role": "user", "content": "2"}]
    )
    assert first.headers["X-Session-Id"] == second.headers["X-Session-Id"] != session_id
    assert [m["content"] for m in oai.llm.requests[-1]["messages"][1:]] == ["1", "one", "2"]


def test_streaming_deltas_arrive_as_produced_and_end_with_done(oai: Env) -> None:
    _streams_token_by_token(oai)
    _client_going_away_cancels_the_task(oai)
    _a_command_agent_answers_with_its_output(oai)


def _streams_token_by_token(oai: Env) -> None:
    chunks = ["Str", "eam", "ing", " works", "."]
    oai.llm.add(Turn(chunks=chunks, delay_s=GAP_S))
    body = {"model": "chatty", "stream": True,
            "messages": [{"role": "user", "content": "Stream please."}]}  # fmt: skip
    auth = {"Authorization": f"Bearer {oai.token}"}
    frames: list[tuple[float, Any]] = []
    with (
        httpx.Client(base_url=oai.server.url, headers=auth, timeout=60) as http,
        http.stream("POST", "/v1/chat/completions", json=body) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["X-Task-Id"] and response.headers["X-Session-Id"]
        for message in iter_sse(response):
            if message["event"] == "comment":
                continue
            frames.append((time.monotonic(), message["data"]))
    assert frames[-1][1] == "[DONE]"
    chunks_in = [data for _, data in frames[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks_in)
    assert chunks_in[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks_in[-1]["choices"][0] == {
        "index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"
    }  # fmt: skip
    deltas = [(t, c["choices"][0]["delta"]["content"]) for t, c in zip(
        [t for t, _ in frames[:-1]], chunks_in, strict=True
    ) if c["choices"][0]["delta"].get("content")]  # fmt: skip
    assert "".join(text for _, text in deltas) == "Streaming works."
    # Token by token, while the model is still producing: not all at the end.
    assert len(deltas) >= 3
    assert deltas[-1][0] - deltas[0][0] >= GAP_S * 2

    # The SDK, with the usage chunk.
    oai.llm.add(Turn(chunks=["a", "b"], usage={"prompt_tokens": 4, "completion_tokens": 2}))
    stream = oai.client().chat.completions.create(
        model="chatty", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "Count."}],
    )  # fmt: skip
    got = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in got if c.choices) == "ab"
    assert [c.choices[0].finish_reason for c in got if c.choices][-1] == "stop"
    assert got[-1].choices == [] and got[-1].usage is not None
    assert (got[-1].usage.prompt_tokens, got[-1].usage.total_tokens) == (4, 6)
    assert all(c.usage is None for c in got[:-1])


def test_the_agents_tools_over_the_openai_api(oai: Env) -> None:
    _tool_calls_stream_as_tool_call_deltas(oai)
    _ask_user_ends_the_turn_and_the_next_message_answers_it(oai)


def _tool_calls_stream_as_tool_call_deltas(oai: Env) -> None:
    with oai.rest() as rest:
        created = rest.post("/api/v1/agents", json={
            "slug": "fetcher", "name": "Fetcher", "kind": "llm",
            "spec": {"model": {"base_url": oai.llm.base_url, "name": "scripted-1"},
                     "tools": ["http_fetch"]},
        })  # fmt: skip
        assert created.status_code == 201, created.text
    arguments = json.dumps({"url": "http://127.0.0.1:9/secret"})
    oai.llm.add(
        Turn(chunks=["Let me look."], tool_calls=[{"name": "http_fetch", "arguments": arguments}]),
        Turn(chunks=["That address is not reachable."]),
    )
    stream = oai.client().chat.completions.create(
        model="fetcher", stream=True, messages=[{"role": "user", "content": "Fetch it."}]
    )
    got = [c for c in stream if c.choices]
    calls = [call for c in got for call in (c.choices[0].delta.tool_calls or [])]
    assert len(calls) == 1
    call = calls[0]
    assert (call.index, call.id, call.type) == (0, "call_0", "function")
    assert call.function is not None and call.function.name == "http_fetch"
    assert json.loads(call.function.arguments or "") == {"url": "http://127.0.0.1:9/secret"}
    text = "".join(c.choices[0].delta.content or "" for c in got)
    assert text == "Let me look.\n\nThat address is not reachable."
    assert got[-1].choices[0].finish_reason == "stop"
    # The tool ran on the server (refused: a private address), and the model saw its result.
    tool_message = oai.llm.requests[-1]["messages"][-1]
    assert tool_message["role"] == "tool" and tool_message["tool_call_id"] == "call_0"


def _ask_user_ends_the_turn_and_the_next_message_answers_it(oai: Env) -> None:
    with oai.rest() as rest:
        created = rest.post("/api/v1/agents", json={
            "slug": "asker", "name": "Asker", "kind": "llm",
            "spec": {"model": {"base_url": oai.llm.base_url, "name": "scripted-1"},
                     "tools": ["ask_user"]},
        })  # fmt: skip
        assert created.status_code == 201, created.text
    question = json.dumps({"question": "Which colour?"})
    oai.llm.add(Turn(tool_calls=[{"name": "ask_user", "arguments": question}]),
                Turn(chunks=["Blue it is."]))  # fmt: skip
    client = oai.client()
    asked = client.chat.completions.with_raw_response.create(
        model="asker", messages=[{"role": "user", "content": "Paint it."}]
    )
    assert asked.parse().choices[0].message.content == "Which colour?"
    task_id, session_id = asked.headers["X-Task-Id"], asked.headers["X-Session-Id"]
    answered = client.chat.completions.with_raw_response.create(
        model="asker", extra_headers={"X-Session-Id": session_id},
        messages=[{"role": "user", "content": "Paint it."},
                  {"role": "assistant", "content": "Which colour?"},
                  {"role": "user", "content": "Blue."}],
    )  # fmt: skip
    assert answered.parse().choices[0].message.content == "Blue it is."
    assert answered.headers["X-Task-Id"] == task_id  # the same task resumed
    assert oai.llm.requests[-1]["messages"][-1] == {
        "role": "tool", "tool_call_id": "call_0", "content": "Blue."
    }  # fmt: skip


def _client_going_away_cancels_the_task(oai: Env) -> None:
    oai.llm.add(Turn(chunks=["tick "] * 40, delay_s=0.25))
    body = {"model": "chatty", "stream": True,
            "messages": [{"role": "user", "content": "Talk for a while."}]}  # fmt: skip
    auth = {"Authorization": f"Bearer {oai.token}"}
    with httpx.Client(base_url=oai.server.url, headers=auth, timeout=60) as http:
        with http.stream("POST", "/v1/chat/completions", json=body) as response:
            task_id = response.headers["X-Task-Id"]
            for message in iter_sse(response):
                delta = (
                    message["data"]["choices"][0]["delta"] if message["event"] != "comment" else {}
                )
                if delta.get("content"):
                    break  # the client leaves in the middle of the answer
        deadline = time.monotonic() + 20
        task: dict[str, Any] = {}
        while time.monotonic() < deadline:
            task = http.get(f"/api/v1/tasks/{task_id}").json()
            if task["status"] == "cancelled":
                break
            time.sleep(0.2)
    assert task["status"] == "cancelled", task


@pytest.mark.parametrize("oai_env", [{"OPENAI_API_MAX_WAIT_S": 2}])
def test_a_turn_longer_than_the_wait_limit_is_a_timeout_error(oai: Env) -> None:
    oai.llm.add(Turn(chunks=["slow "] * 30, delay_s=0.3), Turn(chunks=["slow "] * 30, delay_s=0.3))
    client = oai.client()
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="chatty", messages=[{"role": "user", "content": "x"}])
    assert caught.value.status_code == 504
    assert caught.value.code == "timeout"
    assert caught.value.response.headers["x-should-retry"] == "false"  # not re-run by an SDK
    assert time.monotonic() - started < 20
    task_id = caught.value.response.headers["X-Task-Id"]
    with oai.rest() as rest:
        assert rest.get(f"/api/v1/tasks/{task_id}").json()["status"] == "timed_out"
        assert rest.get(f"/api/v1/tasks/{task_id}").json()["error"]["code"] == "timed_out"

    stream = client.chat.completions.create(
        model="chatty", stream=True, messages=[{"role": "user", "content": "x"}]
    )
    texts: list[str] = []

    def read() -> None:
        for chunk in stream:
            texts.append(chunk.choices[0].delta.content or "")

    with pytest.raises(openai.APIError, match="time limit"):
        read()
    assert "slow" in "".join(texts)  # what came before the limit was streamed


def _a_command_agent_answers_with_its_output(oai: Env) -> None:
    seed_demo_agents(owner=oai.user)  # ``shell``: the message is the command it runs
    client = oai.client()
    reply = client.chat.completions.create(
        model="shell", messages=[{"role": "user", "content": "echo hello from the sandbox"}]
    )
    assert reply.choices[0].message.content == "hello from the sandbox\n"
    stream = client.chat.completions.create(
        model="shell", stream=True,
        messages=[{"role": "user", "content": "echo one; sleep 0.3; echo two"}],
    )  # fmt: skip
    deltas = [c.choices[0].delta.content for c in stream if c.choices]
    assert "".join(d or "" for d in deltas) == "one\ntwo\n"
    assert "one\n" in deltas  # output streamed while the command still ran
    with pytest.raises(openai.InternalServerError) as failed:
        client.chat.completions.create(
            model="shell", messages=[{"role": "user", "content": "exit 3"}]
        )
    assert failed.value.status_code == 502 and failed.value.code == "command_failed"
