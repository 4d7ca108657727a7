"""ASGI entrypoint: HTTP (Django) and WebSocket (Channels) in one server process (uvicorn by
default, or daphne; ``runtime_project.serve``).

The Django app is created first so apps are loaded before consumers are imported (the Channels
and cookiecutter-django convention). With ``TASK_EXECUTOR=inline`` the executor runs on this
server's event loop: it is started by the ASGI lifespan under uvicorn, as soon as the reactor
runs under daphne (which has no lifespan, see research/stack.md §3) and, as a fallback, on the
first connection. At lifespan shutdown the executor is drained (a no-op when
``runtime_project.serve`` already drained on SIGTERM).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "runtime_project.settings")

import django

django.setup(set_prefix=False)  # what get_asgi_application() does, before our handler

from django.conf import settings  # noqa: E402
from django.core.handlers.asgi import ASGIHandler as DjangoASGIHandler  # noqa: E402

from runtime_project.handlers import ASGIHandler  # noqa: E402

# Django's handler, with a sync view and its middleware in one thread hop (handlers.py).
django_asgi_app = ASGIHandler() if settings.ASGI_ONE_HOP else DjangoASGIHandler()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from integrations.mcp.asgi import is_mcp_path, mcp_asgi_app, mcp_enabled, mcp_shutdown  # noqa: E402
from runtime_project.auth import BrowserOriginValidator, TokenAuthMiddleware  # noqa: E402
from runtime_project.daphne_compat import hand_bodies_to_django  # noqa: E402
from runtime_project.modes import admin_port_allows  # noqa: E402
from sessions.outbox import remember_transport  # noqa: E402
from sessions.routing import websocket_urlpatterns  # noqa: E402
from sessions.runtime import drain_for_shutdown, start_runtime  # noqa: E402

logger = logging.getLogger(__name__)
hand_bodies_to_django()  # under daphne: Twisted must not parse (or reject) request bodies

channels_app = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": BrowserOriginValidator(
            AuthMiddlewareStack(TokenAuthMiddleware(URLRouter(websocket_urlpatterns)))
        ),
    }
)

_started = False
_background: set[asyncio.Future[None]] = set()  # keep a reference: tasks are weakly held


async def _ensure_started() -> None:
    global _started
    if not _started:
        _started = True
        await start_runtime()


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":  # uvicorn/hypercorn; daphne never sends it
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await _ensure_started()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await drain_for_shutdown()
                await mcp_shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return
    if not _started:
        await _ensure_started()
    scope = remember_transport(scope, send)  # for SSE flow control (sessions/subscriptions.py)
    if not admin_port_allows(scope):  # ADMIN_PORT: the admin there, and only there
        await _not_served(scope, receive, send)
        return
    if scope["type"] == "http" and is_mcp_path(scope["path"]) and mcp_enabled():
        # MCP Streamable HTTP (the SDK's ASGI app; Django's middleware does not run for it).
        await mcp_asgi_app(scope, receive, send)
        return
    await channels_app(scope, receive, send)


async def _not_served(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """404 in the API's error shape (HTTP), or close 4404 (WebSocket)."""
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.close", "code": 4404})
        return
    body = json.dumps(
        {"error": {"code": "not_found", "message": "Not served on this port.", "details": {}}}
    ).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 404, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _start_with_reactor() -> None:
    """Under daphne, start the runtime once the Twisted reactor (asyncio-backed) runs, so
    queued tasks resume after a restart without waiting for a first request."""
    import sys

    if "twisted.internet.reactor" not in sys.modules:
        return
    from twisted.internet import reactor

    def _kick() -> None:
        _background.add(asyncio.ensure_future(_ensure_started()))

    reactor.callWhenRunning(_kick)  # type: ignore[attr-defined]


_start_with_reactor()
