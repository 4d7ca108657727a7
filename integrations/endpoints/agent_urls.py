"""URLconf of an agent host (``<slug>.<AGENT_DOMAIN>``, see ``domains.py``): the agent's
endpoints at the root, then every normal URL (so links such as a 202's ``Location`` work)."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, include, path
from django.views.generic import RedirectView

from integrations.endpoints import views

urlpatterns: list[URLPattern | URLResolver] = [
    path("", RedirectView.as_view(url="/docs/", permanent=False)),
    path("openapi.json", views.AgentOpenApiApi.as_view(), name="agent-host-openapi"),
    path("docs/", views.AgentSwaggerView.as_view(), name="agent-host-docs"),
    path("<str:endpoint>", views.endpoint_view, name="agent-host-call"),
    path("", include("runtime_project.urls")),
]

handler404 = "runtime_project.views.not_found"
handler500 = "runtime_project.views.server_error"
