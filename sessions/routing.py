from __future__ import annotations

from django.urls import path

from runtimes.routing import websocket_urlpatterns as runtime_urlpatterns
from sessions.consumers import SessionStreamConsumer, TaskStreamConsumer

websocket_urlpatterns = [
    path("ws/sessions/<str:session_id>/", SessionStreamConsumer.as_asgi()),
    path("ws/tasks/<str:task_id>/", TaskStreamConsumer.as_asgi()),
    *runtime_urlpatterns,
]
