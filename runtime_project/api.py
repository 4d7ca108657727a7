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


def error_responses(*statuses: int) -> dict[int, OpenApiResponse]:
    """Schema entries for the error envelope at the given HTTP statuses."""
    descriptions = {
        400: "Invalid input (field errors under details.fields)",
        401: "Not authenticated",
        403: "Forbidden",
        404: "Not found (or not yours)",
        409: "Conflict with the object's state",
        413: "Payload too large",
        503: "Service unavailable",
    }
    return {
        s: OpenApiResponse(response=ErrorSerializer, description=descriptions.get(s, "Error"))
        for s in (401, *statuses)
    }
