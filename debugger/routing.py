"""WebSocket routes of the debugger module (collected by ``sessions.routing``)."""

from __future__ import annotations

from django.urls import path

from debugger.consumers import MonitorConsumer
from runtime_project.modes import gated_consumer

websocket_urlpatterns = [
    path("ws/monitor/<str:monitor_id>/", gated_consumer(MonitorConsumer.as_asgi(), "debugger")),
]
