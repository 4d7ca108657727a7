from __future__ import annotations

from django.urls import path

from sessions.consumers import SessionStreamConsumer, TaskStreamConsumer

websocket_urlpatterns = [
    path("ws/sessions/<str:session_id>/", SessionStreamConsumer.as_asgi()),
    path("ws/tasks/<str:task_id>/", TaskStreamConsumer.as_asgi()),
]
