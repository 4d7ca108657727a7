"""Small real HTTP receivers on 127.0.0.1 for the export tests: an OTLP/HTTP traces collector
(decodes ``ExportTraceServiceRequest``) and a JSON analytics collector with scripted answers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


@dataclass
class Received:
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A threaded HTTP server recording every POST; ``answers`` are ``(status, headers)`` used
    in turn (then 200)."""

    answers: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver.lock:
                    receiver.received.append(Received(self.path, headers, body))
                    status, extra = receiver.answers.pop(0) if receiver.answers else (200, {})
                if self.path.endswith("/v1/traces"):
                    payload = ExportTraceServiceResponse().SerializeToString()
                    content_type = "application/x-protobuf"
                else:
                    payload, content_type = b'{"ok": true}', "application/json"
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                for name, value in extra.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


def serve(answers: list[tuple[int, dict[str, str]]] | None = None) -> Iterator[Receiver]:
    with Receiver(answers=list(answers or [])) as receiver:
        yield receiver


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


@dataclass
class Span:
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    start: int
    end: int
    kind: int
    status_code: int  # 0 unset, 1 ok, 2 error
    status_message: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    scope: str


def spans_of(receiver: Receiver) -> list[Span]:
    """Every span the receiver got, decoded from the protobuf bodies."""
    out = []
    with receiver.lock:
        bodies = [r.body for r in receiver.received if r.path.endswith("/v1/traces")]
    for body in bodies:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for s in scope_spans.spans:
                    out.append(Span(
                        name=s.name, trace_id=s.trace_id.hex(), span_id=s.span_id.hex(),
                        parent_id=s.parent_span_id.hex(), start=s.start_time_unix_nano,
                        end=s.end_time_unix_nano, kind=s.kind, status_code=s.status.code,
                        status_message=s.status.message,
                        attributes={a.key: _value(a.value) for a in s.attributes},
                        resource=resource, scope=scope_spans.scope.name,
                    ))  # fmt: skip
    return out


def wait_for(predicate: Any, timeout: float = 20, every: float = 0.1) -> Any:
    """Poll ``predicate()`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(every)
