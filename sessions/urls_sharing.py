"""``/api/v1/`` routes of session sharing (docs/sharing.md): the owner side under
``sessions/{id}/…`` and the public, token-authorised side under ``shared/{token}/…``.

Included by ``runtime_project.urls`` before ``sessions.urls``; none of these paths overlaps
one of that module.
"""

from __future__ import annotations

from django.urls import path

from sessions.apis.artifacts import SharedArtifactContentApi
from sessions.apis.shared import (
    SharedEventListApi,
    SharedEventStreamApi,
    SharedExportApi,
    SharedFileDownloadApi,
    SharedFileListApi,
    SharedMessageListApi,
    SharedSessionApi,
)
from sessions.apis.sharing import (
    SessionExportHtmlApi,
    SessionExportUploadApi,
    ShareCreateApi,
    ShareListApi,
    ShareRevokeApi,
)

app_name = "sharing_api"

owner_patterns = [
    path("sessions/<str:session_id>/share", ShareCreateApi.as_view(), name="session-share"),
    path("sessions/<str:session_id>/shares", ShareListApi.as_view(), name="session-shares"),
    path(
        "sessions/<str:session_id>/shares/<str:share_id>",
        ShareRevokeApi.as_view(),
        name="session-share-detail",
    ),
    path(
        "sessions/<str:session_id>/export.html",
        SessionExportHtmlApi.as_view(),
        name="session-export-html",
    ),
    path(
        "sessions/<str:session_id>/export",
        SessionExportUploadApi.as_view(),
        name="session-export-upload",
    ),
]

public_patterns = [
    path("shared/<str:token>", SharedSessionApi.as_view(), name="shared-session"),
    path("shared/<str:token>/events", SharedEventListApi.as_view(), name="shared-events"),
    # An async Django view (SSE); SharedEventStreamApi's schema comes from a postprocessing hook.
    path("shared/<str:token>/events/stream", SharedEventStreamApi, name="shared-events-stream"),
    path("shared/<str:token>/messages", SharedMessageListApi.as_view(), name="shared-messages"),
    path("shared/<str:token>/files", SharedFileListApi.as_view(), name="shared-files"),
    path(
        "shared/<str:token>/files/<path:file_path>",
        SharedFileDownloadApi.as_view(),
        name="shared-file",
    ),
    path("shared/<str:token>/export.html", SharedExportApi.as_view(), name="shared-export"),
    path(
        "shared/<str:token>/artifacts/<str:artifact_id>/content",
        SharedArtifactContentApi.as_view(),
        name="shared-artifact-content",
    ),
]

urlpatterns = [*owner_patterns, *public_patterns]
