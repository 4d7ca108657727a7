"""The public, read-only side of a share link (issue 7 §4; docs/sharing.md).

Whoever holds a share token may, without logging in, read that one session under
``/api/v1/shared/{token}``: its summary, events (paged, and live over SSE), conversation,
workspace files, and HTML export. Nothing here writes, and no other session is reachable. Every
request resolves the token again (``share_link_resolve``), so a revoked or expired link, or a
deleted session, answers 404 ``share_not_found`` from the next request on. An SSE stream that
is already open re-checks its link on every heartbeat and at least every
``SHARE_STREAM_RECHECK_S`` while events flow, and then ends with ``event: end`` and
``{"reason": "share_revoked"}``.

The views take no credential at all (``authentication_classes = []``): the token in the path
is the credential. Answers carry ``Cache-Control: no-store`` (a revoked link must not live on in
a cache) and ``Referrer-Policy: no-referrer`` (the URL is the secret).
"""

from __future__ import annotations

import json
import mimetypes
import posixpath
import time
from collections.abc import AsyncIterator
from typing import Any

from django.conf import settings
from django.http import FileResponse, HttpRequest, HttpResponseBase, JsonResponse
from django.urls import reverse
from django.views.decorators.http import require_GET
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from runtime_project.api import SSE_EVENT_REF, error_responses
from runtime_project.db import db_call
from runtime_project.exceptions import ApplicationError
from runtime_project.schema import CURSOR_PARAMETERS
from sandboxes import paths
from sessions import selectors
from sessions.apis.events import EventFilterSerializer, EventPageSerializer
from sessions.apis.messages import MessageListApi, MessagePageSerializer, MessageSerializer
from sessions.apis.sharing import EXPORT_RESPONSES, AnyAcceptNegotiation, export_response
from sessions.apis.workspace import FILE_PATH, ListingSerializer, WorkspaceFileListApi
from sessions.models import Session, Task
from sessions.services.sharing import share_link_is_usable, share_link_resolve
from sessions.streaming import _last_event_id, _non_negative_int, sse_response

TAGS = ["shared"]
MAX_TASKS = 100
PUBLIC_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
}
SHARE_TOKEN = OpenApiParameter(
    "token",
    OpenApiTypes.STR,
    OpenApiParameter.PATH,
    description="The share token (returned once by `POST /sessions/{id}/share`).",
)


def _public_errors(*statuses: int) -> dict[int, OpenApiResponse]:
    """The error entries of a public operation: no 401, nothing is authenticated here."""
    return {s: r for s, r in error_responses(*statuses).items() if s != 401}


def _session(token: str) -> Session:
    return share_link_resolve(token).session


