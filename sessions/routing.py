from __future__ import annotations

from django.urls import path

from debugger.routing import websocket_urlpatterns as debugger_urlpatterns
from runtime_project.modes import gated_consumer
from runtimes.routing import websocket_urlpatterns as runtime_urlpatterns
from sessions.consumers import SessionStreamConsumer, TaskStreamConsumer

websocket_urlpatterns = [
    path(
        "ws/sessions/<str:session_id>/",
        gated_consumer(SessionStreamConsumer.as_asgi(), "sessions"),
    ),
    path("ws/tasks/<str:task_id>/", gated_consumer(TaskStreamConsumer.as_asgi(), "sessions")),
    *runtime_urlpatterns,
    *debugger_urlpatterns,
]
