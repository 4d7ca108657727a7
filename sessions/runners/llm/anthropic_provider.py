"""Anthropic's Messages API as a provider of the ``llm`` kind, through the ``anthropic`` SDK.

The loop keeps the conversation in the OpenAI chat format; :func:`to_anthropic` converts it on
the way out. The stream is read as raw events (``client.messages.create(stream=True)``), in the
shape of Anthropic's "Streaming Messages" docs
(https://docs.anthropic.com/en/docs/build-with-claude/streaming): ``message_start`` (usage with
``input_tokens``), per content block ``content_block_start`` / ``content_block_delta``
(``text_delta`` with ``text``; ``input_json_delta`` with a ``partial_json`` piece of a
``tool_use`` block's input) / ``content_block_stop``, then ``message_delta`` (``stop_reason``,
cumulative ``usage.output_tokens``) and ``message_stop``; ``ping`` events and ``error`` events
(raised by the SDK) may come at any point.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, cast

import anthropic
import anthropic.types as t

from sessions.runners.llm.providers import (
    ModelReply,
    ModelSettings,
    Provider,
    ProviderError,
    with_ids,
)

# Anthropic requires ``max_tokens`` on every call; OpenAI-compatible servers default it.
DEFAULT_MAX_TOKENS = 4096


class AnthropicProvider(Provider):
    """Anthropic's Messages endpoint (or a server speaking it).

    ``base_url`` is the API root without ``/v1`` (``https://api.anthropic.com``): the SDK
    appends ``/v1/messages``. An empty ``api_key`` is sent as ``"unused"`` (keyless local
    servers). The SDK retries 408, 409, 429 and 5xx ``max_retries`` times with backoff,
    honouring ``retry-after``.
    """

    sdk = anthropic.AsyncAnthropic

    async def complete(
        self,
        messages: list[dict[str, Any]],
        settings: ModelSettings,
        *,
        on_text: Callable[[str], None],
        cancelled: asyncio.Event,
    ) -> ModelReply:
        system, converted = to_anthropic(messages)
        # Typed ``Any``: plain dicts, not the SDK's TypedDicts (the wire shape is the same).
        tools: Any = anthropic.omit
        tool_choice: Any = anthropic.omit
        if settings.tools:
            tools = [
                {"name": tool["name"], "description": tool.get("description", ""),
                 "input_schema": tool.get("parameters") or {"type": "object", "properties": {}}}
                for tool in settings.tools
            ]  # fmt: skip
            if not settings.parallel_tool_calls:
                tool_choice = {"type": "auto", "disable_parallel_tool_use": True}
        # ``settings.temperature`` is not sent: the pinned SDK (2.x) speaks API version
        # 2026-10-21, which has no sampling parameters (the SDK dropped them and the API
        # answers 400 to ``temperature``); the model's own default applies.
        parts: list[str] = []
        calls: dict[int, dict[str, str]] = {}  # by content block index
        given: dict[int, dict[str, Any]] = {}  # a tool_use block's input when not streamed
        usage: dict[str, int] = {}
        try:
            stream = await self.client.messages.create(
                model=settings.name, max_tokens=settings.max_tokens or DEFAULT_MAX_TOKENS,
                messages=cast(Any, converted), system=system or anthropic.omit, tools=tools,
                tool_choice=tool_choice, stream=True,
            )  # fmt: skip
            async with stream:
                async for event in stream:
                    if cancelled.is_set():
                        break  # closing the stream stops the provider's generation
                    # isinstance, not ``event.type``: the SDK's unions include Any, which
                    # defeats mypy's narrowing on the discriminator.
                    if isinstance(event, t.RawMessageStartEvent):
                        u = event.message.usage
                        # OpenAI's prompt_tokens include cached tokens; Anthropic counts
                        # them apart.
                        usage = {"prompt_tokens": u.input_tokens
                                 + (u.cache_creation_input_tokens or 0)
                                 + (u.cache_read_input_tokens or 0),
                                 "completion_tokens": u.output_tokens}  # fmt: skip
                    elif isinstance(event, t.RawMessageDeltaEvent):
                        usage["completion_tokens"] = event.usage.output_tokens  # cumulative
                    elif isinstance(event, t.RawContentBlockStartEvent):
                        block = event.content_block
                        if isinstance(block, t.ToolUseBlock):
                            calls[event.index] = {"id": block.id, "name": block.name,
                                                  "arguments": ""}  # fmt: skip
                            given[event.index] = dict(block.input or {})
                    elif isinstance(event, t.RawContentBlockDeltaEvent):
                        delta = event.delta
                        if isinstance(delta, t.TextDelta) and delta.text:
                            parts.append(delta.text)
                            on_text(delta.text)
                        elif isinstance(delta, t.InputJSONDelta) and event.index in calls:
                            calls[event.index]["arguments"] += delta.partial_json
        except anthropic.APIStatusError as exc:
            # An ``event: error`` mid-stream arrives on a 200 response: a stream failure.
            status = exc.status_code if exc.status_code >= 400 else None
            raise ProviderError(str(exc), status) from None
        except anthropic.AnthropicError as exc:
            raise ProviderError(str(exc)) from None
        for index, call in calls.items():
            # Anthropic streams the input as pieces and starts the block with ``input: {}``;
            # a server that sends the whole input at the start (or a tool without arguments)
            # leaves no pieces.
            if not call["arguments"]:
                call["arguments"] = json.dumps(given[index]) if given[index] else "{}"
        return ModelReply("".join(parts), with_ids([calls[i] for i in sorted(calls)]), usage)


def to_anthropic(messages: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """Convert an OpenAI-format conversation to ``(system, messages)`` for the Messages API.

    System messages are joined (blank line apart) into ``system``. User and assistant text
    become ``text`` blocks (empty text is dropped: Anthropic rejects empty blocks); assistant
    ``tool_calls`` become ``tool_use`` blocks whose ``input`` is the parsed ``arguments``
    (``{}`` when malformed or not an object: the loop already reported that call as an error);
    ``role: tool`` messages become ``tool_result`` blocks (``tool_use_id``) in a user message.
    Adjacent messages of one role are merged, since Anthropic requires user and assistant to
    alternate; a message left with no blocks is dropped. Never raises.
    """
    system: list[str] = []
    out: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        if role == "system":
            system += [b["text"] for b in _text_blocks(message.get("content"))]
            continue
        if role == "tool":
            result: dict[str, Any] = {"type": "tool_result",
                                      "tool_use_id": message.get("tool_call_id") or ""}  # fmt: skip
            text = "".join(b["text"] for b in _text_blocks(message.get("content")))
            if text:
                result["content"] = text
            role, blocks = "user", [result]
        else:
            blocks = _text_blocks(message.get("content"))
            for call in message.get("tool_calls") or []:
                function = call.get("function") or {}
                blocks.append({"type": "tool_use", "id": call.get("id") or "",
                               "name": function.get("name") or "",
                               "input": _parse_object(function.get("arguments"))})  # fmt: skip
        if role not in ("user", "assistant") or not blocks:
            continue
        if out and out[-1]["role"] == role:
            out[-1]["content"] += blocks
        else:
            out.append({"role": role, "content": blocks})
    return "\n\n".join(system), out


def _text_blocks(content: Any) -> list[dict[str, Any]]:
    """``content`` (a string, or OpenAI content parts) as non-empty ``text`` blocks."""
    if isinstance(content, str):
        texts = [content]
    elif isinstance(content, list):
        texts = [p.get("text") or "" for p in content if isinstance(p, dict) and "text" in p]
    else:
        texts = []
    return [{"type": "text", "text": t} for t in texts if t]


def _parse_object(arguments: Any) -> dict[str, Any]:
    try:
        parsed = json.loads(arguments or "{}")
    except (TypeError, ValueError):
        return {}
    return parsed if isinstance(parsed, dict) else {}
