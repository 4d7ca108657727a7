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
    # Integrations (integrations/*/urls.py hold their full paths; docs/integrations.md)
    path("", include("integrations.openai.urls")),  # /v1/models, /v1/chat/completions, …
    path("", include("integrations.chatgpt.urls")),  # /chatgpt/…, /.well-known/ai-plugin.json
    path("", include("integrations.alexa.urls")),  # /alexa/{agent}
    path("", include("integrations.endpoints.urls")),  # /api/agents/{slug}/{endpoint}, docs
    path("", include("integrations.postman.urls")),  # /api/v1/postman.json
    path("", include("integrations.webhooks.urls")),  # /api/v1/webhooks…
    path("", include("integrations.connections.urls")),  # /oauth/connect/…, /api/v1/oauth-…
]

handler404 = "runtime_project.views.not_found"
handler500 = "runtime_project.views.server_error"
