"""Routes of OAuth connections (full paths; included at the root by ``runtime_project.urls``,
gated by ``OAUTH_CONNECTIONS_ENABLED`` and the server mode in ``runtime_project.modes``): the
browser flow under ``/oauth/`` and the REST resources under ``/api/v1/``."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from integrations.connections import views
from integrations.connections.apis import (
    ConnectionListApi,
    ConnectionRevokeApi,
    ProviderCreateApi,
    ProviderDeleteApi,
    ProviderDetailApi,
    ProviderListApi,
    ProviderUpdateApi,
)
from sessions.apis.routing import route

app_name = "connections"

urlpatterns: list[URLPattern | URLResolver] = [
    path("oauth/connect/<slug:provider>", views.connect, name="connect"),
    path("oauth/callback/<slug:provider>", views.callback, name="callback"),
    path("oauth/connect/<slug:provider>/callback", views.callback, name="callback-alt"),
    path(
        "api/v1/oauth-providers",
        route(get=ProviderListApi, post=ProviderCreateApi),
        name="oauth-providers",
    ),
    path(
        "api/v1/oauth-providers/<str:provider_id>",
        route(get=ProviderDetailApi, patch=ProviderUpdateApi, delete=ProviderDeleteApi),
        name="oauth-provider-detail",
    ),
    path("api/v1/connections", route(get=ConnectionListApi), name="connections"),
    path(
        "api/v1/connections/<str:connection_id>",
        route(delete=ConnectionRevokeApi),
        name="connection-detail",
    ),
]
