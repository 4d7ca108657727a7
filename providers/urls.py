"""``/api/v1/`` routes of the providers app (included by ``runtime_project.urls`` before the
sessions app's, so its ``models`` route is the one served), and a team's model access
(``teams/{id}/models``, next to the accounts app's ``teams/{id}/…`` routes).

Ids are plain strings: the selectors answer 404 in the error shape for anything else.
"""

from __future__ import annotations

from django.urls import path

from providers.access_apis import TeamModelsDetailApi, TeamModelsResetApi, TeamModelsUpdateApi
from providers.apis import (
    CredentialCreateApi,
    CredentialDeleteApi,
    CredentialDetailApi,
    CredentialListApi,
    CredentialUpdateApi,
    ModelListApi,
)
from sessions.apis.routing import route

app_name = "providers_api"

urlpatterns = [
    path("credentials", route(get=CredentialListApi, post=CredentialCreateApi), name="credentials"),
    path(
        "credentials/<str:credential_id>",
        route(get=CredentialDetailApi, patch=CredentialUpdateApi, delete=CredentialDeleteApi),
        name="credential-detail",
    ),
    path("models", ModelListApi.as_view(), name="models"),
    path(
        "teams/<str:team_id>/models",
        route(get=TeamModelsDetailApi, put=TeamModelsUpdateApi, delete=TeamModelsResetApi),
        name="team-models",
    ),
]
