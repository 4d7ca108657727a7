"""The OpenAI-compatible API (async Django views; docs/integrations/openai.md).

- ``GET /v1/models``, ``GET /v1/models/{model}`` (scope ``agents:read``): the agents the
  credential may use and that are exposed to this API, as OpenAI models (``catalog.py``).
- ``POST /v1/chat/completions`` (scope ``tasks:write``): one task per call on the model's
  agent; ``chat.completion`` JSON, or with ``stream: true`` ``chat.completion.chunk`` SSE
  ending with ``data: [DONE]``.
- ``POST /v1/responses`` (scope ``tasks:write``): the same with the Responses API's objects and
  streaming events; ``previous_response_id`` continues the session.

Every call is an ordinary session and task (``config.integration == "openai"``); the response
headers ``X-Session-Id`` and ``X-Task-Id`` name them. A client that goes away before the task
finished cancels it. The views do the database work in one ``sync_to_async`` call and follow
the task on the event loop (``streaming.follow``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponseBase, JsonResponse, StreamingHttpResponse

from accounts.models import Scope
from sessions.models import Agent

from . import serializers as wire
from .catalog import model_get, model_list, model_object
from .http import OpenAIError, authenticate, json_body, openai_view
from .mapping import TurnRequest, parse_chat, parse_responses
from .services import Started, turn_start
from .streaming import Heartbeat, Outcome, Text, ToolCall, cancel_quietly, follow

DISCONNECTED = "client disconnected (OpenAI API)"


@openai_view("GET")
async def models_list(request: HttpRequest) -> HttpResponseBase:
    """``GET /v1/models``: ``{"object": "list", "data": [model, ...]}``."""

    def _list() -> list[dict[str, Any]]:
        user = authenticate(request, Scope.AGENTS_READ)
        return [model_object(model_id, agent) for model_id, agent in model_list(user=user)]

    return JsonResponse({"object": "list", "data": await sync_to_async(_list)()})


@openai_view("GET")
async def models_detail(request: HttpRequest, model: str) -> HttpResponseBase:
    """``GET /v1/models/{model}``: one model object, or 404 ``model_not_found``."""

    def _get() -> dict[str, Any]:
        user = authenticate(request, Scope.AGENTS_READ)
        agent = model_get(user=user, model=model)
        return model_object(model, Agent.objects.select_related("team").get(pk=agent.pk))

    return JsonResponse(await sync_to_async(_get)())


def _start(request: HttpRequest, parse: Any) -> tuple[TurnRequest, Agent, Started]:
    """Authenticate, parse, resolve the model and queue the task (sync)."""
    user = authenticate(request, Scope.TASKS_WRITE)
    turn = parse(json_body(request), request.headers)
    agent = model_get(user=user, model=turn.model)
    started = turn_start(user=user, agent=agent, turn=turn, request=request)
    return turn, agent, started


def _ids(started: Started) -> dict[str, str]:
    return {
        "X-Session-Id": str(started.run.session.uuid),
        "X-Task-Id": str(started.run.task.uuid),
    }


def _sse_response(body: AsyncIterator[str], started: Started) -> StreamingHttpResponse:
    response = StreamingHttpResponse(body, content_type="text/event-stream; charset=utf-8")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    for name, value in _ids(started).items():
        response[name] = value
    return response


def _outcome_error(outcome: Outcome) -> OpenAIError:
    """The HTTP error of a turn that did not produce an answer (never retried by an SDK)."""
    status = 504 if outcome.kind == "timeout" else 502
    return OpenAIError(
        status,
        outcome.message,
        code=outcome.code,
        type="timeout" if outcome.kind == "timeout" else "server_error",
        headers={"x-should-retry": "false"},
    )


async def _collect(started: Started, agent: Agent) -> Outcome:
    """Wait for the turn's outcome (non-streaming); a client gone away cancels the task."""
    try:
        async for piece in follow(started, stdout=agent.kind != "llm"):
            if isinstance(piece, Outcome):
                return piece
    except asyncio.CancelledError:  # Django cancels the view when the client disconnects
        await cancel_quietly(started, DISCONNECTED)
        raise
    raise AssertionError("follow() always ends with an Outcome")  # pragma: no cover


# CHAT COMPLETIONS ------------------------------------------------------------------------------


@openai_view("POST")
async def chat_completions(request: HttpRequest) -> HttpResponseBase:
    """``POST /v1/chat/completions`` (module docstring; docs/integrations/openai.md)."""
    turn, agent, started = await sync_to_async(_start)(request, parse_chat)
    if turn.stream:
        return _sse_response(_chat_stream(turn, agent, started), started)
    outcome = await _collect(started, agent)
    if outcome.kind in ("error", "timeout"):
        return _outcome_error(outcome).response(_ids(started))
    task = outcome.task or started.run.task
    body = wire.chat_completion(task, turn.model, outcome.text, outcome.kind, outcome.usage)
    return JsonResponse(body, headers=_ids(started))


