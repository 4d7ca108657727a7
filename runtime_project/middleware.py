"""Middleware that works on responses, for sync and async views alike: security headers Django
does not set itself, and streamed answers giving their database connections back.

Machine-readable responses (JSON, SSE, plain text, downloads) get a Content-Security-Policy that
forbids everything (``default-src 'none'; frame-ancestors 'none'``): if a browser is ever tricked
into rendering one as a page, no script, style or frame loads. HTML pages (admin, Swagger UI,
the console) keep the policies of their own views. Every response gets a ``Permissions-Policy``
that switches off powerful browser features nobody here uses (OWASP Secure Headers Project).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async

from runtime_project.db import release_connections

LOCKED_CSP = "default-src 'none'; frame-ancestors 'none'; sandbox"
PERMISSIONS_POLICY = "camera=(), microphone=(), geolocation=(), payment=(), usb=()"


def _decorate(response: Any) -> Any:
    content_type = response.get("Content-Type", "")
    if "Content-Security-Policy" not in response and not content_type.startswith("text/html"):
        response["Content-Security-Policy"] = LOCKED_CSP
    response.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
    return response


class ResponseMiddleware:
    """Base for a middleware that only looks at responses, sync-and-async capable (so async
    views, streaming SSE above all, are not pushed through a thread): override :meth:`after`
    and, when the async path must differ, :meth:`aafter`."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: Any) -> Any:
        if iscoroutinefunction(self):
            return self._acall(request)
        return self.after(self.get_response(request))

    async def _acall(self, request: Any) -> Any:
        return await self.aafter(await self.get_response(request))

    def after(self, response: Any) -> Any:
        return response

    async def aafter(self, response: Any) -> Any:
        return self.after(response)


class SecurityHeadersMiddleware(ResponseMiddleware):
    """Adds the headers above; works for sync and async (streaming SSE) views."""

    def after(self, response: Any) -> Any:
        return _decorate(response)


class StreamingConnectionsMiddleware(ResponseMiddleware):
    """A request answered with a stream gives its database connections back at once (with
    Django's stock handler, ``ASGI_ONE_HOP=false``; the one-hop handler gives the whole thread
    back instead, connection and all: ``runtime_project.handlers``).

    Django closes a request's connections when the response ends, and a stream (SSE events,
    a sandbox's exec output, an OpenAI-style answer) may last minutes: 200 SSE clients held 200
    PostgreSQL connections (it allows 100). Streams read through the loop's pool
    (``runtime_project.db.db_call``), not through the view's connection. Placed first among the
    middleware, so that nothing after it reopens one; under ASGI the release runs on the
    request's own thread-sensitive thread, where the sync view ran."""

    def after(self, response: Any) -> Any:
        if response.streaming:
            release_connections()
        return response

    async def aafter(self, response: Any) -> Any:
        if response.streaming:
            await sync_to_async(release_connections)()  # thread-sensitive: the view's thread
        return response
