"""A scripted OpenAI-compatible chat server over real HTTP (for tests and the keyless demo).

``ScriptedLLM`` serves ``POST /v1/chat/completions`` (streaming SSE ``chat.completion.chunk``
frames ending with ``data: [DONE]``, or one JSON ``chat.completion``) and ``GET /v1/models``
from a thread, answering each request with the next scripted :class:`Turn`: text (streamed in
the given chunks, ``delay_s`` apart), tool calls, an HTTP error status (e.g. 429 with
``Retry-After``), or a mid-stream error. Every request body is kept in :attr:`requests` so a
test can check what the model was sent (history, tool results). The wire format is the one
the ``openai`` SDK accepts (``shared/research/stack.md`` §5). It is clearly a script: it never
pretends to understand the prompt.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Turn:
    """One scripted reply.

    Attributes:
        chunks: assistant text, streamed one chunk per SSE frame.
        tool_calls: ``[{"name", "arguments" (a JSON string, sent as is, even if malformed)}]``.
        status: an HTTP error status to answer with instead (with ``retry_after_s`` for 429).
        stream_error: an error frame sent after the chunks (the SDK raises ``APIError``).
        delay_s: pause between frames, seconds.
        usage: ``{"prompt_tokens", "completion_tokens"}`` reported at the end.
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


class ScriptedLLM:
    """Start with :meth:`start` (or as a context manager); ``base_url`` ends with ``/v1``."""

    def __init__(self, turns: list[Turn] | None = None, *, model: str = "scripted-1") -> None:
        self.turns: deque[Turn] = deque(turns or [])
        self.model = model
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None, "not started"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def add(self, *turns: Turn) -> None:
        with self._lock:
            self.turns.extend(turns)

    def _next(self, body: dict[str, Any]) -> Turn:
        with self._lock:
            self.requests.append(body)
            return self.turns.popleft() if self.turns else Turn(chunks=["(script exhausted)"])

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
                request = json.loads(self.rfile.read(length) or b"{}")
                turn = owner._next(request)
                if turn.status is not None:
                    headers = {"Retry-After": str(turn.retry_after_s)} if turn.retry_after_s else {}
                    error = {"message": f"scripted HTTP {turn.status}", "type": "scripted_error"}
                    self._json(turn.status, {"error": error}, headers)
                    return
                if request.get("stream"):
                    self._stream(turn, request)
                else:
                    self._json(200, _completion(owner.model, turn))

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

            def _stream(self, turn: Turn, request: dict[str, Any]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                for frame in _frames(owner.model, turn, request):
                    try:
                        self.wfile.write(f"data: {frame}\n\n".encode())
                        self.wfile.flush()
                    except OSError:
                        return  # the client went away (cancelled)
                    if turn.delay_s:
                        time.sleep(turn.delay_s)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
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