async def _chat_stream(turn: TurnRequest, agent: Agent, started: Started) -> AsyncIterator[str]:
    task, model, usage_on = started.run.task, turn.model, turn.include_usage

    def chunk(delta: dict[str, Any] | None, finish: str | None = None, **kw: Any) -> str:
        return wire.sse(wire.chat_chunk(task, model, delta, finish, include_usage=usage_on, **kw))

    finished = False
    try:
        yield chunk({"role": "assistant", "content": ""})
        async for piece in follow(started, stdout=agent.kind != "llm"):
            if isinstance(piece, Heartbeat):
                yield ": keep-alive\n\n"
            elif isinstance(piece, Text):
                yield chunk({"content": piece.text})
            elif isinstance(piece, ToolCall):
                delta = wire.tool_call_delta(piece.index, piece.call_id, piece.name,
                                             piece.arguments)  # fmt: skip
                yield chunk(delta)
            else:
                finished = True
                if piece.kind in ("error", "timeout"):
                    yield wire.sse(_outcome_error(piece).body())
                else:
                    if piece.tail:
                        yield chunk({"content": piece.tail})
                    yield chunk({}, piece.kind)
                    if usage_on:
                        yield chunk(None, usage=piece.usage)
                yield wire.sse("[DONE]")
    except asyncio.CancelledError:
        if not finished:
            await cancel_quietly(started, DISCONNECTED)
        raise


# RESPONSES -------------------------------------------------------------------------------------


def _previous_id(turn: TurnRequest) -> str | None:
    return f"resp_{turn.previous_task_id.replace('-', '')}" if turn.previous_task_id else None


def _response_end(turn: TurnRequest, outcome: Outcome, started: Started) -> dict[str, Any]:
    """The finished ``response`` object of ``outcome`` (status completed/incomplete/failed)."""
    task = outcome.task or started.run.task
    status = {"stop": "completed", "length": "incomplete"}.get(outcome.kind, "failed")
    error = None
    if status == "failed":
        error = {"code": "server_error", "message": outcome.message or outcome.code}
    return wire.response_object(
        task, turn.model, status=status, text=outcome.text, usage=outcome.usage,
        previous_response_id=_previous_id(turn), metadata=turn.metadata, error=error,
        incomplete_reason="max_output_tokens" if status == "incomplete" else None,
    )  # fmt: skip


@openai_view("POST")
async def responses_create(request: HttpRequest) -> HttpResponseBase:
    """``POST /v1/responses`` (module docstring; docs/integrations/openai.md)."""
    turn, agent, started = await sync_to_async(_start)(request, parse_responses)
    if turn.stream:
        return _sse_response(_responses_stream(turn, agent, started), started)
    outcome = await _collect(started, agent)
    if outcome.kind in ("error", "timeout"):
        return _outcome_error(outcome).response(_ids(started))
    return JsonResponse(_response_end(turn, outcome, started), headers=_ids(started))


async def _responses_stream(
    turn: TurnRequest, agent: Agent, started: Started
) -> AsyncIterator[str]:
    task = started.run.task
    events = wire.ResponseEvents(task)
    begun = wire.response_object(
        task, turn.model, status="in_progress", text=None, usage=None,
        previous_response_id=_previous_id(turn), metadata=turn.metadata,
    )  # fmt: skip
    finished = False
    try:
        yield events.event("response.created", response=begun)
        yield events.event("response.in_progress", response=begun)
        item = {**wire.output_message(task, "", "in_progress"), "content": []}
        yield events.event("response.output_item.added", output_index=0, item=item)
        yield events.text_event("response.content_part.added", part=wire.output_text(""))
        async for piece in follow(started, stdout=agent.kind != "llm"):
            if isinstance(piece, Heartbeat):
                yield ": keep-alive\n\n"
            elif isinstance(piece, Text):
                yield events.text_event("response.output_text.delta", delta=piece.text, logprobs=[])
            elif isinstance(piece, Outcome):
                finished = True
                if piece.tail:
                    yield events.text_event("response.output_text.delta", delta=piece.tail,
                                            logprobs=[])  # fmt: skip
                final = _response_end(turn, piece, started)
                yield events.text_event("response.output_text.done", text=piece.text, logprobs=[])
                yield events.text_event("response.content_part.done",
                                        part=wire.output_text(piece.text))  # fmt: skip
                yield events.event("response.output_item.done", output_index=0,
                                   item=final["output"][0])  # fmt: skip
                kind = {"completed": "response.completed", "incomplete": "response.incomplete"}
                yield events.event(kind.get(final["status"], "response.failed"), response=final)
    except asyncio.CancelledError:
        if not finished:
            await cancel_quietly(started, DISCONNECTED)
        raise
