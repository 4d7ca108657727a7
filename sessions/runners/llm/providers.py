"""Model providers of the ``llm`` kind: one streamed call, whatever the wire format.

Each provider wraps a vendor's official SDK (the ``openai`` SDK for every OpenAI-compatible
endpoint: OpenAI, vLLM, Ollama, LM Studio, OpenRouter; the ``anthropic`` SDK for Anthropic) and
exposes one coroutine, :meth:`Provider.complete`: send the conversation, stream the text through
``on_text`` as it arrives, return a :class:`ModelReply` with the whole text, the tool calls and
the token usage. The loop (``runner.py``) keeps the conversation in the OpenAI chat format
(``{"role": "system"|"user"|"assistant"|"tool", ...}``); a provider with another format
converts it on the way out. Provider failures are raised as :class:`ProviderError` so the loop
has one thing to catch; the SDKs retry 429 and 5xx with backoff (``max_retries``) first.
"""

from __future__ import annotations

import abc
import asyncio
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import openai


@dataclass
class ModelReply:
    """One model call's outcome.

    Attributes:
        text: the assistant text (may be empty when it only calls tools).
        tool_calls: ``[{"id", "name", "arguments"}]``, ``arguments`` the raw JSON string the
            model produced (possibly malformed: the loop checks it).
        usage: ``{"prompt_tokens", "completion_tokens"}`` (ints; absent when not reported).
    """

    text: str = ""
    tool_calls: list[dict[str, str]] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=dict)


@dataclass
class ModelSettings:
    """What one call sends besides the messages.

    Attributes:
        name: the provider's model id.
        max_tokens: completion tokens per call (None: the provider's default).
        temperature: sampling temperature (None: the provider's default).
        tools: ``[{"name", "description", "parameters" (JSON Schema)}]``.
        parallel_tool_calls: let the model call several tools in one reply.
    """

    name: str
    max_tokens: int | None = None
    temperature: float | None = None
    tools: list[dict[str, Any]] = field(default_factory=list)
    parallel_tool_calls: bool = True


