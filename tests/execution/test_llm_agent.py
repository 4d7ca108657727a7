"""The ``llm`` agent kind end to end: the ``openai`` SDK against a scripted OpenAI-compatible
server over real HTTP, tools in a real bubblewrap sandbox, the real executor and event log."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from runtime_project.exceptions import InvalidInput
from sessions.runners.scripted_llm import ScriptedLLM, Turn
from sessions.services.agents import agent_create
from sessions.services.sessions import session_create
from sessions.services.tasks import task_cancel, task_create
from tests.helpers import event_data, wait_terminal

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sandbox]


@pytest.fixture
def chat(owner: Any, llm: ScriptedLLM) -> Any:
    """``chat(message, session=None) -> (task, session)`` on an llm agent with every tool."""
    agent = agent_create(
        owner=owner, slug="assistant", name="assistant", kind="llm",
        spec={"model": {"base_url": llm.base_url, "name": "scripted-1"},
              "system_prompt": "You are terse.",
              "tools": ["shell", "read_file", "write_file", "list_files"], "max_retries": 2},
    )  # fmt: skip

    def make(message: str, session: Any = None) -> tuple[Any, Any]:
        session = session or session_create(owner=owner, agent=agent)
        task, _ = task_create(session=session, user=owner, input={"message": message})
        return task, session

    return make


async def test_a_tool_using_conversation(executor: Any, llm: ScriptedLLM, chat: Any) -> None:
    llm.add(
        Turn(chunks=["Let me ", "write it."], tool_calls=[
            {"name": "write_file", "arguments": json.dumps({"path": "notes.txt", "content": "hi\n"})},
            {"name": "shell", "arguments": json.dumps({"command": "cat notes.txt; echo done"})},
        ]),
        Turn(tool_calls=[{"name": "shell", "arguments": '{"cmd": 1'}]),  # malformed JSON
        Turn(tool_calls=[{"name": "shell", "arguments": '{"cmd": "ls"}'}]),  # wrong schema
        Turn(chunks=["All ", "done."]),
    )  # fmt: skip
    task, session = await sync_to_async(chat)("Write notes.txt and show it.")
    executor.kick()
    task = await wait_terminal(task)
    assert task.status == "succeeded", task.error
    assert task.result == {"text": "All done.", "steps": 4}
    assert task.usage["prompt_tokens"] == 4 * 7 and task.usage["completion_tokens"] == 4 * 5

    # Deltas stream per message (consecutive ones are coalesced by the event buffer).
    deltas = await sync_to_async(event_data)(task, "message.delta")
    by_message: dict[str, str] = {}
    for delta in deltas:
        by_message[delta["message_id"]] = by_message.get(delta["message_id"], "") + delta["text"]
    assert list(by_message.values()) == ["Let me write it.", "All done."]
    completed = await sync_to_async(event_data)(task, "message.completed")
    assert [c["text"] for c in completed] == ["Let me write it.", "", "", "All done."]
    assert [c["name"] for c in completed[0]["tool_calls"]] == ["write_file", "shell"]
    results = await sync_to_async(event_data)(task, "tool.result")
    assert [(r["name"], r["is_error"]) for r in results] == [
        ("write_file", False), ("shell", False), ("shell", True), ("shell", True),
    ]  # fmt: skip
    assert results[1]["output"] == "exit_code: 0\nhi\ndone\n"  # ran in the session's sandbox
    assert results[2]["output"].startswith("error: invalid tool call:")
    assert "'command' is a required property" in results[3]["output"]
    assert (session.workspace_path / "notes.txt").read_text() == "hi\n"

    # What the model saw: the system prompt, the question, then each tool's result.
    second = llm.requests[1]["messages"]
    assert second[0] == {"role": "system", "content": "You are terse."}
    assert second[1] == {"role": "user", "content": "Write notes.txt and show it."}
    tool_messages = [m for m in second if m["role"] == "tool"]
    assert [m["content"] for m in tool_messages] == [
        "wrote 3 bytes to notes.txt", "exit_code: 0\nhi\ndone\n",
    ]  # fmt: skip
    assert llm.requests[0]["stream"] is True and len(llm.requests[0]["tools"]) == 4

    # The next turn of the session carries the conversation so far.
    llm.add(Turn(chunks=["You asked about notes."]))
    follow_up, _ = await sync_to_async(chat)("What did I ask?", session)
    executor.kick()
    follow_up = await wait_terminal(follow_up)
    assert follow_up.status == "succeeded"
    history = llm.requests[-1]["messages"]
    assert history[1]["content"] == "Write notes.txt and show it."
    assert {"role": "assistant", "content": "All done."} in history
    assert history[-1] == {"role": "user", "content": "What did I ask?"}
    await _stop(session)


async def test_rate_limit_is_retried_and_client_errors_are_reported(
    executor: Any, llm: ScriptedLLM, chat: Any
) -> None:
    llm.add(Turn(status=429, retry_after_s=0.1), Turn(chunks=["ok"]))
    task, _ = await sync_to_async(chat)("hello")
    executor.kick()
    task = await wait_terminal(task)
    assert (task.status, task.result["text"]) == ("succeeded", "ok")
    assert len(llm.requests) == 2  # the SDK retried the 429 once

    llm.add(Turn(status=400))
    task, _ = await sync_to_async(chat)("hello again")
    executor.kick()
    task = await wait_terminal(task)
    assert task.status == "failed" and task.error["code"] == "provider_error"
    assert task.error["details"] == {"status": 400}
    assert len(llm.requests) == 3  # a 4xx is not retried


async def test_cancel_mid_stream(executor: Any, llm: ScriptedLLM, chat: Any) -> None:
    llm.add(Turn(chunks=[f"token{i} " for i in range(100)], delay_s=0.1))
    task, _ = await sync_to_async(chat)("talk a lot")
    executor.kick()
    deadline = time.monotonic() + 20
    while not await sync_to_async(event_data)(task, "message.delta"):
        assert time.monotonic() < deadline, "no token arrived"
        await asyncio.sleep(0.05)
    await sync_to_async(task_cancel)(task=task)
    task = await wait_terminal(task, timeout=15)
    assert task.status == "cancelled"
    streamed = "".join(d["text"] for d in await sync_to_async(event_data)(task, "message.delta"))
    assert 0 < len(streamed) < len("".join(f"token{i} " for i in range(100)))


def test_bad_specs_and_inputs_are_refused(owner: Any) -> None:
    with pytest.raises(InvalidInput):
        agent_create(owner=owner, slug="x", name="x", kind="llm", spec={"tools": ["shell"]})
    with pytest.raises(InvalidInput):
        agent_create(
            owner=owner, slug="y", name="y", kind="llm",
            spec={"model": {"base_url": "http://h/v1", "name": "m"}, "tools": ["rm_rf"]},
        )  # fmt: skip
    agent = agent_create(
        owner=owner, slug="z", name="z", kind="llm",
        spec={"model": {"base_url": "http://h/v1", "name": "m"}},
    )  # fmt: skip
    with pytest.raises(InvalidInput):
        task_create(session=session_create(owner=owner, agent=agent), user=owner, input={})


async def _stop(session: Any) -> None:
    from sandboxes.registry import get_backend

    await get_backend().stop(str(session.uuid))


async def test_model_config_agent_then_session_then_task(
    executor: Any, llm: ScriptedLLM, chat: Any, owner: Any
) -> None:
    from sessions.models import Agent

    llm.add(Turn(chunks=["a"]), Turn(chunks=["b"]))
    agent = await Agent.objects.aget(slug="assistant", owner=owner)
    session = await sync_to_async(session_create)(
        owner=owner, agent=agent,
        metadata={"model_config": {"name": "session-model", "temperature": 0.2}},
    )  # fmt: skip
    task, _ = await sync_to_async(chat)("one", session)
    executor.kick()
    await wait_terminal(task)
    second, _ = await sync_to_async(task_create)(
        session=session, user=owner, input={"message": "two"},
        config={"model": {"name": "task-model", "max_tokens": 50}},
    )  # fmt: skip
    executor.kick()
    assert (await wait_terminal(second)).status == "succeeded"
    first_request, second_request = llm.requests[-2], llm.requests[-1]
    assert (first_request["model"], first_request["temperature"]) == ("session-model", 0.2)
    assert (second_request["model"], second_request["temperature"]) == ("task-model", 0.2)
    assert second_request["max_tokens"] == 50
    with pytest.raises(InvalidInput) as caught:  # the endpoint (and its key) is the agent's
        await sync_to_async(task_create)(
            session=session, user=owner, input={"message": "x"},
            config={"model": {"base_url": "http://attacker.example/v1"}},
        )  # fmt: skip
    assert "config.model" in caught.value.details["fields"]
    await _stop(session)
