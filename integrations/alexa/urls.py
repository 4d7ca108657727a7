"""Routes of the Alexa app (full paths; included at "" by ``runtime_project.urls``):
``POST /alexa/{agent}`` (the skill endpoint, no credential: Alexa's signature) and
``/api/v1/alexa-skills`` (the bindings' REST API)."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from integrations.alexa.apis import (
    AlexaSkillCreateApi,
    AlexaSkillDeleteApi,
    AlexaSkillDetailApi,
    AlexaSkillListApi,
    AlexaSkillUpdateApi,
)
from integrations.alexa.views import alexa_endpoint
from sessions.apis.routing import route

app_name = "alexa"

urlpatterns: list[URLPattern | URLResolver] = [
    path("alexa/<str:agent>", alexa_endpoint, name="endpoint"),
    path(
        "api/v1/alexa-skills",
        route(get=AlexaSkillListApi, post=AlexaSkillCreateApi),
        name="skills",
    ),
    path(
        "api/v1/alexa-skills/<str:skill_id>",
        route(get=AlexaSkillDetailApi, patch=AlexaSkillUpdateApi, delete=AlexaSkillDeleteApi),
        name="skill-detail",
    ),
]
