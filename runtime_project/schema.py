"""drf-spectacular post-processing: document the endpoints DRF does not serve itself (the SSE
streams are async Django views) so the OpenAPI schema covers every endpoint."""

from __future__ import annotations

from typing import Any

from runtime_project.api import SSE_EVENT_REF

_ERROR = {"$ref": "#/components/schemas/Error"}
# One event of a `text/event-stream` response, as an EventSource client parses it (with no
# `event:` line the type is "message"). Referenced as runtime_project.api.SSE_EVENT_REF.
SSE_EVENT: dict[str, Any] = {
    "type": "object",
    "description": "One Server-Sent Event (`: heartbeat` comments are not events).",
    "properties": {
        "event": {"type": "string", "description": "The `event:` field: the event's type."},
        "data": {"type": "string", "description": "The `data:` field: one JSON document."},
        "id": {"type": "string", "description": "The `id:` field: the event's `seq`."},
        "retry": {"type": "integer", "description": "The `retry:` field, milliseconds."},
    },
    "required": ["event", "data"],
}

# The resume cursor of every SSE stream: ``?after=`` or the ``Last-Event-ID`` header.
CURSOR_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": "after",
        "in": "query",
        "required": False,
        "description": "Replay events with seq greater than this (default 0).",
        "schema": {"type": "integer", "minimum": 0},
    },
    {
        "name": "Last-Event-ID",
        "in": "header",
        "required": False,
        "description": "Resume after this seq (sent by EventSource on reconnect).",
        "schema": {"type": "integer", "minimum": 0},
    },
]


def _sse(summary: str, description: str, param: str, tag: str, op_id: str) -> dict[str, Any]:
    return {
        "get": {
            "operationId": op_id,
            "summary": summary,
            "description": description,
            "tags": [tag],
            "parameters": [
                {
                    "name": param,
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "format": "uuid"},
                },
                *CURSOR_PARAMETERS,
            ],
            "security": [{"tokenAuth": []}, {"cookieAuth": []}],
            "responses": {
                "200": {
                    "description": (
                        "`text/event-stream`: `id: <seq>`, `event: <type>`, `data: <envelope JSON>`"
                        " per event; `: heartbeat` comments; task streams end with `event: end`."
                    ),
                    "content": {"text/event-stream": {"schema": SSE_EVENT_REF}},
                },
                "400": {
                    "description": "Invalid cursor",
                    "content": {"application/json": {"schema": _ERROR}},
                },
                "401": {
                    "description": "Not authenticated",
                    "content": {"application/json": {"schema": _ERROR}},
                },
                "404": {
                    "description": "Not found (or not yours)",
                    "content": {"application/json": {"schema": _ERROR}},
                },
            },
        }
    }


def add_stream_endpoints(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    """POSTPROCESSING_HOOKS entry."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas["ServerSentEvent"] = SSE_EVENT
    paths = result.setdefault("paths", {})
    paths["/api/v1/sessions/{session_id}/events/stream"] = _sse(
        "Stream a session's events (SSE)",
        "Replays the session's events after the cursor, then streams new ones live.",
        "session_id",
        "events",
        "sessions_events_stream",
    )
    paths["/api/v1/tasks/{task_id}/stream"] = _sse(
        "Stream a task's events (SSE)",
        "Replays the task's events after the cursor, streams new ones, and ends after the "
        "task's terminal `task.status`.",
        "task_id",
        "tasks",
        "tasks_stream",
    )
    return result
