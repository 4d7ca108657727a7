"""The OpenAI Responses dialect of :class:`~sessions.runners.scripted_llm.ScriptedLLM`.

``POST /v1/responses`` (the only wire API of Codex CLI 0.171.0, ``docs/dev/coding-agent-clis.md``)
answers one scripted :class:`~sessions.runners.scripted_llm.Turn` as:

* streaming (``"stream": true``): SSE named events, each ``data:`` a JSON object carrying its
  ``type`` and a ``sequence_number`` counted from 0: ``response.created`` and
  ``response.in_progress`` (``status: "in_progress"``, no output yet); for the text, a ``message``
  item (``response.output_item.added``, ``response.content_part.added``, one
  ``response.output_text.delta`` per scripted chunk, ``response.output_text.done``,
  ``response.content_part.done``, ``response.output_item.done``); for each tool call a
  ``function_call`` item (``response.function_call_arguments.delta`` in two pieces when the
  arguments have two characters or more, then ``.done``), or, when the request declares that
  tool with ``"type": "custom"`` (Codex's freeform ``apply_patch``), a ``custom_tool_call``
  item with ``input`` = the scripted arguments (``response.custom_tool_call_input.delta`` /
  ``.done``); then ``response.completed`` with every item and the ``usage``. A
  ``stream_error`` turn ends with ``response.failed`` (``error {code, message}``) instead.
* not streaming: the same ``response`` object as one JSON body (``status: "failed"`` with the
  ``error`` for a ``stream_error`` turn).
* an HTTP ``status`` turn: ``{"error": {"message", "type", "code", "param"}}`` (see
  :func:`error_body`), with ``Retry-After`` when the turn sets ``retry_after_s``.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sessions.runners.scripted_llm import Turn

RESPONSES_PATH = "/v1/responses"

# OpenAI's error ``code`` per HTTP status, where Codex branches on it; others are scripted.
_CODES = {
    401: "invalid_api_key", 404: "model_not_found", 429: "rate_limit_exceeded",
    500: "server_error", 503: "server_is_overloaded",
}  # fmt: skip


def error_body(status: int) -> dict[str, Any]:
    """The JSON body of a scripted HTTP error ``status``."""
    return {"error": {
        "message": f"scripted HTTP {status}", "type": "scripted_error",
        "code": _CODES.get(status, "scripted_error"), "param": None,
    }}  # fmt: skip


def _custom_tools(request: dict[str, Any]) -> set[str]:
    tools = request.get("tools") or []
    return {
        str(tool.get("name"))
        for tool in tools
        if isinstance(tool, dict) and tool.get("type") == "custom"
    }


def _items(turn: Turn, request: dict[str, Any]) -> list[dict[str, Any]]:
    """The finished output items: the message (when there is text), then each tool call."""
    items: list[dict[str, Any]] = []
    if turn.chunks:
        part = {"type": "output_text", "text": "".join(turn.chunks), "annotations": []}
        items.append({"type": "message", "id": "msg_scripted", "role": "assistant",
                      "status": "completed", "content": [part]})  # fmt: skip
    custom = _custom_tools(request)
    for index, call in enumerate(turn.tool_calls):
        name, arguments = call["name"], call["arguments"]
        if name in custom:
            items.append({"type": "custom_tool_call", "id": f"ctc_{index}",
                          "call_id": f"call_{index}", "name": name, "input": arguments,
                          "status": "completed"})  # fmt: skip
        else:
            items.append({"type": "function_call", "id": f"fc_{index}",
                          "call_id": f"call_{index}", "name": name, "arguments": arguments,
                          "status": "completed"})  # fmt: skip
    return items


def response_object(
    model: str, turn: Turn, request: dict[str, Any], *, final: bool = True
) -> dict[str, Any]:
    """The ``response`` object: ``final`` with its output, usage and status, else in progress."""
    body: dict[str, Any] = {
        "id": "resp_scripted", "object": "response", "created_at": int(time.time()),
        "model": model, "status": "in_progress", "output": [], "error": None,
        "incomplete_details": None, "instructions": request.get("instructions"),
        "metadata": {}, "parallel_tool_calls": request.get("parallel_tool_calls", True),
        "tool_choice": request.get("tool_choice", "auto"), "tools": request.get("tools") or [],
        "temperature": None, "top_p": None, "usage": None,
    }  # fmt: skip
    if not final:
        return body
    prompt = turn.usage.get("prompt_tokens", 0)
    completion = turn.usage.get("completion_tokens", 0)
    body["output"] = _items(turn, request)
    body["usage"] = {
        "input_tokens": prompt, "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": completion, "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }  # fmt: skip
    if turn.stream_error:
        body["status"] = "failed"
        body["error"] = {"code": "server_error", "message": turn.stream_error}
    else:
        body["status"] = "completed"
    return body


def _halves(text: str) -> list[str]:
    cut = len(text) // 2
    return [piece for piece in (text[:cut], text[cut:]) if piece]


def response_frames(model: str, turn: Turn, request: dict[str, Any]) -> list[str]:
    """The whole SSE stream of one turn, as ``event: …\\ndata: …\\n\\n`` frames."""
    frames: list[str] = []

    def emit(event: str, **data: Any) -> None:
        payload = {"type": event, "sequence_number": len(frames), **data}
        frames.append(f"event: {event}\ndata: {json.dumps(payload)}\n\n")

    final = response_object(model, turn, request)
    started = response_object(model, turn, request, final=False)
    emit("response.created", response=started)
    emit("response.in_progress", response=started)
    for index, item in enumerate(final["output"]):
        at = {"item_id": item["id"], "output_index": index}
        if item["type"] == "message":
            part = item["content"][0]
            emit("response.output_item.added", output_index=index,
                 item={**item, "status": "in_progress", "content": []})  # fmt: skip
            emit("response.content_part.added", **at, content_index=0,
                 part={**part, "text": ""})  # fmt: skip
            for chunk in turn.chunks:
                emit("response.output_text.delta", **at, content_index=0, delta=chunk,
                     logprobs=[])  # fmt: skip
            emit("response.output_text.done", **at, content_index=0, text=part["text"],
                 logprobs=[])  # fmt: skip
            emit("response.content_part.done", **at, content_index=0, part=part)
        elif item["type"] == "custom_tool_call":
            emit("response.output_item.added", output_index=index,
                 item={**item, "input": "", "status": "in_progress"})  # fmt: skip
            for piece in _halves(item["input"]):
                emit("response.custom_tool_call_input.delta", **at, delta=piece)
            emit("response.custom_tool_call_input.done", **at, input=item["input"])
        else:
            emit("response.output_item.added", output_index=index,
                 item={**item, "arguments": "", "status": "in_progress"})  # fmt: skip
            for piece in _halves(item["arguments"]):
                emit("response.function_call_arguments.delta", **at, delta=piece)
            emit("response.function_call_arguments.done", **at, name=item["name"],
                 arguments=item["arguments"])  # fmt: skip
        emit("response.output_item.done", output_index=index, item=item)
    emit("response.failed" if turn.stream_error else "response.completed", response=final)
    return frames
