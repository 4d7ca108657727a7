"""The chat shortcut (DESIGN §7): ``POST /sessions/{id}/messages`` queues a ``chat`` task on
the session's agent with ``{"message": …}`` as input (JSON, or its live stream with
``stream: true``); ``GET`` lists the conversation, rebuilt from the event log."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.access import writes
from accounts.audit import audit_request
from accounts.models import Scope
from debugger.headers import run_config_with_headers
from runtime_project.api import SSE_EVENT_REF, error_responses
from sessions import selectors
from sessions.apis.common import SESSION_ID, validated_query
from sessions.apis.tasks import SSE_DESCRIPTION, TaskOutputSerializer
from sessions.choices import MultitaskStrategy, OnDisconnect, TaskType
from sessions.services.tasks import task_create

TAGS = ["messages"]


class MessageSerializer(serializers.Serializer):
    seq = serializers.IntegerField(help_text="The event's seq in the session log.")
    task_id = serializers.UUIDField(allow_null=True)
    role = serializers.ChoiceField(choices=["user", "assistant", "tool"])
    content = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()
    tool_calls = serializers.ListField(
        child=serializers.DictField(), required=False,
        help_text='Assistant messages: `[{"id", "name", "arguments"}]`.',
    )  # fmt: skip
    tool_call_id = serializers.CharField(required=False, help_text="Tool messages.")
    name = serializers.CharField(required=False, help_text="Tool messages: the tool.")
    is_error = serializers.BooleanField(required=False, help_text="Tool messages.")

    class Meta:
        ref_name = "Message"


class MessagePageSerializer(serializers.Serializer):
    messages = MessageSerializer(many=True)
    next_after = serializers.IntegerField(help_text="Pass as `after` for the next page.")

    class Meta:
        ref_name = "MessagePage"


class MessageListApi(APIView):
    required_scope = Scope.SESSIONS_READ

    class FilterSerializer(serializers.Serializer):
        after = serializers.IntegerField(min_value=0, default=0, help_text="Seq to start after.")
        limit = serializers.IntegerField(min_value=1, max_value=1000, default=100)

        class Meta:
            ref_name = "MessageFilter"

    @extend_schema(
        operation_id="sessions_messages_list",
        summary="List the conversation",
        description="User, assistant and tool messages of the session, oldest first.",
        parameters=[SESSION_ID, FilterSerializer],
        responses={200: MessagePageSerializer, **error_responses(400, 404)},
        tags=TAGS,
    )
    def get(self, request: Request, session_id: str) -> Response:
        session = selectors.session_get(
            user=request.user, session_id=session_id, for_write=writes(request)
        )
        query = validated_query(self.FilterSerializer, request)
        messages = selectors.message_list(session=session, **query)
        next_after = messages[-1]["seq"] if messages else query["after"]
        body = {"messages": MessageSerializer(messages, many=True).data, "next_after": next_after}
        return Response(body)


class MessageCreateApi(APIView):
    required_scope = Scope.TASKS_WRITE
    parser_classes = [JSONParser]

    class InputSerializer(serializers.Serializer):
        message = serializers.CharField(help_text="The user's message.")
        config = serializers.DictField(
            default=dict, help_text="Run options, e.g. `model` (name, temperature, max_tokens)."
        )
        multitask_strategy = serializers.ChoiceField(
            choices=MultitaskStrategy.choices, default=MultitaskStrategy.ENQUEUE
        )
        stream = serializers.BooleanField(
            default=False, help_text="Answer with the task's live event stream (SSE)."
        )
        on_disconnect = serializers.ChoiceField(
            choices=OnDisconnect.choices, default=OnDisconnect.CONTINUE
        )

        class Meta:
            ref_name = "MessageCreateInput"

    @extend_schema(
        operation_id="sessions_messages_create",
        summary="Send a message",
        description=(
            'Queues a `chat` task on the session\'s agent with `{"message": …}` as input. '
            "The reply streams as `message.delta` events and ends with `message.completed`."
        ),
        parameters=[SESSION_ID],
        request=InputSerializer,
        responses={
            201: OpenApiResponse(TaskOutputSerializer, description="Queued"),
            (200, "text/event-stream"): OpenApiResponse(SSE_EVENT_REF, description=SSE_DESCRIPTION),
            **error_responses(400, 404, 409),
        },
        tags=TAGS,
    )
    def post(self, request: Request, session_id: str) -> Any:
        session = selectors.session_get(
            user=request.user, session_id=session_id, for_write=writes(request)
        )
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        data["config"] = run_config_with_headers(  # X-MONITOR-ID, X-DEBUG-RUN (docs/monitors.md)
            data["config"], headers=request.headers, user=request.user
        )
        task, _ = task_create(
            session=session, user=request.user, task_type=TaskType.CHAT,
            input={"message": data["message"]}, config=data["config"],
            multitask_strategy=data["multitask_strategy"], on_disconnect=data["on_disconnect"],
        )  # fmt: skip
        audit_request(request, "task.create", task, via="messages")
        if data["stream"]:
            from sessions.streaming import sse_response

            return sse_response(
                request._request, session=session, task=task,
                cancel_on_disconnect=task.on_disconnect == OnDisconnect.CANCEL,
            )  # fmt: skip
        return Response(TaskOutputSerializer(task).data, status=status.HTTP_201_CREATED)
