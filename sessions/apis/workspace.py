"""Workspace files of a session: list, upload (multipart or raw body, optionally unpacking an
archive), download, delete.

Every file operation goes through ``sandboxes.paths``, which refuses absolute paths, ``..``
and NUL (400 ``invalid_path``) and never follows a symlink planted by sandboxed code (404).
Sizes are limited by ``WORKSPACE_MAX_FILE_BYTES`` per file and ``WORKSPACE_MAX_BYTES`` per
workspace (413 ``payload_too_large``).
"""

from __future__ import annotations

import mimetypes
import posixpath
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from django.conf import settings
from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.access import writes
from accounts.models import Scope
from runtime_project.api import error_responses
from runtime_project.exceptions import InvalidInput, PayloadTooLarge
from sandboxes import paths
from sessions import selectors
from sessions.apis.common import SESSION_ID, validated_query

TAGS = ["workspace"]
CHUNK_BYTES = 64 * 1024
SPOOL_MEMORY_BYTES = 1024 * 1024
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".zip")

FILE_PATH = OpenApiParameter(
    "file_path",
    OpenApiTypes.STR,
    OpenApiParameter.PATH,
    description="Path relative to the workspace root; may contain `/`.",
)


class FileEntrySerializer(serializers.Serializer):
    path = serializers.CharField(help_text="Relative to the workspace root.")
    type = serializers.ChoiceField(choices=["file", "directory", "symlink", "other"])
    size = serializers.IntegerField(help_text="Bytes.")
    modified = serializers.SerializerMethodField()

    class Meta:
        ref_name = "WorkspaceFileEntry"

    def get_modified(self, entry: paths.FileEntry) -> datetime:
        return datetime.fromtimestamp(entry.modified, tz=UTC)


class ListingSerializer(serializers.Serializer):
    path = serializers.CharField(help_text='The directory listed (`""` is the root).')
    entries = FileEntrySerializer(many=True)
    truncated = serializers.BooleanField(help_text="More entries exist than were listed.")

    class Meta:
        ref_name = "WorkspaceListing"


class UploadResultSerializer(serializers.Serializer):
    files = serializers.ListField(
        child=serializers.CharField(), help_text="The paths written (archive members included)."
    )

    class Meta:
        ref_name = "WorkspaceUploadResult"


def _workspace(request: Request, session_id: str) -> Path:
    """The session's workspace root (created when missing); 404 for a stranger's session."""
    session = selectors.session_get(
        user=request.user, session_id=session_id, for_write=writes(request)
    )
    root = session.workspace_path
    root.mkdir(parents=True, exist_ok=True)
    return root


def _listing(root: Path, path: str, *, recursive: bool) -> dict[str, Any]:
    limit = settings.WORKSPACE_MAX_FILES
    entries = paths.list_dir(root, path, recursive=recursive, limit=limit + 1)
    return ListingSerializer(
        {
            "path": paths.normalize(path),
            "entries": entries[:limit],
            "truncated": len(entries) > limit,
        }
    ).data


def _too_large(message: str, **details: Any) -> PayloadTooLarge:
    return PayloadTooLarge(message, details=details)


def _file_too_large(name: str) -> PayloadTooLarge:
    limit = settings.WORKSPACE_MAX_FILE_BYTES
    return _too_large(f"{name} is larger than {limit} bytes.", file=name, limit_bytes=limit)


def _workspace_full(needed: int, available: int) -> PayloadTooLarge:
    return _too_large(
        "The workspace has no room for this upload.",
        limit_bytes=settings.WORKSPACE_MAX_BYTES,
        available_bytes=max(available, 0),
        needed_bytes=needed,
    )


def _existing_size(root: Path, path: str) -> int:
    """Size of the regular file an upload would replace (0 when there is none)."""
    try:
        entry = paths.stat(root, path)
    except paths.WorkspaceFileNotFound:
        return 0
    return entry.size if entry.type == "file" else 0


def _exists(root: Path, path: str) -> bool:
    try:
        paths.stat(root, path)
    except paths.WorkspaceFileNotFound:
        return False
    return True


