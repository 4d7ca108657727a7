from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from runtime_project.health import health

urlpatterns = [
    path("", RedirectView.as_view(url="/api/docs/", permanent=False)),
    path("health", health, name="health"),
    path("api/v1/", include("accounts.urls")),
    path("api/v1/", include("accounts.urls_secrets")),
    path("api/v1/", include("providers.urls")),
    path("api/v1/", include("schedules.urls")),
    path("api/v1/", include("sessions.urls_sharing")),
    path("api/v1/", include("sessions.urls")),
    path("api/v1/", include("runtimes.urls")),
    path("api/v1/", include("debugger.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
    path("admin/", admin.site.urls),
    path("", include("runtimes.urls_console")),  # /console/…: the browser runtime page
    path("", include("accounts.oauth_urls")),  # /o/… (OAuth2) and /.well-known/oauth-*
]

handler404 = "runtime_project.views.not_found"
handler500 = "runtime_project.views.server_error"
