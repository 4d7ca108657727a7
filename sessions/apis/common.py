"""Helpers shared by the API modules: pagination, list-valued query parameters, path ids."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from runtime_project.api import Pagination


def paginated_response(
    *,
    queryset: Any,
    serializer_class: type[serializers.BaseSerializer],
    request: Request,
    view: APIView,
    context: dict[str, Any] | None = None,
) -> Response:
    """One page of ``queryset`` as ``{"count", "next", "previous", "results"}``.

    ``context`` may be a callable taking the page (a list) and returning the serializer
    context, for values computed once per page instead of once per row.
    """
    paginator = Pagination()
    page: list[Any] | None = paginator.paginate_queryset(queryset, request, view=view)
    assert page is not None
    ctx = context(page) if callable(context) else (context or {})
    data = serializer_class(page, many=True, context={"request": request, **ctx}).data
    return paginator.get_paginated_response(data)


class CommaSeparatedListField(serializers.ListField):
    """A list query parameter given as ``?x=a,b`` or ``?x=a&x=b`` (or both)."""

    def to_internal_value(self, data: Any) -> list[Any]:
        if isinstance(data, str):
            data = [data]
        items = [part.strip() for item in data for part in str(item).split(",") if part.strip()]
        return super().to_internal_value(items)


def validated_query(serializer_class: type[serializers.Serializer], request: Request) -> Any:
    """Validate ``request.query_params`` (400 ``invalid_input`` listing the fields)."""
    serializer = serializer_class(data=request.query_params)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def uuid_path(name: str, what: str) -> OpenApiParameter:
    """Schema of a ``<name>`` path segment holding a public UUID."""
    return OpenApiParameter(
        name,
        OpenApiTypes.UUID,
        OpenApiParameter.PATH,
        description=f"Public id of the {what} (a UUID; anything else is 404).",
    )


SESSION_ID = uuid_path("session_id", "session")
TASK_ID = uuid_path("task_id", "task")
AGENT_ID = OpenApiParameter(
    "agent_id",
    OpenApiTypes.STR,
    OpenApiParameter.PATH,
    description="The agent's id (UUID) or slug; your own agent wins over a public one.",
)


TEAM_FIELD = serializers.CharField(
    required=False,
    help_text=(
        "Team (UUID or slug) the new object belongs to; default: the API key's team, else "
        "your personal team. You need the member role or above there."
    ),
)


class TeamRefSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="uuid")
    slug = serializers.SlugField()

    class Meta:
        ref_name = "TeamRef"
