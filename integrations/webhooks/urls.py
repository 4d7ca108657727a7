"""``/api/v1/webhooks…`` routes (included at "" by ``runtime_project.urls``; full paths here).

Ids are plain strings: the selectors answer 404 in the error shape for anything else.
"""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from integrations.webhooks.apis import (
    WebhookCreateApi,
    WebhookDeleteApi,
    WebhookDeliveryListApi,
    WebhookDetailApi,
    WebhookListApi,
    WebhookRedeliverApi,
    WebhookRotateSecretApi,
    WebhookTestApi,
    WebhookUpdateApi,
)
from sessions.apis.routing import route

app_name = "webhooks_api"

urlpatterns: list[URLPattern | URLResolver] = [
    path("api/v1/webhooks", route(get=WebhookListApi, post=WebhookCreateApi), name="webhooks"),
    path(
        "api/v1/webhooks/<str:webhook_id>",
        route(get=WebhookDetailApi, patch=WebhookUpdateApi, delete=WebhookDeleteApi),
        name="webhook-detail",
    ),
    path(
        "api/v1/webhooks/<str:webhook_id>/rotate-secret",
        route(post=WebhookRotateSecretApi),
        name="webhook-rotate-secret",
    ),
    path("api/v1/webhooks/<str:webhook_id>/test", route(post=WebhookTestApi), name="webhook-test"),
    path(
        "api/v1/webhooks/<str:webhook_id>/deliveries",
        route(get=WebhookDeliveryListApi),
        name="webhook-deliveries",
    ),
    path(
        "api/v1/webhooks/<str:webhook_id>/deliveries/<str:delivery_id>/redeliver",
        route(post=WebhookRedeliverApi),
        name="webhook-redeliver",
    ),
]
