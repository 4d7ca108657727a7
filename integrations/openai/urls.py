"""URLs of the OpenAI-compatible API (full paths; included at "" by runtime_project/urls.py)."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path, re_path

from .http import unknown_route
from .views import chat_completions, models_detail, models_list, responses_create

app_name = "openai"

urlpatterns: list[URLPattern | URLResolver] = [
    path("v1/models", models_list, name="models"),
    path("v1/models/<path:model>", models_detail, name="model"),
    path("v1/chat/completions", chat_completions, name="chat-completions"),
    path("v1/responses", responses_create, name="responses"),
    re_path(r"^v1/(?P<rest>.*)$", unknown_route, name="unknown"),
]
