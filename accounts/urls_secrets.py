"""``/api/v1/`` routes of team and session secrets (``accounts.apis_secrets``)."""

from __future__ import annotations

from django.urls import path

from accounts.apis_secrets import (
    SessionSecretDeleteApi,
    SessionSecretDetailApi,
    SessionSecretListApi,
    SessionSecretPutApi,
    TeamSecretDeleteApi,
    TeamSecretDetailApi,
    TeamSecretListApi,
    TeamSecretPutApi,
)
from sessions.apis.routing import route

app_name = "secrets_api"

urlpatterns = [
    path("teams/<str:team_id>/secrets", TeamSecretListApi.as_view(), name="team-secrets"),
    path(
        "teams/<str:team_id>/secrets/<str:name>",
        route(get=TeamSecretDetailApi, put=TeamSecretPutApi, delete=TeamSecretDeleteApi),
        name="team-secret",
    ),
    path(
        "sessions/<str:session_id>/secrets",
        SessionSecretListApi.as_view(),
        name="session-secrets",
    ),
    path(
        "sessions/<str:session_id>/secrets/<str:name>",
        route(get=SessionSecretDetailApi, put=SessionSecretPutApi, delete=SessionSecretDeleteApi),
        name="session-secret",
    ),
]
