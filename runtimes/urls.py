"""``/api/v1/`` routes of the runtimes app (included by ``runtime_project.urls``)."""

from __future__ import annotations

from django.urls import path

from runtimes.apis import SessionRuntimeApi

app_name = "runtimes_api"

urlpatterns = [
    path("sessions/<str:session_id>/runtime", SessionRuntimeApi.as_view(), name="session-runtime"),
]