class ProviderError(Exception):
    """A provider call failed for good (after the SDK's retries).

    Attributes:
        message: the provider's explanation (never our key).
        status: the HTTP status, None for a connection or stream failure.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = f"The model provider failed: {message[:300]}"
        self.status = status


class Provider(abc.ABC):
    """One configured endpoint, on the SDK client :data:`sdk` builds (shared per endpoint, key
    and event loop: :func:`shared_client`, so nothing is closed per task).

    Usable as ``async with`` for symmetry with other clients; leaving it closes nothing."""

    sdk: ClassVar[Callable[..., Any]]

    def __init__(self, *, base_url: str, api_key: str, max_retries: int = 3) -> None:
        # An empty key is sent as "unused": keyless local servers (Ollama, vLLM) accept it.
        self.client = shared_client(
            type(self).sdk, base_url=base_url, api_key=api_key or "unused",
            max_retries=max_retries,
        )  # fmt: skip

    @abc.abstractmethod
    async def complete(
        self,
        messages: list[dict[str, Any]],
        settings: ModelSettings,
        *,
        on_text: Callable[[str], None],
        cancelled: asyncio.Event,
    ) -> ModelReply:
        """Stream one reply. ``on_text(chunk)`` is called for each text delta as it arrives;
        when ``cancelled`` is set the stream is closed (the provider stops generating) and
        what came so far is returned.

        Raises:
            ProviderError: the call failed (4xx at once; 429/5xx after the retries).
        """

    async def __aenter__(self) -> Provider:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


class OpenAIProvider(Provider):
    """Any OpenAI-compatible Chat Completions endpoint, through the ``openai`` SDK.

    Streams with ``stream_options.include_usage`` (the usage arrives in a last chunk with no
    choices; ``shared/research/stack.md`` §5); tool-call arguments arrive in pieces keyed by
    ``index`` and are joined here.
    """

    sdk = openai.AsyncOpenAI

    async def complete(
        self,
        messages: list[dict[str, Any]],
        settings: ModelSettings,
        *,
        on_text: Callable[[str], None],
        cancelled: asyncio.Event,
    ) -> ModelReply:
        extra: dict[str, Any] = {}
        if settings.max_tokens is not None:
            extra["max_tokens"] = settings.max_tokens
        if settings.temperature is not None:
            extra["temperature"] = settings.temperature
        if settings.tools:
            extra["tools"] = [{"type": "function", "function": t} for t in settings.tools]
            if not settings.parallel_tool_calls:
                extra["parallel_tool_calls"] = False
        parts: list[str] = []
        calls: dict[int, dict[str, str]] = {}
        usage: dict[str, int] = {}
        try:
            stream = await self.client.chat.completions.create(  # type: ignore[call-overload]
                model=settings.name, messages=messages, stream=True,
                stream_options={"include_usage": True}, **extra,
            )  # fmt: skip
            async with stream:
                async for chunk in stream:
                    if cancelled.is_set():
                        break  # closing the stream stops the provider's generation
                    if chunk.usage is not None:
                        usage = {"prompt_tokens": chunk.usage.prompt_tokens,
                                 "completion_tokens": chunk.usage.completion_tokens}  # fmt: skip
                    for choice in chunk.choices:
                        delta = choice.delta
                        if delta.content:
                            parts.append(delta.content)
                            on_text(delta.content)
                        for tc in delta.tool_calls or []:
                            entry = calls.setdefault(
                                tc.index, {"id": "", "name": "", "arguments": ""}
                            )
                            entry["id"] = tc.id or entry["id"]
                            if tc.function is not None:
                                entry["name"] += tc.function.name or ""
                                entry["arguments"] += tc.function.arguments or ""
        except openai.APIStatusError as exc:
            raise ProviderError(str(exc), exc.status_code) from None
        except openai.OpenAIError as exc:
            raise ProviderError(str(exc)) from None
        return ModelReply("".join(parts), with_ids([calls[i] for i in sorted(calls)]), usage)


SHARED_CLIENTS_PER_LOOP = 32
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, OrderedDict[tuple[Any, ...], Any]]
_clients = weakref.WeakKeyDictionary()


def shared_client(factory: Callable[..., Any], **options: Any) -> Any:
    """An SDK client (``openai.AsyncOpenAI``, ``anthropic.AsyncAnthropic``) shared by the tasks
    of this event loop that use the same endpoint, key and options.

    Building one costs ~25 ms (its TLS context loads the CA bundle) and a fresh one opens a new
    connection (a TLS handshake to a remote provider) for every task; a shared one keeps its
    pool warm. SDK clients are made for concurrent use. Clients are per event loop (their
    connections belong to it); the least recently used beyond :data:`SHARED_CLIENTS_PER_LOOP`
    are closed.
    """
    loop = asyncio.get_running_loop()
    cache = _clients.setdefault(loop, OrderedDict())
    key = (factory, *sorted(options.items()))
    client = cache.get(key)
    if client is None:
        client = cache[key] = factory(**options)
        while len(cache) > SHARED_CLIENTS_PER_LOOP:
            _, old = cache.popitem(last=False)
            task = loop.create_task(old.close())
            _closing.add(task)
            task.add_done_callback(_closing.discard)
    cache.move_to_end(key)
    return client


_closing: set[asyncio.Task[Any]] = set()


def with_ids(calls: list[dict[str, str]]) -> list[dict[str, str]]:
    """Give every tool call an id (some servers omit them; results must refer to one)."""
    for call in calls:
        call["id"] = call["id"] or f"call_{uuid.uuid4().hex[:8]}"
    return calls


PROVIDERS: dict[str, str] = {
    "openai": "sessions.runners.llm.providers.OpenAIProvider",
    "anthropic": "sessions.runners.llm.anthropic_provider.AnthropicProvider",
    # The keyless demo (rules, not a model): sessions/runners/llm/demo.py.
    "scripted": "sessions.runners.llm.demo.ScriptedDemoProvider",
}


def provider_for(model: dict[str, Any], *, api_key: str, max_retries: int) -> Provider:
    """The provider of an agent's ``spec.model`` (``provider`` defaults to ``openai``;
    ``scripted`` needs no ``base_url``)."""
    from importlib import import_module

    module, _, name = PROVIDERS[model.get("provider", "openai")].rpartition(".")
    cls = getattr(import_module(module), name)
    base_url = model.get("base_url", "")
    provider: Provider = cls(base_url=base_url, api_key=api_key, max_retries=max_retries)
    return provider
