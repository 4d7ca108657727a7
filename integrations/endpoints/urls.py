"""Agent endpoints and per-agent docs under ``/api/agents/{slug}/`` (``slug``: slug or uuid).
``GET …/endpoints`` lists the operations; any ``POST …/{name}`` (``endpoints`` included) calls
one (:func:`integrations.endpoints.views.endpoint_view` dispatches both)."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from integrations.endpoints import views

app_name = "agent_endpoints"

urlpatterns: list[URLPattern | URLResolver] = [
    path("api/agents/<str:slug>/openapi.json", views.AgentOpenApiApi.as_view(), name="openapi"),
    path("api/agents/<str:slug>/docs/", views.AgentSwaggerView.as_view(), name="docs"),
    path("api/agents/<str:slug>/<str:endpoint>", views.endpoint_view, name="call"),
]
