"""WebSocket route of the runtimes app (composed into ``sessions.routing``)."""

from __future__ import annotations

from django.urls import path

from runtimes.consumers import RuntimeConsumer

websocket_urlpatterns = [
    path("ws/runtimes/", RuntimeConsumer.as_asgi()),
]