def _content_length(request: Request) -> int | None:
    try:
        return int(request.META.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None


def _is_archive(name: str) -> bool:
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def _write(root: Path, path: str, source: BinaryIO) -> None:
    with paths.open_write(root, path) as out:
        shutil.copyfileobj(source, out, CHUNK_BYTES)


class _AnyAcceptNegotiation(DefaultContentNegotiation):
    """A download is not rendered by DRF, so no ``Accept`` header is refused (406); what DRF
    does render (the listing of a directory, errors) falls back to JSON."""

    def select_renderer(self, request: Any, renderers: Any, format_suffix: Any = None) -> Any:
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except NotAcceptable:
            return renderers[0], renderers[0].media_type


class WorkspaceFileListApi(APIView):
    required_scope = Scope.SESSIONS_READ

    class FilterSerializer(serializers.Serializer):
        path = serializers.CharField(
            default="", allow_blank=True, help_text="Directory to list (default: the root)."
        )
        recursive = serializers.BooleanField(default=False, help_text="Include subdirectories.")

        class Meta:
            ref_name = "WorkspaceListFilter"

    @extend_schema(
        operation_id="sessions_workspace_files_list",
        summary="List workspace files",
        description="Entries sorted by path; symlinks are listed, never followed.",
        parameters=[SESSION_ID, FilterSerializer],
        responses={200: ListingSerializer, **error_responses(400, 404)},
        tags=TAGS,
    )
    def get(self, request: Request, session_id: str) -> Response:
        root = _workspace(request, session_id)
        filters = validated_query(self.FilterSerializer, request)
        return Response(_listing(root, filters["path"], recursive=filters["recursive"]))


class WorkspaceFileUploadApi(APIView):
    required_scope = Scope.SESSIONS_WRITE
    parser_classes = [MultiPartParser]

    class InputSerializer(serializers.Serializer):
        files = serializers.ListField(
            child=serializers.FileField(), min_length=1, help_text="One or more files."
        )
        path = serializers.CharField(
            default="", allow_blank=True, help_text="Target directory (default: the root)."
        )
        extract = serializers.BooleanField(
            default=False,
            help_text="Unpack uploaded archives (.tar, .tar.gz, .tgz, .zip …) into `path`.",
        )

        class Meta:
            ref_name = "WorkspaceUploadInput"

    @extend_schema(
        operation_id="sessions_workspace_files_upload",
        summary="Upload workspace files",
        description=(
            "Multipart upload of one or more `files` into the directory `path`; existing "
            "files are replaced. With `extract=true`, archives are unpacked (members are "
            "checked before anything is written) and other files are stored as they are. "
            "`path` and `extract` may also be given as query parameters."
        ),
        parameters=[SESSION_ID],
        request={"multipart/form-data": InputSerializer},
        responses={201: UploadResultSerializer, **error_responses(400, 404, 413)},
        tags=TAGS,
    )
    def post(self, request: Request, session_id: str) -> Response:
        root = _workspace(request, session_id)
        length = _content_length(request)
        if length is not None and length > settings.WORKSPACE_MAX_BYTES:
            raise _workspace_full(length, settings.WORKSPACE_MAX_BYTES)
        form: Any = request.data  # a QueryDict of fields and files
        query = request.query_params
        serializer = self.InputSerializer(
            data={
                "files": form.getlist("files"),
                "path": form.get("path", query.get("path", "")),
                "extract": form.get("extract", query.get("extract", "false")),
            }
        )
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        directory = paths.normalize(data["path"])

        plain: list[tuple[str, Any]] = []  # (target, upload)
        archives: list[Any] = []
        for upload in data["files"]:
            if upload.size > settings.WORKSPACE_MAX_FILE_BYTES:
                raise _file_too_large(upload.name)
            if data["extract"] and _is_archive(upload.name):
                archives.append(upload)
            elif not upload.name:
                raise InvalidInput("Every uploaded file needs a name.")
            else:
                plain.append((paths.normalize(posixpath.join(directory, upload.name)), upload))

        available = settings.WORKSPACE_MAX_BYTES - paths.workspace_size(root)
        incoming = sum(u.size - _existing_size(root, target) for target, u in plain)
        if incoming > available:
            raise _workspace_full(incoming, available)
        written: list[str] = []
        for target, upload in plain:
            _write(root, target, upload)
            written.append(target)
        for upload in archives:
            # Unpacked sizes are only known while extracting: extract_archive enforces them.
            available = settings.WORKSPACE_MAX_BYTES - paths.workspace_size(root)
            if available <= 0:
                raise _workspace_full(upload.size, available)
            written += paths.extract_archive(
                root, directory, upload, max_bytes=available, max_files=settings.WORKSPACE_MAX_FILES
            )
        return Response(
            UploadResultSerializer({"files": written}).data, status=status.HTTP_201_CREATED
        )


DOWNLOAD_200 = "The file's bytes (an attachment), or the listing (JSON) if the path is a directory"


class WorkspaceFileDownloadApi(APIView):
    required_scope = Scope.SESSIONS_READ
    content_negotiation_class = _AnyAcceptNegotiation

    class FilterSerializer(serializers.Serializer):
        recursive = serializers.BooleanField(
            default=False, help_text="For a directory: include subdirectories."
        )

        class Meta:
            ref_name = "WorkspaceDownloadFilter"

    @extend_schema(
        operation_id="sessions_workspace_files_retrieve",
        summary="Download a workspace file",
        description=(
            "A file comes back as an attachment with a content type guessed from its name; "
            "a directory comes back as its listing (JSON)."
        ),
        parameters=[SESSION_ID, FILE_PATH, FilterSerializer],
        responses={
            # The content type is guessed from the file's name: any media type.
            (200, "*/*"): OpenApiResponse(OpenApiTypes.BINARY, description=DOWNLOAD_200),
            (200, "application/json"): OpenApiResponse(ListingSerializer, description=DOWNLOAD_200),
            **error_responses(400, 404),
        },
        tags=TAGS,
    )
    def get(self, request: Request, session_id: str, file_path: str) -> Any:
        root = _workspace(request, session_id)
        if paths.stat(root, file_path).type == "directory":
            filters = validated_query(self.FilterSerializer, request)
            return Response(_listing(root, file_path, recursive=filters["recursive"]))
        handle = paths.open_read(root, file_path)
        name = posixpath.basename(paths.normalize(file_path))
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        return FileResponse(handle, as_attachment=True, filename=name, content_type=content_type)


class WorkspaceFilePutApi(APIView):
    required_scope = Scope.SESSIONS_WRITE
    # The body is read in chunks from the underlying request below; DRF must not parse it.
    parser_classes: list[Any] = []

    class FilterSerializer(serializers.Serializer):
        extract = serializers.BooleanField(
            default=False,
            help_text="The body is an archive: unpack it into the directory `file_path`.",
        )

        class Meta:
            ref_name = "WorkspacePutFilter"

    @extend_schema(
        operation_id="sessions_workspace_files_put",
        summary="Write a workspace file",
        description=(
            "The raw request body becomes the file (parents are created; an existing file is "
            "replaced, and kept if the upload is refused). With `?extract=true` the body is "
            "an archive unpacked into the directory `file_path`."
        ),
        parameters=[SESSION_ID, FILE_PATH, FilterSerializer],
        request={"application/octet-stream": OpenApiTypes.BINARY},
        responses={
            201: OpenApiResponse(UploadResultSerializer, description="Created"),
            200: OpenApiResponse(UploadResultSerializer, description="Replaced"),
            **error_responses(400, 404, 413),
        },
        tags=TAGS,
    )
    def put(self, request: Request, session_id: str, file_path: str) -> Response:
        root = _workspace(request, session_id)
        extract = validated_query(self.FilterSerializer, request)["extract"]
        target = paths.normalize(file_path)
        max_file = settings.WORKSPACE_MAX_FILE_BYTES
        length = _content_length(request)
        if length is not None and length > max_file:
            raise _file_too_large(target)
        replaced = 0 if extract else _existing_size(root, target)
        available = settings.WORKSPACE_MAX_BYTES - paths.workspace_size(root) + replaced
        if length is not None and not extract and length > available:
            raise _workspace_full(length, available)

        with tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES) as spool:
            # Spool first so a refused or broken upload never truncates the existing file.
            size = 0
            body = request._request  # the raw stream; request.body would load it all
            while chunk := body.read(CHUNK_BYTES):
                size += len(chunk)
                if size > max_file:
                    raise _file_too_large(target)
                if not extract and size > available:
                    raise _workspace_full(size, available)
                spool.write(chunk)
            spool.seek(0)
            if extract:
                if available <= 0:
                    raise _workspace_full(size, available)
                files = paths.extract_archive(
                    root,
                    target,
                    spool,  # type: ignore[arg-type]
                    max_bytes=available,
                    max_files=settings.WORKSPACE_MAX_FILES,
                )
                code: int = status.HTTP_201_CREATED
            else:
                existed = _exists(root, target)
                _write(root, target, spool)  # type: ignore[arg-type]
                files = [target]
                code = status.HTTP_200_OK if existed else status.HTTP_201_CREATED
        return Response(UploadResultSerializer({"files": files}).data, status=code)


class WorkspaceFileDeleteApi(APIView):
    required_scope = Scope.SESSIONS_WRITE

    class FilterSerializer(serializers.Serializer):
        recursive = serializers.BooleanField(
            default=False, help_text="Required to delete a non-empty directory."
        )

        class Meta:
            ref_name = "WorkspaceDeleteFilter"

    @extend_schema(
        operation_id="sessions_workspace_files_destroy",
        summary="Delete a workspace file or directory",
        description=(
            "A non-empty directory needs `?recursive=true` (else 400 `directory_not_empty`)."
        ),
        parameters=[SESSION_ID, FILE_PATH, FilterSerializer],
        responses={204: OpenApiResponse(description="Deleted"), **error_responses(400, 404)},
        tags=TAGS,
    )
    def delete(self, request: Request, session_id: str, file_path: str) -> Response:
        root = _workspace(request, session_id)
        recursive = validated_query(self.FilterSerializer, request)["recursive"]
        paths.remove(root, file_path, recursive=recursive)
        return Response(status=status.HTTP_204_NO_CONTENT)
