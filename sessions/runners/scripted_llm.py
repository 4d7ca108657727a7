"""A scripted model server over real HTTP, OpenAI and Anthropic dialects (tests, keyless demo).

``ScriptedLLM`` answers each request with the next scripted :class:`Turn`: text (streamed in
the given chunks, ``delay_s`` apart), tool calls, an HTTP error status (e.g. 429 with
``Retry-After``), or a mid-stream error. It routes by path:

* ``POST /v1/chat/completions``: OpenAI Chat Completions, streaming SSE ``chat.completion.chunk``
  frames ending with ``data: [DONE]`` (usage in a last chunk when ``stream_options.include_usage``)
  or one JSON ``chat.completion``; errors as ``{"error": {"message", "type"}}``. The wire format
  is the one the ``openai`` SDK accepts (``shared/research/stack.md`` §5); ``base_url`` ends in
  ``/v1``.
* ``POST /v1/messages``: Anthropic Messages, streaming SSE named events (``message_start``,
  ``content_block_start`` / ``content_block_delta`` (``text_delta``, ``input_json_delta``) /
  ``content_block_stop``, ``message_delta`` with ``stop_reason`` and ``usage.output_tokens``,
  ``message_stop``) or one JSON ``message``; errors as ``{"type": "error", "error": {"type",
  "message"}}``, mid-stream as an ``event: error`` frame (Anthropic's "Streaming Messages" docs).
  ``anthropic_base_url`` has no ``/v1`` (the ``anthropic`` SDK appends ``/v1/messages``).
  Message and tool-use ids are unique per reply (``msg_scripted_<n>``, ``toolu_<n>_<i>`` for
  the n-th request; the first reply keeps ``msg_scripted`` / ``toolu_<i>``); ``message_start``
  has ``stop_reason: null``. Claude Code (``docs/dev/coding-agent-clis.md``) runs against it.
* ``POST /v1/responses``: OpenAI Responses (what Codex CLI speaks), streaming SSE named events
  ``response.created`` … ``response.output_item.done`` … ``response.completed`` (or
  ``response.failed`` for a ``stream_error``), each with a ``sequence_number``, or one JSON
  ``response``; ``function_call`` items, ``custom_tool_call`` for a tool the request declares
  ``"type": "custom"`` (Codex's ``apply_patch``); errors as ``{"error": {"message", "type",
  "code"}}``. Built in :mod:`sessions.runners.scripted_responses`; ``base_url`` as for chat.
* ``GET /v1/models``: the one scripted model. Any other path is a 404 and consumes no turn.

Every request body (any dialect) is kept in :attr:`requests`, in order, so a test can check
what the model was sent (history, tool results). It is clearly a script: it never pretends to
understand the prompt.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from sessions.runners.scripted_responses import (
    RESPONSES_PATH,
    error_body,
    response_frames,
    response_object,
)


@dataclass
class Turn:
    """One scripted reply (any dialect).

    Attributes:
        chunks: assistant text, streamed one chunk per SSE frame (one ``text_delta`` each).
        tool_calls: ``[{"name", "arguments" (a JSON string, sent as is, even if malformed)}]``.
            Anthropic streams ``arguments`` as ``input_json_delta`` pieces (two when it has two
            characters or more, so a client must join them); its non-streaming ``input`` is the
            parsed object (``{}`` when malformed: a JSON body cannot carry a broken object).
        status: an HTTP error status to answer with instead (with ``retry_after_s`` for 429).
        stream_error: an error frame sent after the content (the chat and Anthropic SDK streams
            raise an ``APIError``; Responses ends with a ``response.failed`` event instead).
        delay_s: pause between frames, seconds.
        usage: ``{"prompt_tokens", "completion_tokens"}`` reported at the end (Anthropic:
            ``input_tokens`` in ``message_start``, ``output_tokens`` in ``message_delta``;
            Responses: ``input_tokens`` / ``output_tokens`` in the final ``response``).
    """

    chunks: list[str] = field(default_factory=list)
    tool_calls: list[dict[str, str]] = field(default_factory=list)
    status: int | None = None
    retry_after_s: float = 0.0
    stream_error: str | None = None
    delay_s: float = 0.0
    usage: dict[str, int] = field(
        default_factory=lambda: {"prompt_tokens": 7, "completion_tokens": 5}
    )


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client dropping a kept-alive connection (after an error, or cancelled) is normal.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


OPENAI_PATH = "/v1/chat/completions"
ANTHROPIC_PATH = "/v1/messages"

# Anthropic's error ``type`` per HTTP status (its "Errors" docs); others are ``api_error``.
_ANTHROPIC_ERRORS = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
    404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
    529: "overloaded_error",
}  # fmt: skip


class ScriptedLLM:
    """Start with :meth:`start` (or as a context manager).

    ``base_url`` (``http://127.0.0.1:<port>/v1``) is for the ``openai`` SDK,
    ``anthropic_base_url`` (``http://127.0.0.1:<port>``) for the ``anthropic`` SDK; all reach
    the same script, so turns are consumed in request order whichever dialect asks.
    """

    def __init__(
        self,
        turns: list[Turn] | None = None,
        *,
        model: str = "scripted-1",
        responder: Callable[[dict[str, Any]], Turn] | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.turns: deque[Turn] = deque(turns or [])
        self.model = model
        self.responder = responder  # answers when no scripted turn is queued (the demo model)
        # A sandbox without network reaches the model through its egress proxy, which never
        # proxies to its own loopback: tests of sandboxed CLIs bind a non-loopback address.
        self.host = host
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []  # of each request, in the same order
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def anthropic_base_url(self) -> str:
        assert self._server is not None, "not started"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def base_url(self) -> str:
        return f"{self.anthropic_base_url}/v1"

    def add(self, *turns: Turn) -> None:
        with self._lock:
            self.turns.extend(turns)

    def _next(self, body: dict[str, Any]) -> Turn:
        with self._lock:
            self.requests.append(body)
            if self.turns:
                return self.turns.popleft()
        return self.responder(body) if self.responder else Turn(chunks=["(script exhausted)"])

    def start(self) -> ScriptedLLM:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                body = {"object": "list", "data": [{"id": owner.model, "object": "model"}]}
                self._json(200, body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                path = urlsplit(self.path).path.rstrip("/")
                if path not in (OPENAI_PATH, ANTHROPIC_PATH, RESPONSES_PATH):
                    self._json(404, {"error": {"message": f"no route {path}", "type": "not_found"}})
                    return
                request = json.loads(raw or b"{}")
                with owner._lock:
                    owner.headers.append({k.lower(): v for k, v in self.headers.items()})
                turn = owner._next(request)
                anthropic = path == ANTHROPIC_PATH
                if path == RESPONSES_PATH:
                    self._responses(turn, request)
                elif turn.status is not None:
                    self._error(turn, anthropic=anthropic)
                elif anthropic:
                    # ids unique per reply, as Anthropic's are (clients key tool results by them)
                    seq = len(owner.requests)
                    if request.get("stream"):
                        self._stream(turn, _anthropic_frames(owner.model, turn, seq))
                    else:
                        self._json(200, _message(owner.model, turn, seq))
                elif not request.get("stream"):
                    self._json(200, _completion(owner.model, turn))
                else:
                    frames = _frames(owner.model, turn, request)
                    self._stream(turn, [f"data: {frame}\n\n" for frame in frames])

            def _responses(self, turn: Turn, request: dict[str, Any]) -> None:
                if turn.status is not None:
                    retry = {"Retry-After": str(turn.retry_after_s)} if turn.retry_after_s else {}
                    self._json(turn.status, error_body(turn.status), retry)
                elif request.get("stream"):
                    self._stream(turn, response_frames(owner.model, turn, request))
                else:
                    self._json(200, response_object(owner.model, turn, request))

            def _error(self, turn: Turn, *, anthropic: bool) -> None:
                status, message = turn.status or 500, f"scripted HTTP {turn.status}"
                headers = {"Retry-After": str(turn.retry_after_s)} if turn.retry_after_s else {}
                if not anthropic:
                    self._json(status, {"error": {"message": message, "type": "scripted_error"}},
                               headers)  # fmt: skip
                    return
                kind = _ANTHROPIC_ERRORS.get(status, "api_error")
                if status == 429:
                    headers = {"retry-after": str(turn.retry_after_s)}
                body = {"type": "error", "error": {"type": kind, "message": message}}
                self._json(status, body, headers)

            def _json(
                self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
            ) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, turn: Turn, frames: list[str]) -> None:
                """Write whole SSE frames (``...\\n\\n``), ``turn.delay_s`` apart."""
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                for frame in frames:
                    try:
                        self.wfile.write(frame.encode())
                        self.wfile.flush()
                    except OSError:
                        return  # the client went away (cancelled)
                    if turn.delay_s:
                        time.sleep(turn.delay_s)

        self._server = _Server((self.host, 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> ScriptedLLM:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _envelope(model: str, delta: dict[str, Any], finish: str | None = None) -> str:
    return json.dumps({
        "id": "chatcmpl-scripted", "object": "chat.completion.chunk", "created": int(time.time()),
        "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    })  # fmt: skip


def _frames(model: str, turn: Turn, request: dict[str, Any]) -> list[str]:
    frames = [_envelope(model, {"role": "assistant", "content": ""})]
    frames += [_envelope(model, {"content": chunk}) for chunk in turn.chunks]
    for index, call in enumerate(turn.tool_calls):
        frames.append(_envelope(model, {"tool_calls": [{
            "index": index, "id": f"call_{index}", "type": "function",
            "function": {"name": call["name"], "arguments": call["arguments"]},
        }]}))  # fmt: skip
    if turn.stream_error:
        frames.append(json.dumps({"error": {"message": turn.stream_error, "type": "server_error"}}))
        return frames
    frames.append(_envelope(model, {}, "tool_calls" if turn.tool_calls else "stop"))
    if (request.get("stream_options") or {}).get("include_usage"):
        usage = {**turn.usage, "total_tokens": sum(turn.usage.values())}
        frames.append(json.dumps({
            "id": "chatcmpl-scripted", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": model, "choices": [], "usage": usage,
        }))  # fmt: skip
    frames.append("[DONE]")
    return frames


def _completion(model: str, turn: Turn) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": "".join(turn.chunks)}
    if turn.tool_calls:
        message["tool_calls"] = [
            {"id": f"call_{i}", "type": "function", "function": dict(call)}
            for i, call in enumerate(turn.tool_calls)
        ]
    return {
        "id": "chatcmpl-scripted", "object": "chat.completion", "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message,
                     "finish_reason": "tool_calls" if turn.tool_calls else "stop"}],
        "usage": {**turn.usage, "total_tokens": sum(turn.usage.values())},
    }  # fmt: skip


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps({'type': event, **data})}\n\n"


def _halves(text: str) -> list[str]:
    """``text`` in two pieces (one when shorter than two characters, none when empty)."""
    cut = len(text) // 2
    return [piece for piece in (text[:cut], text[cut:]) if piece]


def _anthropic_frames(model: str, turn: Turn, seq: int = 1) -> list[str]:
    """The SSE frames of one streamed reply; ``seq`` (the request's number) makes its ids."""
    start = _message(model, Turn(usage=turn.usage), seq)
    # what Anthropic reports before any output: no stop reason yet, one output token
    start["stop_reason"] = None
    start["usage"]["output_tokens"] = 1
    frames = [_sse("message_start", {"message": start}), _sse("ping", {})]  # clients skip pings
    blocks: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    if turn.chunks:
        deltas = [{"type": "text_delta", "text": chunk} for chunk in turn.chunks]
        blocks.append(({"type": "text", "text": ""}, deltas))
    for index, call in enumerate(turn.tool_calls):
        block = {"type": "tool_use", "id": _tool_id(seq, index), "name": call["name"], "input": {}}
        pieces = _halves(call["arguments"])
        blocks.append((block, [{"type": "input_json_delta", "partial_json": p} for p in pieces]))
    for index, (block, deltas) in enumerate(blocks):
        frames.append(_sse("content_block_start", {"index": index, "content_block": block}))
        frames += [_sse("content_block_delta", {"index": index, "delta": d}) for d in deltas]
        frames.append(_sse("content_block_stop", {"index": index}))
    if turn.stream_error:
        error = {"type": "overloaded_error", "message": turn.stream_error}
        frames.append(_sse("error", {"error": error}))
        return frames
    frames.append(_sse("message_delta", {
        "delta": {"stop_reason": "tool_use" if turn.tool_calls else "end_turn",
                  "stop_sequence": None},
        "usage": {"output_tokens": turn.usage.get("completion_tokens", 0)},
    }))  # fmt: skip
    frames.append(_sse("message_stop", {}))
    return frames


def _tool_id(seq: int, index: int) -> str:
    """``toolu_0`` for the first call of the first reply (what older recordings show)."""
    return f"toolu_{index}" if seq <= 1 else f"toolu_{seq}_{index}"


def _message(model: str, turn: Turn, seq: int = 1) -> dict[str, Any]:
    """One Anthropic ``message`` (the non-streamed reply, and ``message_start``'s base)."""
    content: list[dict[str, Any]] = []
    if turn.chunks:
        content.append({"type": "text", "text": "".join(turn.chunks)})
    for index, call in enumerate(turn.tool_calls):
        try:
            arguments = json.loads(call["arguments"] or "{}")
        except ValueError:
            arguments = {}
        content.append({"type": "tool_use", "id": _tool_id(seq, index), "name": call["name"],
                        "input": arguments if isinstance(arguments, dict) else {}})  # fmt: skip
    return {
        "id": "msg_scripted" if seq <= 1 else f"msg_scripted_{seq}", "type": "message",
        "role": "assistant", "model": model,
        "content": content, "stop_reason": "tool_use" if turn.tool_calls else "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": turn.usage.get("prompt_tokens", 0),
                  "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                  "output_tokens": turn.usage.get("completion_tokens", 0)},
    }  # fmt: skip
