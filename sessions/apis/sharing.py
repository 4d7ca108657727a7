"""Sharing a session, owner side (issue 7 §4; docs/sharing.md): share links, the HTML export,
and its upload to a share provider.

- ``POST /sessions/{id}/share`` (member, ``sessions:write``) → 201 ``{id, token, url, prefix,
  expires_at, created_at}``; the token is shown only here.
- ``GET /sessions/{id}/shares`` (viewer, ``sessions:read``) → the links without tokens.
- ``DELETE /sessions/{id}/shares/{share_id}`` (member, ``sessions:write``) → 204.
- ``GET /sessions/{id}/export.html`` (viewer, ``sessions:read``) → the HTML file.
- ``POST /sessions/{id}/export`` (member, ``sessions:write``) → 201 ``{url}`` from the provider.

The public, token-authorised side is ``sessions.apis.shared``.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import JSONParser
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.access import writes
from accounts.audit import audit_request
from accounts.models import Scope
from runtime_project.api import ErrorSerializer, Pagination, error_responses
from sessions import selectors
from sessions.apis.common import SESSION_ID, paginated_response, uuid_path
from sessions.export import CSP, export_filename, render_session_html
from sessions.models import Session, ShareLink
from sessions.services.sharing import (
    session_export_upload,
    share_link_create,
    share_link_revoke,
)

TAGS = ["sharing"]
SHARE_ID = uuid_path("share_id", "share link")


class AnyAcceptNegotiation(DefaultContentNegotiation):
    """A file answer is not rendered by DRF, so no ``Accept`` header is refused (406); what
    DRF does render (errors) is JSON."""

    def select_renderer(self, request: Any, renderers: Any, format_suffix: Any = None) -> Any:
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except NotAcceptable:
            return renderers[0], renderers[0].media_type


def export_response(session: Session) -> HttpResponse:
    """The export of ``session`` as an ``attachment`` download, with a CSP that forbids the
    document every request (the same policy as its meta tag) should it be opened inline."""
    response = HttpResponse(
        render_session_html(session=session), content_type="text/html; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{export_filename(session)}"'
    response["Content-Security-Policy"] = CSP
    response["X-Content-Type-Options"] = "nosniff"
    return response


EXPORT_RESPONSES: dict[Any, Any] = {
    (200, "text/html"): OpenApiResponse(
        OpenApiTypes.STR,
        description="One self-contained HTML file (an attachment); it loads nothing.",
    ),
}


class ShareOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="uuid")
    prefix = serializers.CharField(help_text="The token's first characters, to tell links apart.")
    created_at = serializers.DateTimeField()
    created_by = serializers.CharField(
        source="created_by.username", allow_null=True, default=None, help_text="Username."
    )
    expires_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True)
    active = serializers.BooleanField(
        source="is_usable", help_text="Neither revoked nor expired: the token works."
    )

    class Meta:
        ref_name = "ShareLink"


class ShareCreatedSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="link.uuid")
    token = serializers.CharField(help_text="The secret; shown only in this answer.")
    url = serializers.URLField(help_text="The public, read-only URL of the shared session.")
    prefix = serializers.CharField(source="link.prefix")
    expires_at = serializers.DateTimeField(source="link.expires_at", allow_null=True)
    created_at = serializers.DateTimeField(source="link.created_at")

    class Meta:
        ref_name = "ShareLinkCreated"


class ShareCreateApi(APIView):
    required_scope = Scope.SESSIONS_WRITE
    parser_classes = [JSONParser]

    class InputSerializer(serializers.Serializer):
        expires_at = serializers.DateTimeField(
            required=False, allow_null=True, help_text="When the link stops working (future)."
        )

        class Meta:
            ref_name = "ShareLinkCreateInput"

    @extend_schema(
        operation_id="sessions_share_create",
        summary="Create a share link",
        description=(
            "A token giving anyone who has it read-only access to this session's events, "
            "messages, files and HTML export under `/api/v1/shared/{token}`, until it is "
            "revoked or expires. Needs the member role. The token is returned only here."
        ),
        parameters=[SESSION_ID],
        request=InputSerializer,
        responses={201: ShareCreatedSerializer, **error_responses(400, 403, 404)},
        tags=TAGS,
    )
    def post(self, request: Request, session_id: str) -> Response:
        session = selectors.session_get(
            user=request.user, session_id=session_id, for_write=writes(request)
        )
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        link, token = share_link_create(
            session=session,
            user=request.user,
            expires_at=serializer.validated_data.get("expires_at"),
        )
        audit_request(request, "share.create", link, session=str(session.uuid))
        url = request.build_absolute_uri(
            reverse("sharing_api:shared-session", kwargs={"token": token})
        )
        body = ShareCreatedSerializer({"link": link, "token": token, "url": url}).data
        return Response(body, status=status.HTTP_201_CREATED)


class ShareListApi(APIView):
    required_scope = Scope.SESSIONS_READ
    pagination_class = Pagination

    @extend_schema(
        operation_id="sessions_shares_list",
        summary="List a session's share links",
        description="Newest first, revoked and expired ones included; tokens are never shown.",
        parameters=[SESSION_ID],
        responses={200: ShareOutputSerializer(many=True), **error_responses(404)},
        tags=TAGS,
    )
    def get(self, request: Request, session_id: str) -> Response:
        session = selectors.session_get(
            user=request.user, session_id=session_id, for_write=writes(request)
        )
        return paginated_response(
            queryset=selectors.share_link_list(session=session),
            serializer_class=ShareOutputSerializer,
            request=request,
            view=self,
        )


class ShareRevokeApi(APIView):
    required_scope = Scope.SESSIONS_WRITE

    @extend_schema(
        operation_id="sessions_shares_destroy",
        summary="Revoke a share link",
        description=(
            "The token stops working from the next request (an SSE stream already open with "
            "it ends at its next re-check, within `SHARE_STREAM_RECHECK_S`). Revoking a "
            "revoked link is a no-op."
        ),
        parameters=[SESSION_ID, SHARE_ID],
        responses={204: OpenApiResponse(description="Revoked"), **error_responses(403, 404)},
        tags=TAGS,
    )
    def delete(self, request: Request, session_id: str, share_id: str) -> Response:
        session = selectors.session_get(
            user=request.user, session_id=session_id, for_write=writes(request)
        )
        link: ShareLink = selectors.share_link_get(session=session, share_id=share_id)
        share_link_revoke(link=link)
        audit_request(request, "share.revoke", link, session=str(session.uuid))
        return Response(status=status.HTTP_204_NO_CONTENT)


class SessionExportHtmlApi(APIView):
    required_scope = Scope.SESSIONS_READ
    renderer_classes = [JSONRenderer]
    content_negotiation_class = AnyAcceptNegotiation

    @extend_schema(
        operation_id="sessions_export_html",
        summary="Export a session as one HTML file",
        description=(
            "A self-contained replay (header, conversation, every event with rendered "
            "outputs, workspace files up to `SHARE_EXPORT_MAX_FILE_BYTES` each embedded as "
            "`data:` links) that makes no network request. See docs/sharing.md."
        ),
        parameters=[SESSION_ID],
        responses={**EXPORT_RESPONSES, **error_responses(404)},
        tags=TAGS,
    )
    def get(self, request: Request, session_id: str) -> HttpResponse:
        session = selectors.session_get(
            user=request.user, session_id=session_id, for_write=writes(request)
        )
        return export_response(session)


class ExportUploadedSerializer(serializers.Serializer):
    url = serializers.URLField(help_text="Where the share provider published the export.")

    class Meta:
        ref_name = "SessionExportUploaded"


class SessionExportUploadApi(APIView):
    required_scope = Scope.SESSIONS_WRITE

    @extend_schema(
        operation_id="sessions_export_upload",
        summary="Publish the HTML export to the share provider",
        description=(
            "Uploads the export (as `GET …/export.html` makes it) to `SHARE_PROVIDER_URL` and "
            "returns the URL the provider answered. 400 `share_provider_not_configured` when "
            "no provider is set, 400 `outbound_refused` when its address is not allowed, 502 "
            "`share_provider_failed` / `outbound_failed` when the upload fails. Needs the "
            "member role: this publishes the session."
        ),
        parameters=[SESSION_ID],
        request=None,
        responses={
            201: ExportUploadedSerializer,
            **error_responses(400, 403, 404),
            502: OpenApiResponse(ErrorSerializer, description="The share provider failed"),
        },
        tags=TAGS,
    )
    def post(self, request: Request, session_id: str) -> Response:
        session = selectors.session_get(
            user=request.user, session_id=session_id, for_write=writes(request)
        )
        url = session_export_upload(session=session)
        audit_request(request, "session.export", session, url=url)
        return Response(ExportUploadedSerializer({"url": url}).data, status=201)
