"""Event log reads: a session's events, or one task's, after a seq (DESIGN §3).

The live streams (SSE ``.../stream``, WebSocket) live in ``sessions.streaming`` and
``sessions.consumers``; these endpoints are the catch-up and polling side of the same log.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.access import writes
from accounts.models import Scope
from runtime_project.api import error_responses
from sessions import selectors
from sessions.apis.common import SESSION_ID, TASK_ID, validated_query
from sessions.models import Session, Task

TAGS = ["events"]
MAX_LIMIT = 1000


class EventSerializer(serializers.Serializer):
    """The event envelope (documentation only: the selector already returns envelopes)."""

    seq = serializers.IntegerField(help_text="Gapless per session, starting at 1.")
    session_id = serializers.UUIDField()
    task_id = serializers.UUIDField(allow_null=True)
    type = serializers.CharField(help_text="`task.status`, `process.stdout`, `message.delta`, …")
    ts = serializers.DateTimeField()
    data = serializers.DictField()  # type: ignore[assignment]  # a field, not Serializer.data

    class Meta:
        ref_name = "Event"


class EventPageSerializer(serializers.Serializer):
    events = EventSerializer(many=True)
    last_seq = serializers.IntegerField(help_text="The session's newest seq.")
    next_after = serializers.IntegerField(
        help_text="Pass as `after` to get the next events (the last seq returned, else `after`)."
    )

    class Meta:
        ref_name = "EventPage"


class EventFilterSerializer(serializers.Serializer):
    after = serializers.IntegerField(
        min_value=0, default=0, help_text="Only events with a greater seq."
    )
    limit = serializers.IntegerField(
        min_value=1, max_value=MAX_LIMIT, default=100, help_text="At most this many events."
    )

    class Meta:
        ref_name = "EventFilter"


def _event_page(*, session: Session, task: Task | None, after: int, limit: int) -> dict[str, Any]:
    # Envelopes are returned as built by the selector: re-serialising up to 1000 dicts per
    # request through DRF fields would only cost time (EventSerializer documents the shape).
    events = selectors.event_list(session=session, after=after, limit=limit, task=task)
    next_after = events[-1]["seq"] if events else after
    return {
        "events": events,
        "last_seq": max(session.last_seq, next_after),
        "next_after": next_after,
    }


class SessionEventListApi(APIView):
    required_scope = Scope.SESSIONS_READ

    @extend_schema(
        operation_id="sessions_events_list",
        summary="Read a session's events",
        description=(
            "Events with `seq > after`, oldest first. Page with `next_after`; for a live "
            "feed use `/events/stream` (SSE) or the WebSocket."
        ),
        parameters=[SESSION_ID, EventFilterSerializer],
        responses={200: EventPageSerializer, **error_responses(400, 404)},
        tags=TAGS,
    )
    def get(self, request: Request, session_id: str) -> Response:
        session = selectors.session_get(
            user=request.user, session_id=session_id, for_write=writes(request)
        )
        filters = validated_query(EventFilterSerializer, request)
        return Response(_event_page(session=session, task=None, **filters))


class TaskEventListApi(APIView):
    required_scope = Scope.SESSIONS_READ

    @extend_schema(
        operation_id="tasks_events_list",
        summary="Read a task's events",
        description="Like the session's events, restricted to this task (seqs may skip).",
        parameters=[TASK_ID, EventFilterSerializer],
        responses={200: EventPageSerializer, **error_responses(400, 404)},
        tags=TAGS,
    )
    def get(self, request: Request, task_id: str) -> Response:
        task = selectors.task_get(user=request.user, task_id=task_id, for_write=writes(request))
        filters = validated_query(EventFilterSerializer, request)
        return Response(_event_page(session=task.session, task=task, **filters))