class _SharedApi(APIView):
    """Base of the public views: no authentication, no scope, JSON errors, no caching."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    renderer_classes = [JSONRenderer]

    def finalize_response(self, request: Any, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)
        for name, value in PUBLIC_HEADERS.items():
            response[name] = value
        return response


class SharedTaskSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="uuid")
    task_type = serializers.CharField()
    status = serializers.CharField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)

    class Meta:
        ref_name = "SharedTask"


class SharedSessionSerializer(serializers.Serializer):
    class AgentSerializer(serializers.Serializer):
        slug = serializers.SlugField()
        name = serializers.CharField()
        kind = serializers.CharField()

        class Meta:
            ref_name = "SharedAgent"

    id = serializers.UUIDField(source="uuid")
    name = serializers.CharField()
    agent = AgentSerializer()
    status = serializers.CharField()
    created_at = serializers.DateTimeField()
    last_seq = serializers.IntegerField(help_text="Seq of the newest event.")
    task_count = serializers.IntegerField()
    tasks = SharedTaskSerializer(
        many=True, help_text=f"The session's tasks, oldest first (at most {MAX_TASKS})."
    )
    expires_at = serializers.DateTimeField(allow_null=True, help_text="When this link expires.")
    links = serializers.DictField(
        child=serializers.CharField(),
        help_text="`events`, `events_stream`, `messages`, `files`, `export`.",
    )

    class Meta:
        ref_name = "SharedSession"


class SharedSessionApi(_SharedApi):
    @extend_schema(
        operation_id="shared_session_retrieve",
        summary="Read a shared session",
        description=(
            "No login: the token is the credential. The session's name, agent, status, last "
            "seq and tasks, with links to the other read-only endpoints. 404 "
            "`share_not_found` for an unknown, revoked or expired token."
        ),
        parameters=[SHARE_TOKEN],
        responses={200: SharedSessionSerializer, **_public_errors(404)},
        tags=TAGS,
    )
    def get(self, request: Request, token: str) -> Response:
        link = share_link_resolve(token)
        session = link.session
        tasks = Task.objects.filter(session=session).order_by("created_at")

        def url(name: str) -> str:
            return reverse(f"sharing_api:{name}", kwargs={"token": token})

        body = {
            "uuid": session.uuid,
            "name": session.name,
            "agent": session.agent,
            "status": session.status,
            "created_at": session.created_at,
            "last_seq": session.last_seq,
            "task_count": tasks.count(),
            "tasks": list(tasks[:MAX_TASKS]),
            "expires_at": link.expires_at,
            "links": {
                "events": url("shared-events"),
                "events_stream": url("shared-events-stream"),
                "messages": url("shared-messages"),
                "files": url("shared-files"),
                "export": url("shared-export"),
            },
        }
        return Response(SharedSessionSerializer(body).data)


class SharedEventListApi(_SharedApi):
    @extend_schema(
        operation_id="shared_events_list",
        summary="Read a shared session's events",
        description="As `GET /sessions/{id}/events`, with a share token.",
        parameters=[SHARE_TOKEN, EventFilterSerializer],
        responses={200: EventPageSerializer, **_public_errors(400, 404)},
        tags=TAGS,
    )
    def get(self, request: Request, token: str) -> Response:
        session = _session(token)
        query = EventFilterSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        after, limit = query.validated_data["after"], query.validated_data["limit"]
        events = selectors.event_list(session=session, after=after, limit=limit)
        next_after = events[-1]["seq"] if events else after
        last_seq = max(session.last_seq, next_after)
        return Response({"events": events, "last_seq": last_seq, "next_after": next_after})


class SharedMessageListApi(_SharedApi):
    @extend_schema(
        operation_id="shared_messages_list",
        summary="Read a shared session's conversation",
        description="As `GET /sessions/{id}/messages`, with a share token.",
        parameters=[SHARE_TOKEN, MessageListApi.FilterSerializer],
        responses={200: MessagePageSerializer, **_public_errors(400, 404)},
        tags=TAGS,
    )
    def get(self, request: Request, token: str) -> Response:
        session = _session(token)
        query = MessageListApi.FilterSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        messages = selectors.message_list(session=session, **query.validated_data)
        next_after = messages[-1]["seq"] if messages else query.validated_data["after"]
        data = MessageSerializer(messages, many=True).data
        return Response({"messages": data, "next_after": next_after})


def _listing(session: Session, path: str, *, recursive: bool) -> dict[str, Any]:
    root = session.workspace_path
    if not root.is_dir() and not paths.normalize(path):
        entries: list[paths.FileEntry] = []  # nothing written yet
    else:
        limit = settings.WORKSPACE_MAX_FILES
        entries = paths.list_dir(root, path, recursive=recursive, limit=limit + 1)
    truncated = len(entries) > settings.WORKSPACE_MAX_FILES
    body = {
        "path": paths.normalize(path),
        "entries": entries[: settings.WORKSPACE_MAX_FILES],
        "truncated": truncated,
    }
    return ListingSerializer(body).data


class SharedFileListApi(_SharedApi):
    @extend_schema(
        operation_id="shared_files_list",
        summary="List a shared session's workspace files",
        description="As `GET /sessions/{id}/workspace/files`, with a share token.",
        parameters=[SHARE_TOKEN, WorkspaceFileListApi.FilterSerializer],
        responses={200: ListingSerializer, **_public_errors(400, 404)},
        tags=TAGS,
    )
    def get(self, request: Request, token: str) -> Response:
        session = _session(token)
        query = WorkspaceFileListApi.FilterSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        filters = query.validated_data
        return Response(_listing(session, filters["path"], recursive=filters["recursive"]))


class SharedFileDownloadApi(_SharedApi):
    content_negotiation_class = AnyAcceptNegotiation

    @extend_schema(
        operation_id="shared_files_retrieve",
        summary="Download a shared session's workspace file",
        description=(
            "A file comes back as an attachment; a directory as its listing (JSON). Symlinks "
            "are never followed; `..` and absolute paths are refused (400 `invalid_path`)."
        ),
        parameters=[SHARE_TOKEN, FILE_PATH],
        responses={
            (200, "*/*"): OpenApiResponse(
                OpenApiTypes.BINARY,
                description="The file's bytes (an attachment), with a content type guessed "
                "from its name (`application/octet-stream` when unknown)",
            ),
            (200, "application/json"): OpenApiResponse(
                ListingSerializer, description="The listing, if the path is a directory"
            ),
            **_public_errors(400, 404),
        },
        tags=TAGS,
    )
    def get(self, request: Request, token: str, file_path: str) -> Any:
        session = _session(token)
        root = session.workspace_path
        if paths.stat(root, file_path).type == "directory":
            return Response(_listing(session, file_path, recursive=False))
        handle = paths.open_read(root, file_path)
        name = posixpath.basename(paths.normalize(file_path))
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        response = FileResponse(
            handle, as_attachment=True, filename=name, content_type=content_type
        )
        response["X-Content-Type-Options"] = "nosniff"
        return response


class SharedExportApi(_SharedApi):
    content_negotiation_class = AnyAcceptNegotiation

    @extend_schema(
        operation_id="shared_export_html",
        summary="Export a shared session as one HTML file",
        description="As `GET /sessions/{id}/export.html`, with a share token.",
        parameters=[SHARE_TOKEN],
        responses={**EXPORT_RESPONSES, **_public_errors(404)},
        tags=TAGS,
    )
    def get(self, request: Request, token: str) -> Any:
        return export_response(_session(token))


# SSE ------------------------------------------------------------------------------------------

REVOKED_END = f"event: end\ndata: {json.dumps({'reason': 'share_revoked'})}\n\n".encode()


async def _while_usable(content: AsyncIterator[bytes], link_id: int) -> AsyncIterator[bytes]:
    """Pass ``content`` (an SSE stream) through while the share link stays usable: re-check it
    on every heartbeat and at least every ``SHARE_STREAM_RECHECK_S`` while events flow; once it
    is revoked or expired (or its session deleted), send ``event: end`` and stop."""
    checked = time.monotonic()
    try:
        async for chunk in content:
            now = time.monotonic()
            if chunk.startswith(b": heartbeat") or now - checked >= settings.SHARE_STREAM_RECHECK_S:
                checked = now
                if not await db_call(share_link_is_usable)(link_id):
                    yield REVOKED_END
                    return
            yield chunk
    finally:
        aclose = getattr(content, "aclose", None)
        if aclose is not None:
            await aclose()


@require_GET
async def shared_event_stream(request: HttpRequest, token: str) -> HttpResponseBase:
    """GET /api/v1/shared/{token}/events/stream — the shared session's events, live (SSE),
    resuming after ``?after=`` or ``Last-Event-ID``; 404 ``share_not_found`` as JSON."""
    try:
        link = await db_call(share_link_resolve)(token)
        after = _non_negative_int(request.GET.get("after", "0") or "0", "after")
        after = max(after, _last_event_id(request))
    except ApplicationError as exc:
        return JsonResponse(exc.as_dict(), status=exc.status_code, headers=PUBLIC_HEADERS)
    response = sse_response(request, session=link.session, after=after)
    content: Any = response.streaming_content  # async: sse_response streams a generator
    response.streaming_content = _while_usable(content, link.pk)
    for name, value in PUBLIC_HEADERS.items():
        response[name] = value
    return response


SharedEventStreamApi = shared_event_stream


def add_shared_stream_schema(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    """SPECTACULAR_SETTINGS POSTPROCESSING_HOOKS entry: document the shared SSE stream (an async
    Django view, which drf-spectacular does not see)."""
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    sse_event = dict(SSE_EVENT_REF)  # the component: runtime_project.schema.add_stream_endpoints
    result.setdefault("paths", {})["/api/v1/shared/{token}/events/stream"] = {
        "get": {
            "operationId": "shared_events_stream",
            "summary": "Stream a shared session's events (SSE)",
            "description": (
                "As `GET /sessions/{id}/events/stream`, with a share token and no login. The "
                'stream ends with `event: end` / `{"reason": "share_revoked"}` soon after '
                "the link is revoked or expires."
            ),
            "tags": TAGS,
            "parameters": [
                {
                    "name": "token",
                    "in": "path",
                    "required": True,
                    "description": SHARE_TOKEN.description,
                    "schema": {"type": "string"},
                },
                *CURSOR_PARAMETERS,
            ],
            "security": [{}],
            "responses": {
                "200": {
                    "description": "`text/event-stream`, as the session stream.",
                    "content": {"text/event-stream": {"schema": sse_event}},
                },
                "400": {"description": "Invalid cursor", **error},
                "404": {"description": "Unknown, revoked or expired share token", **error},
            },
        }
    }
    return result
