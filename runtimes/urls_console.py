"""Console pages of the runtimes app (HTML, session-cookie sign-in)."""

from __future__ import annotations

from django.urls import path

from runtimes.views_browser import BrowserRuntimeView

app_name = "runtimes_console"

urlpatterns = [
    path(
        "console/sessions/<uuid:session_id>/runtime/",
        BrowserRuntimeView.as_view(),
        name="browser-runtime",
    ),
]
