"""A minimal SSE reader over httpx for tests (parses id/event/data fields)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx


def iter_sse(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """Yield ``{"id", "event", "data"}`` per SSE message (comments become ``event: comment``).

    As in the HTML spec's EventSource, a block without ``data`` (e.g. ``retry: 2000``) dispatches
    nothing; ``event`` defaults to ``message``.
    """
    fields: dict[str, Any] = {}
    for line in response.iter_lines():
        if line == "":
            if "data" in fields:
                try:
                    fields["data"] = json.loads(fields["data"])
                except ValueError:
                    pass
                fields.setdefault("event", "message")
                yield fields
                fields = {}
            continue
        if line.startswith(":"):
            yield {"event": "comment", "data": line[1:].strip()}
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data" and "data" in fields:
            fields["data"] += "\n" + value
        else:
            fields[name] = value
