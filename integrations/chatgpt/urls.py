"""ChatGPT actions and the legacy plugin manifest (see ``integrations/chatgpt/views.py``)."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from integrations.chatgpt import views

app_name = "chatgpt"

urlpatterns: list[URLPattern | URLResolver] = [
    path(".well-known/ai-plugin.json", views.PluginManifestApi.as_view(), name="plugin-manifest"),
    path("chatgpt/openapi.json", views.ServerOpenApiApi.as_view(), name="server-openapi"),
    path("chatgpt/logo.svg", views.logo, name="logo"),
    path("chatgpt/tasks/<str:task_id>/result", views.action_result_view, name="task-result"),
    path("chatgpt/<str:agent>/openapi.json", views.ActionOpenApiApi.as_view(), name="openapi"),
    path("chatgpt/<str:agent>/<str:endpoint>", views.action_run_view, name="run"),
]
