"""OpenAI wire objects: ``chat.completion``, ``chat.completion.chunk``, the Responses API's
``response`` object and its streaming events, and SSE framing. Shapes follow the ``openai``
SDK's types (``openai/types/chat``, ``openai/types/responses``), so the SDK parses them.

Ids: a chat completion is ``chatcmpl-<task uuid hex>``, a response ``resp_<task uuid hex>``
(``previous_response_id`` continues that task's session), its message ``msg_<task uuid hex>``.
"""

from __future__ import annotations

import json
from typing import Any

from sessions.models import Task

from .mapping import RESPONSE_ID_PREFIX


def sse(data: dict[str, Any] | str, event: str | None = None) -> str:
    """One Server-Sent Event (``[DONE]`` is sent as is)."""
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return (f"event: {event}\n" if event else "") + f"data: {payload}\n\n"


def completion_id(task: Task) -> str:
    return f"chatcmpl-{task.uuid.hex}"


def response_id(task: Task) -> str:
    return f"{RESPONSE_ID_PREFIX}{task.uuid.hex}"


def created(task: Task) -> int:
    return int(task.created_at.timestamp())


# CHAT COMPLETIONS ------------------------------------------------------------------------------


def chat_completion(
    task: Task, model: str, text: str, finish_reason: str, usage: dict[str, int]
) -> dict[str, Any]:
    """A non-streaming ``chat.completion`` with one choice."""
    return {
        "id": completion_id(task),
        "object": "chat.completion",
        "created": created(task),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": usage,
        "system_fingerprint": None,
    }


def chat_chunk(
    task: Task,
    model: str,
    delta: dict[str, Any] | None,
    finish_reason: str | None = None,
    *,
    usage: dict[str, int] | None = None,
    include_usage: bool = False,
) -> dict[str, Any]:
    """A ``chat.completion.chunk``; ``delta=None`` is the usage-only chunk (no choices)."""
    chunk: dict[str, Any] = {
        "id": completion_id(task),
        "object": "chat.completion.chunk",
        "created": created(task),
        "model": model,
        "system_fingerprint": None,
        "choices": []
        if delta is None
        else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }
    if include_usage:
        chunk["usage"] = usage  # null on every chunk but the last, as OpenAI sends it
    return chunk


def tool_call_delta(index: int, call_id: str, name: str, arguments: str) -> dict[str, Any]:
    """A delta announcing one whole tool call (OpenAI's ``tool_calls`` delta shape)."""
    return {
        "tool_calls": [{
            "index": index, "id": call_id, "type": "function",
            "function": {"name": name, "arguments": arguments},
        }]
    }  # fmt: skip


# RESPONSES -------------------------------------------------------------------------------------


def _response_usage(usage: dict[str, int]) -> dict[str, Any]:
    return {
        "input_tokens": usage["prompt_tokens"],
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": usage["completion_tokens"],
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage["total_tokens"],
    }


def output_message(task: Task, text: str, status: str) -> dict[str, Any]:
    """The response's one output item: an assistant message with one ``output_text`` part."""
    content = [] if text is None else [output_text(text)]
    return {
        "id": f"msg_{task.uuid.hex}",
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": content,
    }


def output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def response_object(
    task: Task,
    model: str,
    *,
    status: str,
    text: str | None,
    usage: dict[str, int] | None,
    previous_response_id: str | None = None,
    metadata: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
    incomplete_reason: str | None = None,
) -> dict[str, Any]:
    """A ``response`` object. ``text=None``: no output yet (``response.created``)."""
    message_status = {"completed": "completed", "in_progress": "in_progress"}.get(
        status, "incomplete"
    )
    output = [] if text is None else [output_message(task, text, message_status)]
    body: dict[str, Any] = {
        "id": response_id(task),
        "object": "response",
        "created_at": created(task),
        "status": status,
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "temperature": None,
        "top_p": None,
        "instructions": None,
        "metadata": metadata or {},
        "previous_response_id": previous_response_id,
        "error": error,
        "incomplete_details": {"reason": incomplete_reason} if incomplete_reason else None,
        "usage": _response_usage(usage) if usage is not None else None,
    }
    if text is not None and status != "in_progress":
        body["output_text"] = text  # the SDK computes it; plain-HTTP clients get it here
    return body


class ResponseEvents:
    """Numbers the Responses streaming events (``sequence_number``) of one response."""

    def __init__(self, task: Task) -> None:
        self.seq = 0
        self.item_id = f"msg_{task.uuid.hex}"
        self.task = task

    def event(self, type: str, **fields: Any) -> str:
        body = {"type": type, "sequence_number": self.seq, **fields}
        self.seq += 1
        return sse(body, event=type)

    def text_event(self, type: str, **fields: Any) -> str:
        """An event about the one text part of the one output message."""
        return self.event(type, item_id=self.item_id, output_index=0, content_index=0, **fields)
