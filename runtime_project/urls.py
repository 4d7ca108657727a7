"""The URLconf. Every include is tagged with its feature (runtime_project/modes.py): a process
answers 404 for the features its ``SERVER_MODE`` and ``*_ENABLED`` flags leave out."""

from __future__ import annotations

from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from observability.views import metrics
from runtime_project.health import health
from runtime_project.modes import feature_include as served

urlpatterns = [
    path("", RedirectView.as_view(url="/api/docs/", permanent=False)),
    path("health", health, name="health"),
    path("metrics", metrics, name="metrics"),  # core: Prometheus (docs/observability.md)
    path("api/v1/", served("accounts", "accounts.urls")),
    path("api/v1/", served("accounts", "accounts.urls_secrets")),
    path("api/v1/", served("providers", "providers.urls")),
    path("api/v1/", served("schedules", "schedules.urls")),
    path("api/v1/", served("sessions", "sessions.urls_sharing")),
    path("api/v1/", served("sessions", "sessions.urls")),
    path("api/v1/", served("runtimes", "runtimes.urls")),
    path("api/v1/", served("debugger", "debugger.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
    path("admin/", admin.site.urls),
    path("", served("runtimes", "runtimes.urls_console")),  # /console/…: browser runtime page
    path("", served("console", "console.urls")),  # /console/…: the web console (docs/console.md)
    path("", served("accounts", "accounts.oauth_urls")),  # /o/… (OAuth2), /.well-known/oauth-*
    # Integrations (integrations/*/urls.py hold their full paths; docs/integrations/)
    path("", served("openai", "integrations.openai.urls")),  # /v1/models, /v1/chat/…
    path("", served("chatgpt", "integrations.chatgpt.urls")),  # /chatgpt/…, ai-plugin.json
    path("", served("alexa", "integrations.alexa.urls")),  # /alexa/{agent}
    path("", served("endpoints", "integrations.endpoints.urls")),  # /api/agents/{slug}/…
    path("", served("postman", "integrations.postman.urls")),  # /api/v1/postman.json
    path("", served("webhooks", "integrations.webhooks.urls")),  # /api/v1/webhooks…
    path("", served("connections", "integrations.connections.urls")),  # /oauth/connect/…
]

handler404 = "runtime_project.views.not_found"
handler500 = "runtime_project.views.server_error"
