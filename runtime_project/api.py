"""Shared REST pieces: pagination and error-shape schema components."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers
from rest_framework.pagination import LimitOffsetPagination


class Pagination(LimitOffsetPagination):
    """``?limit=&offset=``; responses are ``{"count", "next", "previous", "results"}``."""

    default_limit = 50
    max_limit = 500


ErrorSerializer = inline_serializer(
    name="Error",
    fields={
        "error": inline_serializer(
            name="ErrorBody",
            fields={
                "code": serializers.CharField(help_text="snake_case machine-readable code"),
                "message": serializers.CharField(),
                "details": serializers.DictField(),
            },
        )
    },
)


# One Server-Sent Event as an EventSource client parses it (the component is added by
# runtime_project.schema.add_stream_endpoints). Before OpenAPI 3.2 (no `itemSchema`), the
# `schema` of a `text/event-stream` response describes one event, not the stream's text.
SSE_EVENT_REF = {"$ref": "#/components/schemas/ServerSentEvent"}


def error_responses(*statuses: int) -> dict[int, OpenApiResponse]:
    """Schema entries for the error envelope at the given HTTP statuses, plus the ones every
    authenticated operation may answer: 401 (credential), 403 (scope or role) and 429 (rate
    limits and team quotas, with ``Retry-After``)."""
    descriptions = {
        400: "Invalid input (field errors under details.fields)",
        401: "Not authenticated (or the credential is revoked or expired)",
        403: "The credential lacks the scope, or your role in the team may not do this",
        404: "Not found (or not in your teams)",
        409: "Conflict with the object's state (or `server_busy` in exclusive mode)",
        413: "Payload too large",
        429: "Rate limit or team quota reached; retry after `Retry-After` seconds",
        503: "Service unavailable",
    }
    return {
        s: OpenApiResponse(response=ErrorSerializer, description=descriptions.get(s, "Error"))
        for s in sorted({401, 403, 429, *statuses})
    }
