"""``/api/v1/`` routes of the accounts app: teams, members, audit log, API keys."""

from __future__ import annotations

from django.urls import path

from accounts.apis import (
    ApiKeyCreateApi,
    ApiKeyListApi,
    ApiKeyRevokeApi,
    AuditListApi,
    MemberAddApi,
    MemberListApi,
    MemberRemoveApi,
    MemberUpdateApi,
    TeamCreateApi,
    TeamDeleteApi,
    TeamDetailApi,
    TeamListApi,
    TeamUpdateApi,
)
from sessions.apis.routing import route

app_name = "accounts_api"

urlpatterns = [
    path("teams", route(get=TeamListApi, post=TeamCreateApi), name="teams"),
    path(
        "teams/<str:team_id>",
        route(get=TeamDetailApi, patch=TeamUpdateApi, delete=TeamDeleteApi),
        name="team-detail",
    ),
    path(
        "teams/<str:team_id>/members",
        route(get=MemberListApi, post=MemberAddApi),
        name="team-members",
    ),
    path(
        "teams/<str:team_id>/members/<str:username>",
        route(patch=MemberUpdateApi, delete=MemberRemoveApi),
        name="team-member",
    ),
    path("teams/<str:team_id>/audit", AuditListApi.as_view(), name="team-audit"),
    path("api-keys", route(get=ApiKeyListApi, post=ApiKeyCreateApi), name="api-keys"),
    path("api-keys/<str:key_id>", route(delete=ApiKeyRevokeApi), name="api-key"),
]
