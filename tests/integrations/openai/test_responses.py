"""``/v1/responses`` with the official ``openai`` SDK: text in, a ``response`` with one output
message out, ``previous_response_id`` continuing the conversation, and the streaming events
the SDK parses into its typed event classes."""

from __future__ import annotations

import pytest

from sessions.runners.scripted_llm import Turn
from tests.integrations.openai.conftest import Env

pytestmark = [pytest.mark.transport]


def test_responses_create_continue_and_stream(oai: Env) -> None:
    client = oai.client()
    oai.llm.add(Turn(chunks=["Hi", " there."], usage={"prompt_tokens": 9, "completion_tokens": 2}))
    first = client.responses.create(model="chatty", input="Hello!")
    assert first.object == "response" and first.status == "completed"
    assert first.id.startswith("resp_")
    assert first.output_text == "Hi there."
    message = first.output[0]
    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].type == "output_text"
    assert message.content[0].text == "Hi there."
    assert first.usage is not None
    assert (first.usage.input_tokens, first.usage.output_tokens, first.usage.total_tokens) == (
        9, 2, 11,
    )  # fmt: skip

    oai.llm.add(Turn(chunks=["You said hello."]))
    second = client.responses.create(
        model="chatty", previous_response_id=first.id,
        input=[{"role": "user", "content": [{"type": "input_text", "text": "What did I say?"}]}],
    )  # fmt: skip
    assert second.output_text == "You said hello."
    assert second.previous_response_id == first.id
    assert oai.llm.requests[-1]["messages"][1:] == [
        {"role": "user", "content": "Hello!"},
        {"role": "assistant", "content": "Hi there."},
        {"role": "user", "content": "What did I say?"},
    ]

    # Chunks far enough apart that the event buffer (which coalesces a stream's chunks for a few
    # ms) keeps them apart even on a busy machine.
    oai.llm.add(Turn(chunks=["Str", "eamed."], delay_s=0.3))
    events = list(client.responses.create(
        model="chatty", input="Stream it.", stream=True, previous_response_id=second.id,
    ))  # fmt: skip
    types = [event.type for event in events]
    assert types[:4] == [
        "response.created", "response.in_progress", "response.output_item.added",
        "response.content_part.added",
    ]  # fmt: skip
    assert types[-4:] == [
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.completed",
    ]  # fmt: skip
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert deltas == ["Str", "eamed."]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    done = events[-1]
    assert done.type == "response.completed"
    assert done.response.output_text == "Streamed."
    assert done.response.status == "completed"
    assert oai.llm.requests[-1]["messages"][-1] == {"role": "user", "content": "Stream it."}

    # The SDK's accumulating helper agrees.
    oai.llm.add(Turn(chunks=["Hel", "per."]))
    with client.responses.stream(model="chatty", input="Again.") as stream:
        final = stream.get_final_response()
    assert final.output_text == "Helper."
