"""Postman collection downloads (``integrations/postman/apis.py``); full paths, included at ""."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from integrations.postman.apis import AgentCollectionApi, ApiCollectionApi

urlpatterns: list[URLPattern | URLResolver] = [
    path("api/v1/postman.json", ApiCollectionApi.as_view(), name="postman-collection"),
    path(
        "api/v1/agents/<str:agent_id>/postman.json",
        AgentCollectionApi.as_view(),
        name="agent-postman-collection",
    ),
]
