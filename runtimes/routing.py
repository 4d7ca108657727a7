"""WebSocket route of the runtimes app (composed into ``sessions.routing``)."""

from __future__ import annotations

from django.urls import path

from runtime_project.modes import gated_consumer
from runtimes.consumers import RuntimeConsumer

websocket_urlpatterns = [
    path("ws/runtimes/", gated_consumer(RuntimeConsumer.as_asgi(), "runtimes")),
]
