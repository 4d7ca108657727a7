"""Artifacts: files a run produced, and event payloads too large to inline (DESIGN §2, §3).

List a session's or a task's artifacts, read one's metadata, download its content, delete it;
and, with a share token, download an artifact of the shared session (docs/artifacts.md).

Content is served so that an agent's output can never act on this origin: only a few passive
types (raster images, plain text, JSON) are shown inline; everything else (``text/html``,
``image/svg+xml``, PDF, XML, unknown types…) is an ``attachment``. Every download carries
``X-Content-Type-Options: nosniff`` and a ``Content-Security-Policy`` that forbids everything
and sandboxes the document. With a storage that signs URLs (django-storages' S3 with
``querystring_auth``), the answer is instead a 302 to a presigned URL valid for
``PRESIGNED_URL_EXPIRE_S`` seconds, which carries the same disposition and content type.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import re
from collections.abc import Iterator
from typing import Any

from django.core.files.storage import Storage
from django.db import transaction
from django.http import FileResponse, HttpResponseBase, HttpResponseRedirect
from django.urls import reverse
from django.utils.http import content_disposition_header
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.access import writes
from accounts.audit import audit_request
from accounts.models import Scope
from runtime_project.api import Pagination, error_responses
from runtime_project.exceptions import NotFound, ServiceUnavailable
from runtime_project.middleware import LOCKED_CSP
from sessions import selectors
from sessions.apis.common import SESSION_ID, TASK_ID, paginated_response, uuid_path, validated_query
from sessions.apis.shared import SHARE_TOKEN, _public_errors, _session, _SharedApi
from sessions.apis.sharing import AnyAcceptNegotiation
from sessions.models import Artifact
from sessions.services.artifacts import artifact_delete

logger = logging.getLogger(__name__)

TAGS = ["artifacts"]
ARTIFACT_ID = uuid_path("artifact_id", "artifact")
PRESIGNED_URL_EXPIRE_S = 60
# Shown inline: types a browser renders without running anything. Everything else downloads.
INLINE_TYPES = frozenset(
    {
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "image/avif",
        "text/plain",
        "application/json",
    }
)
_MEDIA_TYPE = re.compile(r"^[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+$")
_UNSAFE_HEADER_CHARS = re.compile(r"[\x00-\x1f\x7f]")
_UNSAFE_NAME_CHARS = re.compile(r"[\x00-\x1f\x7f/\\]")
FALLBACK_TYPE = "application/octet-stream"


class ArtifactSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="uuid")
    name = serializers.CharField(help_text="The file name given when it was stored.")
    size = serializers.IntegerField(help_text="Bytes.")
    content_type = serializers.CharField()
    sha256 = serializers.SerializerMethodField(
        help_text="Hex SHA-256 of the content; null if it was not recorded."
    )
    session_id = serializers.UUIDField(source="session.uuid")
    task_id = serializers.UUIDField(
        source="task.uuid", allow_null=True, default=None, help_text="The task that made it."
    )
    created_at = serializers.DateTimeField()
    url = serializers.SerializerMethodField(help_text="Where to download the content.")

    class Meta:
        ref_name = "Artifact"

    def get_sha256(self, artifact: Artifact) -> str | None:
        return artifact.sha256 or None

    def get_url(self, artifact: Artifact) -> str:
        path = reverse("sessions_api:artifact-content", kwargs={"artifact_id": str(artifact.uuid)})
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path


# Serving content ------------------------------------------------------------------------------


@functools.cache
def _remote_errors() -> tuple[type[BaseException], ...]:
    """What boto3/botocore raise when S3 fails (empty without them)."""
    try:
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:  # pragma: no cover - boto3 is a dependency
        return ()
    return (BotoCoreError, ClientError, Boto3Error)


def _content_missing(artifact: Artifact) -> NotFound:
    return NotFound(
        "The artifact's content is no longer stored.",
        code="artifact_content_missing",
        details={"id": str(artifact.uuid)},
    )


@contextlib.contextmanager
def _storage_errors(artifact: Artifact) -> Iterator[None]:
    """A missing file is 404 ``artifact_content_missing``; a failing remote storage is 503
    ``storage_unavailable`` (the S3 error code or exception class as the reason, never the
    endpoint or a key; the full error is logged)."""
    try:
        yield
    except FileNotFoundError:
        raise _content_missing(artifact) from None
    except _remote_errors() as exc:
        response = getattr(exc, "response", None)
        code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
        if code in {"NoSuchKey", "404"}:
            raise _content_missing(artifact) from None
        logger.warning("artifact storage failed for %s: %s", artifact.uuid, exc)
        raise ServiceUnavailable(
            "The artifact storage is unavailable; try again later.",
            code="storage_unavailable",
            details={"operation": "artifact_content", "reason": str(code or type(exc).__name__)},
        ) from None


def _content_type(artifact: Artifact) -> tuple[str, str]:
    """``(media type, Content-Type value)``: the stored value if it is a well-formed media type
    (parameters such as ``charset`` kept), else ``application/octet-stream``."""
    value = artifact.content_type.strip()
    media_type = value.split(";", 1)[0].strip().lower()
    if not _MEDIA_TYPE.match(media_type) or _UNSAFE_HEADER_CHARS.search(value):
        return FALLBACK_TYPE, FALLBACK_TYPE
    return media_type, value


def _download_name(artifact: Artifact) -> str:
    """The artifact's name, safe for ``Content-Disposition`` (no control characters or path
    separators)."""
    return _UNSAFE_NAME_CHARS.sub("_", artifact.name).strip() or "artifact"


def _presigns(storage: Storage) -> bool:
    """Whether ``storage.url()`` hands out signed, expiring URLs (S3 with querystring auth)."""
    if not getattr(storage, "querystring_auth", False):
        return False
    try:
        return "expire" in inspect.signature(storage.url).parameters
    except (TypeError, ValueError):
        return False


def artifact_content_response(artifact: Artifact) -> HttpResponseBase:
    """The artifact's content: streamed from the storage, or a 302 to a presigned URL.

    Raises:
        NotFound: (``artifact_content_missing``) the row exists but its file does not.
        ServiceUnavailable: (``storage_unavailable``) the remote storage failed.
    """
    media_type, content_type = _content_type(artifact)
    inline = media_type in INLINE_TYPES
    filename = _download_name(artifact)
    storage, name = artifact.file.storage, artifact.file.name
    if not name:
        raise _content_missing(artifact)
    if _presigns(storage):
        params = {
            "ResponseContentType": content_type,
            "ResponseContentDisposition": content_disposition_header(not inline, filename),
        }
        with _storage_errors(artifact):
            url = storage.url(  # type: ignore[call-arg]
                name, parameters=params, expire=PRESIGNED_URL_EXPIRE_S
            )
        redirect = HttpResponseRedirect(url)
        redirect["Cache-Control"] = "no-store"  # the URL expires; never replay the redirect
        return redirect
    with _storage_errors(artifact):
        handle = storage.open(name, "rb")
    response = FileResponse(
        handle, as_attachment=not inline, filename=filename, content_type=content_type
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = LOCKED_CSP
    if artifact.sha256:
        response["ETag"] = f'"{artifact.sha256}"'
    return response


CONTENT_RESPONSES: dict[Any, Any] = {
    # Any media type: the artifact's own (`application/octet-stream` when unknown).
    (200, "*/*"): OpenApiResponse(
        OpenApiTypes.BINARY,
        description=(
            "The artifact's bytes with its content type. Raster images, plain text and JSON "
            "are `inline`; anything else (HTML, SVG, PDF…) is an `attachment`. Always with "
            "`X-Content-Type-Options: nosniff` and a sandboxing Content-Security-Policy."
        ),
    ),
    302: OpenApiResponse(
        description=(
            f"With S3 storage: a redirect to a presigned URL valid for {PRESIGNED_URL_EXPIRE_S} "
            "s (same content type and disposition); do not send your credential there."
        )
    ),
}


# Views ---------------------------------------------------------------------------------------


class SessionArtifactListApi(APIView):
    required_scope = Scope.SESSIONS_READ
    pagination_class = Pagination

    class FilterSerializer(serializers.Serializer):
        task = serializers.UUIDField(
            required=False, help_text="Only the artifacts of this task (its id)."
        )

        class Meta:
            ref_name = "ArtifactListFilter"

    @extend_schema(
        operation_id="sessions_artifacts_list",
        summary="List a session's artifacts",
        description="Newest first. Files the session's runs stored, and event payloads too "
        "large to inline (the events refer to them by `id`).",
        parameters=[SESSION_ID, FilterSerializer],
        responses={200: ArtifactSerializer(many=True), **error_responses(400, 404)},
        tags=TAGS,
    )
    def get(self, request: Request, session_id: str) -> Response:
        session = selectors.session_get(
            user=request.user, session_id=session_id, for_write=writes(request)
        )
        filters = validated_query(self.FilterSerializer, request)
        artifacts = selectors.artifact_list(user=request.user, session=session)
        if filters.get("task"):
            artifacts = artifacts.filter(task__uuid=filters["task"])
        return paginated_response(
            queryset=artifacts, serializer_class=ArtifactSerializer, request=request, view=self
        )


class TaskArtifactListApi(APIView):
    required_scope = Scope.SESSIONS_READ
    pagination_class = Pagination

    @extend_schema(
        operation_id="tasks_artifacts_list",
        summary="List a task's artifacts",
        description="Newest first; as the session's list, restricted to this task.",
        parameters=[TASK_ID],
        responses={200: ArtifactSerializer(many=True), **error_responses(404)},
        tags=TAGS,
    )
    def get(self, request: Request, task_id: str) -> Response:
        task = selectors.task_get(user=request.user, task_id=task_id, for_write=writes(request))
        artifacts = selectors.artifact_list(user=request.user, task=task)
        return paginated_response(
            queryset=artifacts, serializer_class=ArtifactSerializer, request=request, view=self
        )


class ArtifactDetailApi(APIView):
    required_scope = Scope.SESSIONS_READ

    @extend_schema(
        operation_id="artifacts_retrieve",
        summary="Get an artifact's metadata",
        parameters=[ARTIFACT_ID],
        responses={200: ArtifactSerializer, **error_responses(404)},
        tags=TAGS,
    )
    def get(self, request: Request, artifact_id: str) -> Response:
        artifact = selectors.artifact_get(
            user=request.user, artifact_id=artifact_id, for_write=writes(request)
        )
        return Response(ArtifactSerializer(artifact, context={"request": request}).data)


class ArtifactDeleteApi(APIView):
    required_scope = Scope.SESSIONS_WRITE

    @extend_schema(
        operation_id="artifacts_destroy",
        summary="Delete an artifact",
        description=(
            "Removes the artifact and its stored file (needs the member role in the session's "
            "team). Events that referred to it keep the reference; its content is then 404."
        ),
        parameters=[ARTIFACT_ID],
        responses={204: OpenApiResponse(description="Deleted"), **error_responses(404)},
        tags=TAGS,
    )
    def delete(self, request: Request, artifact_id: str) -> Response:
        artifact = selectors.artifact_get(
            user=request.user, artifact_id=artifact_id, for_write=writes(request)
        )
        with transaction.atomic():
            audit_request(
                request, "artifact.delete", artifact,
                session=str(artifact.session.uuid), size=artifact.size,
            )  # fmt: skip
            artifact_delete(artifact=artifact)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ArtifactContentApi(APIView):
    required_scope = Scope.SESSIONS_READ
    content_negotiation_class = AnyAcceptNegotiation

    @extend_schema(
        operation_id="artifacts_content",
        summary="Download an artifact",
        description=(
            "The stored bytes. 404 `artifact_content_missing` if the row exists but its file "
            "is gone; 503 `storage_unavailable` if the remote storage fails."
        ),
        parameters=[ARTIFACT_ID],
        responses={**CONTENT_RESPONSES, **error_responses(404, 503)},
        tags=TAGS,
    )
    def get(self, request: Request, artifact_id: str) -> HttpResponseBase:
        artifact = selectors.artifact_get(
            user=request.user, artifact_id=artifact_id, for_write=writes(request)
        )
        return artifact_content_response(artifact)


class SharedArtifactContentApi(_SharedApi):
    content_negotiation_class = AnyAcceptNegotiation

    @extend_schema(
        operation_id="shared_artifacts_content",
        summary="Download an artifact of a shared session",
        description=(
            "As `GET /artifacts/{id}/content`, with a share token: any artifact of the shared "
            "session, e.g. one an event refers to (`data.artifact.id`)."
        ),
        parameters=[SHARE_TOKEN, ARTIFACT_ID],
        responses={**CONTENT_RESPONSES, **_public_errors(404, 503)},
        tags=["shared"],
    )
    def get(self, request: Request, token: str, artifact_id: str) -> HttpResponseBase:
        artifact = selectors.shared_artifact_get(session=_session(token), artifact_id=artifact_id)
        return artifact_content_response(artifact)
